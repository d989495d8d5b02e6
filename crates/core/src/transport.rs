//! The `Transport` handle: how bytes get to another peer.
//!
//! TCP, TLS over any transport, and simnet's in-memory links implement it.
//! The engine only sees byte streams.

use std::future::Future;
use std::io;

use futures_io::{AsyncRead, AsyncWrite};

/// A byte stream to one peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Opens connections and listens for them.
///
/// Addresses are text (`host:port` for TCP); each transport says what it
/// accepts. Implementations are cheap handles: clone them freely.
pub trait Transport: Clone + Send + Sync + 'static {
    /// A connection.
    type Stream: Stream;
    /// A bound listening endpoint.
    type Listener: Listener<Stream = Self::Stream>;

    /// A short name for output and logs ("tcp", "tls").
    fn name(&self) -> &'static str;

    /// Connects to `addr`.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Listens on `addr`.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
}

/// A listening endpoint.
pub trait Listener: Send + Sync + 'static {
    /// An accepted connection.
    type Stream: Stream;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>> + Send;

    /// The address actually bound (with the port filled in when 0 was asked).
    fn local_addr(&self) -> io::Result<String>;
}

/// A connection a listener accepted.
#[derive(Debug)]
pub struct Accepted<S> {
    /// The connection.
    pub stream: S,
    /// Where it came from, for logs.
    pub remote: String,
}

impl<S> Accepted<S> {
    /// Wraps an accepted stream.
    pub fn new(stream: S, remote: impl Into<String>) -> Self {
        Self { stream, remote: remote.into() }
    }
}

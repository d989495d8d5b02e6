//! p2p-transport-tcp: [`Transport`] over plain TCP.
//!
//! Addresses are `host:port` (`127.0.0.1:5000`, `[::1]:5000`,
//! `localhost:5000`); names are resolved on connect. Nagle's algorithm is
//! off: requests are small and latency matters more than packet count.
//!
//! A [`TcpStream`] reads only once the socket has been readable since it
//! last had nothing (see its docs): a task woken for other reasons costs
//! no system call.
//!
//! ```no_run
//! # smol::block_on(async {
//! use p2p_core::transport::{Listener, Transport};
//! use p2p_transport_tcp::TcpTransport;
//!
//! let listener = TcpTransport.bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let connection = TcpTransport.connect(&addr).await?;
//! # std::io::Result::Ok(()) });
//! ```
#![warn(missing_docs)]

use std::future::Future;
use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_io::{Async, ReadableOwned};
use async_net::TcpListener;
use futures_io::{AsyncRead, AsyncWrite};
use p2p_core::transport::{Connected, Incoming, Listener, Transport};

/// Plain TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpAcceptor(TcpListener);

/// An accepted TCP connection: nothing left to set up.
#[derive(Debug)]
pub struct TcpIncoming {
    stream: TcpStream,
    remote: String,
}

impl Transport for TcpTransport {
    type Stream = TcpStream;
    type Listener = TcpAcceptor;

    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn connect(&self, addr: &str) -> io::Result<Connected<TcpStream>> {
        let stream = async_net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connected::anonymous(TcpStream::from(stream)))
    }

    async fn bind(&self, addr: &str) -> io::Result<TcpAcceptor> {
        Ok(TcpAcceptor(TcpListener::bind(addr).await?))
    }
}

impl Listener for TcpAcceptor {
    type Stream = TcpStream;
    type Incoming = TcpIncoming;

    async fn accept(&self) -> io::Result<TcpIncoming> {
        let (stream, remote) = self.0.accept().await?;
        // Only a latency tweak: a socket the peer already reset may refuse
        // it, and that must not look like a failed listener.
        let _ = stream.set_nodelay(true);
        Ok(TcpIncoming { stream: TcpStream::from(stream), remote: remote.to_string() })
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }
}

impl Incoming for TcpIncoming {
    type Stream = TcpStream;

    fn remote(&self) -> String {
        self.remote.clone()
    }

    async fn establish(self) -> io::Result<Connected<TcpStream>> {
        Ok(Connected::anonymous(self.stream))
    }
}

/// A TCP connection.
///
/// `async_net`'s stream tries a read on every poll and waits for
/// readiness only after the socket said it had nothing. A task polled
/// for another reason (a timer, a channel, news for a subscriber) then
/// costs a `recv` that finds nothing and a re-arm of the poller: on a
/// machine serving a crowd that was most of its system calls. This one,
/// once a read found nothing, reads again only after the poller saw the
/// socket readable.
#[derive(Debug)]
pub struct TcpStream {
    stream: async_net::TcpStream,
    socket: Arc<Async<std::net::TcpStream>>,
    /// Set once a read found nothing: readiness to wait for first.
    readable: Option<ReadableOwned<std::net::TcpStream>>,
}

impl From<async_net::TcpStream> for TcpStream {
    fn from(stream: async_net::TcpStream) -> Self {
        let socket = Arc::<Async<std::net::TcpStream>>::from(stream.clone());
        Self { stream, socket, readable: None }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Some(readable) = &mut self.readable {
                let ready = ready!(Pin::new(readable).poll(cx));
                self.readable = None;
                ready?;
            }
            match self.socket.get_ref().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = Some(self.socket.clone().readable_owned());
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn connects_over_ipv4_and_ipv6_loopback() {
        smol::block_on(async {
            for bind in ["127.0.0.1:0", "[::1]:0"] {
                let Ok(listener) = TcpTransport.bind(bind).await else {
                    // A machine without IPv6 loopback.
                    continue;
                };
                let addr = listener.local_addr().unwrap();
                let (client, server) = futures_lite::future::zip(TcpTransport.connect(&addr), listener.accept()).await;
                let mut client = client.unwrap().stream;
                let server = server.unwrap();
                assert!(server.remote().contains(if bind.starts_with('[') { "::1" } else { "127.0.0.1" }));
                let mut server = server.establish().await.unwrap();
                assert!(server.peer.is_none());
                client.write_all(b"ping").await.unwrap();
                let mut buf = [0; 4];
                server.stream.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"ping");
            }
        });
    }

    #[test]
    fn a_read_waits_for_bytes_and_wakes_when_they_come() {
        use futures_lite::future::poll_once;
        smol::block_on(async {
            let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, server) = futures_lite::future::zip(TcpTransport.connect(&addr), listener.accept()).await;
            let mut client = client.unwrap().stream;
            let mut server = server.unwrap().establish().await.unwrap().stream;
            let mut buf = [0; 8];
            // Nothing sent yet: polled again and again, the read waits.
            for _ in 0..3 {
                assert!(poll_once(server.read(&mut buf)).await.is_none());
            }
            client.write_all(b"hi").await.unwrap();
            let n = server.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hi");
            assert!(poll_once(server.read(&mut buf)).await.is_none());
            client.write_all(b"again").await.unwrap();
            let n = server.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"again");
            drop(client);
            assert_eq!(server.read(&mut buf).await.unwrap(), 0, "the end of the stream wakes it too");
        });
    }

    #[test]
    fn refused_connection_is_an_error() {
        smol::block_on(async {
            let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let err = TcpTransport.connect(&addr).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}

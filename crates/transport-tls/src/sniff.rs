//! A stream that remembers the first bytes it read, so that a failed TLS
//! handshake can say what the other side spoke instead.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

/// How many leading bytes are kept.
const KEEP: usize = 8;

/// A stream that records the first bytes read from it (to explain a failed
/// handshake); otherwise it passes everything through.
#[derive(Debug)]
pub struct Sniff<S> {
    inner: S,
    first: First,
    /// Bytes recorded so far: past `KEEP`, reads skip the lock.
    kept: usize,
}

/// The first bytes read, shared with whoever set up the stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct First(Arc<Mutex<Vec<u8>>>);

impl First {
    pub(crate) fn get(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl<S> Sniff<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner, first: First::default(), kept: 0 }
    }

    pub(crate) fn first_bytes(&self) -> First {
        self.first.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.kept < KEEP {
            let take = (KEEP - this.kept).min(n);
            this.first.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(&buf[..take]);
            this.kept += take;
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

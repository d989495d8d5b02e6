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
    pub(crate) inner: S,
    first: First,
    /// Bytes recorded so far: past `KEEP`, reads skip the lock.
    kept: usize,
    /// Bytes read ahead by [`Sniff::peek`], handed out by the next reads.
    ahead: Vec<u8>,
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
        Self { inner, first: First::default(), kept: 0, ahead: Vec::new() }
    }

    pub(crate) fn first_bytes(&self) -> First {
        self.first.clone()
    }
}

impl<S: AsyncRead + Unpin> Sniff<S> {
    /// Reads the first bytes without consuming them: the next reads return
    /// them again. Empty if the other side closed without sending any.
    pub(crate) async fn peek(&mut self) -> io::Result<&[u8]> {
        if self.ahead.is_empty() {
            let mut buf = [0u8; KEEP];
            let n = futures_lite::AsyncReadExt::read(&mut self.inner, &mut buf).await?;
            self.ahead.extend_from_slice(&buf[..n]);
        }
        Ok(&self.ahead)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.ahead.is_empty() {
            let n = this.ahead.len().min(buf.len());
            buf[..n].copy_from_slice(&this.ahead[..n]);
            this.ahead.drain(..n);
            this.record(&buf[..n]);
            return Poll::Ready(Ok(n));
        }
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.record(&buf[..n]);
        Poll::Ready(Ok(n))
    }
}

impl<S> Sniff<S> {
    fn record(&mut self, read: &[u8]) {
        if self.kept < KEEP {
            let take = (KEEP - self.kept).min(read.len());
            self.first.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(&read[..take]);
            self.kept += take;
        }
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

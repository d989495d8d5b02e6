//! A framed connection: a stream, its read buffer, and timeouts.
//!
//! One task owns a `Conn`; reads and writes happen in that task, so there
//! is no split stream and no lock. Reads are cancel-safe: bytes already
//! read stay in the buffer if a `read_frame` future is dropped.

use std::io::{self, IoSlice};
use std::pin::pin;
use std::time::Duration;

use futures_lite::future::poll_once;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::protocol::codec::{self, DecodeError, EncodeError, Frame, PreambleError};
use crate::protocol::{Hello, Message, PREAMBLE_LEN, VERSION};
use crate::runtime::{Elapsed, Runtime, timeout};
use crate::transport::Stream;

/// Read buffer size when idle. It grows to hold the largest frame seen and
/// shrinks back when the connection goes idle.
const SMALL_BUF: usize = 64 * 1024;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The other side closed the connection.
    #[error("connection closed by the peer")]
    Closed,
    /// Nothing arrived (or nothing could be sent) for too long.
    #[error("no progress for {0:?}")]
    Stalled(Duration),
    /// An IO error from the transport.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The other side sent bytes that are not a valid frame.
    #[error("invalid frame: {0}")]
    Decode(#[from] DecodeError),
    /// A message too large to send.
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// The other side is not a p2p peer.
    #[error("{0}")]
    Preamble(#[from] PreambleError),
    /// The other side speaks another protocol version.
    #[error("the peer speaks protocol version {0}; this p2p speaks version {VERSION}: upgrade the older one")]
    Version(u16),
    /// A message that makes no sense at this point.
    #[error("protocol violation: {0}")]
    Unexpected(String),
    /// The other side reported an error for the whole connection.
    #[error("{0}")]
    Refused(String),
}

/// An IO error, with the ways a peer going away shows up folded into
/// [`ConnError::Closed`].
fn io_error(e: io::Error) -> ConnError {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => ConnError::Closed,
        _ => ConnError::Io(e),
    }
}

impl From<Elapsed> for ConnError {
    fn from(e: Elapsed) -> Self {
        ConnError::Stalled(e.0)
    }
}

/// How long a read may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Between requests: use the idle timeout, and release a big buffer.
    Idle(Duration),
    /// A response or the rest of a transfer is expected.
    Busy,
}

pub(crate) struct Conn<S, R> {
    stream: S,
    rt: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes of the frame returned last, dropped on the next read.
    consumed: usize,
    out: Vec<u8>,
    io_timeout: Duration,
}

impl<S: Stream, R: Runtime> Conn<S, R> {
    pub(crate) fn new(stream: S, rt: R, io_timeout: Duration) -> Self {
        Self { stream, rt, buf: vec![0; SMALL_BUF], start: 0, end: 0, consumed: 0, out: Vec::new(), io_timeout }
    }

    /// The stall timeout.
    pub(crate) fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    /// Sends our preamble and checks theirs.
    async fn exchange_preambles(&mut self) -> Result<(), ConnError> {
        self.write_raw(&[&codec::encode_preamble(VERSION)]).await?;
        self.stream_flush().await?;
        while self.end - self.start < PREAMBLE_LEN {
            if self.fill(Wait::Busy).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
        let mut p = [0u8; PREAMBLE_LEN];
        p.copy_from_slice(&self.buf[self.start..self.start + PREAMBLE_LEN]);
        self.start += PREAMBLE_LEN;
        let version = codec::decode_preamble(&p)?;
        if version != VERSION {
            let message = format!("this peer speaks protocol version {VERSION}, not {version}");
            // Best effort: the other side may already be gone.
            let _ = self
                .send(&Message::Error { id: 0, code: crate::protocol::ErrorCode::UnsupportedVersion, message })
                .await;
            return Err(ConnError::Version(version));
        }
        Ok(())
    }

    /// The connecting side's handshake: preambles, then our Hello and theirs.
    pub(crate) async fn handshake_connect(&mut self, hello: Hello) -> Result<Hello, ConnError> {
        self.exchange_preambles().await?;
        self.send(&Message::Hello(hello)).await?;
        match self.read_message(Wait::Busy).await? {
            Message::Hello(h) => Ok(h),
            Message::Error { message, .. } => Err(ConnError::Refused(message)),
            other => Err(ConnError::Unexpected(format!("expected Hello, got {}", kind(&other)))),
        }
    }

    /// The accepting side's handshake.
    pub(crate) async fn handshake_accept(&mut self, hello: Hello) -> Result<Hello, ConnError> {
        self.exchange_preambles().await?;
        let theirs = match self.read_message(Wait::Busy).await? {
            Message::Hello(h) => h,
            other => return Err(ConnError::Unexpected(format!("expected Hello, got {}", kind(&other)))),
        };
        self.send(&Message::Hello(hello)).await?;
        Ok(theirs)
    }

    /// The next frame, or `None` if the peer closed the connection cleanly
    /// between frames.
    pub(crate) async fn read_frame(&mut self, wait: Wait) -> Result<Option<Frame<'_>>, ConnError> {
        self.start += std::mem::take(&mut self.consumed);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if matches!(wait, Wait::Idle(_)) && self.buf.len() > SMALL_BUF {
                self.buf = vec![0; SMALL_BUF];
            }
        }
        let mut wait = wait;
        loop {
            if let Some(total) = codec::frame_len(&self.buf[self.start..self.end])? {
                if self.end - self.start >= total {
                    self.consumed = total;
                    let bytes = &self.buf[self.start..self.start + total];
                    return match codec::decode(bytes)? {
                        Some((frame, _)) => Ok(Some(frame)),
                        // frame_len said the whole frame is there.
                        None => Err(ConnError::Unexpected("incomplete frame".into())),
                    };
                }
                self.make_room(total);
            } else {
                self.make_room(64);
            }
            let partial = self.end > self.start;
            if self.fill(wait).await? == 0 {
                return if partial { Err(ConnError::Closed) } else { Ok(None) };
            }
            // Once a frame has started, the rest must come promptly.
            wait = Wait::Busy;
        }
    }

    /// The next frame, which must be a control message.
    pub(crate) async fn read_message(&mut self, wait: Wait) -> Result<Message, ConnError> {
        match self.read_frame(wait).await? {
            Some(Frame::Control(m)) => Ok(m),
            Some(Frame::Data(d)) => Err(ConnError::Unexpected(format!("unexpected data for request {}", d.id))),
            None => Err(ConnError::Closed),
        }
    }

    /// A frame if one is already buffered or readable right now.
    pub(crate) async fn try_read_frame(&mut self) -> Result<Option<Frame<'_>>, ConnError> {
        // Dropping the unfinished read keeps what it read (see `fill`).
        match poll_once(pin!(self.read_frame(Wait::Busy))).await {
            Some(Ok(Some(frame))) => Ok(Some(frame)),
            Some(Ok(None)) => Err(ConnError::Closed),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Ensures the buffer can hold `total` bytes from `start` and has room
    /// to read into. Only the bytes of the unfinished frame move.
    fn make_room(&mut self, total: usize) {
        if self.buf.len() - self.start >= total {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < total {
            // Twice the frame, so one read can also take the next header.
            self.buf.resize((2 * total).max(SMALL_BUF), 0);
        }
    }

    /// Reads more bytes; 0 means end of stream. Cancel-safe: bytes count
    /// as read in the same poll that reads them.
    async fn fill(&mut self, wait: Wait) -> Result<usize, ConnError> {
        let limit = match wait {
            Wait::Idle(d) => d,
            Wait::Busy => self.io_timeout,
        };
        let read = self.stream.read(&mut self.buf[self.end..]);
        let n = quick_timeout(&self.rt, limit, read).await?.map_err(io_error)?;
        self.end += n;
        Ok(n)
    }

    /// Queues a control message; [`flush`](Self::flush) sends it.
    pub(crate) fn queue(&mut self, msg: &Message) -> Result<(), ConnError> {
        codec::encode_control(msg, &mut self.out)?;
        Ok(())
    }

    /// Sends a control message now.
    pub(crate) async fn send(&mut self, msg: &Message) -> Result<(), ConnError> {
        self.queue(msg)?;
        self.flush().await
    }

    /// Sends what was queued.
    pub(crate) async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let r = self.write_raw(&[&out]).await;
            self.out = out;
            self.out.clear();
            r?;
        }
        self.stream_flush().await
    }

    /// Sends queued messages, then a data frame, without copying `bytes`.
    pub(crate) async fn send_data(&mut self, id: u32, offset: u64, bytes: &[u8]) -> Result<(), ConnError> {
        let header = codec::data_header(id, offset, bytes.len());
        let out = std::mem::take(&mut self.out);
        let r = self.write_raw(&[&out, &header, bytes]).await;
        self.out = out;
        self.out.clear();
        r
    }

    async fn stream_flush(&mut self) -> Result<(), ConnError> {
        let flush = self.stream.flush();
        quick_timeout(&self.rt, self.io_timeout, flush).await?.map_err(io_error)?;
        Ok(())
    }

    /// Writes all of `parts`, failing if no byte moves for the IO timeout.
    async fn write_raw(&mut self, parts: &[&[u8]]) -> Result<(), ConnError> {
        let mut part = 0;
        let mut skip = 0;
        while part < parts.len() {
            if parts[part].len() == skip {
                part += 1;
                skip = 0;
                continue;
            }
            let mut slices = [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])];
            let mut count = 0;
            for (i, p) in parts[part..].iter().enumerate().take(slices.len()) {
                slices[count] = IoSlice::new(if i == 0 { &p[skip..] } else { p });
                count += 1;
            }
            let write = self.stream.write_vectored(&slices[..count]);
            let mut n = quick_timeout(&self.rt, self.io_timeout, write).await?.map_err(io_error)?;
            if n == 0 {
                return Err(ConnError::Io(io::ErrorKind::WriteZero.into()));
            }
            while n > 0 && part < parts.len() {
                let left = parts[part].len() - skip;
                if n >= left {
                    n -= left;
                    part += 1;
                    skip = 0;
                } else {
                    skip += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }

    /// Closes the write side (best effort).
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        let close = self.stream.close();
        let _ = quick_timeout(&self.rt, self.io_timeout, close).await;
    }
}

/// Like [`timeout`], but arms no timer when the future is ready at once,
/// which is the common case on a busy connection.
async fn quick_timeout<R: Runtime, F: Future>(rt: &R, d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    if let Some(v) = poll_once(fut.as_mut()).await {
        return Ok(v);
    }
    timeout(rt, d, fut).await
}

/// The message's variant name, for errors.
pub(crate) fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello(_) => "Hello",
        Message::List { .. } => "List",
        Message::Files { .. } => "Files",
        Message::GetManifest { .. } => "GetManifest",
        Message::ManifestPage { .. } => "ManifestPage",
        Message::Read { .. } => "Read",
        Message::Cancel { .. } => "Cancel",
        Message::Offer { .. } => "Offer",
        Message::Accept { .. } => "Accept",
        Message::Stored { .. } => "Stored",
        Message::Error { .. } => "Error",
    }
}

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
use crate::runtime::{Elapsed, Runtime, Time, timeout};
use crate::transport::Stream;

/// The least a read buffer grows by once a frame outgrows it. It grows
/// with the bytes that arrive (never with the size a header merely
/// announces).
const SMALL_BUF: usize = 64 * 1024;

/// Read buffer of a new connection, and of one that goes idle: enough for
/// a handshake and control messages, so that a crowd of connections that
/// send nothing (a swarm's choked sources, say) costs little.
const FIRST_BUF: usize = 4 * 1024;

/// The slowest a frame may move once it has started, in bytes per second,
/// on top of the IO timeout. It stops a peer that keeps a connection (and
/// what it holds) alive by trickling a byte at a time.
pub(crate) const MIN_RATE: u64 = 32 * 1024;

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
    #[error("{message}")]
    Refused {
        /// The kind of refusal.
        code: crate::protocol::ErrorCode,
        /// The peer's explanation.
        message: String,
    },
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
    /// When the first bytes of the frame being received arrived. Kept here
    /// because the read that waits for the rest may be cancelled and
    /// started again.
    frame_started: Option<Time>,
    out: Vec<u8>,
    io_timeout: Duration,
    /// Bytes written so far, readable while a write is in progress.
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S: Stream, R: Runtime> Conn<S, R> {
    pub(crate) fn new(stream: S, rt: R, io_timeout: Duration) -> Self {
        Self {
            stream,
            rt,
            buf: vec![0; FIRST_BUF],
            start: 0,
            end: 0,
            consumed: 0,
            frame_started: None,
            out: Vec::new(),
            io_timeout,
            written: std::sync::Arc::default(),
        }
    }

    /// A count of the bytes written so far, readable while a write is in
    /// progress: whether the other side still takes what is sent.
    pub(crate) fn written(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.written.clone()
    }

    /// The runtime.
    pub(crate) fn rt(&self) -> &R {
        &self.rt
    }

    /// Sends our preamble and checks theirs.
    async fn exchange_preambles(&mut self) -> Result<(), ConnError> {
        self.write_raw(&[&codec::encode_preamble(VERSION)]).await?;
        self.stream_flush().await?;
        while self.end - self.start < PREAMBLE_LEN {
            if self.fill(self.io_timeout).await? == 0 {
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
        // If the peer turned us away, its reason may already be here even
        // though sending fails: read it either way.
        let sent = self.send(&Message::Hello(hello)).await;
        let answer = self.read_message(Wait::Busy).await;
        match (sent, answer) {
            (_, Ok(Message::Error { code, message, .. })) => {
                Err(ConnError::Refused { code, message: crate::sanitize(&message, 500) })
            }
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(Message::Hello(h))) => Ok(h),
            (Ok(()), Ok(other)) => Err(ConnError::Unexpected(format!("expected Hello, got {}", kind(&other)))),
        }
    }

    /// The accepting side's handshake, up to the other side's Hello. The
    /// caller answers with its own Hello, or with an error to refuse.
    pub(crate) async fn handshake_accept(&mut self) -> Result<Hello, ConnError> {
        self.exchange_preambles().await?;
        match self.read_message(Wait::Busy).await? {
            Message::Hello(h) => Ok(h),
            other => Err(ConnError::Unexpected(format!("expected Hello, got {}", kind(&other)))),
        }
    }

    /// The next frame, or `None` if the peer closed the connection cleanly
    /// between frames.
    pub(crate) async fn read_frame(&mut self, wait: Wait) -> Result<Option<Frame<'_>>, ConnError> {
        self.start += std::mem::take(&mut self.consumed);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if matches!(wait, Wait::Idle(_)) && self.buf.len() > FIRST_BUF {
                self.buf = vec![0; FIRST_BUF];
            }
        }
        loop {
            let have = self.end - self.start;
            let total = codec::frame_len(&self.buf[self.start..self.end])?;
            if let Some(total) = total
                && have >= total
            {
                self.consumed = total;
                self.frame_started = None;
                let bytes = &self.buf[self.start..self.start + total];
                return match codec::decode(bytes)? {
                    Some((frame, _)) => Ok(Some(frame)),
                    // frame_len said the whole frame is there.
                    None => Err(ConnError::Unexpected("incomplete frame".into())),
                };
            }
            let limit = if have == 0 {
                match wait {
                    Wait::Idle(d) => d,
                    Wait::Busy => self.io_timeout,
                }
            } else {
                // A frame has started: it must finish in time for its size,
                // however the bytes trickle in.
                let now = self.rt.now();
                let started = *self.frame_started.get_or_insert(now);
                let deadline = started + self.io_timeout + rate_time(total.unwrap_or(0));
                if now >= deadline {
                    return Err(ConnError::Stalled(deadline - started));
                }
                (deadline - now).min(self.io_timeout)
            };
            self.make_room(total.unwrap_or(64));
            if self.fill(limit).await? == 0 {
                return if have > 0 { Err(ConnError::Closed) } else { Ok(None) };
            }
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

    /// Makes room to read more of a frame of `total` bytes. The buffer
    /// grows as bytes arrive, so a header announcing a large frame costs
    /// nothing until the frame's bytes come.
    fn make_room(&mut self, total: usize) {
        if self.buf.len() - self.start >= total && self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            // Moves only the start of the unfinished frame: this happens
            // when its first bytes arrive, not once it is mostly here.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Full of one unfinished frame: grow toward its size, with room
            // to spare for the next header.
            let len = (2 * self.buf.len()).min(total + SMALL_BUF).max(SMALL_BUF);
            self.buf.resize(len, 0);
        }
    }

    /// Reads more bytes; 0 means end of stream. Cancel-safe: bytes count
    /// as read in the same poll that reads them.
    async fn fill(&mut self, limit: Duration) -> Result<usize, ConnError> {
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

    /// Sends `items` in pages of `size` (at least one page, empty for no
    /// items), `page` making each message from its items and whether it
    /// is the last.
    pub(crate) async fn send_pages<T: Clone>(
        &mut self,
        items: &[T],
        size: usize,
        page: impl Fn(Vec<T>, bool) -> Message,
    ) -> Result<(), ConnError> {
        if items.is_empty() {
            return self.send(&page(Vec::new(), true)).await;
        }
        let mut pages = items.chunks(size).peekable();
        while let Some(items) = pages.next() {
            let last = pages.peek().is_none();
            self.send(&page(items.to_vec(), last)).await?;
        }
        Ok(())
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

    /// Writes all of `parts`, failing if no byte moves for the IO timeout or
    /// the whole takes longer than its size allows at [`MIN_RATE`].
    async fn write_raw(&mut self, parts: &[&[u8]]) -> Result<(), ConnError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let started = self.rt.now();
        let deadline = started + self.io_timeout + rate_time(total);
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
            let now = self.rt.now();
            if now >= deadline {
                return Err(ConnError::Stalled(deadline - started));
            }
            let limit = (deadline - now).min(self.io_timeout);
            let write = self.stream.write_vectored(&slices[..count]);
            let mut n = quick_timeout(&self.rt, limit, write).await?.map_err(io_error)?;
            if n == 0 {
                return Err(ConnError::Io(io::ErrorKind::WriteZero.into()));
            }
            self.written.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
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

    /// Closes the connection (best effort). Whatever the other side still
    /// sends is read and dropped for a moment first: closing a socket with
    /// unread bytes resets it, and the reset could destroy our last message
    /// (an error saying why) before the other side reads it.
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        let close = self.stream.close();
        let _ = quick_timeout(&self.rt, self.io_timeout, close).await;
        let linger = self.io_timeout.min(Duration::from_secs(2));
        let drain = async {
            // On the heap: closing is rare, and an array here would make
            // every future that may close a connection 4 KiB larger.
            let mut sink = vec![0u8; 4096];
            while let Ok(n) = self.stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = timeout(&self.rt, linger, drain).await;
    }
}

/// How long `bytes` may take at [`MIN_RATE`].
pub(crate) fn rate_time(bytes: usize) -> Duration {
    Duration::from_millis(bytes as u64 * 1000 / MIN_RATE)
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
        Message::Working { .. } => "Working",
        Message::Join { .. } => "Join",
        Message::Joined { .. } => "Joined",
        Message::Publish { .. } => "Publish",
        Message::Published { .. } => "Published",
        Message::Ping { .. } => "Ping",
        Message::Pong { .. } => "Pong",
        Message::IndexList { .. } => "IndexList",
        Message::IndexFiles { .. } => "IndexFiles",
        Message::Locate { .. } => "Locate",
        Message::Located { .. } => "Located",
        Message::ListPeers { .. } => "ListPeers",
        Message::PeerPage { .. } => "PeerPage",
        Message::Suspect { .. } => "Suspect",
        Message::Noted { .. } => "Noted",
        Message::Report { .. } => "Report",
        Message::Subscribe { .. } => "Subscribe",
        Message::Holding { .. } => "Holding",
        Message::Have { .. } => "Have",
        Message::Fetching { .. } => "Fetching",
        Message::Choke { .. } => "Choke",
        Message::Interest { .. } => "Interest",
        Message::Got { .. } => "Got",
        Message::Showing { .. } => "Showing",
        Message::Elsewhere { .. } => "Elsewhere",
    }
}

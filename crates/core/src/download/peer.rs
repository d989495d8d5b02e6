//! One source of a download: a task that owns the session with that peer,
//! asks for the ranges the coordinator assigns, verifies what arrives and
//! writes it to the partial file.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use async_channel::{Receiver, Sender};

use crate::catalog::Entry;
use crate::client::{ClientConfig, ClientError, Session};
use crate::conn::ConnError;
use crate::conn::rate_time;
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::name::FileName;
use crate::protocol::FileRef;
use crate::protocol::codec::Frame;
use crate::runtime::{Runtime, Time};
use crate::store::WriteAt;
use crate::transport::Fingerprint;
use crate::transport::Transport;
use crate::verify::{BlockWriter, VerifyError};

/// What the coordinator tells a source.
pub(super) enum Command<P> {
    /// Start transferring into the partial file `out` writes to.
    Start { manifest: Arc<Manifest>, out: P },
    /// Fetch this range.
    Fetch(Range<u64>),
}

/// What a source tells the coordinator.
pub(super) enum Event {
    /// The source's manifest for the name, or why it has none, and the
    /// identity its transport proved.
    Manifest { source: usize, result: Result<Entry, ClientError>, identity: Option<Fingerprint> },
    /// A range is verified and written.
    Done { source: usize, range: Range<u64> },
    /// The source failed; its unfinished ranges must go elsewhere.
    Failed { source: usize, error: SourceError },
    /// Writing to the local partial file failed: the download cannot go on.
    LocalWrite { error: std::io::Error },
}

/// Why a source was dropped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection or the peer failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The source sent data that failed verification.
    #[error("sent corrupt data: {0}")]
    Corrupt(VerifyError),
    /// The source sent data slower than the minimum rate.
    #[error("too slow: below 32 KiB/s")]
    TooSlow,
}

pub(super) struct Source<T, R, P> {
    pub(super) index: usize,
    pub(super) addr: String,
    pub(super) name: FileName,
    pub(super) transport: T,
    pub(super) rt: R,
    pub(super) config: ClientConfig,
    pub(super) commands: Receiver<Command<P>>,
    pub(super) events: Sender<Event>,
}

struct Request {
    id: u32,
    range: Range<u64>,
    writer: BlockWriter,
    /// When this request became the one being answered.
    since: Option<Time>,
}

enum Next<'a, P> {
    Command(Option<Command<P>>),
    Frame(Result<Frame<'a>, ClientError>),
}

impl<T: Transport, R: Runtime, P: WriteAt> Source<T, R, P> {
    pub(super) async fn run(self) {
        let source = self.index;
        let mut session = match Session::connect(&self.transport, &self.rt, &self.addr, &self.config).await {
            Ok(s) => s,
            Err(e) => {
                let _ = self.events.send(Event::Manifest { source, result: Err(e), identity: None }).await;
                return;
            }
        };
        let identity = session.identity();
        let result = session.manifest(FileRef::Name(self.name.to_string())).await;
        let ok = result.is_ok();
        let _ = self.events.send(Event::Manifest { source, result, identity }).await;
        if !ok {
            session.close().await;
            return;
        }
        let Ok(Command::Start { manifest, out }) = self.commands.recv().await else {
            // Not needed (another source has it, or the file is already here).
            session.close().await;
            return;
        };
        let hash = manifest.root();
        let event = match self.transfer(&mut session, hash, &manifest, &out).await {
            Ok(()) => {
                session.close().await;
                return;
            }
            Err(Stop::Source(error)) => Event::Failed { source, error },
            Err(Stop::Local(error)) => Event::LocalWrite { error },
        };
        let _ = self.events.send(event).await;
    }

    async fn transfer(
        &self,
        session: &mut Session<T::Stream, R>,
        hash: Hash,
        manifest: &Arc<Manifest>,
        out: &P,
    ) -> Result<(), Stop> {
        let mut requests: VecDeque<Request> = VecDeque::new();
        // Buffers of finished requests, for the next ones.
        let mut pool: Vec<Vec<u8>> = Vec::new();
        loop {
            let next = if requests.is_empty() {
                Next::Command(self.commands.recv().await.ok())
            } else {
                futures_lite::future::or(async { Next::Command(self.commands.recv().await.ok()) }, async {
                    Next::Frame(session.next_frame().await)
                })
                .await
            };
            let done = match next {
                // The coordinator closed the channel: the download is over.
                Next::Command(None) => return Ok(()),
                Next::Command(Some(Command::Fetch(range))) => {
                    let id = session.send_read(hash, range.start, range.end - range.start).await?;
                    let mut writer = BlockWriter::new(manifest.clone(), range.clone()).map_err(SourceError::Corrupt)?;
                    for buf in pool.drain(..) {
                        writer.give(buf);
                    }
                    requests.push_back(Request { id, range, writer, since: None });
                    None
                }
                Next::Command(Some(Command::Start { .. })) => None,
                Next::Frame(frame) => {
                    let Frame::Data(d) = frame? else {
                        return Err(
                            ClientError::Conn(ConnError::Unexpected("control message during a read".into())).into()
                        );
                    };
                    let Some(req) = requests.front_mut().filter(|r| r.id == d.id) else {
                        return Err(
                            ClientError::Conn(ConnError::Unexpected(format!("data for request {}", d.id))).into()
                        );
                    };
                    let runs = req.writer.push(d.offset, d.bytes).map_err(SourceError::Corrupt)?;
                    // However the bytes trickle, each request must keep a
                    // minimum pace, or the source is dropped and its ranges
                    // go to others.
                    let now = self.rt.now();
                    let since = *req.since.get_or_insert(now);
                    let got = (req.writer.next_offset() - req.range.start) as usize;
                    if now - since > self.config.io_timeout + rate_time(got) {
                        return Err(Stop::Source(SourceError::TooSlow));
                    }
                    for (offset, run) in runs {
                        let buf = out.write_at(offset, run).await.map_err(Stop::Local)?;
                        req.writer.give(buf);
                    }
                    if !req.writer.is_done() {
                        None
                    } else if let Some(finished) = requests.pop_front() {
                        // Its buffers serve the next request.
                        let buffers = finished.writer.into_buffers();
                        match requests.front_mut() {
                            Some(next) => {
                                next.since = Some(self.rt.now());
                                for b in buffers {
                                    next.writer.give(b);
                                }
                            }
                            None => pool.extend(buffers),
                        }
                        Some(finished.range)
                    } else {
                        None
                    }
                }
            };
            if let Some(range) = done {
                let _ = self.events.send(Event::Done { source: self.index, range }).await;
            }
        }
    }
}

enum Stop {
    Source(SourceError),
    Local(std::io::Error),
}

impl From<SourceError> for Stop {
    fn from(e: SourceError) -> Self {
        Stop::Source(e)
    }
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Self {
        Stop::Source(SourceError::Client(e))
    }
}

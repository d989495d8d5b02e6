//! One source of a download: a task that owns the session with that peer,
//! asks for the ranges the coordinator assigns, verifies what arrives and
//! writes it to the partial file.
//!
//! A range the coordinator assigns is a job; a job goes on the wire as one
//! read, or as several reads of a pinned size. At most [`MAX_READS`] reads
//! are open at once, so a peer's request queue never overflows. Reads are
//! answered in order; a cancelled read may still send some frames, which
//! are dropped, and is known to be over once a later read answers.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};

use crate::bitfield::Bitfield;
use crate::catalog::Entry;
use crate::client::{ClientConfig, ClientError, ManifestAnswer, Misbehavior, Session};
use crate::conn::ConnError;
use crate::conn::rate_time;
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::protocol::codec::Frame;
use crate::protocol::{CAP_GOT, CAP_SWARM, ErrorCode, FileInfo, FileRef, Message};
use crate::runtime::{Runtime, Task, Time, timeout};
use crate::store::WriteAt;
use crate::transport::Fingerprint;
use crate::transport::Transport;
use crate::verify::{BlockWriter, VerifyError, WRITE_RUN};

use super::downloader::plausible_addr;
use super::pool::Pool;

/// Files smaller than this are not swarmed: fetched whole from peers that
/// have them whole, with no subscription, their sessions kept for the next
/// file.
pub(crate) const SWARM_FROM: u64 = 1 << 20;
/// How long a subscribed source may stay silent while nothing is asked of
/// it.
const SUBSCRIBED_IDLE: Duration = Duration::from_secs(600);
/// Reads open on one connection at once.
const MAX_READS: usize = 8;
/// Tries to connect to a source that answers "busy" (or closes the
/// connection before it answers) before giving up.
const BUSY_TRIES: u32 = 5;
/// The first wait before trying a busy source again; it doubles each time.
const BUSY_WAIT: Duration = Duration::from_millis(500);
/// Longest a source spends fetching a manifest from the peers it pointed
/// to before it asks for it again itself.
const ELSEWHERE_WAIT: Duration = Duration::from_secs(3);
/// Peers pointed to that are tried for a manifest.
const ELSEWHERE_TRIES: usize = 3;

/// What the coordinator tells a source.
pub(super) enum Command<P> {
    /// Start transferring into the partial file `out` writes to.
    Start { manifest: Arc<Manifest>, out: P },
    /// Fetch this range.
    Fetch(Range<u64>),
    /// Stop fetching this range.
    Cancel(Range<u64>),
    /// Tell the source whether it has anything wanted (it takes turns).
    Interest(bool),
    /// Tell the source, if it shows this download pieces, that these
    /// blocks are here.
    Got(Arc<[u32]>),
}

/// What a source tells the coordinator.
pub(super) enum Event {
    /// The source's manifest for the file, or why it has none, the
    /// identity its transport proved, and whether it will say which
    /// blocks it holds (it swarms: until it does, it is asked nothing).
    Manifest { source: usize, result: Result<Entry, ClientError>, identity: Option<Fingerprint>, swarms: bool },
    /// The blocks the source holds (`None`: every one), and peers that
    /// fetch the same content from it.
    Holding { source: usize, blocks: Option<Bitfield>, peers: Vec<String> },
    /// The source has more blocks now, or knows more peers.
    Have { source: usize, blocks: Vec<u32>, peers: Vec<String> },
    /// The source serves this downloader's reads now (or not): it takes
    /// turns among those fetching from it.
    Choke { source: usize, choked: bool },
    /// The source does not have this range (yet) but stays.
    NotYet { source: usize, range: Range<u64> },
    /// The source serves others now and did not serve `range`.
    TurnedAway { source: usize, range: Range<u64> },
    /// A range is verified and written.
    Done { source: usize, range: Range<u64> },
    /// The source turned down one range (busy) but stays.
    Refused { source: usize, range: Range<u64>, error: ClientError },
    /// The source failed; its unfinished ranges must go elsewhere.
    Failed { source: usize, error: SourceError },
    /// The source said it is busy (each time it does); it is tried again
    /// a few times.
    Busy { source: usize },
    /// The source holds the whole file and shows it piece by piece: it
    /// wants to hear which blocks are here ([`Command::Got`]).
    Showing { source: usize },
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

pub(super) struct Source<T: Transport, R, P> {
    pub(super) index: usize,
    pub(super) addr: String,
    pub(super) file: FileRef,
    pub(super) transport: T,
    pub(super) rt: R,
    pub(super) config: ClientConfig,
    /// Bytes per read, if pinned.
    pub(super) chunk: Option<u64>,
    /// Sessions shared with the other downloads of the same downloader.
    pub(super) pool: Arc<Pool<T::Stream, R>>,
    pub(super) commands: Receiver<Command<P>>,
    pub(super) events: Sender<Event>,
    /// Whether to swarm with the peer, if it can: subscribe to the blocks
    /// it holds, saying this side serves the content on this port (0:
    /// nowhere).
    pub(super) swarm: Option<u16>,
    /// The content, when the peer was heard of from another (by hash):
    /// its manifest is known already.
    pub(super) known: Option<Entry>,
}

/// A range being fetched.
struct Job {
    /// Told apart from a later job for the same range (fetched again
    /// after a cancel) while writes of the earlier one may still end.
    serial: u64,
    range: Range<u64>,
    writer: BlockWriter,
    /// When its bytes started to count against the minimum pace.
    since: Option<Time>,
    /// Its verified runs still on their way to the partial file.
    writing: usize,
}

/// A verified run on its way to the partial file, for the job of `job`.
/// Writes run beside the transfer: a source keeps receiving and verifying
/// while the disk takes the previous runs.
struct Write {
    job: u64,
    task: Task<std::io::Result<Vec<u8>>>,
}

/// A read on the wire.
struct Read {
    id: u32,
    /// The job's range (jobs are told apart by their ranges).
    job: Range<u64>,
    len: u64,
    got: u64,
    cancelled: bool,
}

enum Next<'a, P> {
    Command(Option<Command<P>>),
    Frame(Result<Frame<'a>, ClientError>),
    /// Nothing arrived for [`QUIET`].
    Quiet,
    /// The oldest write ended.
    Wrote(std::io::Result<Vec<u8>>),
}

/// Bytes of verified runs being written at once by one source (at least
/// one run, which holds at least a block); past this, it reads no more
/// from the peer until one ends.
const WRITE_AHEAD: usize = 2 << 20;

/// How long a peer may stay silent before its cancelled reads are over.
const QUIET: Duration = Duration::from_secs(1);
/// Ids of cancelled reads remembered after they are over.
const GONE: usize = 256;
/// Keep-alives (`Working`) a source may send in a row during reads: a
/// server sends none for reads, so more are a peer keeping a connection
/// open instead of sending data.
const MAX_KEEPALIVES: u64 = 3;

fn forget(gone: &mut VecDeque<u32>, id: u32) {
    if gone.len() == GONE {
        gone.pop_front();
    }
    gone.push_back(id);
}

impl<T: Transport, R: Runtime, P: WriteAt> Source<T, R, P> {
    pub(super) async fn run(self) {
        let source = self.index;
        // Boxed: asking for the manifest (connecting, perhaps elsewhere)
        // is most of this future's size, and a swarm keeps tens of
        // sources alive long after they have it.
        let (mut session, result) = match Box::pin(self.offer()).await {
            Ok(offered) => offered,
            Err(e) => {
                let _ =
                    self.events.send(Event::Manifest { source, result: Err(e), identity: None, swarms: false }).await;
                return;
            }
        };
        let identity = session.identity();
        // A refusal (not found, say) leaves the session fit for the next file.
        let reusable = match &result {
            Ok(_) => true,
            Err(e) => matches!(e, ClientError::Refused { .. }),
        };
        let ok = result.is_ok();
        let swarms = self.swarm.is_some()
            && session.peer().capabilities & CAP_SWARM != 0
            && result.as_ref().is_ok_and(|e| e.info.size >= SWARM_FROM);
        let _ = self.events.send(Event::Manifest { source, result, identity, swarms }).await;
        if !ok {
            if reusable {
                self.release(session).await;
            }
            return;
        }
        let Ok(Command::Start { manifest, out }) = self.commands.recv().await else {
            // Not needed (another source has it, or the file is already here).
            self.release(session).await;
            return;
        };
        let hash = manifest.root();
        let sub = match self.swarm.filter(|_| swarms) {
            Some(port) => match session.send_subscribe(hash, port).await {
                Ok(id) => Some(id),
                Err(error) => {
                    let _ = self.events.send(Event::Failed { source, error: error.into() }).await;
                    return;
                }
            },
            None => None,
        };
        let mut transfer = Transfer {
            source: self,
            hash,
            manifest: &manifest,
            out: &out,
            jobs: VecDeque::new(),
            unsent: VecDeque::new(),
            reads: VecDeque::new(),
            gone: VecDeque::new(),
            pool: Vec::new(),
            choked: false,
            writes: VecDeque::new(),
            next_job: 0,
            keepalives: 0,
            sub,
            showing: false,
        };
        let event = match transfer.run(&mut session).await {
            Ok(()) => {
                // Only a session with nothing left on the wire is fit for
                // another download (a cancelled read may still be sending).
                // One that is still sending is dropped, not closed: a
                // polite close would read all it still sends.
                if transfer.reads.is_empty() && transfer.gone.is_empty() && transfer.sub.is_none() {
                    transfer.source.release(session).await;
                }
                return;
            }
            Err(Stop::Source(error)) => Event::Failed { source, error },
            Err(Stop::Local(error)) => Event::LocalWrite { error },
        };
        let _ = transfer.source.events.send(event).await;
    }

    /// A session with the peer (one kept open by an earlier download if
    /// there is one) and its answer for the file's manifest.
    async fn offer(&self) -> Result<(Session<T::Stream, R>, Result<Entry, ClientError>), ClientError> {
        if let Some(mut session) = self.pool.take(&self.addr, self.rt.now()) {
            match self.manifest(&mut session).await {
                // The peer closed it meanwhile (or said so): a new one.
                Err(ClientError::Conn(_)) => drop(session),
                result => return Ok((session, result)),
            }
        }
        // A peer that says it is busy is tried again a few times, waiting
        // longer each time; so is one that closes the connection before it
        // answers (a full server makes room that way). Each time, the
        // download may look for other sources.
        let mut wait = BUSY_WAIT;
        let mut tries = 1;
        loop {
            let busy = match Session::connect(&self.transport, &self.rt, &self.addr, &self.config).await {
                Err(e) if e.code() == Some(ErrorCode::Busy) => e,
                Err(e) => return Err(e),
                Ok(mut session) => match self.manifest(&mut session).await {
                    Err(e @ ClientError::Conn(ConnError::Closed)) => e,
                    result => return Ok((session, result)),
                },
            };
            if tries >= BUSY_TRIES {
                return Err(busy);
            }
            tracing::debug!(addr = %self.addr, "{busy}; trying again in {wait:?}");
            let _ = self.events.send(Event::Busy { source: self.index }).await;
            self.rt.sleep(wait).await;
            wait *= 2;
            tries += 1;
        }
    }

    /// The peer's manifest for the file. One heard of from another peer
    /// that swarms is not asked: the manifest is known (and verified)
    /// already, and its answer to the subscription says whether it has
    /// the content. (With dozens of peers in a crowd, each asking each
    /// for a manifest of 64 KiB costs every uplink a second at the start.)
    ///
    /// A seed in a crowd may point to peers that got the manifest from it
    /// already: it is fetched from one of them (checked against the hash
    /// the seed named, as any manifest is), else asked of the seed again.
    async fn manifest(&self, session: &mut Session<T::Stream, R>) -> Result<Entry, ClientError> {
        match &self.known {
            Some(entry) if self.swarm.is_some() && session.peer().capabilities & CAP_SWARM != 0 => Ok(entry.clone()),
            _ => match session.manifest_or_elsewhere(self.file.clone()).await? {
                ManifestAnswer::Here(entry) => Ok(entry),
                ManifestAnswer::Elsewhere { info, peers } => match self.manifest_elsewhere(&info, &peers).await {
                    Some(entry) => Ok(entry),
                    None => session.manifest(self.file.clone()).await,
                },
            },
        }
    }

    /// The manifest of `info` from the first of `peers` that sends it
    /// within [`ELSEWHERE_WAIT`] (at most [`ELSEWHERE_TRIES`] of them). The
    /// session is kept for when the download hears of that peer again.
    async fn manifest_elsewhere(&self, info: &FileInfo, peers: &[String]) -> Option<Entry> {
        let until = self.rt.now() + ELSEWHERE_WAIT;
        for addr in peers.iter().filter(|a| plausible_addr(a)).take(ELSEWHERE_TRIES) {
            let left = until.saturating_since(self.rt.now());
            if left.is_zero() {
                break;
            }
            let fetch = async {
                let mut session = match self.pool.take(addr, self.rt.now()) {
                    Some(s) => s,
                    None => Session::connect(&self.transport, &self.rt, addr, &self.config).await?,
                };
                let entry = session.manifest(FileRef::Hash(info.hash)).await;
                Ok::<_, ClientError>((session, entry))
            };
            match timeout(&self.rt, left, fetch).await {
                Ok(Ok((session, Ok(entry)))) if entry.info.hash == info.hash && entry.info.size == info.size => {
                    tracing::debug!(%addr, file = %info.name, "manifest from a peer the source pointed to");
                    self.keep(addr, session).await;
                    return Some(Entry { info: info.clone(), manifest: entry.manifest });
                }
                Ok(Ok((_, Ok(_)))) => tracing::debug!(%addr, "a peer pointed to sent the manifest of another file"),
                Ok(Ok((_, Err(e)))) | Ok(Err(e)) => tracing::debug!(%addr, "a peer pointed to: {e}"),
                Err(_) => tracing::debug!(%addr, "a peer pointed to did not send the manifest in time"),
            }
        }
        None
    }

    /// Hands the session to the next download from this peer.
    async fn release(&self, session: Session<T::Stream, R>) {
        self.keep(&self.addr, session).await;
    }

    /// Keeps a session with `addr` for the next download from it.
    async fn keep(&self, addr: &str, session: Session<T::Stream, R>) {
        if let Some(extra) = self.pool.put(addr, session, self.rt.now()) {
            extra.close().await;
        }
    }
}

struct Transfer<'a, T: Transport, R, P> {
    source: Source<T, R, P>,
    hash: Hash,
    manifest: &'a Arc<Manifest>,
    out: &'a P,
    jobs: VecDeque<Job>,
    /// Reads not sent yet: (job, range of the read).
    unsent: VecDeque<(Range<u64>, Range<u64>)>,
    reads: VecDeque<Read>,
    /// Cancelled reads known to be over: frames of theirs are dropped.
    gone: VecDeque<u32>,
    /// Buffers of finished jobs, for the next ones. Not kept while the
    /// source is choked: a swarm's download keeps tens of sources, most
    /// of them waiting for a turn.
    pool: Vec<Vec<u8>>,
    /// The peer said it serves nothing for now (a choke or a refusal out
    /// of turn), and has not said otherwise since.
    choked: bool,
    /// Writes in flight, oldest first.
    writes: VecDeque<Write>,
    /// The serial of the last job.
    next_job: u64,
    /// Keep-alives since the last data.
    keepalives: u64,
    /// The subscription to what the peer holds, if swarming.
    sub: Option<u32>,
    /// The peer shows the whole file piece by piece, and hears which
    /// blocks are here.
    showing: bool,
}

impl<T: Transport, R: Runtime, P: WriteAt> Transfer<'_, T, R, P> {
    async fn run(&mut self, session: &mut Session<T::Stream, R>) -> Result<(), Stop> {
        loop {
            self.send_reads(session).await?;
            let waiting = self.reads.iter().any(|r| !r.cancelled);
            // Only cancelled reads are open: take what the peer still sends
            // of them until it goes quiet, so that it never blocks on a
            // full connection, then forget them.
            let draining = !waiting && !self.reads.is_empty();
            // With the disk behind, read nothing more until it catches up.
            let run = (self.manifest.block_size() as usize).max(WRITE_RUN);
            let max_writes = (WRITE_AHEAD / run).max(1);
            // A subscribed source may send news at any time.
            let idle = !waiting && !draining;
            let read = (waiting || draining || self.sub.is_some()) && self.writes.len() < max_writes;
            let quiet = draining.then(|| self.source.rt.sleep(QUIET));
            let (commands, writes) = (&self.source.commands, &mut self.writes);
            let next = futures_lite::future::or(
                async { Next::Command(commands.recv().await.ok()) },
                futures_lite::future::or(
                    async {
                        if !read {
                            std::future::pending::<()>().await;
                        }
                        if idle {
                            Next::Frame(session.next_frame_idle(SUBSCRIBED_IDLE).await)
                        } else {
                            Next::Frame(session.next_frame().await)
                        }
                    },
                    futures_lite::future::or(
                        async {
                            match quiet {
                                Some(q) => q.await,
                                None => std::future::pending().await,
                            }
                            Next::Quiet
                        },
                        async {
                            match writes.front_mut() {
                                Some(w) => Next::Wrote((&mut w.task).await),
                                None => std::future::pending().await,
                            }
                        },
                    ),
                ),
            )
            .await;
            match next {
                Next::Quiet => {
                    for read in self.reads.drain(..) {
                        forget(&mut self.gone, read.id);
                    }
                }
                // The coordinator closed the channel: the download is over.
                // What is still being written lands before this ends.
                Next::Command(None) => {
                    for w in self.writes.drain(..) {
                        let _ = w.task.await;
                    }
                    return Ok(());
                }
                Next::Command(Some(Command::Fetch(range))) => self.fetch(range)?,
                Next::Command(Some(Command::Cancel(range))) => self.cancel(session, &range).await?,
                Next::Command(Some(Command::Start { .. })) => {}
                Next::Command(Some(Command::Interest(interested))) => {
                    if let Some(sub) = self.sub {
                        session.send_interest(sub, interested).await?;
                    }
                }
                Next::Command(Some(Command::Got(blocks))) => {
                    if let Some(sub) = self.sub.filter(|_| self.showing) {
                        session.send_got(sub, &blocks).await?;
                    }
                }
                Next::Wrote(result) => self.wrote(result).await?,
                Next::Frame(frame) => match frame? {
                    Frame::Data(d) => self.data(d.id, d.offset, d.bytes).await?,
                    Frame::Control(m @ (Message::Holding { .. } | Message::Have { .. } | Message::Choke { .. })) => {
                        self.news(m).await?
                    }
                    Frame::Control(Message::Showing { id }) if Some(id) == self.sub => {
                        // Only a peer that said it hears of them is told.
                        if session.peer().capabilities & CAP_GOT != 0 && !self.showing {
                            self.showing = true;
                            let _ = self.source.events.send(Event::Showing { source: self.source.index }).await;
                        }
                    }
                    Frame::Control(Message::Error { id, code, message }) if Some(id) == self.sub => {
                        // What it had is gone (its download there stopped).
                        return Err(ClientError::Refused { code, message: crate::sanitize(&message, 500) }.into());
                    }
                    Frame::Control(Message::Error { id, code, message }) => {
                        self.refused(session, id, ClientError::Refused { code, message }).await?;
                    }
                    Frame::Control(Message::Working { .. }) => {
                        self.keepalives += 1;
                        if self.keepalives > MAX_KEEPALIVES {
                            let e = ClientError::Misbehaved(Misbehavior::Keepalives(self.keepalives));
                            return Err(e.into());
                        }
                    }
                    Frame::Control(_) => {
                        let e = ConnError::Unexpected("control message during a read".into());
                        return Err(ClientError::Conn(e).into());
                    }
                },
            }
        }
    }

    /// What the peer holds, or more of it: checked, then passed on.
    async fn news(&mut self, m: Message) -> Result<(), Stop> {
        let source = self.source.index;
        let count = self.manifest.block_count();
        let event = match m {
            Message::Holding { id, complete, bits, peers } if Some(id) == self.sub => {
                let blocks =
                    match complete {
                        true => None,
                        false => Some(Bitfield::from_bytes(&bits, count).ok_or_else(|| {
                            unexpected(format!("a bitfield of {} bytes for {count} blocks", bits.len()))
                        })?),
                    };
                Event::Holding { source, blocks, peers: peers.into_iter().map(|p| crate::sanitize(&p, 300)).collect() }
            }
            Message::Have { id, blocks, peers } if Some(id) == self.sub => {
                if let Some(b) = blocks.iter().find(|&&b| u64::from(b) >= count) {
                    return Err(unexpected(format!("news of block {b} of {count}")));
                }
                Event::Have { source, blocks, peers: peers.into_iter().map(|p| crate::sanitize(&p, 300)).collect() }
            }
            Message::Choke { id, choked } if Some(id) == self.sub => {
                self.set_choked(choked);
                Event::Choke { source, choked }
            }
            m => return Err(unexpected(format!("{} for no subscription", crate::conn::kind(&m)))),
        };
        let _ = self.source.events.send(event).await;
        Ok(())
    }

    fn fetch(&mut self, range: Range<u64>) -> Result<(), Stop> {
        let mut writer = BlockWriter::new(self.manifest.clone(), range.clone()).map_err(SourceError::Corrupt)?;
        for buf in self.pool.drain(..) {
            writer.give(buf);
        }
        let chunk = self.source.chunk.filter(|&c| c > 0).unwrap_or(u64::MAX);
        let mut start = range.start;
        while start < range.end {
            let end = start.saturating_add(chunk).min(range.end);
            self.unsent.push_back((range.clone(), start..end));
            start = end;
        }
        self.next_job += 1;
        self.jobs.push_back(Job { serial: self.next_job, range, writer, since: None, writing: 0 });
        Ok(())
    }

    async fn send_reads(&mut self, session: &mut Session<T::Stream, R>) -> Result<(), Stop> {
        while self.reads.iter().filter(|r| !r.cancelled).count() < MAX_READS {
            let Some((job, read)) = self.unsent.pop_front() else { break };
            let len = read.end - read.start;
            let id = session.send_read(self.hash, read.start, len).await?;
            self.reads.push_back(Read { id, job, len, got: 0, cancelled: false });
        }
        Ok(())
    }

    async fn cancel(&mut self, session: &mut Session<T::Stream, R>, range: &Range<u64>) -> Result<(), Stop> {
        let Some(i) = self.jobs.iter().position(|j| j.range == *range) else { return Ok(()) };
        if let Some(job) = self.jobs.remove(i) {
            self.keep_buffers(job.writer.into_buffers());
        }
        self.unsent.retain(|(job, _)| job != range);
        for read in self.reads.iter_mut().filter(|r| r.job == *range && !r.cancelled) {
            read.cancelled = true;
            session.send_cancel(read.id).await?;
        }
        Ok(())
    }

    /// An error answering read `id`: a busy peer gives the range back and
    /// stays; anything else ends this source.
    async fn refused(&mut self, session: &mut Session<T::Stream, R>, id: u32, error: ClientError) -> Result<(), Stop> {
        if !self.skip_to(id)? {
            return Ok(());
        }
        let Some(read) = self.reads.pop_front() else { return Ok(()) };
        if read.cancelled {
            forget(&mut self.gone, read.id);
            return Ok(());
        }
        let code = error.code();
        if !matches!(code, Some(ErrorCode::Busy | ErrorCode::NotYet | ErrorCode::Choked)) {
            return Err(error.into());
        }
        let range = read.job;
        if code == Some(ErrorCode::Choked) {
            self.set_choked(true);
        }
        self.cancel(session, &range).await?;
        let source = self.source.index;
        let event = match code {
            Some(ErrorCode::NotYet) => Event::NotYet { source, range },
            Some(ErrorCode::Choked) => Event::TurnedAway { source, range },
            _ => Event::Refused { source, range, error },
        };
        let _ = self.source.events.send(event).await;
        Ok(())
    }

    /// Drops the cancelled reads the peer is done with (those before
    /// `id`). Returns whether `id` is the read at the front, or else a
    /// cancelled read whose frames are to be dropped.
    fn skip_to(&mut self, id: u32) -> Result<bool, Stop> {
        if self.gone.contains(&id) {
            return Ok(false);
        }
        while let Some(front) = self.reads.front() {
            if front.id == id {
                return Ok(true);
            }
            if !front.cancelled {
                return Err(unexpected(format!("an answer for request {id} before request {}", front.id)));
            }
            let over = front.id;
            self.reads.pop_front();
            forget(&mut self.gone, over);
        }
        Err(unexpected(format!("an answer for request {id}, which is not open")))
    }

    async fn data(&mut self, id: u32, offset: u64, bytes: &[u8]) -> Result<(), Stop> {
        self.keepalives = 0;
        if !self.skip_to(id)? {
            tracing::trace!(target: "p2p::waste", len = bytes.len(), "bytes of a forgotten read");
            return Ok(());
        }
        let Some(read) = self.reads.front_mut() else { return Ok(()) };
        read.got += bytes.len() as u64;
        let (cancelled, finished) = (read.cancelled, read.got >= read.len);
        let job_range = read.job.clone();
        if finished {
            self.reads.pop_front();
            if cancelled {
                forget(&mut self.gone, id);
            }
        }
        if cancelled {
            tracing::trace!(target: "p2p::waste", len = bytes.len(), "bytes of a cancelled read");
            return Ok(());
        }
        let Some(job) = self.jobs.iter_mut().find(|j| j.range == job_range) else {
            return Err(unexpected(format!("data for request {id} of no range")));
        };
        let runs = job.writer.push(offset, bytes).map_err(SourceError::Corrupt)?;
        // However the bytes trickle, each range must keep a minimum pace,
        // or the source is dropped and its ranges go to others.
        let now = self.source.rt.now();
        let since = *job.since.get_or_insert(now);
        let got = (job.writer.next_offset() - job.range.start) as usize;
        if now - since > self.source.config.io_timeout + rate_time(got) {
            return Err(Stop::Source(SourceError::TooSlow));
        }
        job.writing += runs.len();
        let serial = job.serial;
        for (offset, run) in runs {
            let out = self.out.clone();
            let task = self.source.rt.spawn(async move { out.write_at(offset, run).await });
            self.writes.push_back(Write { job: serial, task });
        }
        self.finish_jobs().await;
        Ok(())
    }

    /// The oldest write ended: its buffer goes back to its job (or the
    /// pool), and the job may be complete now.
    async fn wrote(&mut self, result: std::io::Result<Vec<u8>>) -> Result<(), Stop> {
        let Some(w) = self.writes.pop_front() else { return Ok(()) };
        let buf = result.map_err(Stop::Local)?;
        match self.jobs.iter_mut().find(|j| j.serial == w.job) {
            Some(job) => {
                job.writing -= 1;
                job.writer.give(buf);
            }
            // Cancelled meanwhile.
            None => self.keep_buffers([buf]),
        }
        self.finish_jobs().await;
        Ok(())
    }

    fn set_choked(&mut self, choked: bool) {
        self.choked = choked;
        if choked {
            self.pool = Vec::new();
        }
    }

    /// Keeps buffers for the next job, unless none is likely soon.
    fn keep_buffers(&mut self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        if !self.choked {
            self.pool.extend(buffers);
        }
    }

    /// Reports every job whose bytes are all verified and written.
    async fn finish_jobs(&mut self) {
        while let Some(i) = self.jobs.iter().position(|j| j.writer.is_done() && j.writing == 0) {
            let Some(done) = self.jobs.remove(i) else { return };
            let buffers = done.writer.into_buffers();
            match self.jobs.front_mut() {
                Some(next) => {
                    // The next range's pace counts from now.
                    next.since = Some(self.source.rt.now());
                    for b in buffers {
                        next.writer.give(b);
                    }
                }
                None => self.keep_buffers(buffers),
            }
            let event = Event::Done { source: self.source.index, range: done.range };
            let _ = self.source.events.send(event).await;
        }
    }
}

fn unexpected(what: String) -> Stop {
    Stop::Source(SourceError::Client(ClientError::Conn(ConnError::Unexpected(what))))
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

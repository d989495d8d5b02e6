//! Downloads: one file from several sources at once.
//!
//! Every source is asked for the file's manifest (by name or by hash); the
//! content most sources agree on wins (the first-named source breaks
//! ties). A [`Schedule`] then hands ranges to all sources at once, as deep
//! as each one's rate deserves, and near the end lets fast sources take
//! over what slow ones still hold. Each source verifies every block against
//! the manifest and writes it to a partial file. A source that fails or
//! sends corrupt data is dropped and its unfinished ranges go to the
//! others.
//!
//! The partial file is resumable: every so often it is synced and a record
//! of the blocks in place is saved beside it. An interrupted download keeps
//! both; the next try reads back and re-verifies what the record claims
//! and fetches only the rest. The file appears under its name only when
//! every byte is verified and synced.

mod peer;
mod resume;
pub mod schedule;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::catalog::{Catalog, Entry};
use crate::client::{ClientConfig, ClientError};
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{ErrorCode, FileInfo, FileRef};
use crate::runtime::{Runtime, Task};
use crate::store::{FileMeta, PartialFile, Store, StoreError};
use crate::transport::{Fingerprint, Transport};
pub use peer::SourceError;
use peer::{Command, Event};
use resume::Blocks;
use schedule::{Action, Schedule, ScheduleConfig};

/// Once one source has offered the file, how long the others have to
/// answer before the download starts without them.
const GRACE: Duration = Duration::from_secs(1);
/// How often the schedule looks at the time (request timeouts, rests).
const TICK: Duration = Duration::from_millis(200);
/// Fewest and most bytes between two resume records.
const RECORD_MIN: u64 = 1 << 20;
const RECORD_MAX: u64 = 64 << 20;

/// A peer to download from.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// How reports name it (a peer id, or the address).
    pub label: String,
    /// Where it is.
    pub addr: String,
}

/// What to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The file sources serve under this name.
    Name(FileName),
    /// The file with this content, under whatever name the chosen source
    /// serves it.
    Hash(Hash),
}

impl From<&FileName> for Wanted {
    fn from(name: &FileName) -> Self {
        Wanted::Name(name.clone())
    }
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Name(n) => write!(f, "{n}"),
            Wanted::Hash(h) => write!(f, "blake3 {h}"),
        }
    }
}

/// Options of a download.
#[derive(Debug, Clone, Default)]
pub struct DownloadConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Replace a local file of the same name with different content.
    pub overwrite: bool,
    /// Scheduling: request sizes, depths, caps, timeouts.
    pub schedule: ScheduleConfig,
}

/// How a download ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file was fetched and is now in place.
    Downloaded,
    /// The local folder already had this exact file; nothing was fetched.
    AlreadyPresent,
}

/// The result of a download.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    /// The file.
    pub info: FileInfo,
    /// What happened.
    pub outcome: Outcome,
    /// Verified bytes found in place from an earlier, interrupted try.
    pub resumed: u64,
    /// Every source, in the order given.
    pub sources: Vec<SourceReport>,
    /// The transport used ("tcp", "tls").
    pub transport: &'static str,
}

/// What one source did.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// The source's label.
    pub label: String,
    /// Verified bytes it delivered (a range fetched twice near the end
    /// counts for the source that delivered it first).
    pub bytes: u64,
    /// Why it delivered less than it could have, if it did.
    pub problem: Option<Problem>,
    /// Its certificate fingerprint, where the transport authenticated it.
    pub identity: Option<Fingerprint>,
}

/// Why a source delivered less than it could have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of trouble.
    pub kind: ProblemKind,
    /// Details for people.
    pub detail: String,
}

/// Kinds of [`Problem`], for scripts and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// It does not have the file.
    NotFound,
    /// It has other content under that name.
    Different,
    /// It sent data or a manifest that failed verification.
    Corrupt,
    /// It refused (policy).
    Refused,
    /// It stayed busy (serving too many others).
    Busy,
    /// It could not be reached, or the connection failed.
    Unreachable,
    /// It was too slow, or did not answer in time.
    Slow,
    /// It answered too late to take part.
    Late,
    /// Anything else (a protocol violation...).
    Other,
}

impl ProblemKind {
    /// A word for scripts: `not-found`, `different`, `corrupt`, `refused`,
    /// `busy`, `unreachable`, `slow`, `late`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::Different => "different",
            Self::Corrupt => "corrupt",
            Self::Refused => "refused",
            Self::Busy => "busy",
            Self::Unreachable => "unreachable",
            Self::Slow => "slow",
            Self::Late => "late",
            Self::Other => "other",
        }
    }
}

impl Problem {
    fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No source could provide the file.
    #[error("no source has {wanted}")]
    NoSource {
        /// The file.
        wanted: Wanted,
        /// Each source and why it could not.
        reasons: Vec<(String, Problem)>,
    },
    /// Every source failed before the file was complete.
    #[error("every source failed after {done} of {size} bytes of {name}{}", kept_note(*.kept))]
    SourcesFailed {
        /// The file.
        name: FileName,
        /// Verified bytes in place (including any resumed ones).
        done: u64,
        /// The file size.
        size: u64,
        /// Bytes kept for the next try.
        kept: u64,
        /// Each source and why it failed.
        reasons: Vec<(String, Problem)>,
    },
    /// A different file of that name is already in the local folder.
    #[error(
        "{name} already exists in {location} with different content (blake3 {local}); use --overwrite to replace it"
    )]
    Exists {
        /// The file.
        name: FileName,
        /// The local folder.
        location: String,
        /// Hash of the local file.
        local: Hash,
    },
    /// The local folder failed.
    #[error("{0}")]
    Local(#[from] StoreError),
}

fn kept_note(kept: u64) -> String {
    if kept > 0 { format!(" ({kept} bytes kept; run it again to resume)") } else { String::new() }
}

impl DownloadError {
    /// Per-source reasons, if the error has them.
    pub fn reasons(&self) -> &[(String, Problem)] {
        match self {
            Self::NoSource { reasons, .. } | Self::SourcesFailed { reasons, .. } => reasons,
            _ => &[],
        }
    }
}

/// Progress of a download, for display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Verified bytes so far (including resumed ones).
    pub done: u64,
    /// File size.
    pub size: u64,
    /// Sources transferring.
    pub active: usize,
}

/// Downloads `wanted` from `sources` into `catalog`'s store.
pub async fn download<T, R, S>(
    transport: &T,
    rt: &R,
    catalog: &Catalog<S>,
    wanted: impl Into<Wanted>,
    sources: &[SourceSpec],
    config: &DownloadConfig,
    mut progress: impl FnMut(Progress),
) -> Result<DownloadReport, DownloadError>
where
    T: Transport,
    R: Runtime,
    S: Store,
{
    let wanted = wanted.into();
    let file = match &wanted {
        Wanted::Name(n) => FileRef::Name(n.to_string()),
        Wanted::Hash(h) => FileRef::Hash(*h),
    };
    let (events_tx, events) = async_channel::unbounded();
    let mut commands = Vec::new();
    let mut tasks: Vec<Task<()>> = Vec::new();
    for (index, spec) in sources.iter().enumerate() {
        let (tx, rx) = async_channel::unbounded();
        commands.push(Some(tx));
        let source = peer::Source {
            index,
            addr: spec.addr.clone(),
            file: file.clone(),
            transport: transport.clone(),
            rt: rt.clone(),
            config: config.client.clone(),
            chunk: config.schedule.request,
            commands: rx,
            events: events_tx.clone(),
        };
        tasks.push(rt.spawn(source.run()));
    }
    drop(events_tx);
    let mut reports: Vec<SourceReport> = sources
        .iter()
        .map(|s| SourceReport { label: s.label.clone(), bytes: 0, problem: None, identity: None })
        .collect();

    // Wait for every source's answer, but once one has the file give the
    // others only GRACE: a slow source joins later if it has the same file.
    let mut entries: Vec<Option<Entry>> = vec![None; sources.len()];
    let mut answered = 0;
    let mut grace: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    while answered < sources.len() {
        let event = match grace.as_mut() {
            None => events.recv().await.ok(),
            Some(g) => {
                futures_lite::future::or(async { events.recv().await.ok() }, async {
                    g.await;
                    None
                })
                .await
            }
        };
        let Some(Event::Manifest { source, result, identity }) = event else { break };
        answered += 1;
        reports[source].identity = identity;
        match result {
            Ok(e) => {
                entries[source] = Some(e);
                grace.get_or_insert_with(|| Box::pin(rt.sleep(GRACE)));
            }
            Err(e) => reports[source].problem = Some(describe(&e, &wanted)),
        }
    }
    let Some(entry) = choose(&entries).and_then(|i| entries[i].clone()) else {
        let reasons = reports
            .iter()
            .map(|r| {
                let p = r.problem.clone().unwrap_or_else(|| Problem::new(ProblemKind::Late, "did not answer"));
                (r.label.clone(), p)
            })
            .collect();
        return Err(DownloadError::NoSource { wanted, reasons });
    };
    let hash = entry.info.hash;
    let name = entry.info.name.clone();
    for (i, e) in entries.iter().enumerate() {
        if let Some(e) = e.as_ref().filter(|e| e.info.hash != hash) {
            reports[i].problem = Some(different(e));
        }
    }

    match catalog.by_name(&name).await {
        Ok(local) if local.info.hash == hash => {
            return Ok(DownloadReport {
                info: entry.info,
                outcome: Outcome::AlreadyPresent,
                resumed: 0,
                sources: reports,
                transport: transport.name(),
            });
        }
        Ok(local) if !config.overwrite => {
            return Err(DownloadError::Exists { name, location: catalog.store().location(), local: local.info.hash });
        }
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }

    let size = entry.info.size;
    let manifest = entry.manifest.clone();
    if size == 0 && hash != Hash::of(b"") {
        // Nothing to fetch, but the claim must still hold.
        let chosen = entries.iter().position(|e| e.as_ref().is_some_and(|e| e.info.hash == hash)).unwrap_or(0);
        let problem = Problem::new(ProblemKind::Corrupt, "claims an empty file whose hash is not the hash of nothing");
        reports[chosen].problem = Some(problem.clone());
        let reasons = vec![(reports[chosen].label.clone(), problem)];
        return Err(DownloadError::SourcesFailed { name, done: 0, size, kept: 0, reasons });
    }
    // Owned here alone: whatever the sources are still doing, the partial
    // file's fate is decided here (kept for a resume unless committed).
    let partial = catalog.store().resume_partial(&name, &hash.to_string(), size).await?;
    let claimed = match partial.record().await {
        Ok(Some(data)) => Blocks::decode(&data, &manifest),
        _ => None,
    };
    let (mut blocks, have, resumed) = match claimed {
        Some(c) => c.verify(&partial.writer(), &manifest).await,
        None => (Blocks::new(manifest.block_count()), Vec::new(), 0),
    };
    if resumed > 0 {
        tracing::info!(file = %name, bytes = resumed, "resuming");
    }

    let active: Vec<usize> =
        (0..sources.len()).filter(|&i| entries[i].as_ref().is_some_and(|e| e.info.hash == hash)).collect();
    let mut schedule = Schedule::new(size, manifest.block_size(), config.schedule.clone(), &have);
    for (i, tx) in commands.iter_mut().enumerate() {
        if active.contains(&i) {
            if let Some(tx) = tx {
                let _ = tx.try_send(Command::Start { manifest: manifest.clone(), out: partial.writer() });
                schedule.join(i);
            }
        } else if entries[i].is_some() || reports[i].problem.is_some() {
            // Answered without the file: dropping the sender stops it.
            *tx = None;
        }
    }

    // Ordered, so that runs replay identically in simulation.
    let mut alive: BTreeSet<usize> = active.iter().copied().collect();
    let mut done = resumed;
    let record_every = (size / 32).clamp(RECORD_MIN, RECORD_MAX);
    let mut recorded = done;
    let mut tick = Box::pin(rt.sleep(TICK));
    let failure = loop {
        if schedule.is_done() {
            break None;
        }
        for action in schedule.poll(rt.now(), None) {
            tracing::trace!(?action, "schedule");
            send(&commands, action);
        }
        if done - recorded >= record_every {
            // Everything `blocks` claims was written before this sync.
            let snapshot = blocks.encode(&manifest);
            if partial.sync().await.is_ok() && partial.save_record(snapshot).await.is_ok() {
                recorded = done;
            }
        }
        progress(Progress { done, size, active: alive.len() });
        let event = futures_lite::future::or(async { events.recv().await.ok() }, async {
            tick.as_mut().await;
            None
        })
        .await;
        let Some(event) = event else {
            if events.is_closed() && events.is_empty() {
                // The sources' tasks are all gone (one panicked): never
                // publish a file with holes.
                break Some(None);
            }
            tick = Box::pin(rt.sleep(TICK));
            continue;
        };
        match event {
            Event::Done { source, range } => {
                tracing::trace!(source, ?range, rate = ?schedule.rate(source), "range arrived");
                let before = schedule.remaining();
                for action in schedule.arrived(source, &range, rt.now()) {
                    send(&commands, action);
                }
                let n = before - schedule.remaining();
                if n > 0 {
                    blocks.set_range(&manifest, &range);
                    reports[source].bytes += n;
                    done += n;
                }
            }
            Event::Refused { source, range, error } => {
                tracing::debug!(source = %sources[source].label, %error, "range refused");
                schedule.failed(source, &range, rt.now());
            }
            Event::Failed { source, error } => {
                tracing::debug!(source = %sources[source].label, %error, "source dropped");
                reports[source].problem = Some(problem_of(&error));
                schedule.gone(source);
                alive.remove(&source);
                commands[source] = None;
                if alive.is_empty() {
                    break Some(None);
                }
            }
            Event::LocalWrite { error } => {
                let e = StoreError::io(format!("writing {name} in {}", catalog.store().location()), error);
                break Some(Some(e));
            }
            Event::Manifest { source, result, identity } => match result {
                // A late source with the same file joins in.
                Ok(e) if e.info.hash == hash => {
                    reports[source].identity = identity;
                    if let Some(tx) = &commands[source] {
                        let _ = tx.try_send(Command::Start { manifest: manifest.clone(), out: partial.writer() });
                        alive.insert(source);
                        schedule.join(source);
                    }
                }
                Ok(e) => reports[source].problem = Some(different(&e)),
                Err(e) => reports[source].problem = Some(describe(&e, &wanted)),
            },
        }
    };
    // Stop every source (including any still connecting) before the partial
    // file is committed or kept: no write may land after its record.
    commands.clear();
    for task in tasks {
        task.cancel().await;
    }
    if let Some(failure) = failure {
        // Keep what arrived for the next try.
        let mut kept = 0;
        if done > 0 && partial.sync().await.is_ok() && partial.save_record(blocks.encode(&manifest)).await.is_ok() {
            kept = done;
        } else {
            partial.discard().await;
        }
        if let Some(local) = failure {
            return Err(local.into());
        }
        let reasons = reports.iter().filter_map(|r| r.problem.clone().map(|p| (r.label.clone(), p))).collect();
        return Err(DownloadError::SourcesFailed { name, done, size, kept, reasons });
    }
    progress(Progress { done, size, active: alive.len() });
    for (i, r) in reports.iter_mut().enumerate() {
        if r.problem.is_none() && r.bytes == 0 && entries[i].is_none() && !alive.contains(&i) {
            r.problem = Some(Problem::new(ProblemKind::Late, "did not answer before the download finished"));
        }
    }
    let meta: FileMeta = match partial.commit(config.overwrite).await {
        Ok(meta) => meta,
        Err(StoreError::Exists(_)) => {
            // Someone put a file there while we downloaded.
            let local = catalog.by_name(&name).await.map(|e| e.info.hash).unwrap_or(Hash([0; 32]));
            return Err(DownloadError::Exists { name, location: catalog.store().location(), local });
        }
        Err(e) => return Err(e.into()),
    };
    catalog.insert(meta, manifest).await;
    Ok(DownloadReport {
        info: entry.info,
        outcome: Outcome::Downloaded,
        resumed,
        sources: reports,
        transport: transport.name(),
    })
}

fn send<P>(commands: &[Option<async_channel::Sender<Command<P>>>], action: Action) {
    let (peer, command) = match action {
        Action::Fetch { peer, range } => (peer, Command::Fetch(range)),
        Action::Cancel { peer, range } => (peer, Command::Cancel(range)),
    };
    if let Some(Some(tx)) = commands.get(peer) {
        let _ = tx.try_send(command);
    }
}

fn different(e: &Entry) -> Problem {
    Problem::new(
        ProblemKind::Different,
        format!("has different content under this name (blake3 {})", e.info.hash.short()),
    )
}

/// The source whose content most sources agree on; the first such source.
fn choose(entries: &[Option<Entry>]) -> Option<usize> {
    let mut votes: HashMap<Hash, usize> = HashMap::new();
    for e in entries.iter().flatten() {
        *votes.entry(e.info.hash).or_default() += 1;
    }
    let best = votes.values().copied().max()?;
    entries.iter().position(|e| e.as_ref().is_some_and(|e| votes[&e.info.hash] == best))
}

/// A source's failure to offer the file, worded for the person
/// downloading `wanted`.
fn describe(e: &ClientError, wanted: &Wanted) -> Problem {
    match e.code() {
        Some(ErrorCode::NotFound) => Problem::new(ProblemKind::NotFound, format!("does not have {wanted}")),
        Some(ErrorCode::Busy) => Problem::new(ProblemKind::Busy, format!("stayed busy: {e}")),
        _ => client_problem(e),
    }
}

fn client_problem(e: &ClientError) -> Problem {
    let kind = match e {
        ClientError::Manifest(_) => ProblemKind::Corrupt,
        ClientError::Refused { code: ErrorCode::Corrupt, .. } => ProblemKind::Corrupt,
        ClientError::Refused { code: ErrorCode::NotFound, .. } => ProblemKind::NotFound,
        ClientError::Refused { code: ErrorCode::Busy, .. }
        | ClientError::Conn(crate::ConnError::Refused { code: ErrorCode::Busy, .. }) => ProblemKind::Busy,
        ClientError::Refused { .. } => ProblemKind::Refused,
        ClientError::Conn(crate::ConnError::Refused { .. }) => ProblemKind::Refused,
        ClientError::Conn(crate::ConnError::Stalled(_)) | ClientError::ConnectTimeout { .. } => ProblemKind::Slow,
        ClientError::Conn(crate::ConnError::Unexpected(_) | crate::ConnError::Decode(_)) => ProblemKind::Other,
        ClientError::Connect { .. } | ClientError::Conn(_) => ProblemKind::Unreachable,
        ClientError::Local(_) => ProblemKind::Other,
    };
    Problem::new(kind, e.to_string())
}

fn problem_of(e: &SourceError) -> Problem {
    match e {
        SourceError::Client(c) => client_problem(c),
        SourceError::Corrupt(_) => Problem::new(ProblemKind::Corrupt, e.to_string()),
        SourceError::TooSlow => Problem::new(ProblemKind::Slow, e.to_string()),
    }
}

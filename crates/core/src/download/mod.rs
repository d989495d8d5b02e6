//! Downloads: one file from several sources at once.
//!
//! Every source is asked for the file's manifest; the content most sources
//! agree on wins (the first-named source breaks ties). Ranges of the file
//! are then handed to all sources at once; each source verifies every
//! block against the manifest and writes it to a partial file. A source
//! that fails or sends corrupt data is dropped and its unfinished ranges
//! go to the others. The file appears under its name only when every byte
//! is verified and synced.

mod peer;
mod schedule;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::catalog::{Catalog, Entry};
use crate::client::{ClientConfig, ClientError};
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{ErrorCode, FileInfo};
use crate::runtime::{Runtime, Task};
use crate::store::{FileMeta, PartialFile, Store, StoreError};
use crate::transport::{Fingerprint, Transport};
pub use peer::SourceError;
use peer::{Command, Event};
use schedule::Schedule;

/// Requests kept in flight per source, so it never waits for the next one.
const DEPTH: usize = 4;
/// Once one source has offered the file, how long the others have to
/// answer before the download starts without them.
const GRACE: Duration = Duration::from_secs(1);

/// A peer to download from.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// How reports name it (a peer id, or the address).
    pub label: String,
    /// Where it is.
    pub addr: String,
}

/// Options of a download.
#[derive(Debug, Clone, Default)]
pub struct DownloadConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Replace a local file of the same name with different content.
    pub overwrite: bool,
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
    /// Verified bytes it delivered.
    pub bytes: u64,
    /// Why it delivered less than it could have, if it did.
    pub problem: Option<String>,
    /// Its certificate fingerprint, where the transport authenticated it.
    pub identity: Option<Fingerprint>,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No source could provide the file.
    #[error("no source has {name}")]
    NoSource {
        /// The file.
        name: FileName,
        /// Each source and why it could not.
        reasons: Vec<(String, String)>,
    },
    /// Every source failed before the file was complete.
    #[error("every source failed after {done} of {size} bytes of {name}")]
    SourcesFailed {
        /// The file.
        name: FileName,
        /// Verified bytes fetched before the last source failed.
        done: u64,
        /// The file size.
        size: u64,
        /// Each source and why it failed.
        reasons: Vec<(String, String)>,
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

impl DownloadError {
    /// Per-source reasons, if the error has them.
    pub fn reasons(&self) -> &[(String, String)] {
        match self {
            Self::NoSource { reasons, .. } | Self::SourcesFailed { reasons, .. } => reasons,
            _ => &[],
        }
    }
}

/// Progress of a download, for display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Verified bytes so far.
    pub done: u64,
    /// File size.
    pub size: u64,
    /// Sources transferring.
    pub active: usize,
}

/// Downloads `name` from `sources` into `catalog`'s store.
pub async fn download<T, R, S>(
    transport: &T,
    rt: &R,
    catalog: &Catalog<S>,
    name: &FileName,
    sources: &[SourceSpec],
    config: &DownloadConfig,
    mut progress: impl FnMut(Progress),
) -> Result<DownloadReport, DownloadError>
where
    T: Transport,
    R: Runtime,
    S: Store,
{
    let (events_tx, events) = async_channel::unbounded();
    let mut commands = Vec::new();
    let mut tasks: Vec<Task<()>> = Vec::new();
    for (index, spec) in sources.iter().enumerate() {
        let (tx, rx) = async_channel::unbounded();
        commands.push(Some(tx));
        let source = peer::Source {
            index,
            addr: spec.addr.clone(),
            name: name.clone(),
            transport: transport.clone(),
            rt: rt.clone(),
            config: config.client.clone(),
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
            Err(e) => reports[source].problem = Some(describe(&e, name)),
        }
    }
    let Some(chosen) = choose(&entries) else {
        let reasons = reports.iter().map(|r| (r.label.clone(), r.problem.clone().unwrap_or_default())).collect();
        return Err(DownloadError::NoSource { name: name.clone(), reasons });
    };
    let Some(entry) = entries[chosen].clone() else {
        return Err(DownloadError::NoSource { name: name.clone(), reasons: Vec::new() });
    };
    let hash = entry.info.hash;
    for (i, e) in entries.iter().enumerate() {
        if let Some(e) = e.as_ref().filter(|e| e.info.hash != hash) {
            reports[i].problem = Some(different(e));
        }
    }

    match catalog.by_name(name).await {
        Ok(local) if local.info.hash == hash => {
            return Ok(DownloadReport {
                info: entry.info,
                outcome: Outcome::AlreadyPresent,
                sources: reports,
                transport: transport.name(),
            });
        }
        Ok(local) if !config.overwrite => {
            return Err(DownloadError::Exists {
                name: name.clone(),
                location: catalog.store().location(),
                local: local.info.hash,
            });
        }
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }

    let size = entry.info.size;
    // Owned here alone: if this future is dropped or fails, the partial
    // file goes with it, whatever the sources are still doing.
    let partial = catalog.store().create_partial(name, size).await?;
    let active: Vec<usize> =
        (0..sources.len()).filter(|&i| entries[i].as_ref().is_some_and(|e| e.info.hash == hash)).collect();
    for (i, tx) in commands.iter_mut().enumerate() {
        if active.contains(&i) {
            if let Some(tx) = tx {
                let _ = tx.try_send(Command::Start { manifest: entry.manifest.clone(), out: partial.writer() });
            }
        } else if entries[i].is_some() || reports[i].problem.is_some() {
            // Answered without the file: dropping the sender stops it.
            *tx = None;
        }
    }

    let mut schedule = Schedule::new(size, entry.manifest.block_size(), active.len());
    // Ordered, so that runs replay identically in simulation.
    let mut alive: BTreeSet<usize> = active.iter().copied().collect();
    let mut done = 0u64;
    if size == 0 && hash != Hash::of(b"") {
        // Nothing to fetch, but the claim must still hold.
        reports[chosen].problem = Some("claims an empty file whose hash is not the hash of nothing".into());
        let reasons = vec![(reports[chosen].label.clone(), "sent a corrupt manifest".into())];
        return Err(DownloadError::SourcesFailed { name: name.clone(), done: 0, size, reasons });
    }
    while !schedule.is_done() {
        for &i in &alive {
            while schedule.in_flight(i) < DEPTH {
                let Some(range) = schedule.take(i) else { break };
                if let Some(tx) = &commands[i] {
                    let _ = tx.try_send(Command::Fetch(range));
                }
            }
        }
        progress(Progress { done, size, active: alive.len() });
        let Ok(event) = events.recv().await else { break };
        match event {
            Event::Done { source, range } => {
                schedule.completed(source, &range);
                let n = range.end - range.start;
                reports[source].bytes += n;
                done += n;
            }
            Event::Failed { source, error } => {
                tracing::debug!(source = %sources[source].label, %error, "source dropped");
                reports[source].problem = Some(error.to_string());
                schedule.release(source);
                alive.remove(&source);
                commands[source] = None;
                if alive.is_empty() {
                    let reasons =
                        reports.iter().filter_map(|r| r.problem.clone().map(|p| (r.label.clone(), p))).collect();
                    return Err(DownloadError::SourcesFailed { name: name.clone(), done, size, reasons });
                }
            }
            Event::LocalWrite { error } => {
                return Err(StoreError::io(format!("writing {name} in {}", catalog.store().location()), error).into());
            }
            Event::Manifest { source, result, identity } => match result {
                // A late source with the same file joins in.
                Ok(e) if e.info.hash == hash => {
                    reports[source].identity = identity;
                    if let Some(tx) = &commands[source] {
                        let _ = tx.try_send(Command::Start { manifest: entry.manifest.clone(), out: partial.writer() });
                        alive.insert(source);
                    }
                }
                Ok(e) => reports[source].problem = Some(different(&e)),
                Err(e) => reports[source].problem = Some(describe(&e, name)),
            },
        }
    }
    if !schedule.is_done() {
        // The sources' events ended early (a task failed): never publish
        // a file with holes.
        let reasons = reports.iter().filter_map(|r| r.problem.clone().map(|p| (r.label.clone(), p))).collect();
        return Err(DownloadError::SourcesFailed { name: name.clone(), done, size, reasons });
    }
    progress(Progress { done, size, active: alive.len() });
    for (i, r) in reports.iter_mut().enumerate() {
        if r.problem.is_none() && r.bytes == 0 && entries[i].is_none() && !alive.contains(&i) {
            r.problem = Some("did not answer before the download finished".into());
        }
    }
    // Every range is written, so no source has a write in flight; stop
    // them all (including any still connecting) before committing.
    commands.clear();
    for task in tasks {
        task.cancel().await;
    }
    let meta: FileMeta = match partial.commit(config.overwrite).await {
        Ok(meta) => meta,
        Err(StoreError::Exists(_)) => {
            // Someone put a file there while we downloaded.
            let local = catalog.by_name(name).await.map(|e| e.info.hash).unwrap_or(Hash([0; 32]));
            return Err(DownloadError::Exists { name: name.clone(), location: catalog.store().location(), local });
        }
        Err(e) => return Err(e.into()),
    };
    catalog.insert(meta, entry.manifest.clone()).await;
    Ok(DownloadReport { info: entry.info, outcome: Outcome::Downloaded, sources: reports, transport: transport.name() })
}

fn different(e: &Entry) -> String {
    format!("has different content under this name (blake3 {})", e.info.hash.short())
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

/// A source's failure, worded for the person downloading `name`.
fn describe(e: &ClientError, name: &FileName) -> String {
    match e.code() {
        Some(ErrorCode::NotFound) => format!("does not have {name}"),
        _ => e.to_string(),
    }
}

//! The coordinator of downloads: starts a task per source, picks the
//! content, runs the [`Schedule`] and decides the partial file's fate.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::find::{Finder, Finding};
use super::peer::{self, Command, Event, SourceError};
use super::pin;
use super::pool::{Budget, Pool};
use super::report::{DownloadError, DownloadReport, Outcome, Problem, ProblemKind, Progress, SourceReport};
use super::resume::Blocks;
use super::schedule::{Action, MAX_STRIKES, Schedule, ScheduleConfig};
use super::{DownloadConfig, SourceSpec, Wanted};
use crate::catalog::{Catalog, Entry};
use crate::client::{ClientConfig, ClientError, Session};
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::name::FileName;
use crate::protocol::{BadBlock, ErrorCode, FileInfo, FileRef};
use crate::runtime::{Runtime, Task, Time, timeout};
use crate::store::{FileMeta, PartialFile, Store, StoreError, WriteAt};
use crate::transport::{Fingerprint, Transport};
use crate::verify::VerifyError;

/// Once one source has offered the file, how long the others have to
/// answer before the download starts without them.
const GRACE: Duration = Duration::from_secs(1);
/// How often the schedule looks at the time (request timeouts, rests).
const TICK: Duration = Duration::from_millis(200);
/// Fewest and most bytes between two resume records.
const RECORD_MIN: u64 = 1 << 20;
const RECORD_MAX: u64 = 16 << 20;
/// How long a finished download waits for its sources to hand back their
/// sessions before it stops them.
const SETTLE: Duration = Duration::from_millis(500);
/// Sources of one download at once; peers heard of past this wait until
/// one goes.
const MAX_SOURCES: usize = 40;
/// Sources past [`MAX_SOURCES`] for the peers that fetch the content from
/// this one: a connection goes one way, so a peer that joined a crowd late
/// (when every other had its fill of sources) would otherwise upload to
/// nobody.
const MAX_MET_SOURCES: usize = 40;
/// Events taken in at most between two looks at the schedule.
const BATCH: usize = 64;
/// Peers heard of (peer exchange) that one download remembers.
const MAX_HEARD: usize = 1000;
/// How long a download waits with nothing in flight and no source that
/// has what it lacks before it gives up.
const STUCK: Duration = Duration::from_secs(60);
/// How long a peer that could not be reached is skipped by the downloads
/// that follow.
const DOWN_FOR: Duration = Duration::from_secs(30);
/// How often at most sources that show this download pieces hear which
/// blocks it got from others.
const GOT_EVERY: Duration = Duration::from_millis(100);
/// How long a source that was busy or closed the connection is left
/// alone before it may be tried again, when it is heard of again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// A resume record on its way to the disk: whether it got there.
type Saving<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// What woke the coordinator.
enum Wake {
    Event(Event),
    /// Every source's task is gone.
    Closed,
    Tick,
    /// The resume record was saved, or failed to be.
    Saved(bool),
    /// The finder named these.
    Found(Vec<SourceSpec>),
}

/// Runs downloads into one store; they share sessions with their peers and
/// a cap on bytes in flight. Cheap to share by reference between
/// concurrent downloads.
pub struct Downloader<T: Transport, R, S: Store> {
    transport: T,
    rt: R,
    catalog: Catalog<S>,
    config: DownloadConfig,
    pool: Arc<Pool<T::Stream, R>>,
    budget: Budget,
    /// Peers that could not be reached lately, and why: the downloads that
    /// follow do not wait for them again.
    down: Mutex<HashMap<String, (Time, Problem)>>,
}

impl<T: Transport, R, S: Store> std::fmt::Debug for Downloader<T, R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<T: Transport, R: Runtime, S: Store> Downloader<T, R, S> {
    /// A downloader into `catalog`'s store.
    pub fn new(transport: T, rt: R, catalog: Catalog<S>, config: DownloadConfig) -> Self {
        let budget = Budget::new(config.total_cap);
        Self { transport, rt, catalog, config, pool: Arc::new(Pool::new()), budget, down: Mutex::default() }
    }

    /// The store's catalog.
    pub fn catalog(&self) -> &Catalog<S> {
        &self.catalog
    }

    /// The files `source` serves, and the identity its transport proved.
    /// The session stays open for the downloads that follow.
    pub async fn list(&self, source: &SourceSpec) -> Result<(Vec<FileInfo>, Option<Fingerprint>), ClientError> {
        let pooled = self.pool.take(&source.addr, self.rt.now());
        let (session, files) = match pooled {
            Some(mut s) => match s.list().await {
                // Closed by the peer meanwhile: a new session.
                Err(ClientError::Conn(_)) => self.list_anew(source).await?,
                result => (s, result),
            },
            None => self.list_anew(source).await?,
        };
        // A refusal (a private peer, say) leaves the session fit for use.
        if !matches!(files, Err(ClientError::Conn(_))) {
            let identity = session.identity();
            if let Some(extra) = self.pool.put(&source.addr, session, self.rt.now()) {
                extra.close().await;
            }
            return files.map(|f| (f, identity));
        }
        files.map(|f| (f, None))
    }

    async fn list_anew(
        &self,
        source: &SourceSpec,
    ) -> Result<(Session<T::Stream, R>, Result<Vec<FileInfo>, ClientError>), ClientError> {
        let mut s = Session::connect(&self.transport, &self.rt, &source.addr, &self.config.client).await?;
        let files = s.list().await;
        Ok((s, files))
    }

    /// Closes the sessions kept open between downloads, all at once.
    pub async fn close(&self) {
        let closing: Vec<Task<()>> = self.pool.drain().into_iter().map(|s| self.rt.spawn(s.close())).collect();
        for task in closing {
            task.await;
        }
    }

    /// Downloads `wanted` from `sources`. `progress` hears how far it got
    /// after each range, and at least every 200 ms.
    pub async fn download(
        &self,
        wanted: impl Into<Wanted>,
        sources: &[SourceSpec],
        progress: impl FnMut(Progress),
    ) -> Result<DownloadReport, DownloadError> {
        self.download_finding(wanted, sources, None, progress).await
    }

    /// Downloads `wanted` from `sources`, and from the sources `finder`
    /// names while it runs (asked when the download is short of sources,
    /// at growing intervals; for content pinned by its hash, in a swarm
    /// only). With a finder, a download whose sources are all busy or gone
    /// waits for others rather than failing, as long as the rules for a
    /// stuck download allow. Outside a swarm the finder is not asked: it
    /// could name only the whole copies the download started with, and a
    /// busy seed fails the download after its retries, not after a minute.
    pub async fn download_finding(
        &self,
        wanted: impl Into<Wanted>,
        sources: &[SourceSpec],
        finder: Option<&dyn Finder>,
        mut progress: impl FnMut(Progress),
    ) -> Result<DownloadReport, DownloadError> {
        let (rt, catalog, config) = (&self.rt, &self.catalog, &self.config);
        let wanted = wanted.into();
        let finder = finder.filter(|_| config.swarm.is_some());
        let mut finding = finder.zip(wanted.pinned()).map(|(f, hash)| Finding::new(f, hash, rt.now()));
        let file = wanted.request();
        let (events_tx, events) = async_channel::unbounded();
        let mut commands = Vec::new();
        let mut tasks: Vec<Option<Task<()>>> = Vec::new();
        let mut reports: Vec<SourceReport> = sources
            .iter()
            .map(|s| SourceReport { label: s.label.clone(), bytes: 0, problem: None, identity: None })
            .collect();
        for (index, spec) in sources.iter().enumerate() {
            if let Some(problem) = self.is_down(&spec.addr) {
                reports[index].problem = Some(problem);
                commands.push(None);
                tasks.push(None);
                continue;
            }
            let (tx, task) = self.start_source(index, &spec.addr, file.clone(), None, &events_tx);
            commands.push(Some(tx));
            tasks.push(Some(task));
        }
        // Kept weakly, for sources heard of later: once every source's
        // task is gone, the channel closes. With a finder, sources may
        // come after all are gone: it stays open.
        let spawner = events_tx.downgrade();
        let _open = finding.is_some().then_some(events_tx);

        let mut entries: Vec<Option<Entry>> = vec![None; sources.len()];
        let mut swarms = vec![false; sources.len()];
        // Peers known to this download, and those heard of (bounded); and
        // those that were busy or went away, with when they may be tried
        // again.
        let mut heard: HashSet<String> = sources.iter().map(|s| s.addr.clone()).collect();
        let mut cooling: HashMap<String, Time> = HashMap::new();
        let mut sources: Vec<SourceSpec> = sources.to_vec();
        let named = sources.len();
        let learnt =
            Learn { file: file.clone(), known: None, spawner: &spawner, heard: &mut heard, cooling: &mut cooling };
        let roster = (&mut sources, &mut entries, &mut swarms, &mut reports);
        self.offers(&wanted, &events, learnt, roster, &mut commands, &mut tasks, &mut finding).await;
        tracing::debug!(now = ?rt.now(), me = %config.client.peer_id, offered = entries.iter().flatten().count(), "offers in");
        // The content: pinned by the request, or else the majority's.
        let offered = entries.iter().zip(&sources).map(|(e, s)| e.as_ref().map(|e| (s.addr.as_str(), e.info.hash)));
        let chosen = wanted.pinned().or_else(|| pin::majority(offered));
        let Some(entry) = chosen.and_then(|h| entries.iter().flatten().find(|e| e.info.hash == h)).cloned() else {
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
        for (i, e) in entries.iter_mut().enumerate() {
            if e.as_ref().is_some_and(|e| e.info.hash != hash) {
                reports[i].problem = e.take().map(|e| different(&e));
            }
        }
        // Saved under the requested name; by hash alone, under the name the
        // first source with that content gives (checked by `FileName`),
        // which never replaces a local file.
        // Written as it will be on every file system: composed (NFC).
        let name = wanted.name().cloned().unwrap_or_else(|| entry.info.name.clone()).to_nfc();
        let overwrite = config.overwrite && wanted.name().is_some();
        let info = FileInfo { name: name.clone(), ..entry.info.clone() };
        let finished = |outcome, resumed, reports| DownloadReport {
            info: info.clone(),
            outcome,
            resumed,
            sources: reports,
            transport: self.transport.name(),
        };

        if let Some(other) = catalog.collision(&name, false).await? {
            return Err(DownloadError::Collides { name, other, location: catalog.store().location() });
        }
        match catalog.by_name(&name).await {
            Ok(local) if local.info.hash == hash => {
                let answered = |i: usize| entries[i].is_some() || reports[i].problem.is_some();
                settle(rt, commands, tasks, answered).await;
                return Ok(finished(Outcome::AlreadyPresent, 0, reports));
            }
            Ok(local) if !overwrite => {
                return Err(DownloadError::Exists {
                    name,
                    location: catalog.store().location(),
                    local: Some(local.info.hash),
                    named_by_peer: wanted.name().is_none(),
                });
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }

        let size = entry.info.size;
        let manifest = entry.manifest.clone();
        // What peers heard of are asked for: this content, by hash.
        let content = Entry { info: info.clone(), manifest: manifest.clone() };
        if size == 0 && hash != Hash::of(b"") {
            // Nothing to fetch, but the claim must still hold.
            let chosen = entries.iter().position(|e| e.as_ref().is_some_and(|e| e.info.hash == hash)).unwrap_or(0);
            let problem =
                Problem::new(ProblemKind::Corrupt, "claims an empty file whose hash is not the hash of nothing");
            reports[chosen].problem = Some(problem.clone());
            let reasons = vec![(reports[chosen].label.clone(), problem)];
            return Err(DownloadError::SourcesFailed { name, done: 0, size, kept: 0, reasons });
        }
        // Owned here alone: whatever the sources are still doing, the
        // partial file's fate is decided here (kept for a resume unless
        // committed). A file smaller than one resume record's worth is not
        // worth resuming: it is fetched again, with less work per file.
        let resumable = size >= RECORD_MIN;
        let partial = if resumable {
            catalog.store().resume_partial(&name, &resume_key(&hash, &name), size).await?
        } else {
            catalog.store().create_partial(&name, size).await?
        };
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
        // Refused before a byte is fetched, rather than at a full disk
        // half way (what was resumed stays for the next try). Small files
        // are not worth the look: they fail at once if they must.
        if resumable
            && let Some(free) = catalog.store().available().await
            && size - resumed > free
        {
            let location = catalog.store().location();
            return Err(StoreError::NoSpace { name, location, needed: size - resumed, free }.into());
        }

        // Served to other downloaders from here as it arrives, block by
        // block (never listed, never under its name until whole).
        let going = catalog.go_live(name.clone(), manifest.clone(), partial.writer(), blocks.bits().clone());

        let active: Vec<usize> =
            (0..sources.len()).filter(|&i| entries[i].as_ref().is_some_and(|e| e.info.hash == hash)).collect();
        let seed = match config.schedule.seed {
            0 => {
                let mine = Hash::of(format!("{} {hash}", config.client.peer_id).as_bytes());
                u64::from_le_bytes(mine.as_bytes()[..8].try_into().unwrap_or_default())
            }
            s => s,
        };
        let schedule_config = ScheduleConfig { seed, ..config.schedule.clone() };
        let mut schedule = Schedule::new(size, manifest.block_size(), schedule_config, &have);
        // How far into the peers met by the server here (fetching this
        // content from it) the download has looked.
        let mut met_seen = 0;
        let mut last_news = rt.now();
        for (i, tx) in commands.iter_mut().enumerate() {
            if active.contains(&i) {
                if let Some(tx) = tx {
                    let _ = tx.try_send(Command::Start { manifest: manifest.clone(), out: partial.writer() });
                    // One that swarms is asked for nothing until it says
                    // what it holds.
                    if !swarms[i] {
                        schedule.join(i);
                    }
                }
            } else if entries[i].is_some() || reports[i].problem.is_some() {
                // Answered without the file: dropping the sender stops it.
                *tx = None;
            }
        }

        // Ordered, so that runs replay identically in simulation.
        let mut alive: BTreeSet<usize> = active.iter().copied().collect();
        let mut share = self.budget.share();
        let mut done = resumed;
        let record_every = (size / 64).clamp(RECORD_MIN, RECORD_MAX);
        let mut recorded = done;
        // The resume record being saved, and the bytes it covers: saved
        // alongside the transfer, which does not wait for the disk.
        let mut saving: Option<(u64, Saving<'_>)> = None;
        let mut tick = Box::pin(rt.sleep(TICK));
        let mut batched = 0;
        // For each source that takes turns (it said whether it serves this
        // download now): whether it was told this download wants
        // something from it.
        let mut interest: Vec<Option<bool>> = Vec::new();
        // Sources that show this download pieces (they hold the whole
        // file), the blocks they have not heard of yet, and when they last
        // did.
        let mut showing: BTreeSet<usize> = BTreeSet::new();
        let mut got: Vec<u32> = Vec::new();
        let mut got_told = rt.now();
        // The sources whose interest may have changed since it was last
        // told (a block arriving may change every source's): asking every
        // source after every batch of news cost a 300-peer crowd a tenth of
        // its run.
        let mut recheck: Vec<usize> = Vec::new();
        let mut recheck_all = true;
        let failure = loop {
            if schedule.is_done() {
                break None;
            }
            // Events already waiting are taken in before the schedule is
            // asked again (a crowd sends many small ones: blocks it got).
            let ready = if batched < BATCH { events.try_recv().ok() } else { None };
            let event = match ready {
                Some(event) => {
                    batched += 1;
                    event
                }
                None => {
                    batched = 0;
                    for action in schedule.poll(rt.now(), Some(share.cap())) {
                        tracing::trace!(?action, "schedule");
                        if let Action::GiveUp { peer } = action {
                            let detail = format!("failed {MAX_STRIKES} requests in a row (late or refused); given up");
                            reports[peer].problem = Some(Problem::new(ProblemKind::Slow, detail));
                            alive.remove(&peer);
                            commands[peer] = None;
                            recheck.push(peer);
                            continue;
                        }
                        send(&commands, action);
                    }
                    let which = match std::mem::take(&mut recheck_all) {
                        true => (0..interest.len()).collect(),
                        false => std::mem::take(&mut recheck),
                    };
                    recheck.clear();
                    for i in which {
                        let Some(Some(told)) = interest.get_mut(i) else { continue };
                        let wants = alive.contains(&i) && schedule.interested_in(i);
                        if wants != *told {
                            *told = wants;
                            if let Some(Some(tx)) = commands.get(i) {
                                let _ = tx.try_send(Command::Interest(wants));
                            }
                        }
                    }
                    // With nothing running and nowhere to find more, the
                    // rest will not come.
                    let running = commands.iter().flatten().count();
                    if alive.is_empty() && running == 0 && !(finding.is_some() && self.hopeful(&cooling)) {
                        break Some(None);
                    }
                    if let Some(f) = finding.as_mut()
                        && f.poll(rt.now(), running)
                    {
                        tracing::debug!(now = ?rt.now(), me = %config.client.peer_id, running, "asking for more sources");
                    }
                    // Sources that hold only parts, none of which has what is
                    // left, for long: the rest will not come.
                    if schedule.in_flight() == 0
                        && !alive.iter().any(|&i| schedule.wants_from(i))
                        && rt.now().saturating_since(last_news) > STUCK
                    {
                        tracing::debug!(file = %name, "no source has the rest");
                        break Some(None);
                    }
                    if !got.is_empty() && rt.now().saturating_since(got_told) >= GOT_EVERY {
                        got_told = rt.now();
                        let blocks: Arc<[u32]> = std::mem::take(&mut got).into();
                        for &i in showing.iter().filter(|i| alive.contains(i)) {
                            if let Some(Some(tx)) = commands.get(i) {
                                let _ = tx.try_send(Command::Got(blocks.clone()));
                            }
                        }
                    }
                    share.set(schedule.in_flight());
                    if saving.is_none() && done - recorded >= record_every {
                        // Everything `blocks` claims was written before this sync.
                        let snapshot = blocks.encode(&manifest);
                        let partial = &partial;
                        let save =
                            async move { partial.sync().await.is_ok() && partial.save_record(snapshot).await.is_ok() };
                        saving = Some((done, Box::pin(save)));
                    }
                    progress(Progress { done, size, active: alive.len() });
                    let found = async {
                        match finding.as_mut() {
                            Some(f) => Wake::Found(f.answer(|| rt.now()).await),
                            None => std::future::pending().await,
                        }
                    };
                    let wake = futures_lite::future::or(
                        async { events.recv().await.map_or(Wake::Closed, Wake::Event) },
                        futures_lite::future::or(
                            found,
                            futures_lite::future::or(
                                async {
                                    tick.as_mut().await;
                                    Wake::Tick
                                },
                                async {
                                    match saving.as_mut() {
                                        Some((_, save)) => Wake::Saved(save.await),
                                        None => std::future::pending().await,
                                    }
                                },
                            ),
                        ),
                    )
                    .await;
                    match wake {
                        Wake::Event(event) => event,
                        // The sources' tasks are all gone (one panicked): never
                        // publish a file with holes.
                        Wake::Closed => break Some(None),
                        Wake::Tick => {
                            tick = Box::pin(rt.sleep(TICK));
                            continue;
                        }
                        Wake::Found(found) => {
                            tracing::debug!(now = ?rt.now(), me = %config.client.peer_id, found = found.len(), "sources found");
                            let learnt = Learn::pinned(&content, &spawner, &mut heard, &mut cooling);
                            let before = sources.len();
                            let roster = (&mut sources, &mut entries, &mut swarms, &mut reports);
                            self.learn(learnt, found, MAX_SOURCES, roster, &mut commands, &mut tasks);
                            // Peers not known before: the index is worth asking
                            // again soon, if still short of sources.
                            if sources.len() > before
                                && let Some(f) = finding.as_mut()
                            {
                                f.found_new(rt.now());
                            }
                            continue;
                        }
                        Wake::Saved(ok) => {
                            if let Some((covered, _)) = saving.take() {
                                // A record that could not be saved (a full disk)
                                // is tried again a record's worth of bytes later,
                                // not at once.
                                recorded = covered;
                                if !ok {
                                    tracing::debug!(file = %name, "cannot save the resume record");
                                }
                            }
                            continue;
                        }
                    }
                }
            };
            // Peers a source named (peer exchange): sources from now on.
            let mut heard_of = Vec::new();
            match &event {
                // What one source has or does changes only its interest.
                Event::Have { source, .. }
                | Event::Holding { source, .. }
                | Event::Choke { source, .. }
                | Event::TurnedAway { source, .. }
                | Event::NotYet { source, .. } => recheck.push(*source),
                _ => recheck_all = true,
            }
            match event {
                Event::Done { source, range } => {
                    tracing::trace!(now = ?rt.now(), me = %config.client.peer_id, from = %sources[source].label, ?range, "range arrived");
                    let before = schedule.remaining();
                    for action in schedule.arrived(source, &range, rt.now()) {
                        send(&commands, action);
                    }
                    let n = before - schedule.remaining();
                    if n == 0 {
                        tracing::trace!(target: "p2p::waste", len = range.end - range.start, "a range that arrived twice");
                    }
                    if n > 0 {
                        blocks.set_range(&manifest, &range);
                        let bs = u64::from(manifest.block_size());
                        for b in range.start / bs..range.end.div_ceil(bs) {
                            going.add(b);
                            if !showing.is_empty() {
                                got.push(b as u32);
                            }
                        }
                        last_news = rt.now();
                        reports[source].bytes += n;
                        done += n;
                    }
                }
                Event::Holding { source, blocks, peers } => {
                    last_news = rt.now();
                    for action in schedule.holding(source, blocks) {
                        send(&commands, action);
                    }
                    if alive.contains(&source) {
                        schedule.join(source);
                    }
                    heard_of = peers;
                }
                Event::Have { source, blocks, peers } => {
                    last_news = rt.now();
                    for b in blocks {
                        schedule.has(source, u64::from(b));
                    }
                    heard_of = peers;
                }
                Event::Choke { source, choked } => {
                    tracing::trace!(now = ?rt.now(), me = %config.client.peer_id, from = %sources[source].label, choked, "choke");
                    takes_turns(&mut interest, source);
                    schedule.choke(source, choked);
                }
                Event::TurnedAway { source, range } => {
                    tracing::trace!(now = ?rt.now(), me = %config.client.peer_id, from = %sources[source].label, ?range, "turned away");
                    takes_turns(&mut interest, source);
                    schedule.turned_away(source, &range);
                }
                Event::NotYet { source, range } => {
                    tracing::debug!(source = %sources[source].label, ?range, "not there yet");
                    schedule.not_yet(source, &range);
                }
                Event::Refused { source, range, error } => {
                    tracing::debug!(source = %sources[source].label, %error, "range refused");
                    schedule.failed(source, &range, rt.now());
                }
                Event::Failed { source, error } => {
                    tracing::debug!(source = %sources[source].label, %error, "source dropped");
                    let problem = problem_of(&error, &manifest);
                    cool(&mut cooling, &sources[source].addr, &problem, rt.now());
                    reports[source].problem = Some(problem);
                    schedule.gone(source);
                    alive.remove(&source);
                    commands[source] = None;
                    let running = commands.iter().flatten().count();
                    if alive.is_empty() && running == 0 && !(finding.is_some() && self.hopeful(&cooling)) {
                        break Some(None);
                    }
                }
                Event::Busy { source } => {
                    tracing::debug!(now = ?rt.now(), me = %config.client.peer_id, source = %sources[source].label, "busy");
                    if let Some(f) = finding.as_mut() {
                        f.hurry(rt.now());
                    }
                }
                Event::Showing { source } => {
                    // It hears of every block here, then of each as it comes.
                    showing.insert(source);
                    let all: Arc<[u32]> = blocks.bits().iter().map(|b| b as u32).collect();
                    if let Some(Some(tx)) = commands.get(source) {
                        let _ = tx.try_send(Command::Got(all));
                    }
                }
                Event::LocalWrite { error } => {
                    let e = StoreError::io(format!("writing {name} in {}", catalog.store().location()), error);
                    break Some(Some(e));
                }
                Event::Manifest { source, result, identity, swarms: swarming } => match result {
                    // A late source with the same file joins in (one heard
                    // of was asked by hash: its name is its own).
                    Ok(e) if e.info.hash == hash && (source >= named || wrong_content(&wanted, &e).is_none()) => {
                        reports[source].identity = identity;
                        swarms[source] = swarming;
                        if let Some(tx) = &commands[source] {
                            let _ = tx.try_send(Command::Start { manifest: manifest.clone(), out: partial.writer() });
                            alive.insert(source);
                            if !swarming {
                                schedule.join(source);
                            }
                        }
                    }
                    Ok(e) => {
                        reports[source].problem = Some(wrong_content(&wanted, &e).unwrap_or_else(|| different(&e)));
                        commands[source] = None;
                    }
                    Err(e) => {
                        let problem = self.refusal(&sources[source], &e, &wanted);
                        cool(&mut cooling, &sources[source].addr, &problem, rt.now());
                        reports[source].problem = Some(problem);
                        commands[source] = None;
                    }
                },
            }
            // Peers a source named, and then peers fetching from this one
            // (they serve the content too), become sources.
            let (met, at) = going.live().met_since(met_seen);
            met_seen = at;
            for (peers, limit) in [(heard_of, MAX_SOURCES), (met, MAX_SOURCES + MAX_MET_SOURCES)] {
                if peers.is_empty() {
                    continue;
                }
                let learnt = Learn::pinned(&content, &spawner, &mut heard, &mut cooling);
                let roster = (&mut sources, &mut entries, &mut swarms, &mut reports);
                let peers = peers.into_iter().map(|addr| SourceSpec { label: addr.clone(), addr }).collect();
                self.learn(learnt, peers, limit, roster, &mut commands, &mut tasks);
            }
        };
        drop(share);
        // A record on its way is finished first: it must not land after
        // the partial file is committed or saved again below.
        if let Some((_, save)) = saving.take() {
            save.await;
        }
        drop(saving);
        if let Some(failure) = failure {
            // Not served from here any more.
            drop(going);
            // Stop every source (including any still connecting) before the
            // partial file is kept, so no new write starts after its record.
            // A write already handed to a blocking thread may still finish;
            // it holds verified bytes of this content at their offset, and
            // the record does not count them, so they are fetched again.
            commands.clear();
            for task in tasks.into_iter().flatten() {
                task.cancel().await;
            }
            let mut kept = 0;
            let keep = resumable && done > 0;
            if keep && partial.sync().await.is_ok() && partial.save_record(blocks.encode(&manifest)).await.is_ok() {
                kept = done;
            } else {
                partial.discard().await;
            }
            if let Some(error) = failure {
                return Err(DownloadError::Write { error, kept, location: catalog.store().location() });
            }
            keep_telling(&mut reports, named);
            let reasons = reports.iter().filter_map(|r| r.problem.clone().map(|p| (r.label.clone(), p))).collect();
            return Err(DownloadError::SourcesFailed { name, done, size, kept, reasons });
        }
        // Every source is stopped (or has handed back its session) before
        // the file is committed, so no new write starts after it. (One
        // already on a blocking thread writes verified bytes of this very
        // content, identical to what is there.)
        let answered = |i: usize| entries[i].is_some() || reports[i].problem.is_some() || alive.contains(&i);
        settle(rt, commands, tasks, answered).await;
        progress(Progress { done, size, active: alive.len() });
        for (i, r) in reports.iter_mut().enumerate() {
            if r.problem.is_none() && r.bytes == 0 && entries[i].is_none() && !alive.contains(&i) {
                r.problem = Some(Problem::new(ProblemKind::Late, "did not answer before the download finished"));
            }
        }
        let meta: FileMeta = match partial.commit(overwrite).await {
            Ok(meta) => meta,
            Err(StoreError::Exists(_)) => {
                // Someone put a file there while we downloaded, or what is
                // there is no file (a dangling link).
                let local = catalog.by_name(&name).await.ok().map(|e| e.info.hash);
                let named_by_peer = wanted.name().is_none();
                return Err(DownloadError::Exists { name, location: catalog.store().location(), local, named_by_peer });
            }
            Err(e) => return Err(e.into()),
        };
        catalog.insert(meta, manifest).await;
        keep_telling(&mut reports, named);
        // Served whole from the catalog from now on.
        going.finish();
        Ok(finished(Outcome::Downloaded, resumed, reports))
    }

    /// Starts the task of source `index` at `addr`.
    fn start_source<P: WriteAt>(
        &self,
        index: usize,
        addr: &str,
        file: FileRef,
        known: Option<Entry>,
        events: &async_channel::Sender<Event>,
    ) -> (async_channel::Sender<Command<P>>, Task<()>) {
        let (tx, rx) = async_channel::unbounded();
        let source = peer::Source {
            index,
            addr: addr.to_owned(),
            file,
            transport: self.transport.clone(),
            rt: self.rt.clone(),
            config: ClientConfig {
                serves_downloads: self.config.swarm.is_some_and(|port| port != 0),
                ..self.config.client.clone()
            },
            chunk: self.config.schedule.request,
            pool: self.pool.clone(),
            commands: rx,
            events: events.clone(),
            swarm: self.config.swarm,
            known,
        };
        (tx, self.rt.spawn(source.run()))
    }

    /// Peers a source named as fetching the same content and serving it,
    /// or that a finder named: each new one becomes a source (asked by
    /// hash), within bounds. One tried before is tried again only if it
    /// was busy or went away, once [`RETRY_AFTER`] has passed.
    fn learn<P: WriteAt>(
        &self,
        learn: Learn<'_>,
        peers: Vec<SourceSpec>,
        limit: usize,
        (sources, entries, swarms, reports): Roster<'_>,
        commands: &mut Vec<Option<async_channel::Sender<Command<P>>>>,
        tasks: &mut Vec<Option<Task<()>>>,
    ) {
        if self.config.swarm.is_none() {
            return;
        }
        let now = self.rt.now();
        // Transferring or still answering: a source that failed or turned
        // out not to have the content has no sender any more.
        let mut running = commands.iter().flatten().count();
        for peer in peers {
            if running >= limit {
                return;
            }
            let addr = peer.addr;
            if !plausible_addr(&addr) || self.is_down(&addr).is_some() {
                continue;
            }
            if learn.heard.contains(&addr) {
                match learn.cooling.get(&addr) {
                    Some(&at) if now >= at => learn.cooling.remove(&addr),
                    _ => continue,
                };
            } else if learn.heard.len() >= MAX_HEARD {
                continue;
            } else {
                learn.heard.insert(addr.clone());
            }
            let Some(events) = learn.spawner.upgrade() else { return };
            let index = sources.len();
            tracing::debug!(%addr, "a peer with the same content");
            let (tx, task) = self.start_source(index, &addr, learn.file.clone(), learn.known.cloned(), &events);
            // Tried again, under the name it had; else named by the finder
            // as the index knows it, or by its address.
            let before = sources.iter().find(|s| s.addr == addr).map(|s| s.label.clone());
            let label = before.unwrap_or(if peer.label.is_empty() { addr.clone() } else { peer.label });
            sources.push(SourceSpec { label: label.clone(), addr });
            entries.push(None);
            swarms.push(false);
            reports.push(SourceReport { label, bytes: 0, problem: None, identity: None });
            commands.push(Some(tx));
            tasks.push(Some(task));
            running += 1;
        }
    }

    /// Waits for the sources' answers, but once one has the file gives the
    /// others only [`GRACE`]: a slow source joins later if it has the same
    /// file. While none has it, sources the finder names are asked too,
    /// until one has it or [`STUCK`] has passed.
    #[allow(clippy::too_many_arguments)]
    async fn offers<P: WriteAt>(
        &self,
        wanted: &Wanted,
        events: &async_channel::Receiver<Event>,
        learn: Learn<'_>,
        (sources, entries, swarms, reports): Roster<'_>,
        commands: &mut Vec<Option<async_channel::Sender<Command<P>>>>,
        tasks: &mut Vec<Option<Task<()>>>,
        finding: &mut Option<Finding<'_>>,
    ) {
        let rt = &self.rt;
        let mut waiting = tasks.iter().filter(|t| t.is_some()).count();
        let give_up = rt.now() + STUCK;
        let mut grace: Option<Time> = None;
        // Sources that said they are busy, and those the finder named, that
        // have not answered yet: once one has the file, they are not
        // waited for (they join when they answer).
        let mut not_waited: BTreeSet<usize> = BTreeSet::new();
        enum Next {
            Event(Option<Event>),
            Found(Vec<SourceSpec>),
            Time,
        }
        loop {
            let now = rt.now();
            if grace.is_some_and(|g| now >= g) || (grace.is_some() && waiting == not_waited.len()) {
                return;
            }
            let running = commands.iter().flatten().count();
            // Sources are looked for while none has offered the file, as
            // long as one is still answering or was only busy.
            let looking = grace.is_none() && now < give_up && (waiting > 0 || self.hopeful(learn.cooling));
            if waiting == 0 && !(looking && finding.is_some()) {
                return;
            }
            let mut wake = grace;
            if let Some(f) = finding.as_mut().filter(|_| looking) {
                f.poll(now, running);
                wake = [f.wake(running), Some(give_up)].into_iter().flatten().min();
            }
            let sleep = async {
                match wake {
                    Some(at) => rt.sleep(at.saturating_since(now)).await,
                    None => std::future::pending().await,
                }
                Next::Time
            };
            let found = async {
                match finding.as_mut() {
                    Some(f) => Next::Found(f.answer(|| rt.now()).await),
                    None => std::future::pending().await,
                }
            };
            let next = futures_lite::future::or(
                async { Next::Event(events.recv().await.ok()) },
                futures_lite::future::or(found, sleep),
            )
            .await;
            let event = match next {
                Next::Time => continue,
                Next::Found(found) => {
                    tracing::debug!(now = ?rt.now(), me = %self.config.client.peer_id, found = found.len(), "sources found");
                    let before = sources.len();
                    let roster = (&mut *sources, &mut *entries, &mut *swarms, &mut *reports);
                    let relearn = Learn {
                        file: learn.file.clone(),
                        known: None,
                        spawner: learn.spawner,
                        heard: &mut *learn.heard,
                        cooling: &mut *learn.cooling,
                    };
                    self.learn(relearn, found, MAX_SOURCES, roster, commands, tasks);
                    waiting += sources.len() - before;
                    not_waited.extend(before..sources.len());
                    continue;
                }
                Next::Event(event) => event,
            };
            // Every source's task is gone.
            let Some(event) = event else { return };
            let (source, result, identity, swarming) = match event {
                Event::Manifest { source, result, identity, swarms } => (source, result, identity, swarms),
                Event::Busy { source } => {
                    tracing::debug!(now = ?rt.now(), me = %self.config.client.peer_id, source = %sources[source].label, "busy");
                    not_waited.insert(source);
                    if let Some(f) = finding.as_mut() {
                        f.hurry(rt.now());
                    }
                    continue;
                }
                _ => continue,
            };
            not_waited.remove(&source);
            waiting = waiting.saturating_sub(1);
            reports[source].identity = identity;
            swarms[source] = swarming;
            match result {
                Ok(e) if let Some(problem) = wrong_content(wanted, &e) => reports[source].problem = Some(problem),
                Ok(e) => {
                    entries[source] = Some(e);
                    grace.get_or_insert(rt.now() + GRACE);
                }
                Err(e) => {
                    let problem = self.refusal(&sources[source], &e, wanted);
                    cool(learn.cooling, &sources[source].addr, &problem, rt.now());
                    reports[source].problem = Some(problem);
                    // Stopped: it is not running any more.
                    commands[source] = None;
                }
            }
        }
    }

    /// Why a source offered nothing; a source that cannot be reached is
    /// remembered as down for a while.
    fn refusal(&self, source: &SourceSpec, e: &ClientError, wanted: &Wanted) -> Problem {
        let problem = describe(e, wanted);
        if matches!(e, ClientError::Connect { .. } | ClientError::ConnectTimeout { .. }) {
            let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
            down.insert(source.addr.clone(), (self.rt.now(), problem.clone()));
        }
        problem
    }

    /// Whether a source that was busy or went away may come back: one not
    /// known to be down.
    fn hopeful(&self, cooling: &HashMap<String, Time>) -> bool {
        cooling.keys().any(|addr| self.is_down(addr).is_none())
    }

    /// Why `addr` is skipped, if it could not be reached within the last
    /// [`DOWN_FOR`].
    fn is_down(&self, addr: &str) -> Option<Problem> {
        let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        let (since, problem) = down.get(addr)?;
        (self.rt.now().saturating_since(*since) < DOWN_FOR).then(|| problem.clone())
    }
}

/// Of the sources heard of (after the `named` ones), keeps in the report
/// those that sent something or sent corrupt data. A peer tried more than
/// once is told once: what it sent in all, and how its last try ended
/// (unless an earlier one caught it sending corrupt data).
fn keep_telling(reports: &mut Vec<SourceReport>, named: usize) {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut tried_again = vec![false; reports.len()];
    for i in 0..reports.len() {
        match first.get(&reports[i].label) {
            None => {
                first.insert(reports[i].label.clone(), i);
            }
            Some(&j) => {
                tried_again[i] = true;
                let later = std::mem::replace(&mut reports[i].bytes, 0);
                reports[j].bytes += later;
                if reports[j].problem.as_ref().is_none_or(|p| p.kind != ProblemKind::Corrupt) {
                    reports[j].problem = reports[i].problem.take();
                }
                if reports[j].identity.is_none() {
                    reports[j].identity = reports[i].identity.take();
                }
            }
        }
    }
    let mut i = 0;
    reports.retain(|r| {
        if tried_again[i] {
            i += 1;
            return false;
        }
        i += 1;
        i <= named || r.bytes > 0 || r.problem.as_ref().is_some_and(|p| p.kind == ProblemKind::Corrupt)
    });
}

/// A download's sources and what is known of each, index by index.
type Roster<'a> = (&'a mut Vec<SourceSpec>, &'a mut Vec<Option<Entry>>, &'a mut Vec<bool>, &'a mut Vec<SourceReport>);

/// What [`Downloader::learn`] needs of a download.
struct Learn<'a> {
    /// What to ask a new source for.
    file: FileRef,
    /// The content, once known.
    known: Option<&'a Entry>,
    spawner: &'a async_channel::WeakSender<Event>,
    /// Every address tried.
    heard: &'a mut HashSet<String>,
    /// Those that were busy or went away, and when they may be tried again.
    cooling: &'a mut HashMap<String, Time>,
}

impl<'a> Learn<'a> {
    /// Learning sources once the content is chosen: they are asked for it
    /// by its hash.
    fn pinned(
        content: &'a Entry,
        spawner: &'a async_channel::WeakSender<Event>,
        heard: &'a mut HashSet<String>,
        cooling: &'a mut HashMap<String, Time>,
    ) -> Self {
        Learn { file: FileRef::Hash(content.info.hash), known: Some(content), spawner, heard, cooling }
    }
}

/// A source was dropped for `problem`: if it was busy or went away, it may
/// be tried again after a while.
fn cool(cooling: &mut HashMap<String, Time>, addr: &str, problem: &Problem, now: Time) {
    if matches!(problem.kind, ProblemKind::Busy | ProblemKind::Unreachable) {
        cooling.insert(addr.to_owned(), now + RETRY_AFTER);
    }
}

/// Whether `addr` looks like `host:port` (a peer's word for where another
/// serves; anything else is not tried).
pub(super) fn plausible_addr(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else { return false };
    addr.len() <= 300
        && !host.is_empty()
        && port.parse::<u16>().is_ok_and(|p| p != 0)
        && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_[]:".contains(c))
}

/// Ends a download's sources. One still connecting is stopped at once;
/// one that answered hands its session back to the pool and ends, or is
/// stopped if it does not within [`SETTLE`]. Returns once none runs.
async fn settle<R: Runtime, C>(
    rt: &R,
    commands: Vec<C>,
    tasks: Vec<Option<Task<()>>>,
    answered: impl Fn(usize) -> bool,
) {
    // Closing their channels tells the sources they are done.
    drop(commands);
    let mut ending = VecDeque::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let Some(task) = task else { continue };
        if answered(i) {
            ending.push_back(task);
        } else {
            task.cancel().await;
        }
    }
    let _ = timeout(rt, SETTLE, async {
        while let Some(task) = ending.front_mut() {
            task.await;
            ending.pop_front();
        }
    })
    .await;
    for task in ending {
        task.cancel().await;
    }
}

/// Where a download keeps its partial file: per content and name, so that
/// two names with the same content (empty files, say) download at once.
/// The name first ([`NAME_KEY`] characters), so that the state of an older
/// content of the same name can be found and dropped.
fn resume_key(hash: &Hash, name: &FileName) -> String {
    let of_name = Hash::of(name.as_str().as_bytes()).to_string();
    format!("{}{}", &of_name[..crate::store::NAME_KEY], hash)
}

fn send<P>(commands: &[Option<async_channel::Sender<Command<P>>>], action: Action) {
    let (peer, command) = match action {
        Action::Fetch { peer, range } => (peer, Command::Fetch(range)),
        Action::Cancel { peer, range } => (peer, Command::Cancel(range)),
        // Handled by the coordinator.
        Action::GiveUp { .. } => return,
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

/// Whether a source answered with a manifest of something other than it
/// was asked for: another content than the hash asked for, or another
/// name. It lies, or its file changed since the index listed it; either
/// way it is dropped, and (as for corrupt data) the index hears of it.
fn wrong_content(wanted: &Wanted, e: &Entry) -> Option<Problem> {
    let detail = match wanted {
        Wanted::Name(name) if e.info.name != *name => {
            format!("was asked for {name} and offered the manifest of {:?}", crate::sanitize(e.info.name.as_str(), 300))
        }
        Wanted::Hash(hash) | Wanted::Exact { hash, .. } if e.info.hash != *hash => {
            format!("was asked for blake3 {} and offered other content (blake3 {})", hash.short(), e.info.hash.short())
        }
        _ => return None,
    };
    Some(Problem::new(ProblemKind::Corrupt, detail))
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
        ClientError::Conn(crate::ConnError::Stalled(_))
        | ClientError::ConnectTimeout { .. }
        | ClientError::Deadline(_) => ProblemKind::Slow,
        ClientError::Misbehaved(_) => ProblemKind::Other,
        ClientError::Conn(crate::ConnError::Unexpected(_) | crate::ConnError::Decode(_)) => ProblemKind::Other,
        ClientError::Connect { .. } | ClientError::Conn(_) => ProblemKind::Unreachable,
        ClientError::Local(_) => ProblemKind::Other,
    };
    Problem::new(kind, e.to_string())
}

/// Source `source` takes turns: whether this download wants something
/// from it is told from now on. It starts out thinking it wants nothing.
fn takes_turns(interest: &mut Vec<Option<bool>>, source: usize) {
    if interest.len() <= source {
        interest.resize(source + 1, None);
    }
    interest[source].get_or_insert(false);
}

/// Why a source was dropped; for a corrupt block, with the evidence (the
/// block's value proven against the file's hash from `manifest`).
fn problem_of(e: &SourceError, manifest: &Manifest) -> Problem {
    match e {
        SourceError::Client(c) => client_problem(c),
        SourceError::Corrupt(v) => {
            let mut p = Problem::new(ProblemKind::Corrupt, e.to_string());
            if let VerifyError::Corrupt { block, got, .. } = v
                && let (Some(want), Some(proof)) = (manifest.cvs().get(*block as usize), manifest.proof(*block))
            {
                p.evidence = Some(BadBlock { block: *block, got: *got, want: *want, proof });
            }
            p
        }
        SourceError::TooSlow => Problem::new(ProblemKind::Slow, e.to_string()),
    }
}

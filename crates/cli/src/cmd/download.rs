//! `p2p download`: files from several peers at once, by name, by hash or
//! all of them.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use p2p_core::catalog::Catalog;
use p2p_core::client::ClientConfig;
use p2p_core::download::{
    DownloadConfig, DownloadError, DownloadReport, Downloader, Finder, Outcome, Problem, SourceSpec, Wanted,
};
use p2p_core::hash::Hash;
use p2p_core::index::{IndexClient, LookupError, announce_fetching, corrupt_sources, peer_labels};
use p2p_core::name::FileName;
use p2p_core::protocol::{FileInfo, MAX_READ};
use p2p_core::runtime::{Runtime, Task, join_all};
use p2p_core::server::{Server, ServerConfig, UploadPolicy};
use p2p_core::transport::{Listener, Transport};
use p2p_core::units;
use p2p_host::{FsStore, SmolRuntime};
use serde_json::json;

use super::{NOT_INDEX, client_config, client_net, report_unresolved, require_tracker, targets, until_cancelled};
use crate::args::Download;
use crate::net::Net;
use crate::output::{self, transfer};
use crate::peers::Target;
use crate::progress::Board;
use crate::{Context, Status, UsageError};

type Fetcher = Downloader<Net, SmolRuntime, FsStore>;
type Index = IndexClient<Net, SmolRuntime>;

pub(crate) fn run(ctx: &Context, args: Download) -> anyhow::Result<Status> {
    let (mut wanted, peers) = wanted(&args)?;
    let chunk = match &args.chunk_size {
        Some(text) => Some(chunk_size(text).map_err(UsageError)?),
        None => None,
    };
    if args.parallel == 0 {
        return Err(UsageError("--parallel must be at least 1".into()).into());
    }
    let dir = match &args.output {
        Some(d) => d.clone(),
        None => super::downloads_dir(ctx)?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot open {}", dir.display()))?;
    let rt = &ctx.rt;

    // Named peers, or every peer the index knows (with its fingerprint,
    // which TLS then checks).
    let (targets, index) = if peers.is_empty() {
        let index = require_tracker(ctx, args.tracker.as_deref())?;
        let (net, id) = client_net(ctx, &[Ok(index.clone())])?;
        let to_index = (net.clone(), client_config(args.timeout, &id));
        let ix = IndexClient::new(net, rt.clone(), &index.addr, client_config(args.timeout, &id));
        let Some(online) = until_cancelled(ctx, online_peers(&ix)) else {
            return Ok(Status::Cancelled);
        };
        match online {
            Ok(targets) => (targets.into_iter().map(Ok).collect(), Some((index, ix, to_index))),
            Err(e) => {
                ctx.out.error(&format!("{}: {e}", index.display()));
                ctx.out.json(&json!({ "index": index.label, "error": e }));
                return Ok(Status::Failed);
            }
        }
    } else {
        (targets(ctx, &peers)?, None)
    };
    let resolved_all = report_unresolved(&ctx.out, &targets);
    let named: Vec<SourceSpec> =
        targets.iter().flatten().map(|t| SourceSpec { label: t.label.clone(), addr: t.addr.clone() }).collect();
    if named.is_empty() {
        let what = wanted.first().map(ToString::to_string).unwrap_or_default();
        let why = if index.is_some() { "no peer is online" } else { "no usable peer" };
        if index.is_some() {
            ctx.out.error(&format!("{what}: {why} (the index knows none)"));
        }
        ctx.out.json(&json!({ "name": what, "error": why }));
        return Ok(Status::Failed);
    }
    let (net, id) = client_net(ctx, &targets)?;
    let seed_for = match &args.seed_for {
        Some(text) => duration(text).map_err(|e| UsageError(format!("--seed-for {text:?}: {e}")))?,
        None => SEED_FOR,
    };
    let mut config =
        DownloadConfig { client: client_config(args.timeout, &id), overwrite: args.overwrite, ..Default::default() };
    config.schedule.request = chunk;
    let store = FsStore::new(&dir);
    let swept = store.sweep_partials();
    if swept > 0 {
        tracing::info!("removed {swept} files of transfers killed or interrupted over a week ago");
    }
    let catalog = Catalog::new(store);
    // Serves what it downloads to the others fetching it, as it arrives.
    let serving = match args.listen.as_deref() {
        Some("off") => None,
        listen => swarm_server(ctx, &net, &id, args.timeout, catalog.clone(), listen.unwrap_or("0.0.0.0:0"))?,
    };
    config.swarm = Some(serving.as_ref().map_or(0, |s| s.port));
    // The index names this process to the others as a partial source of
    // what it downloads.
    let announce = match (&index, &serving) {
        (Some((index, _, (net, client))), Some(serving)) => {
            Some(Announce::new(rt, net.clone(), index.addr.clone(), client.clone(), catalog.clone(), serving.port))
        }
        _ => None,
    };
    let downloader = Downloader::new(net.clone(), rt.clone(), catalog, config);
    let job = Job {
        ctx,
        targets: &targets,
        sources: match &index {
            Some((index, ix, _)) => Sources::Index { index, ix, announce: announce.as_ref() },
            None => Sources::Named(&named),
        },
        dir: &dir,
        downloader: &downloader,
        board: RefCell::new(Board::new(ctx.out.progress())),
        warned: RefCell::default(),
        tally: RefCell::default(),
        many: args.all || wanted.len() > 1,
    };
    let run = async {
        if args.all {
            let listed = job.list_all().await;
            if listed.is_empty() {
                ctx.out.error("the peers serve no files (or none could be listed)");
                return false;
            }
            let known: HashSet<Wanted> = wanted.iter().cloned().collect();
            wanted.extend(listed.into_iter().map(Wanted::Name).filter(|w| !known.contains(w)));
        }
        job.fetch_all(wanted, args.parallel).await
    };
    let finished = until_cancelled(ctx, run);
    job.board.borrow_mut().clear();
    let Some(all_ok) = finished else { return Ok(Status::Cancelled) };
    rt.block_on(downloader.close());
    if let Some(serving) = serving {
        // Peers still fetching from this one finish first (within bounds).
        let seeded = until_cancelled(ctx, serving.linger(rt, seed_for));
        serving.stop(rt);
        if seeded.is_none() {
            return Ok(Status::Cancelled);
        }
    }
    if let Some(a) = &announce {
        a.stop();
    }
    if let Some((_, ix, _)) = &index {
        rt.block_on(ix.close());
    }
    if job.many {
        job.summary();
    }
    Ok(if all_ok { resolved_all.into() } else { Status::Failed })
}

/// How long a finished download keeps serving by default (while peers
/// still fetch from it).
const SEED_FOR: Duration = Duration::from_secs(120);
/// How long no peer may fetch from a finished download before it stops
/// serving.
const SEED_QUIET: Duration = Duration::from_secs(3);

/// The server a download swarms with.
struct Serving {
    server: Server<FsStore, SmolRuntime>,
    port: u16,
    stop: async_channel::Sender<()>,
    task: Task<()>,
}

impl Serving {
    /// Waits while peers still fetch from here, until [`SEED_QUIET`]
    /// passes with none, or `most` in all. Not at all if no peer ever
    /// fetched from here.
    async fn linger(&self, rt: &SmolRuntime, most: Duration) {
        if !self.server.connected_ever() {
            return;
        }
        let connected = self.server.connections_open();
        if connected > 0 {
            tracing::info!("serving the file to peers still fetching it ({connected} connected)");
        }
        let started = rt.now();
        let mut quiet_since = rt.now();
        while rt.now().saturating_since(started) < most {
            if self.server.connections_open() > 0 {
                quiet_since = rt.now();
            } else if rt.now().saturating_since(quiet_since) >= SEED_QUIET {
                return;
            }
            rt.sleep(Duration::from_millis(250).min(most)).await;
        }
    }

    fn stop(self, rt: &SmolRuntime) {
        let _ = self.stop.try_send(());
        rt.block_on(self.task);
    }
}

/// A server for `catalog`'s downloads (nothing else of the folder) on
/// `listen`, over the same transport and identity as the download's
/// connections. None when it cannot be: TLS without an identity to serve
/// with, say (the download then only fetches).
fn swarm_server(
    ctx: &Context,
    client: &Net,
    id: &str,
    timeout: u64,
    catalog: Catalog<FsStore>,
    listen: &str,
) -> anyhow::Result<Option<Serving>> {
    let config = crate::config::Loaded::find(ctx.config.as_deref())?;
    let net = match crate::net::for_server(ctx.transport, config.as_ref(), ctx.ca.as_ref(), ctx.settings.as_deref()) {
        Ok((net, gate)) if net.label() == client.label() => Some((net, gate)),
        Ok(_) | Err(_) => None,
    };
    let Some((net, gate)) = net else {
        tracing::debug!("not serving the download: this folder cannot serve over {}", client.label());
        return Ok(None);
    };
    let rt = &ctx.rt;
    let listener = rt
        .block_on(net.bind(listen))
        .with_context(|| format!("cannot listen on {listen} to serve the download (--listen ADDR, or --listen off)"))?;
    let bound = listener.local_addr()?;
    let port = bound.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
    let t = Duration::from_secs(timeout.max(1));
    let config = ServerConfig {
        peer_id: id.to_owned(),
        uploads: UploadPolicy::Nobody,
        gate,
        io_timeout: t,
        idle_timeout: t,
        downloads_only: true,
        ..ServerConfig::default()
    };
    let server = Server::with_catalog(catalog, rt.clone(), config);
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let running = server.clone();
    let task = rt.spawn(async move {
        running
            .run(listener, async move {
                let _ = stopped.recv().await;
            })
            .await;
    });
    tracing::info!("serving the download to other peers fetching it on {bound}");
    Ok(Some(Serving { server, port, stop, task }))
}

/// A span of time: whole seconds, or a number with s, m or h.
fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number.parse().map_err(|_| "not a duration (e.g. 30s, 5m)".to_string())?;
    let secs = match unit.trim() {
        "s" | "sec" | "secs" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} (s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err("between 0 and a week".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Every peer the index knows to be online, as targets: labelled by id
/// (or address where ids are missing or shared), pinned to the
/// fingerprint the index saw.
async fn online_peers(ix: &Index) -> Result<Vec<Target>, String> {
    let peers = ix.peers().await.map_err(|e| describe(&e))?;
    Ok(peer_labels(&peers)
        .into_iter()
        .zip(&peers)
        .map(|(label, p)| Target { label, addr: p.addr.clone(), pin: p.fingerprint })
        .collect())
}

/// Why the index could not be asked, in the words of the other commands.
fn describe(e: &LookupError) -> String {
    match e {
        LookupError::Client(c) => output::describe(c),
        LookupError::NotIndex(_) => NOT_INDEX.into(),
        other => other.to_string(),
    }
}

/// What the command line asks for, and the peers. With `--all` or `--hash`
/// there is no NAME: the first word is a peer too.
fn wanted(args: &Download) -> anyhow::Result<(Vec<Wanted>, Vec<String>)> {
    let mut peers = args.words.clone();
    let mut names = Vec::new();
    if !args.all && args.hash.is_empty() {
        match peers.is_empty() {
            false => names.push(peers.remove(0)),
            true if !args.file.is_empty() => {}
            true => return Err(UsageError("name the file to download (or use --all, --hash or --file)".into()).into()),
        }
    }
    names.extend(args.file.iter().cloned());
    let mut wanted = Vec::new();
    for n in &names {
        let name = FileName::new(n).with_context(|| format!("cannot download {n:?}"))?;
        wanted.push(Wanted::Name(name));
    }
    for h in &args.hash {
        let hash: Hash =
            h.parse().map_err(|_| UsageError(format!("--hash {h:?} is not a BLAKE3 hash (64 hex digits)")))?;
        wanted.push(Wanted::Hash(hash));
    }
    // Each file once, in the order given.
    let mut seen = HashSet::new();
    wanted.retain(|w| seen.insert(w.clone()));
    Ok((wanted, peers))
}

/// `--chunk-size`: a size between one byte and the largest read.
fn chunk_size(text: &str) -> Result<u64, String> {
    let bytes = units::parse_size(text).map_err(|e| format!("--chunk-size: {e}"))?;
    if bytes == 0 || bytes > MAX_READ {
        return Err(format!("--chunk-size {text:?}: must be between 1 byte and {}", units::bytes(MAX_READ)));
    }
    Ok(bytes)
}

/// What every file of one command shares.
struct Job<'a> {
    ctx: &'a Context,
    targets: &'a [Result<Target, String>],
    sources: Sources<'a>,
    dir: &'a Path,
    downloader: &'a Fetcher,
    board: RefCell<Board>,
    /// Warnings already printed: a dead peer is named once, not per file.
    warned: RefCell<HashSet<String>>,
    tally: RefCell<Tally>,
    /// Several files: one line each and a summary.
    many: bool,
}

/// Where a command's files come from.
enum Sources<'a> {
    /// The peers named on the command line, for every file.
    Named(&'a [SourceSpec]),
    /// The peers the index names, file by file.
    Index { index: &'a Target, ix: &'a Index, announce: Option<&'a Announce> },
}

/// Tells the index what this process downloads, while it serves it: one
/// session, until dropped.
struct Announce {
    files: async_channel::Sender<FileInfo>,
    task: RefCell<Option<Task<()>>>,
}

impl Announce {
    fn new(
        rt: &SmolRuntime,
        net: Net,
        index: String,
        client: ClientConfig,
        catalog: Catalog<FsStore>,
        port: u16,
    ) -> Self {
        let (files, receive) = async_channel::unbounded();
        let rt2 = rt.clone();
        let task = rt.spawn(async move {
            let end = announce_fetching(&net, &rt2, &catalog, &index, &client, port, receive).await;
            if let Err(e) = end {
                tracing::warn!("index {index}: cannot name this download as a source to the others: {e}");
            }
        });
        Self { files, task: RefCell::new(Some(task)) }
    }

    /// Not a source any more: the index forgets this process.
    fn stop(&self) {
        self.task.borrow_mut().take();
    }

    /// Names this process to the index as a source of `info` once its
    /// download has started.
    fn start(&self, info: FileInfo) {
        let _ = self.files.try_send(info);
    }
}

/// How the files of a command ended.
#[derive(Default)]
struct Tally {
    downloaded: u64,
    unchanged: u64,
    failed: u64,
    bytes: u64,
    took: Duration,
}

impl Job<'_> {
    /// The names every source serves, once each, sorted.
    async fn list_all(&self) -> Vec<FileName> {
        let mut names = BTreeSet::new();
        match &self.sources {
            Sources::Named(sources) => {
                for s in *sources {
                    match self.downloader.list(s).await {
                        Ok((files, _)) => names.extend(files.into_iter().map(|f| f.name)),
                        Err(e) => self.error(&format!("{}: {}", shown(self.targets, &s.label), output::describe(&e))),
                    }
                }
            }
            Sources::Index { index, ix, .. } => match ix.files().await {
                Ok(files) => names.extend(files.into_iter().map(|f| f.info.name)),
                Err(e) => self.error(&format!("{}: {}", index.display(), describe(&e))),
            },
        }
        names.into_iter().collect()
    }

    /// Fetches every file, `parallel` at a time, each reported as it ends.
    /// Returns whether all worked.
    async fn fetch_all(&self, wanted: Vec<Wanted>, parallel: usize) -> bool {
        if self.many {
            self.board.borrow_mut().total(wanted.len() as u64);
        }
        let started = self.ctx.rt.now();
        let queue = RefCell::new(VecDeque::from(wanted));
        let worker = || async {
            let mut ok = true;
            loop {
                let next = queue.borrow_mut().pop_front();
                let Some(w) = next else { break };
                ok &= self.fetch(&w).await;
            }
            ok
        };
        let workers: Vec<_> = (0..parallel).map(|_| worker()).collect();
        let results = join_all(workers).await;
        self.tally.borrow_mut().took = self.ctx.rt.now() - started;
        results.into_iter().all(|ok| ok)
    }

    async fn fetch(&self, w: &Wanted) -> bool {
        let rt = &self.ctx.rt;
        let started = rt.now();
        let (sources, index, pinned) = match &self.sources {
            Sources::Named(s) => (s.to_vec(), None, w.clone()),
            // The download is pinned to the content the index named: a
            // source offering other content under that name is dropped.
            Sources::Index { index, ix, announce } => match ix.lookup(w).await {
                Ok(found) => {
                    if let Some(a) = announce {
                        a.start(found.info.clone());
                    }
                    let pinned = match w {
                        Wanted::Name(name) => Wanted::Exact { name: name.clone(), hash: found.info.hash },
                        other => other.clone(),
                    };
                    (found.sources, Some((*ix, found.info.hash)), pinned)
                }
                Err(e) => {
                    self.board.borrow_mut().file_done(0);
                    return self.not_located(w, index, e);
                }
            },
        };
        let mut bar = self.board.borrow().file(&w.to_string(), !self.many);
        // With an index, the download asks it again when short of sources
        // (a seed too busy for a crowd, sources that finished and left).
        let finder = match &self.sources {
            Sources::Index { ix, .. } => Some(*ix as &dyn Finder),
            Sources::Named(_) => None,
        };
        let result = self.downloader.download_finding(pinned, &sources, finder, |p| bar.update(p)).await;
        drop(bar);
        if let Some((ix, hash)) = index {
            // The index leaves a peer that served bad data out of its
            // answers for this file, for a while.
            let problems: Vec<(&str, &Problem)> = match &result {
                Ok(r) => r.sources.iter().filter_map(|s| s.problem.as_ref().map(|p| (s.label.as_str(), p))).collect(),
                Err(e) => e.reasons().iter().map(|(l, p)| (l.as_str(), p)).collect(),
            };
            let bad = corrupt_sources(&sources, problems);
            if let Err(e) = ix.report_corrupt(hash, &bad).await {
                tracing::debug!("cannot tell the index about corrupt sources: {e}");
            }
        }
        let fetched = result.as_ref().map_or(0, |r| match r.outcome {
            Outcome::Downloaded => r.info.size - r.resumed,
            Outcome::AlreadyPresent => 0,
        });
        self.board.borrow_mut().file_done(fetched);
        self.report(w, result, rt.now() - started)
    }

    /// The index named no sources for `w`: says why (with the candidates
    /// when the name is served with different contents).
    fn not_located(&self, w: &Wanted, index: &Target, e: LookupError) -> bool {
        self.tally.borrow_mut().failed += 1;
        let mut doc = wanted_doc(w, None);
        match &e {
            LookupError::Ambiguous { found, .. } => {
                let mut text = format!("{e}:");
                let mut candidates = Vec::new();
                for c in found {
                    let peers = peer_labels(&c.peers);
                    let n = peers.len();
                    text += &format!(
                        "\n  --hash {}  {}, {n} peer{} ({})",
                        c.info.hash,
                        units::bytes(c.info.size),
                        if n == 1 { "" } else { "s" },
                        peers.join(", ")
                    );
                    candidates.push(json!({ "hash": c.info.hash.to_string(), "size": c.info.size, "peers": peers }));
                }
                self.error(&text);
                doc["candidates"] = candidates.into();
            }
            LookupError::NotFound(_) => self.error(&e.to_string()),
            LookupError::Client(_) | LookupError::NotIndex(_) => {
                self.error(&format!("{}: {}", index.display(), describe(&e)))
            }
        }
        doc["error"] = e.to_string().into();
        self.ctx.out.json(&doc);
        false
    }

    /// Prints how one file's download ended; returns whether it worked.
    fn report(&self, w: &Wanted, result: Result<DownloadReport, DownloadError>, took: Duration) -> bool {
        let (ctx, dir) = (self.ctx, self.dir);
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                self.tally.borrow_mut().failed += 1;
                for (peer, why) in e.reasons() {
                    self.error(&format!("{}: {why}", shown(self.targets, peer)));
                }
                let summary = match &e {
                    DownloadError::NoSource { .. } => format!("{w}: no peer could provide it"),
                    DownloadError::Exists { named_by_peer: true, .. } => format!(
                        "{e}; the name came from a peer, so it never replaces a file: download it by name \
                         (with --overwrite) to choose"
                    ),
                    DownloadError::Exists { .. } => format!("{e}; use --overwrite to replace it"),
                    other => other.to_string(),
                };
                self.error(&summary);
                let sources: Vec<_> = e
                    .reasons()
                    .iter()
                    .map(|(peer, why)| {
                        json!({ "peer": peer, "bytes": 0, "error": why.detail, "problem": why.kind.as_str() })
                    })
                    .collect();
                let mut doc = wanted_doc(w, Some(dir));
                doc["error"] = json!(summary);
                doc["sources"] = serde_json::Value::Array(sources);
                ctx.out.json(&doc);
                return false;
            }
        };
        let info = &report.info;
        let name = &info.name;
        let path = dir.join(name.as_str());
        for s in &report.sources {
            if let Some(problem) = &s.problem {
                self.warn(&format!("{}: {problem}", shown(self.targets, &s.label)));
            }
        }
        let mut lines = Vec::new();
        match report.outcome {
            Outcome::Downloaded => {
                let from: Vec<String> = report
                    .sources
                    .iter()
                    .filter(|s| s.bytes > 0)
                    .map(|s| format!("{} ({})", s.label, units::bytes(s.bytes)))
                    .collect();
                let from = if from.is_empty() { "no bytes needed".to_string() } else { from.join(", ") };
                let fetched = info.size - report.resumed;
                lines.push(format!("downloaded {name}: {} from {from}", transfer(fetched, took)));
                if report.resumed > 0 {
                    lines.push(format!(
                        "  resumed: {} of {} were already here from an earlier try, verified again",
                        units::bytes(report.resumed),
                        units::bytes(info.size)
                    ));
                }
                let mut tally = self.tally.borrow_mut();
                tally.downloaded += 1;
                tally.bytes += fetched;
            }
            Outcome::AlreadyPresent => {
                lines.push(format!("{name}: already in {} with the same content; nothing to fetch", dir.display()));
                self.tally.borrow_mut().unchanged += 1;
            }
        }
        if !self.many {
            lines.push(format!("  saved as {}", path.display()));
            lines.push(format!("  blake3 {}", info.hash));
            let ids: Vec<String> = report
                .sources
                .iter()
                .filter_map(|s| s.identity.map(|fp| format!("{} {}", s.label, fp.short())))
                .collect();
            if ids.is_empty() {
                lines.push(format!("  over {}", report.transport));
            } else {
                lines.push(format!("  over {}: {}", report.transport, ids.join(", ")));
            }
        }
        let status = match report.outcome {
            Outcome::Downloaded => "downloaded",
            Outcome::AlreadyPresent => "unchanged",
        };
        let sources: Vec<_> = report
            .sources
            .iter()
            .map(|s| {
                let mut v = json!({ "peer": s.label, "bytes": s.bytes });
                let via = super::Via { transport: report.transport, identity: s.identity };
                via.annotate(&mut v);
                if let Some(p) = &s.problem {
                    v["error"] = json!(p.detail);
                    v["problem"] = json!(p.kind.as_str());
                }
                v
            })
            .collect();
        let doc = json!({
            "name": name.as_str(),
            "status": status,
            "hash": info.hash.to_string(),
            "size": info.size,
            "resumed": report.resumed,
            "path": path.display().to_string(),
            "sources": sources,
        });
        self.board.borrow().suspend(|| {
            match lines.split_first() {
                // Quiet: a single file's result line, nothing per file of many.
                Some((first, _)) if ctx.out.quiet && !self.many => ctx.out.result(first),
                _ => lines.iter().for_each(|line| ctx.out.line(line)),
            }
            ctx.out.json(&doc);
        });
        true
    }

    /// The last line of a command of many files.
    fn summary(&self) {
        let t = self.tally.borrow();
        let total = t.downloaded + t.unchanged + t.failed;
        let mut parts = vec![format!("{} downloaded ({})", t.downloaded, transfer(t.bytes, t.took))];
        if t.unchanged > 0 {
            parts.push(format!("{} already there", t.unchanged));
        }
        if t.failed > 0 {
            parts.push(format!("{} failed", t.failed));
            self.ctx.out.error(&format!("{} of {total} files failed", t.failed));
        }
        self.ctx.out.result(&format!("{total} files in {}: {}", self.dir.display(), parts.join(", ")));
    }

    fn error(&self, text: &str) {
        self.board.borrow().suspend(|| self.ctx.out.error(text));
    }

    /// A warning, once per command.
    fn warn(&self, text: &str) {
        if self.warned.borrow_mut().insert(text.to_owned()) {
            self.board.borrow().suspend(|| self.ctx.out.warn(text));
        }
    }
}

/// What was asked for, as JSON: its name (and where it would be saved)
/// and its hash, as far as the request gives them.
fn wanted_doc(w: &Wanted, dir: Option<&Path>) -> serde_json::Value {
    let mut doc = json!({});
    if let Some(name) = w.name() {
        doc["name"] = json!(name.as_str());
        if let Some(dir) = dir {
            doc["path"] = json!(dir.join(name.as_str()).display().to_string());
        }
    }
    if let Some(hash) = w.pinned() {
        doc["hash"] = json!(hash.to_string());
    }
    doc
}

/// "peer1 (127.0.0.1:5000)" for a source label.
fn shown(targets: &[Result<Target, String>], label: &str) -> String {
    targets.iter().flatten().find(|t| t.label == label).map_or_else(|| label.to_string(), |t| t.display())
}

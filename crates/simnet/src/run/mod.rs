//! Plays a scenario: builds the peers, runs their engines on the virtual
//! clock, applies the timeline, decides the expectations.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use p2p_core::catalog::Catalog;
use p2p_core::client::{ClientConfig, ClientError, Session};
use p2p_core::download::{DownloadConfig, Outcome as Fetched, Problem, ProblemKind, SourceSpec};
use p2p_core::hash::Hash;
use p2p_core::index::{AnnounceConfig, Announcer, Tracker, TrackerConfig};
use p2p_core::name::FileName;
use p2p_core::protocol::{ErrorCode, StoreOutcome};
use p2p_core::runtime::{Runtime, Task, Time};
use p2p_core::server::{Gate, Server, ServerConfig, UploadPolicy};
use p2p_core::store::Store;
use p2p_core::transport::Transport;

use crate::clock::{Clock, Host, SimRuntime};
use crate::net::{Network, PORT};
use crate::pages::{Content, PagePool};
use crate::report::{ExpectReport, Part, Report, StepReport, Totals};
use crate::scenario::{Action, Check, ErrorKind, Expect, Outcome, Scenario, Wire};
use crate::store::{Changes, Faults, MemStore};
use crate::units::secs;

mod checks;
mod commands;

use checks::expect_text;
use commands::{Sources, failed, fetch, file_list, index_list, kind_word, merge, parts_text, push};

/// Options of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
}

/// A finished run: the report and the event log it hashed.
#[derive(Debug)]
pub struct Run {
    /// The report.
    pub report: Report,
    /// One line per event, in order.
    pub events: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bytes of a generated file: the same for the same name and seed.
pub fn file_content(name: &str, seed: u64, size: u64) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"p2p-simnet file\0");
    hasher.update(name.as_bytes());
    hasher.update(&seed.to_le_bytes());
    let mut out = vec![0u8; usize::try_from(size).unwrap_or(0)];
    hasher.finalize_xof().fill(&mut out);
    out
}

struct Peer<T> {
    name: String,
    host: Arc<Host>,
    rt: SimRuntime,
    store: MemStore,
    transport: T,
    config: ServerConfig,
    paused: bool,
    role: Role,
    /// What it runs now (replaced at a restart).
    running: Running,
}

/// What a peer does besides running commands.
#[derive(Debug, Clone)]
enum Role {
    /// Serves its folder, announcing it to this index if any.
    Serve { tracker: Option<String> },
    /// Runs the index.
    Index,
}

/// A peer's services as started.
struct Running {
    catalog: Catalog<MemStore>,
    /// The index, if the peer runs it.
    tracker: Option<Tracker<SimRuntime>>,
    /// Tells the peer's announcer that its folder changed.
    signal: Option<async_channel::Sender<()>>,
}

/// Where each peer listens (`host:port`), by name.
#[derive(Debug, Default)]
pub(super) struct Addresses(BTreeMap<String, String>);

impl Addresses {
    /// Where peer `name` listens (a name no peer has gets the address it
    /// would have alone on its host: nobody listens there).
    pub(super) fn of(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_else(|| format!("{name}:{PORT}"))
    }
}

/// Starts a peer's services (at creation, or after a restart): its file
/// server and announcer, or the index. The catalog is shared with the
/// peer's own commands: a file is hashed once per run of the peer, as on a
/// real machine.
fn start<T: Transport>(
    name: &str,
    addrs: &Addresses,
    rt: &SimRuntime,
    store: &MemStore,
    config: &ServerConfig,
    transport: &T,
    role: &Role,
) -> Running {
    let (transport2, addr) = (transport.clone(), addrs.of(name));
    if let Role::Index = role {
        let tracker_config =
            TrackerConfig { peer_id: name.to_owned(), gate: config.gate.clone(), ..TrackerConfig::default() };
        let tracker = Tracker::new(rt.clone(), tracker_config);
        let t = tracker.clone();
        rt.spawn(async move {
            if let Ok(listener) = transport2.bind(&addr).await {
                t.run(listener, std::future::pending()).await;
            }
        })
        .detach();
        return Running { catalog: Catalog::new(store.clone()), tracker: Some(tracker), signal: None };
    }
    let server = Server::new(store.clone(), rt.clone(), config.clone());
    let catalog = server.catalog().clone();
    let bound = addr.clone();
    rt.spawn(async move {
        if let Ok(listener) = transport2.bind(&bound).await {
            server.run(listener, std::future::pending()).await;
        }
    })
    .detach();
    let mut signal = None;
    if let Role::Serve { tracker: Some(index) } = role {
        let (tx, rx) = async_channel::bounded(1);
        let port = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(PORT);
        let announce = AnnounceConfig { client: client_config(name), port, ..AnnounceConfig::default() };
        let announcer = Announcer::new(transport.clone(), rt.clone(), catalog.clone(), &addrs.of(index), announce);
        rt.spawn(announcer.run(rx)).detach();
        signal = Some(tx);
    }
    Running { catalog, tracker: None, signal }
}

/// How a simulated peer connects.
fn client_config(name: &str) -> ClientConfig {
    ClientConfig::with_timeout(name, Duration::from_secs(30))
}

/// How a command step ended.
#[derive(Debug, Clone, Default)]
struct Ended {
    ok: bool,
    kind: Option<ErrorKind>,
    result: String,
    parts: Vec<Part>,
    /// For a command of a group: when each peer's part ended.
    part_ends: Vec<Time>,
    /// For downloads: what each source gave each downloader.
    sources: Vec<FromSource>,
}

/// What one source gave one download.
#[derive(Debug, Clone)]
struct FromSource {
    /// How the download's result names it (a peer, or an address).
    label: String,
    /// Verified bytes.
    bytes: u64,
    /// Whether it was dropped for a block that failed verification.
    corrupt: bool,
}

impl FromSource {
    fn new(label: &str, bytes: u64, problem: Option<&Problem>) -> Self {
        let corrupt = problem.is_some_and(|p| p.kind == ProblemKind::Corrupt);
        Self { label: label.to_owned(), bytes, corrupt }
    }
}

/// Where a peer's command leaves its result, and when it ended.
type Slot = Arc<Mutex<Option<(Time, Ended)>>>;

enum StepState {
    Waiting,
    /// One slot per peer doing the command (several for `by: "group*"`).
    Running {
        start: Time,
        slots: Vec<(usize, Slot)>,
        _tasks: Vec<Task<()>>,
    },
    Done {
        start: Time,
        end: Time,
        ended: Ended,
    },
}

enum Verdict {
    Pending,
    Held(Time),
    Failed(Time, String),
}

struct Sim<'a, T> {
    scenario: &'a Scenario,
    addrs: Arc<Addresses>,
    clock: Arc<Clock>,
    net: Arc<Network>,
    peers: Vec<Peer<T>>,
    index: BTreeMap<String, usize>,
    steps: Vec<StepState>,
    verdicts: Vec<Verdict>,
    last_reason: Vec<String>,
    events: Vec<String>,
    hashes: BTreeMap<(usize, FileName), (u64, String)>,
    /// The hash of each distinct content checked so far: a crowd holding
    /// one file shares its pages, and is hashed once.
    known: Vec<(Content, String)>,
    /// The peers each name pattern stands for (the peers of a run are
    /// fixed once it starts).
    groups: RefCell<BTreeMap<String, Rc<[usize]>>>,
    /// Every change to any store's whole files.
    changes: Changes,
    /// For each expectation whose check looks only at the stores: the
    /// store changes when it was last decided, and what it was.
    decided: Vec<Option<(u64, Result<(), String>)>>,
}

/// Plays `scenario`.
pub fn run(scenario: &Scenario, options: Options) -> Run {
    let seed = options.seed.unwrap_or(scenario.seed);
    fastrand::seed(seed);
    let clock = Arc::new(Clock::default());
    let net = Network::new(clock.clone(), seed);
    let names = scenario.peer_names();
    let places = scenario.addresses();
    let addrs = Arc::new(Addresses(names.iter().cloned().zip(places.iter().map(|(_, a)| a.clone())).collect()));
    // A peer's connections come from its host's address.
    let hosts: Vec<String> = places.into_iter().map(|(h, _)| h).collect();
    match scenario.transport {
        Wire::Plain => {
            let transports = hosts.iter().enumerate().map(|(i, h)| net.transport(i, h)).collect();
            play(scenario, seed, clock, net, addrs, transports, None)
        }
        Wire::Tls => match crate::tls::transports(&net, &names, &hosts, &addrs, seed) {
            Ok((transports, gate)) => play(scenario, seed, clock, net, addrs, transports, Some(gate)),
            Err(e) => Run::failed_setup(scenario, seed, format!("cannot set up TLS: {e}")),
        },
    }
}

/// Plays `scenario` with one transport per peer (in the order of
/// [`Scenario::peer_names`]).
fn play<T: Transport>(
    scenario: &Scenario,
    seed: u64,
    clock: Arc<Clock>,
    net: Arc<Network>,
    addrs: Arc<Addresses>,
    transports: Vec<T>,
    gate: Option<Arc<dyn Gate>>,
) -> Run {
    let mut sim = Sim {
        scenario,
        addrs,
        clock: clock.clone(),
        net: net.clone(),
        peers: Vec::new(),
        index: BTreeMap::new(),
        steps: scenario.timeline.iter().map(|_| StepState::Waiting).collect(),
        verdicts: scenario.expect.iter().map(|_| Verdict::Pending).collect(),
        last_reason: vec![String::new(); scenario.expect.len()],
        events: Vec::new(),
        hashes: BTreeMap::new(),
        known: Vec::new(),
        groups: RefCell::default(),
        changes: Changes::default(),
        decided: vec![None; scenario.expect.len()],
    };
    let pages = PagePool::default();
    let mut transports = transports.into_iter();
    for group in &scenario.peers {
        let link = group.link.as_ref().and_then(|l| scenario.links.get(l)).map(|l| l.spec()).unwrap_or_default();
        let names: Vec<String> = match group.count {
            Some(n) => (1..=n).map(|i| format!("{}{i}", group.name)).collect(),
            None => vec![group.name.clone()],
        };
        for name in names {
            let Some(transport) = transports.next() else { break };
            let i = net.add_peer(link);
            let host = Host::up(&clock, i);
            let rt = SimRuntime::new(clock.clone(), &host, mix(seed, i));
            let store = MemStore::new(&name, rt.clone(), pages.clone(), sim.changes.clone());
            store.set_faults(Faults { corrupt: group.corrupt, corrupt_one_in: group.corrupt_one_in, disk: group.disk });
            for f in &group.files {
                let own = format!("{name}-{}", f.name);
                let file = if f.per_peer { own.as_str() } else { f.name.as_str() };
                if let Ok(n) = FileName::new(file) {
                    store.put(&n, &file_content(file, f.seed, f.size.0));
                }
            }
            let uploads = match (group.no_uploads, &gate) {
                (true, _) => UploadPolicy::Nobody,
                // Over TLS every peer of the scenario is known by its
                // certificate; the plain network authenticates no one.
                (false, Some(_)) => UploadPolicy::KnownPeers,
                (false, None) => UploadPolicy::Anyone,
            };
            let config = ServerConfig {
                peer_id: name.clone(),
                uploads,
                gate: gate.clone(),
                allow_overwrite: group.allow_overwrite,
                max_connections: group.max_connections.map_or(ServerConfig::default().max_connections, |n| n as usize),
                ..ServerConfig::default()
            };
            let role = if group.index { Role::Index } else { Role::Serve { tracker: group.tracker.clone() } };
            let running = start(&name, &sim.addrs, &rt, &store, &config, &transport, &role);
            let peer = Peer { name: name.clone(), host, rt, store, transport, config, paused: false, role, running };
            sim.index.insert(name, i);
            sim.peers.push(peer);
        }
    }
    sim.log(format!("start: {} peers, seed {seed}", sim.peers.len()));
    let failures = sim.play();
    sim.report(seed, failures)
}

impl Run {
    /// A run that could not start.
    fn failed_setup(scenario: &Scenario, seed: u64, why: String) -> Run {
        let report = Report {
            scenario: scenario.name.clone(),
            seed,
            peers: 0,
            verdict: "fail",
            virtual_time: secs(Duration::ZERO),
            steps: Vec::new(),
            expectations: Vec::new(),
            totals: Totals { bytes_sent: 0, connections: 0, indexes: Vec::new() },
            failures: vec![why],
            events_hash: String::new(),
        };
        Run { report, events: Vec::new() }
    }
}

/// A per-peer seed: the same for a peer whatever else the scenario has.
fn mix(seed: u64, i: usize) -> u64 {
    let h = blake3::hash(&[b"peer".as_slice(), &seed.to_le_bytes(), &(i as u64).to_le_bytes()].concat());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(eight)
}

impl<T: Transport> Sim<'_, T> {
    fn now(&self) -> Time {
        self.clock.now()
    }

    fn log(&mut self, text: String) {
        let line = format!("{} {text}", secs(self.now().since_epoch()));
        self.events.push(line);
    }

    fn peer(&self, name: &str) -> usize {
        self.index.get(name).copied().unwrap_or(0)
    }

    /// The peers a name stands for: one, or all whose names start with a
    /// prefix ending in `*`.
    fn matching(&self, pattern: &str) -> Rc<[usize]> {
        if let Some(group) = self.groups.borrow().get(pattern) {
            return group.clone();
        }
        let group: Rc<[usize]> = match pattern.strip_suffix('*') {
            Some(prefix) => (0..self.peers.len()).filter(|&i| self.peers[i].name.starts_with(prefix)).collect(),
            None => Rc::from([self.peer(pattern)]),
        };
        self.groups.borrow_mut().insert(pattern.to_string(), group.clone());
        group
    }

    /// Runs until everything is decided; returns why the run failed.
    fn play(&mut self) -> Vec<String> {
        let limit = Time::ZERO + self.scenario.time_limit();
        loop {
            self.start_due_steps();
            self.tick_all();
            if self.collect_finished() {
                continue;
            }
            self.check_expectations(false);
            if self.finished() {
                break;
            }
            let next = [self.clock.next_deadline(), self.next_step_time(), self.next_expect_deadline()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t > limit => {
                    self.clock.advance_to(limit);
                    self.log("time limit reached".into());
                    return vec![format!("the virtual time limit ({}) passed", secs(limit.since_epoch()))];
                }
                Some(t) => {
                    self.clock.advance_to(t);
                }
                None => {
                    let waiting = self.waiting();
                    self.log(format!("deadlock: {waiting}"));
                    return vec![format!("deadlock: nothing can run and no timer is set; {waiting}")];
                }
            }
        }
        Vec::new()
    }

    fn finished(&self) -> bool {
        let steps_done = self.steps.iter().all(|s| matches!(s, StepState::Done { .. }));
        let decided = self
            .scenario
            .expect
            .iter()
            .zip(&self.verdicts)
            .all(|(e, v)| matches!(e, Expect::Always(_)) || !matches!(v, Verdict::Pending));
        steps_done && decided
    }

    fn waiting(&self) -> String {
        let mut parts = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let id = self.scenario.step_id(i);
            match s {
                StepState::Running { start, slots, .. } => {
                    let who: Vec<String> = slots
                        .iter()
                        .filter(|(_, slot)| lock(slot).is_none())
                        .map(|(p, _)| {
                            let peer = &self.peers[*p];
                            let state = if peer.paused { "is paused" } else { "waits for an answer" };
                            format!("{} {state}", peer.name)
                        })
                        .collect();
                    parts.push(format!(
                        "step {id} ({}, since {}): {}",
                        describe(&self.scenario.timeline[i].action),
                        secs(start.since_epoch()),
                        who.join(", ")
                    ));
                }
                StepState::Waiting => parts.push(format!("step {id} waits for {}", self.start_condition(i))),
                StepState::Done { .. } => {}
            }
        }
        for (e, v) in self.scenario.expect.iter().zip(&self.verdicts) {
            if matches!(v, Verdict::Pending) && matches!(e, Expect::Eventually { .. }) {
                parts.push(format!("{} is undecided", expect_text(e)));
            }
        }
        if parts.is_empty() { "nothing pending".into() } else { parts.join("; ") }
    }

    fn start_condition(&self, i: usize) -> String {
        let step = &self.scenario.timeline[i];
        match (&step.at, &step.after) {
            (_, Some(a)) => format!("step {a} to end"),
            (Some(t), None) => format!("time {}", secs(t.0)),
            (None, None) => "time 0".into(),
        }
    }

    /// When step `i` may start, if that is known yet.
    fn start_time(&self, i: usize) -> Option<Time> {
        let step = &self.scenario.timeline[i];
        let delay = step.delay.map_or(Duration::ZERO, |d| d.0);
        match &step.after {
            Some(after) => {
                let j = (0..i).find(|&j| self.scenario.step_id(j) == *after)?;
                match &self.steps[j] {
                    StepState::Done { end, .. } => Some(*end + delay),
                    _ => None,
                }
            }
            None => Some(Time::ZERO + step.at.map_or(Duration::ZERO, |d| d.0) + delay),
        }
    }

    fn next_step_time(&self) -> Option<Time> {
        (0..self.steps.len())
            .filter(|&i| matches!(self.steps[i], StepState::Waiting))
            .filter_map(|i| self.start_time(i))
            .min()
    }

    fn next_expect_deadline(&self) -> Option<Time> {
        self.scenario
            .expect
            .iter()
            .zip(&self.verdicts)
            .filter_map(|(e, v)| match (e, v) {
                (Expect::Eventually { within, after, .. }, Verdict::Pending) => self.window(after.as_deref(), within.0),
                _ => None,
            })
            .min()
    }

    /// Runs tasks until none is ready: host by host, in the order they
    /// became ready, one task at a time. A paused host's tasks wait.
    fn tick_all(&mut self) {
        let mut parked = Vec::new();
        while let Some(h) = self.clock.next_ready() {
            let Some(p) = self.peers.get(h) else { continue };
            if p.paused {
                parked.push(h);
                continue;
            }
            if p.host.tick() && p.host.has_work() {
                self.clock.mark_ready(h);
            }
        }
        for h in parked {
            self.clock.mark_ready(h);
        }
    }

    fn start_due_steps(&mut self) {
        let now = self.now();
        for i in 0..self.steps.len() {
            if !matches!(self.steps[i], StepState::Waiting) || self.start_time(i).is_none_or(|t| t > now) {
                continue;
            }
            let action = self.scenario.timeline[i].action.clone();
            let id = self.scenario.step_id(i);
            self.log(format!("step {id} starts: {}", describe(&action)));
            if action.is_command() {
                let (slots, tasks) = self.spawn_commands(&action);
                self.steps[i] = StepState::Running { start: now, slots, _tasks: tasks };
            } else {
                self.apply_fault(&action);
                let ended = Ended { ok: true, kind: None, result: "done".into(), ..Ended::default() };
                self.steps[i] = StepState::Done { start: now, end: now, ended };
            }
        }
    }

    fn collect_finished(&mut self) -> bool {
        let now = self.now();
        let mut any = false;
        for i in 0..self.steps.len() {
            let StepState::Running { start, slots, .. } = &self.steps[i] else { continue };
            let start = *start;
            if slots.iter().any(|(_, s)| lock(s).is_none()) {
                continue;
            }
            let done: Vec<(String, Time, Ended)> = slots
                .iter()
                .filter_map(|(p, s)| {
                    let (at, ended) = lock(s).take()?;
                    Some((self.peers[*p].name.clone(), at, ended))
                })
                .collect();
            let ended = merge(done);
            let id = self.scenario.step_id(i);
            self.log(format!("step {id} ends: {}{}", ended.result, parts_text(&ended.parts)));
            self.steps[i] = StepState::Done { start, end: now, ended };
            any = true;
        }
        any
    }

    fn spawn_commands(&mut self, action: &Action) -> (Vec<(usize, Slot)>, Vec<Task<()>>) {
        let by = match action {
            Action::FileList { by, .. }
            | Action::Download { by, .. }
            | Action::Upload { by, .. }
            | Action::IndexList { by, .. } => by,
            _ => return (Vec::new(), Vec::new()),
        };
        let mut slots = Vec::new();
        let mut tasks = Vec::new();
        for &p in self.matching(by).iter() {
            let slot = Arc::new(Mutex::new(None));
            if let Some(task) = self.spawn_command(p, action, slot.clone()) {
                tasks.push(task);
            }
            slots.push((p, slot));
        }
        (slots, tasks)
    }

    fn spawn_command(&mut self, by: usize, action: &Action, slot: Slot) -> Option<Task<()>> {
        // The content a download is pinned to, as its holder has it now.
        let pin = match action {
            Action::Download { name, hash_of: Some(holder), .. } => {
                let holder = self.peer(holder);
                let hash = FileName::new(name).ok().and_then(|n| self.file_hash(holder, &n));
                hash.and_then(|h| h.parse::<Hash>().ok())
            }
            _ => None,
        };
        let addrs = self.addrs.clone();
        let p = &self.peers[by];
        if !p.host.is_up() {
            *lock(&slot) = Some((p.rt.now(), failed(ErrorKind::Other, format!("{} is down", p.name))));
            return None;
        }
        let by = &p.name;
        let (rt, transport, catalog) = (p.rt.clone(), p.transport.clone(), p.running.catalog.clone());
        let client = client_config(by);
        let action = action.clone();
        let clock = rt.clone();
        let swarm = self.scenario.swarm;
        let fut = async move {
            let ended = match action {
                Action::FileList { peers, .. } => file_list(&transport, &rt, &client, &addrs, &peers).await,
                Action::Download { name, from, index, .. } => {
                    let sources = match index {
                        Some(ix) if from.is_empty() => Sources::Index(addrs.of(&ix)),
                        _ => Sources::Named(from),
                    };
                    fetch(&transport, &rt, &catalog, &client, &addrs, &name, pin, sources, swarm).await
                }
                Action::IndexList { index, .. } => index_list(&transport, &rt, &client, &addrs, &index).await,
                Action::Upload { name, to, .. } => push(&transport, &rt, &catalog, &client, &addrs, &name, &to).await,
                _ => return,
            };
            *lock(&slot) = Some((clock.now(), ended));
        };
        Some(p.rt.spawn(fut))
    }

    fn apply_fault(&mut self, action: &Action) {
        match action {
            Action::Crash(p) => {
                let now = self.now();
                let i = self.peer(p);
                self.peers[i].host.crash();
                self.peers[i].store.crash();
                self.peers[i].paused = false;
                // Its commands die with it.
                for step in &self.steps {
                    if let StepState::Running { slots, .. } = step {
                        for (_, slot) in slots.iter().filter(|(by, _)| *by == i) {
                            let mut slot = lock(slot);
                            if slot.is_none() {
                                *slot = Some((now, failed(ErrorKind::Other, "cancelled: the peer crashed".into())));
                            }
                        }
                    }
                }
            }
            Action::Restart(p) => {
                let i = self.peer(p);
                if !self.peers[i].host.is_up() {
                    self.peers[i].host.restart();
                    let p = &self.peers[i];
                    let running = start(&p.name, &self.addrs, &p.rt, &p.store, &p.config, &p.transport, &p.role);
                    self.peers[i].running = running;
                }
            }
            Action::Pause(p) => {
                let i = self.peer(p);
                self.peers[i].paused = true;
            }
            Action::Resume(p) => {
                let i = self.peer(p);
                self.peers[i].paused = false;
            }
            Action::Partition(a, b) => {
                let (a, b) = (self.peer(a), self.peer(b));
                self.net.cut(a, b);
                self.net.cut(b, a);
            }
            Action::PartitionOneWay(a, b) => {
                let (a, b) = (self.peer(a), self.peer(b));
                self.net.cut(a, b);
            }
            Action::Heal(a, b) => {
                let (a, b) = (self.peer(a), self.peer(b));
                self.net.heal(a, b);
                self.net.heal(b, a);
            }
            Action::SetLink { peer, link } => {
                let i = self.peer(peer);
                let spec = self.scenario.links.get(link).map(|l| l.spec()).unwrap_or_default();
                self.net.set_link(i, spec);
            }
            Action::Corrupt(p, on) => {
                let store = &self.peers[self.peer(p)].store;
                store.set_faults(Faults { corrupt: *on, ..store.faults() });
            }
            Action::SlowDisk(p, rate) => {
                let store = &self.peers[self.peer(p)].store;
                store.set_faults(Faults { disk: *rate, ..store.faults() });
            }
            Action::AddFile { peer, name, size, seed } => {
                let p = &self.peers[self.peer(peer)];
                if let Ok(n) = FileName::new(name) {
                    p.store.put(&n, &file_content(name, *seed, size.0));
                }
                // What a folder watcher tells the announcer.
                if let Some(signal) = &p.running.signal {
                    let _ = signal.try_send(());
                }
            }
            Action::RemoveFile { peer, name } => {
                let p = &self.peers[self.peer(peer)];
                if let Ok(n) = FileName::new(name) {
                    p.store.remove(&n);
                }
                if let Some(signal) = &p.running.signal {
                    let _ = signal.try_send(());
                }
            }
            Action::FileList { .. } | Action::Download { .. } | Action::Upload { .. } | Action::IndexList { .. } => {}
        }
    }

    fn report(mut self, seed: u64, mut failures: Vec<String>) -> Run {
        self.check_expectations(true);
        let now = self.now();
        let mut steps = Vec::new();
        for i in 0..self.steps.len() {
            let step = &self.scenario.timeline[i];
            let id = self.scenario.step_id(i);
            let expected = step.expect.as_ref().map(|o| match o {
                Outcome::Ok => "ok".to_string(),
                Outcome::Error(k) => format!("error {k:?}"),
            });
            let (start, end, result, met, parts) = match &self.steps[i] {
                StepState::Waiting => (None, None, "not started".to_string(), false, Vec::new()),
                StepState::Running { start, .. } => {
                    (Some(*start), None, "still running at the end".to_string(), false, Vec::new())
                }
                StepState::Done { start, end, ended } => {
                    (Some(*start), Some(*end), ended.result.clone(), self.met(i, ended), ended.parts.clone())
                }
            };
            if !met {
                failures.push(format!("step {id} ({}): {result}", describe(&step.action)));
            }
            let took_p50_p99 = match &self.steps[i] {
                StepState::Done { start, ended, .. } => checks::percentile(*start, &ended.part_ends, 50)
                    .zip(checks::percentile(*start, &ended.part_ends, 99))
                    .map(|(a, b)| (secs(a), secs(b))),
                _ => None,
            };
            steps.push(StepReport {
                took_p50_p99,
                id,
                action: describe(&step.action),
                start: start.map(|t| secs(t.since_epoch())),
                end: end.map(|t| secs(t.since_epoch())),
                result,
                expected,
                met,
                parts,
            });
        }
        let mut expectations = Vec::new();
        for (i, e) in self.scenario.expect.iter().enumerate() {
            let (held, at, detail) = match &self.verdicts[i] {
                Verdict::Held(t) => (true, *t, None),
                Verdict::Failed(t, why) => (false, *t, Some(why.clone())),
                Verdict::Pending => (false, now, Some(self.last_reason[i].clone())),
            };
            if !held {
                failures.push(format!("{}: {}", expect_text(e), detail.clone().unwrap_or_default()));
            }
            expectations.push(ExpectReport { what: expect_text(e), held, at: secs(at.since_epoch()), detail });
        }
        let bytes_sent = (0..self.peers.len()).map(|i| self.net.counters(i).0).sum();
        for (i, p) in self.peers.iter().enumerate() {
            let (sent, received) = self.net.counters(i);
            if sent + received > 0 {
                let line = format!("{} {}: sent {sent}, received {received}", secs(now.since_epoch()), p.name);
                self.events.push(line);
            }
        }
        let indexes = (0..self.peers.len())
            .filter(|&i| matches!(self.peers[i].role, Role::Index))
            .map(|i| {
                let (sent, received) = self.net.counters(i);
                (self.peers[i].name.clone(), sent, received)
            })
            .collect();
        let verdict = if failures.is_empty() { "pass" } else { "fail" };
        self.events.push(format!("{} verdict {verdict}", secs(now.since_epoch())));
        let events_hash = blake3::hash(self.events.join("\n").as_bytes()).to_hex().to_string();
        let report = Report {
            scenario: self.scenario.name.clone(),
            seed,
            peers: self.peers.len(),
            verdict,
            virtual_time: secs(now.since_epoch()),
            steps,
            expectations,
            totals: Totals { bytes_sent, connections: self.net.connections(), indexes },
            failures,
            events_hash,
        };
        Run { report, events: self.events }
    }
}

/// An action in words.
pub fn describe(action: &Action) -> String {
    match action {
        Action::FileList { by, peers } => format!("{by} lists {}", peers.join(", ")),
        Action::Download { by, name, from, index, hash_of } => {
            let what = match hash_of {
                Some(p) => format!("{name} (the content {p} has)"),
                None => name.clone(),
            };
            match index {
                Some(ix) if from.is_empty() => format!("{by} downloads {what} from the peers {ix} names"),
                _ => format!("{by} downloads {what} from {}", from.join(", ")),
            }
        }
        Action::IndexList { by, index } => format!("{by} lists the network at {index}"),
        Action::AddFile { peer, name, size, .. } => format!("{name} ({} bytes) appears in {peer}'s folder", size.0),
        Action::RemoveFile { peer, name } => format!("{name} is deleted from {peer}'s folder"),
        Action::Upload { by, name, to } => format!("{by} uploads {name} to {}", to.join(", ")),
        Action::Crash(p) => format!("{p} crashes"),
        Action::Restart(p) => format!("{p} restarts"),
        Action::Pause(p) => format!("{p} pauses"),
        Action::Resume(p) => format!("{p} resumes"),
        Action::Partition(a, b) => format!("{a} and {b} are cut apart"),
        Action::PartitionOneWay(a, b) => format!("nothing gets from {a} to {b}"),
        Action::Heal(a, b) => format!("{a} and {b} are joined again"),
        Action::SetLink { peer, link } => format!("{peer}'s link becomes {link}"),
        Action::Corrupt(p, true) => format!("{p} starts serving corrupt blocks"),
        Action::Corrupt(p, false) => format!("{p} serves good blocks again"),
        Action::SlowDisk(p, Some(r)) => format!("{p}'s disk slows to {} B/s", r.0),
        Action::SlowDisk(p, None) => format!("{p}'s disk is fast again"),
    }
}

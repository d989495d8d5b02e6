//! The scenario file format (RON). See `scenarios/README.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::net::LinkSpec;
use crate::units::{Dur, Rate, Size};

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What it shows.
    pub name: String,
    /// Seeds every random choice (jitter); `--seed` overrides it.
    #[serde(default)]
    pub seed: u64,
    /// Downloads swarm (subscribe, peer exchange, serve what they have).
    /// Off by default: the older scenarios model whole-file sources, and
    /// a crowd of 200 swarming is not yet quick enough to simulate in CI.
    #[serde(default)]
    pub swarm: bool,
    /// Named link profiles peers refer to.
    #[serde(default)]
    pub links: BTreeMap<String, Link>,
    /// The peers, one entry per peer or per group (`count`).
    pub peers: Vec<PeerGroup>,
    /// What happens, and when.
    #[serde(default)]
    pub timeline: Vec<Step>,
    /// What must hold.
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// The run fails if virtual time passes this (default 1h).
    #[serde(default)]
    pub limit: Option<Dur>,
    /// How peers talk over the simulated links (default plain).
    #[serde(default)]
    pub transport: Wire,
}

/// What runs over the simulated links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Wire {
    /// The protocol as is.
    #[default]
    Plain,
    /// TLS 1.3 with mutual authentication: each peer's identity derives
    /// from (seed, position), and every peer pins every other.
    Tls,
}

/// A link profile. Unset fields: 1ms latency, no jitter, 1 Gbit both ways,
/// 1 MiB in flight per connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// One-way latency.
    #[serde(default)]
    pub latency: Option<Dur>,
    /// Extra latency up to this, drawn per chunk.
    #[serde(default)]
    pub jitter: Option<Dur>,
    /// Upload rate.
    #[serde(default)]
    pub up: Option<Rate>,
    /// Download rate.
    #[serde(default)]
    pub down: Option<Rate>,
    /// Bytes one connection may have in flight.
    #[serde(default)]
    pub queue: Option<Size>,
}

impl Link {
    /// The link with defaults filled in.
    pub fn spec(&self) -> LinkSpec {
        let d = LinkSpec::default();
        LinkSpec {
            latency: self.latency.map_or(d.latency, |x| x.0),
            jitter: self.jitter.map_or(d.jitter, |x| x.0),
            up: self.up.unwrap_or(d.up),
            down: self.down.unwrap_or(d.down),
            queue: self.queue.unwrap_or(d.queue),
        }
    }
}

/// One peer, or `count` peers named `name1`, `name2`...
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerGroup {
    /// The peer's name (or the prefix of the group's names).
    pub name: String,
    /// How many; without it, one peer named `name`.
    #[serde(default)]
    pub count: Option<u32>,
    /// A link profile from `links` (default: the default profile).
    #[serde(default)]
    pub link: Option<String>,
    /// Files the peer starts with.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Serves every block with a bit flipped.
    #[serde(default)]
    pub corrupt: bool,
    /// Serves one block in this many with a bit flipped (block 37 of each
    /// hundred, for 100).
    #[serde(default)]
    pub corrupt_one_in: Option<u32>,
    /// Disk rate (reads and writes), if slow.
    #[serde(default)]
    pub disk: Option<Rate>,
    /// Lets uploads replace files with other content.
    #[serde(default)]
    pub allow_overwrite: bool,
    /// Refuses uploads.
    #[serde(default)]
    pub no_uploads: bool,
    /// Connections served at once (default: the server's, 512); past it
    /// the peer answers "busy".
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Runs the index (`p2p tracker`) instead of serving files.
    #[serde(default)]
    pub index: bool,
    /// Announces its files to this peer, which runs the index.
    #[serde(default)]
    pub tracker: Option<String>,
    /// The machine it runs on: peers that name the same host share its
    /// address, each on a port of its own (5000, 5001...), as processes on
    /// one machine do. Without it, a peer is a machine of its own.
    #[serde(default)]
    pub host: Option<String>,
}

/// A generated file: the same name, size and seed give the same bytes on
/// every peer and in every run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: Size,
    /// Content seed (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Each peer of a group has its own file: named `{peer}-{name}`, with
    /// content of its own.
    #[serde(default)]
    pub per_peer: bool,
}

/// A timeline entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A name for `after` and checks (default: its position, from 1).
    #[serde(default)]
    pub id: Option<String>,
    /// Starts at this virtual time...
    #[serde(default)]
    pub at: Option<Dur>,
    /// ...or when the step with this id has ended...
    #[serde(default)]
    pub after: Option<String>,
    /// ...plus this delay.
    #[serde(default)]
    pub delay: Option<Dur>,
    /// What happens.
    pub action: Action,
    /// The result it must have (commands only).
    #[serde(default)]
    pub expect: Option<Outcome>,
}

/// What a step does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Action {
    /// `by` lists the files of `peers`. In the commands, `by` may end in
    /// `*` (`"leech*"`): every peer whose name starts so does it, at once.
    FileList { by: String, peers: Vec<String> },
    /// `by` downloads `name` from `from`, all at once; with `from` empty,
    /// from every peer the index `index` names.
    Download {
        by: String,
        name: String,
        #[serde(default)]
        from: Vec<String>,
        #[serde(default)]
        index: Option<String>,
        /// Pins the content to the one this peer has under `name` (as a
        /// user who knows the hash gives `--hash`).
        #[serde(default)]
        hash_of: Option<String>,
    },
    /// `by` asks the index `index` for the network's files.
    IndexList { by: String, index: String },
    /// A file appears in the peer's folder (as if copied there), and its
    /// folder watcher tells its announcer.
    AddFile {
        peer: String,
        name: String,
        size: Size,
        #[serde(default)]
        seed: u64,
    },
    /// A file is deleted from the peer's folder.
    RemoveFile { peer: String, name: String },
    /// `by` uploads its file `name` to `to`, all at once.
    Upload { by: String, name: String, to: Vec<String> },
    /// The peer's process dies: its tasks and unfinished writes are gone.
    Crash(String),
    /// A crashed peer starts again with the files it had.
    Restart(String),
    /// The peer stops running (its connections stay open).
    Pause(String),
    /// A paused peer runs again.
    Resume(String),
    /// Nothing gets through between the two peers, either way.
    Partition(String, String),
    /// Nothing gets from the first peer to the second.
    PartitionOneWay(String, String),
    /// Undoes a partition (both ways).
    Heal(String, String),
    /// The peer's link becomes another profile.
    SetLink { peer: String, link: String },
    /// The peer starts (true) or stops (false) serving corrupt blocks.
    Corrupt(String, bool),
    /// The peer's disk runs at this rate (None: fast).
    SlowDisk(String, Option<Rate>),
}

/// The result a command step must have.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum Outcome {
    /// Every part succeeded.
    Ok,
    /// Some part failed this way.
    Error(ErrorKind),
}

/// Named failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum ErrorKind {
    /// The name is being uploaded already.
    AlreadyUploading,
    /// The peer does not have the file.
    NotFound,
    /// A different file has the name.
    Exists,
    /// Policy refuses it.
    Forbidden,
    /// The peer is at a limit.
    Busy,
    /// A source sent data that does not match.
    Corrupt,
    /// No answer in time.
    Timeout,
    /// The connection could not be made or broke.
    Connection,
    /// Anything else.
    Other,
}

/// A condition over the run.
#[derive(Debug, Clone, Deserialize)]
pub enum Expect {
    /// Holds at some point before `within` of virtual time; with `after`,
    /// at some point between the end of that step and `within` after it.
    Eventually {
        within: Dur,
        check: Check,
        #[serde(default)]
        after: Option<String>,
    },
    /// Holds whenever the simulation stands still, and at the end.
    Always(Check),
}

/// Something that can be checked at a point of the run.
#[derive(Debug, Clone, Deserialize)]
pub enum Check {
    /// The peer has the file, and its BLAKE3 is `hash`.
    FileHash { peer: String, name: String, hash: String },
    /// The peer has the file with the same bytes as `other` has.
    SameFile {
        peer: String,
        name: String,
        #[serde(rename = "as")]
        other: String,
    },
    /// The peer does not have the file.
    NoFile { peer: String, name: String },
    /// The peer's files are exactly these names.
    Listing { peer: String, names: Vec<String> },
    /// The peer sent at most this many bytes.
    SentAtMost { peer: String, bytes: Size },
    /// The step ended with the result it was expected to have.
    StepDone(String),
    /// The step ended within this virtual time of its start.
    StepWithin { step: String, within: Dur },
    /// The step took at least `at_least` and at most `at_most`.
    StepTook { step: String, at_least: Dur, at_most: Dur },
    /// The peers of a group step (`by: "leech*"`) all ended within
    /// `at_most` of each other: they were served fairly.
    Spread { step: String, at_most: Dur },
    /// 99 in 100 of the peers of a group step took at most `at_most`.
    P99 { step: String, at_most: Dur },
    /// The index `index` lists `name`, served by `sources` peers in all
    /// (0: not listed).
    Indexed { index: String, name: String, sources: u32 },
    /// The peer sent and received together at most `percent` % of the
    /// bytes all peers sent.
    TrafficShare { peer: String, percent: f64 },
    /// The index `index` lists exactly `peers` peers and `files` files
    /// (counting each content of a name once).
    IndexSize { index: String, peers: u32, files: u32 },
    /// The last of the `peers` doing step `step` (a download of `name`
    /// from `seed`) finished within `factor` times the minimum
    /// distribution time their links allow (Kumar and Ross):
    /// max(F/u_seed, F/d_min, N*F/(u_seed + sum of the downloaders' u)).
    NearMinimum { step: String, seed: String, peers: String, name: String, factor: f64 },
    /// `peer` sent at most `copies` times the size of its file `name`
    /// (everything it sent counts, headers too).
    SentCopies { peer: String, name: String, copies: f64 },
    /// No downloader of step `step` kept a byte from peer `source`, and
    /// at least one dropped it for a corrupt block.
    Shunned { step: String, source: String },
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a scenario.
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Where.
        line: usize,
        /// Where.
        col: usize,
        /// What was expected.
        message: String,
    },
    /// The scenario names something that does not exist.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses scenario text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        // Optional fields are written bare (`latency: "1ms"`, `expect: Ok`).
        let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let s: Scenario = options.from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
        })?;
        s.validate().map_err(|message| ScenarioError::Invalid { path: path.to_string(), message })?;
        Ok(s)
    }

    /// The peer names, in order.
    pub fn peer_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for g in &self.peers {
            match g.count {
                Some(n) => names.extend((1..=n).map(|i| format!("{}{i}", g.name))),
                None => names.push(g.name.clone()),
            }
        }
        names
    }

    /// Each peer's host and address (`host:port`), in the order of
    /// [`peer_names`](Self::peer_names).
    pub fn addresses(&self) -> Vec<(String, String)> {
        let mut ports: BTreeMap<String, u16> = BTreeMap::new();
        let mut out = Vec::new();
        for g in &self.peers {
            let names: Vec<String> = match g.count {
                Some(n) => (1..=n).map(|i| format!("{}{i}", g.name)).collect(),
                None => vec![g.name.clone()],
            };
            for name in names {
                let host = g.host.clone().unwrap_or(name);
                let port = ports.entry(host.clone()).or_insert(crate::net::PORT);
                out.push((host.clone(), format!("{host}:{port}")));
                *port += 1;
            }
        }
        out
    }

    /// The id of step `i` (0-based).
    pub fn step_id(&self, i: usize) -> String {
        self.timeline[i].id.clone().unwrap_or_else(|| (i + 1).to_string())
    }

    /// The virtual time limit.
    pub fn time_limit(&self) -> Duration {
        self.limit.map_or(Duration::from_secs(3600), |d| d.0)
    }

    fn validate(&self) -> Result<(), String> {
        let names = self.peer_names();
        let mut seen = std::collections::BTreeSet::new();
        for n in &names {
            if !seen.insert(n.as_str()) {
                return Err(format!("peer {n:?} is defined twice"));
            }
        }
        // A name ending in `*` stands for every peer it starts.
        let peer = |n: &str| -> Result<(), String> {
            let known = match n.strip_suffix('*') {
                Some(prefix) => names.iter().any(|m| m.starts_with(prefix)),
                None => seen.contains(n),
            };
            if known { Ok(()) } else { Err(format!("no peer named {n:?} (peers: {})", list(&names))) }
        };
        let link = |l: &str| -> Result<(), String> {
            if self.links.contains_key(l) { Ok(()) } else { Err(format!("no link profile named {l:?}")) }
        };
        // An index is a single peer (not a group) marked `index: true`.
        let index_peer = |n: &str| -> Result<(), String> {
            match self.peers.iter().find(|g| g.name == n) {
                Some(g) if g.index && g.count.is_none() => Ok(()),
                Some(_) => Err(format!("peer {n:?} does not run the index (give it `index: true`)")),
                None => Err(format!("no index named {n:?} (peers: {})", list(&names))),
            }
        };
        for g in &self.peers {
            if let Some(l) = &g.link {
                link(l)?;
            }
            if let Some(t) = &g.tracker {
                index_peer(t).map_err(|e| format!("peer {:?}: tracker: {e}", g.name))?;
            }
            if g.index && g.count.is_some() {
                return Err(format!("peer {:?}: an index is one peer, without `count`", g.name));
            }
            for f in &g.files {
                p2p_core::name::FileName::new(&f.name)
                    .map_err(|e| format!("peer {:?}: file {:?}: {e}", g.name, f.name))?;
            }
        }
        let ids: Vec<String> = (0..self.timeline.len()).map(|i| self.step_id(i)).collect();
        for (i, step) in self.timeline.iter().enumerate() {
            let id = &ids[i];
            match (&step.at, &step.after) {
                (Some(_), Some(_)) => return Err(format!("step {id}: give `at` or `after`, not both")),
                (_, Some(a)) if !ids[..i].contains(a) => {
                    return Err(format!("step {id}: `after: {a:?}` names no earlier step"));
                }
                _ => {}
            }
            match &step.action {
                Action::FileList { by, peers: ps } => {
                    peer(by)?;
                    ps.iter().try_for_each(|p| peer(p))?;
                }
                Action::Download { by, name, from, index, hash_of } => {
                    peer(by)?;
                    from.iter().try_for_each(|p| peer(p))?;
                    hash_of.iter().try_for_each(|p| peer(p))?;
                    match index {
                        Some(ix) => index_peer(ix)?,
                        None if from.is_empty() => {
                            return Err(format!("step {id}: download from no peer and no index"));
                        }
                        None => {}
                    }
                    p2p_core::name::FileName::new(name).map_err(|e| format!("step {id}: {e}"))?;
                }
                Action::IndexList { by, index } => {
                    peer(by)?;
                    index_peer(index)?;
                }
                Action::AddFile { peer: p, name, .. } | Action::RemoveFile { peer: p, name } => {
                    peer(p)?;
                    p2p_core::name::FileName::new(name).map_err(|e| format!("step {id}: {e}"))?;
                }
                Action::Upload { by, name, to } => {
                    peer(by)?;
                    to.iter().try_for_each(|p| peer(p))?;
                    p2p_core::name::FileName::new(name).map_err(|e| format!("step {id}: {e}"))?;
                }
                Action::Crash(p)
                | Action::Restart(p)
                | Action::Pause(p)
                | Action::Resume(p)
                | Action::Corrupt(p, _)
                | Action::SlowDisk(p, _) => peer(p)?,
                Action::Partition(a, b) | Action::PartitionOneWay(a, b) | Action::Heal(a, b) => {
                    peer(a)?;
                    peer(b)?;
                }
                Action::SetLink { peer: p, link: l } => {
                    peer(p)?;
                    link(l)?;
                }
            }
            if step.expect.is_some() && !step.action.is_command() {
                return Err(format!(
                    "step {id}: only FileList, Download, Upload and IndexList have a result to expect"
                ));
            }
        }
        let step = |s: &str| -> Result<(), String> {
            if ids.iter().any(|i| i == s) { Ok(()) } else { Err(format!("no step with id {s:?}")) }
        };
        for e in &self.expect {
            let check = match e {
                Expect::Eventually { check, after, .. } => {
                    if let Some(a) = after {
                        step(a)?;
                    }
                    check
                }
                Expect::Always(check) => check,
            };
            match check {
                Check::FileHash { peer: p, .. } | Check::NoFile { peer: p, .. } | Check::Listing { peer: p, .. } => {
                    peer(p)?
                }
                Check::SentAtMost { peer: p, .. }
                | Check::TrafficShare { peer: p, .. }
                | Check::SentCopies { peer: p, .. } => peer(p)?,
                Check::NearMinimum { step: s, seed, peers, factor, .. } => {
                    step(s)?;
                    peer(seed)?;
                    peer(peers)?;
                    if factor.is_nan() || *factor < 1.0 {
                        return Err(format!("a factor of {factor}: nothing takes less than the minimum"));
                    }
                }
                Check::Indexed { index, .. } | Check::IndexSize { index, .. } => index_peer(index)?,
                Check::SameFile { peer: p, other, .. } => {
                    peer(p)?;
                    peer(other)?;
                }
                Check::Shunned { step: s, source } => {
                    step(s)?;
                    peer(source)?;
                }
                Check::StepDone(s)
                | Check::StepWithin { step: s, .. }
                | Check::StepTook { step: s, .. }
                | Check::Spread { step: s, .. }
                | Check::P99 { step: s, .. } => step(s)?,
            }
        }
        Ok(())
    }
}

impl Action {
    /// Whether the step is a command with a result (not a fault).
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            Action::FileList { .. } | Action::Download { .. } | Action::Upload { .. } | Action::IndexList { .. }
        )
    }
}

fn list(names: &[String]) -> String {
    if names.len() > 6 { format!("{}, … {} in all", names[..5].join(", "), names.len()) } else { names.join(", ") }
}

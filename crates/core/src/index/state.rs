//! What the index knows: the peers online, what each serves, and which
//! contents downloaders reported bad. A plain state machine, with the time
//! as an argument; the server around it does the talking.
//!
//! Every announcing session is an entry of its own, and no session ever
//! replaces another's: a client that joins with a victim's address adds an
//! entry that lies about that address, and leaves the victim's untouched.
//! (Over TLS, a session of the same certificate at the same address is the
//! same peer come back, and does take its old entry's place.)
//!
//! Everything a peer can make the index hold is bounded by count and by
//! bytes, per peer, per host and in all; the listing a client may ask for
//! is kept within what a client accepts. Hosts, not entries, are what
//! count where one machine could pose as many: reporters of bad data, and
//! the ranking of the contents served under one name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::hash::Hash;
use crate::manifest::MAX_FILE_SIZE;
use crate::name::FileName;
use crate::protocol::{FileInfo, FileRef, IndexedFile, MAX_SOURCES, PeerInfo, Sources};
use crate::runtime::Time;
use crate::transport::{Fingerprint, host_of};

/// Bounds of an index.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Peers listed at once.
    pub max_peers: usize,
    /// Files listed for one peer.
    pub max_files_per_peer: usize,
    /// Contents named in one answer for a name served with different
    /// contents (those served from the most hosts first).
    pub max_contents: usize,
    /// Contents of one name a host counts for: its first ones. A host
    /// that serves more (squatting a name with made-up contents) gets no
    /// further say in the ranking, and those contents are not named.
    pub max_contents_per_host: usize,
    /// How long a content reported bad is left out of the answers for the
    /// peer that served it.
    pub suspect_for: Duration,
    /// Files listed in all (the sum over peers). Also bounds the network's
    /// listing, which must stay within what a client accepts.
    pub max_files: usize,
    /// Peers listed from one host (one address without the port).
    pub max_peers_per_host: usize,
    /// Bytes of memory the index may spend on what peers published, in
    /// all: a fixed cost per file plus its name, kept in a few places.
    pub max_bytes: usize,
    /// Of those, on what the peers of one host published.
    pub max_bytes_per_host: usize,
    /// Bytes of the network's listing as a client counts them (a fixed
    /// cost per file plus its name): kept within what a client accepts.
    pub max_listing_bytes: usize,
    /// Reporters (told apart by host) after whose reports a peer is left
    /// out for everyone; before, only for them.
    pub hide_after_reporters: usize,
    /// Reports kept in all.
    pub max_reports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_peers: 20_000,
            max_files_per_peer: 100_000,
            max_contents: 16,
            max_contents_per_host: 2,
            suspect_for: Duration::from_secs(600),
            max_files: 500_000,
            max_peers_per_host: 1024,
            max_bytes: 512 << 20,
            max_bytes_per_host: 64 << 20,
            max_listing_bytes: 56 << 20,
            hide_after_reporters: 3,
            max_reports: 100_000,
        }
    }
}

/// What a published file costs the index beyond its name: the entries of
/// the maps that hold it (the name is kept four times).
const FILE_COST: usize = 400;
/// What a file of the listing costs a client beyond its name (as the
/// client's bound counts it).
const LISTED_COST: usize = 64;

fn file_bytes(name: &FileName) -> usize {
    FILE_COST + 4 * name.as_str().len()
}

fn listed_bytes(name: &FileName) -> usize {
    LISTED_COST + name.as_str().len()
}

/// Why the index turned something down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The index lists as many peers as it may.
    #[error("the index lists {0} peers already; try again later")]
    Full(usize),
    /// The index lists as many peers from this host as it may.
    #[error("the index lists {0} peers from this host already")]
    HostFull(usize),
    /// The index lists as many files in all as it may.
    #[error("the index lists {0} files in all already; the rest are not listed")]
    FilesFull(usize),
    /// The peer announced more files than the index lists for one peer.
    #[error("more than {0} files announced; the rest are not listed")]
    TooManyFiles(usize),
    /// The peers of this host published as much as the index keeps for one
    /// host.
    #[error("the peers of this host published {0} bytes of names already; the rest are not listed")]
    HostBytesFull(usize),
    /// The index keeps as much as it may.
    #[error("the index holds {0} bytes of names already; the rest are not listed")]
    BytesFull(usize),
    /// Publishing before joining, or after the session's entry is gone.
    #[error("not joined: send Join first")]
    NotJoined,
    /// A file larger than any peer can serve.
    #[error("{0} is larger than the 4 TiB limit")]
    TooLarge(FileName),
    /// A session said it downloads more contents than the index keeps.
    #[error("downloading more than {0} contents at once; the rest are not named as partial sources")]
    TooManyFetching(usize),
}

#[derive(Debug)]
struct Peer {
    id: String,
    addr: String,
    host: String,
    fingerprint: Option<Fingerprint>,
    files: BTreeMap<FileName, FileInfo>,
    /// What its files cost the index.
    bytes: usize,
    /// Contents it is downloading and serves as it gets them (a partial
    /// source), at most [`MAX_FETCHING`].
    fetching: BTreeMap<Hash, FileInfo>,
}

/// Contents one session may say it is downloading.
pub(crate) const MAX_FETCHING: usize = 16;

/// A file of the network's listing.
#[derive(Debug, Clone, Copy)]
struct Listed {
    size: u64,
    /// Peers serving it.
    sources: u32,
    /// When it was first listed, in publish order: among contents served
    /// from as many hosts, the one there first ranks first.
    first: u64,
}

/// What the peers of one host hold.
#[derive(Debug, Default, Clone, Copy)]
struct HostUse {
    peers: usize,
    bytes: usize,
}

/// The index's knowledge.
#[derive(Debug, Default)]
pub struct IndexState {
    limits: Limits,
    /// Each announcing session's entry, by session.
    peers: BTreeMap<u64, Peer>,
    /// Who serves each content, and under which name.
    by_hash: HashMap<Hash, BTreeSet<(u64, FileName)>>,
    /// The network's files: (name, content) → size, peers, first listed.
    listing: BTreeMap<(FileName, Hash), Listed>,
    listing_bytes: usize,
    /// Publishes so far (the clock of `Listed::first`).
    publishes: u64,
    /// The last listing made, shared by the queries until something
    /// changes.
    listed: Option<Arc<Vec<IndexedFile>>>,
    /// Who serves each name.
    by_name: HashMap<FileName, BTreeSet<u64>>,
    /// Who is downloading each content (partial sources), and each name.
    fetching: HashMap<Hash, BTreeSet<u64>>,
    fetching_by_name: HashMap<FileName, BTreeSet<u64>>,
    hosts: HashMap<String, HostUse>,
    /// Files listed in all, and what they cost.
    files_total: usize,
    bytes_total: usize,
    /// Contents reported bad, per peer address, by which hosts and when.
    suspects: HashMap<Hash, Vec<Suspicion>>,
    reports: usize,
}

/// A peer reported to serve bad data for a content.
#[derive(Debug)]
struct Suspicion {
    addr: String,
    /// Which hosts reported it, and when.
    reporters: Vec<(String, Time)>,
}

impl IndexState {
    /// An empty index.
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// Peers online (announcing sessions).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Session `session` joins for a peer serving at `addr`. Over TLS
    /// (`fingerprint`), an entry of the same certificate at the same
    /// address is that peer's from before, and goes; no other entry is
    /// ever touched.
    pub fn join(
        &mut self,
        session: u64,
        id: String,
        addr: String,
        fingerprint: Option<Fingerprint>,
    ) -> Result<(), IndexError> {
        if let Some(fp) = fingerprint {
            let old: Vec<u64> = self
                .peers
                .iter()
                .filter(|(s, p)| **s != session && p.fingerprint == Some(fp) && p.addr == addr)
                .map(|(s, _)| *s)
                .collect();
            for s in old {
                self.remove_peer(s);
            }
        }
        self.remove_peer(session);
        if self.peers.len() >= self.limits.max_peers {
            return Err(IndexError::Full(self.limits.max_peers));
        }
        let host = host_of(&addr);
        if self.hosts.get(&host).map_or(0, |h| h.peers) >= self.limits.max_peers_per_host {
            return Err(IndexError::HostFull(self.limits.max_peers_per_host));
        }
        self.hosts.entry(host.clone()).or_default().peers += 1;
        let peer = Peer { id, addr, host, fingerprint, files: BTreeMap::new(), bytes: 0, fetching: BTreeMap::new() };
        self.peers.insert(session, peer);
        Ok(())
    }

    /// Session `session` ended: its entry goes.
    pub fn leave(&mut self, session: u64) {
        self.remove_peer(session);
    }

    /// Whether session `session` has an entry.
    pub fn is_joined(&self, session: u64) -> bool {
        self.peers.contains_key(&session)
    }

    fn remove_peer(&mut self, session: u64) {
        self.forget_files(session);
        if let Some(peer) = self.peers.get_mut(&session) {
            for (hash, info) in std::mem::take(&mut peer.fetching) {
                forget(&mut self.fetching, &hash, session);
                forget(&mut self.fetching_by_name, &info.name, session);
            }
        }
        if let Some(peer) = self.peers.remove(&session)
            && let Some(h) = self.hosts.get_mut(&peer.host)
        {
            h.peers -= 1;
            if h.peers == 0 {
                self.hosts.remove(&peer.host);
            }
        }
    }

    /// A page of session `session`'s files. Returns how many it now
    /// serves. What does not fit in a bound is left out, and the error
    /// says which bound.
    pub fn publish(
        &mut self,
        session: u64,
        files: Vec<FileInfo>,
        removed: Vec<FileName>,
        reset: bool,
    ) -> Result<usize, IndexError> {
        let Some(host) = self.peers.get(&session).map(|p| p.host.clone()) else {
            return Err(IndexError::NotJoined);
        };
        if let Some(big) = files.iter().find(|f| f.size > MAX_FILE_SIZE) {
            return Err(IndexError::TooLarge(big.name.clone()));
        }
        self.publishes += 1;
        if reset {
            self.forget_files(session);
        }
        for name in removed {
            self.unlist(session, &name);
        }
        let mut over = None;
        for info in files {
            if let Err(e) = self.add(session, &host, info) {
                over = Some(e);
            }
        }
        if let Some(e) = over {
            return Err(e);
        }
        Ok(self.peers.get(&session).map_or(0, |p| p.files.len()))
    }

    /// Session `session` is downloading `info` and serves what it has of
    /// it: a partial source, named to askers that swarm, never listed as
    /// a file. Returns how many contents it is downloading now.
    pub fn fetch(&mut self, session: u64, info: FileInfo) -> Result<usize, IndexError> {
        let Some(peer) = self.peers.get_mut(&session) else { return Err(IndexError::NotJoined) };
        if info.size > MAX_FILE_SIZE {
            return Err(IndexError::TooLarge(info.name));
        }
        if !peer.fetching.contains_key(&info.hash) && peer.fetching.len() >= MAX_FETCHING {
            return Err(IndexError::TooManyFetching(MAX_FETCHING));
        }
        let (hash, name) = (info.hash, info.name.clone());
        if let Some(old) = peer.fetching.insert(hash, info)
            && old.name != name
        {
            forget(&mut self.fetching_by_name, &old.name, session);
        }
        let n = peer.fetching.len();
        self.fetching.entry(hash).or_default().insert(session);
        self.fetching_by_name.entry(name).or_default().insert(session);
        Ok(n)
    }

    /// Lists one file of `session`, if every bound allows.
    fn add(&mut self, session: u64, host: &str, info: FileInfo) -> Result<(), IndexError> {
        let l = &self.limits;
        let cost = file_bytes(&info.name);
        let Some(peer) = self.peers.get(&session) else { return Err(IndexError::NotJoined) };
        let old = peer.files.get(&info.name).cloned();
        if old.as_ref() == Some(&info) {
            return Ok(());
        }
        if old.is_none() {
            if peer.files.len() >= l.max_files_per_peer {
                return Err(IndexError::TooManyFiles(l.max_files_per_peer));
            }
            if self.files_total >= l.max_files {
                return Err(IndexError::FilesFull(l.max_files));
            }
            if self.hosts.get(host).map_or(0, |h| h.bytes) + cost > l.max_bytes_per_host {
                return Err(IndexError::HostBytesFull(l.max_bytes_per_host));
            }
            if self.bytes_total + cost > l.max_bytes {
                return Err(IndexError::BytesFull(l.max_bytes));
            }
        }
        let key = (info.name.clone(), info.hash);
        if !self.listing.contains_key(&key) && self.listing_bytes + listed_bytes(&info.name) > l.max_listing_bytes {
            return Err(IndexError::FilesFull(self.listing.len()));
        }
        if let Some(old) = old {
            self.unlist(session, &old.name);
        }
        self.files_total += 1;
        self.bytes_total += cost;
        self.hosts.entry(host.to_owned()).or_default().bytes += cost;
        let publishes = self.publishes;
        let listed =
            self.listing.entry(key).or_insert_with(|| Listed { size: info.size, sources: 0, first: publishes });
        if listed.sources == 0 {
            self.listing_bytes += listed_bytes(&info.name);
        }
        listed.sources += 1;
        self.listed = None;
        self.by_name.entry(info.name.clone()).or_default().insert(session);
        self.by_hash.entry(info.hash).or_default().insert((session, info.name.clone()));
        if let Some(peer) = self.peers.get_mut(&session) {
            peer.bytes += cost;
            peer.files.insert(info.name.clone(), info);
        }
        Ok(())
    }

    /// The size of content `hash`, if a peer lists it.
    pub fn size_of(&self, hash: &Hash) -> Option<u64> {
        let (session, name) = self.by_hash.get(hash)?.iter().next()?;
        self.peers.get(session)?.files.get(name).map(|f| f.size)
    }

    /// A downloader on host `reporter` says the peer at `addr` served bad
    /// data for `hash` (the caller checked the evidence). The peer is left
    /// out of the reporter's own answers for that content at once, and of
    /// everyone's once enough hosts agree: no one machine can hide an
    /// honest peer from the others.
    pub fn suspect(&mut self, addr: &str, hash: Hash, reporter: &str, now: Time) {
        let forget_after = self.limits.suspect_for;
        let mut kept = 0;
        for list in self.suspects.values_mut() {
            for s in list.iter_mut() {
                s.reporters.retain(|(_, since)| now.saturating_since(*since) < forget_after);
            }
            list.retain(|s| !s.reporters.is_empty());
            kept += list.iter().map(|s| s.reporters.len()).sum::<usize>();
        }
        self.suspects.retain(|_, list| !list.is_empty());
        self.reports = kept;
        // Only a peer the index lists with that content, and only so many
        // reports in all.
        let at_addr = |s: &u64| self.peers.get(s).is_some_and(|p| p.addr == addr);
        let listed = self.by_hash.get(&hash).is_some_and(|holders| holders.iter().any(|(s, _)| at_addr(s)))
            || self.fetching.get(&hash).is_some_and(|fetchers| fetchers.iter().any(at_addr));
        if !listed || self.reports >= self.limits.max_reports {
            return;
        }
        let list = self.suspects.entry(hash).or_default();
        let at = match list.iter().position(|s| s.addr == addr) {
            Some(i) => i,
            None => {
                list.push(Suspicion { addr: addr.to_owned(), reporters: Vec::new() });
                list.len() - 1
            }
        };
        let reporters = &mut list[at].reporters;
        match reporters.iter_mut().find(|(r, _)| r == reporter) {
            Some(entry) => entry.1 = now,
            None => {
                reporters.push((reporter.to_owned(), now));
                self.reports += 1;
            }
        }
    }

    /// Every file on the network, sorted by name then hash, with the
    /// number of peers serving each.
    pub fn files(&mut self) -> Arc<Vec<IndexedFile>> {
        let listing = &self.listing;
        self.listed
            .get_or_insert_with(|| {
                Arc::new(
                    listing
                        .iter()
                        .map(|((name, hash), l)| IndexedFile {
                            info: FileInfo { name: name.clone(), size: l.size, hash: *hash },
                            sources: l.sources,
                        })
                        .collect(),
                )
            })
            .clone()
    }

    /// How many files the network has (each content of a name once).
    pub fn file_count(&self) -> usize {
        self.listing.len()
    }

    /// Who serves `file`: per content, at most [`MAX_SOURCES`] peers each
    /// (one address once, hosts taken in turn so that no one host fills
    /// the list), leaving out peers reported bad for it to `asker` (a
    /// host). For a name served with several contents, those served from
    /// the most hosts come first (the one listed first among equals), each
    /// host counting for its first [`Limits::max_contents_per_host`]
    /// contents of the name only, and at most [`Limits::max_contents`] are
    /// named.
    ///
    /// With `partial` (the asker swarms), the peers downloading a content
    /// count as its holders too, named after those with the whole file.
    pub fn locate(&self, file: &FileRef, now: Time, asker: &str, partial: bool) -> Vec<Sources> {
        let name = match file {
            FileRef::Name(raw) => FileName::new(raw).ok(),
            FileRef::Hash(_) => None,
        };
        let holders: Vec<(u64, &FileName)> = match (file, &name) {
            (FileRef::Hash(h), _) => self.by_hash.get(h).into_iter().flatten().map(|(s, n)| (*s, n)).collect(),
            (FileRef::Name(_), Some(n)) => match self.by_name.get_key_value(n) {
                Some((name, sessions)) => sessions.iter().map(|s| (*s, name)).collect(),
                None => Vec::new(),
            },
            (FileRef::Name(_), None) => Vec::new(),
        };
        // Each content's live holders: whole, then partial.
        let mut contents: BTreeMap<Hash, (FileInfo, Vec<&Peer>, Vec<&Peer>)> = BTreeMap::new();
        for (session, name) in holders {
            let Some(peer) = self.peers.get(&session) else { continue };
            let Some(info) = peer.files.get(name) else { continue };
            if self.is_suspect(&peer.addr, info.hash, asker, now) {
                continue;
            }
            contents.entry(info.hash).or_insert_with(|| (info.clone(), Vec::new(), Vec::new())).1.push(peer);
        }
        if partial {
            let fetching: Vec<u64> = match file {
                FileRef::Hash(h) => self.fetching.get(h).into_iter().flatten().copied().collect(),
                FileRef::Name(_) => {
                    name.as_ref().and_then(|n| self.fetching_by_name.get(n)).into_iter().flatten().copied().collect()
                }
            };
            for session in fetching {
                let Some(peer) = self.peers.get(&session) else { continue };
                let info = match file {
                    FileRef::Hash(h) => peer.fetching.get(h),
                    FileRef::Name(_) => peer.fetching.values().find(|i| Some(&i.name) == name.as_ref()),
                };
                let Some(info) = info else { continue };
                if self.is_suspect(&peer.addr, info.hash, asker, now) {
                    continue;
                }
                let entry = contents.entry(info.hash).or_insert_with(|| (info.clone(), Vec::new(), Vec::new()));
                // One size per content: a peer that says otherwise is wrong.
                if entry.0.size == info.size {
                    entry.2.push(peer);
                }
            }
        }
        let first = |info: &FileInfo| self.listing.get(&(info.name.clone(), info.hash)).map_or(u64::MAX, |l| l.first);
        // Which contents each host counts for: its first ones.
        let mut by_host: HashMap<&str, Vec<(u64, Hash)>> = HashMap::new();
        for (hash, (info, whole, part)) in &contents {
            let mut seen = BTreeSet::new();
            for p in whole.iter().chain(part) {
                if seen.insert(p.host.as_str()) {
                    by_host.entry(p.host.as_str()).or_default().push((first(info), *hash));
                }
            }
        }
        let mut votes: HashMap<Hash, usize> = HashMap::new();
        for list in by_host.values_mut() {
            list.sort();
            for (_, hash) in list.iter().take(self.limits.max_contents_per_host) {
                *votes.entry(*hash).or_default() += 1;
            }
        }
        let mut found: Vec<(usize, u64, Sources)> = contents
            .into_iter()
            .filter_map(|(hash, (info, whole, part))| {
                let hosts = votes.get(&hash).copied()?;
                let order = first(&info);
                let mut peers = spread(whole, 0);
                // Partial sources from a place that differs by asker and
                // moment: a crowd larger than an answer is spread over all
                // of them, not sent to the same few.
                let start = Hash::of(format!("{asker} {:?} {hash}", now.since_epoch()).as_bytes());
                let start = u64::from_le_bytes(start.as_bytes()[..8].try_into().unwrap_or_default());
                for p in spread(part, start) {
                    if peers.len() < MAX_SOURCES && !peers.iter().any(|o| o.addr == p.addr) {
                        peers.push(p);
                    }
                }
                Some((hosts, order, Sources { info, peers }))
            })
            .collect();
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.info.hash.cmp(&b.2.info.hash)));
        found.truncate(self.limits.max_contents);
        found.into_iter().map(|(_, _, s)| s).collect()
    }

    /// The peers online, sorted by id then address.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut all: Vec<PeerInfo> = self.peers.values().map(info_of).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id).then(a.addr.cmp(&b.addr)));
        all
    }

    /// Whether `addr` is left out of `asker`'s answers for `hash`.
    fn is_suspect(&self, addr: &str, hash: Hash, asker: &str, now: Time) -> bool {
        let Some(s) = self.suspects.get(&hash).and_then(|list| list.iter().find(|s| s.addr == addr)) else {
            return false;
        };
        let live = |since: &Time| now.saturating_since(*since) < self.limits.suspect_for;
        let reporters = s.reporters.iter().filter(|(_, since)| live(since)).count();
        reporters >= self.limits.hide_after_reporters || s.reporters.iter().any(|(r, since)| r == asker && live(since))
    }

    fn unlist(&mut self, session: u64, name: &FileName) {
        let Some(peer) = self.peers.get_mut(&session) else { return };
        if let Some(old) = peer.files.remove(name) {
            self.unindex(session, &old);
        }
    }

    fn forget_files(&mut self, session: u64) {
        let Some(peer) = self.peers.get_mut(&session) else { return };
        for old in std::mem::take(&mut peer.files).into_values() {
            self.unindex(session, &old);
        }
    }

    /// `session` no longer serves `old`.
    fn unindex(&mut self, session: u64, old: &FileInfo) {
        let cost = file_bytes(&old.name);
        self.files_total -= 1;
        self.bytes_total -= cost;
        if let Some(peer) = self.peers.get_mut(&session) {
            peer.bytes -= cost;
            if let Some(h) = self.hosts.get_mut(&peer.host) {
                h.bytes -= cost;
            }
        }
        if let Some(set) = self.by_name.get_mut(&old.name) {
            set.remove(&session);
            if set.is_empty() {
                self.by_name.remove(&old.name);
            }
        }
        if let Some(set) = self.by_hash.get_mut(&old.hash) {
            set.remove(&(session, old.name.clone()));
            if set.is_empty() {
                self.by_hash.remove(&old.hash);
            }
        }
        let entry = (old.name.clone(), old.hash);
        if let Some(l) = self.listing.get_mut(&entry) {
            l.sources -= 1;
            if l.sources == 0 {
                self.listing.remove(&entry);
                self.listing_bytes -= listed_bytes(&old.name);
            }
        }
        self.listed = None;
    }
}

/// Takes `session` out of the set of `key`, and the set out once empty.
fn forget<K: std::hash::Hash + Eq>(sets: &mut HashMap<K, BTreeSet<u64>>, key: &K, session: u64) {
    if let Some(set) = sets.get_mut(key) {
        set.remove(&session);
        if set.is_empty() {
            sets.remove(key);
        }
    }
}

/// At most [`MAX_SOURCES`] of `peers`, each address once, taking hosts in
/// turn (the first peer of every host, then the second...), from the host
/// `start` picks (modulo their number) on.
fn spread(peers: Vec<&Peer>, start: u64) -> Vec<PeerInfo> {
    let mut hosts: BTreeMap<&str, Vec<&Peer>> = BTreeMap::new();
    for p in &peers {
        hosts.entry(p.host.as_str()).or_default().push(p);
    }
    let mut per_host: Vec<Vec<&Peer>> = hosts.into_values().collect();
    if !per_host.is_empty() {
        let n = per_host.len() as u64;
        per_host.rotate_left((start % n) as usize);
    }
    let mut out: Vec<PeerInfo> = Vec::new();
    let mut round = 0;
    while out.len() < MAX_SOURCES {
        let mut any = false;
        for list in &per_host {
            if let Some(p) = list.get(round) {
                any = true;
                if out.len() < MAX_SOURCES && !out.iter().any(|o| o.addr == p.addr) {
                    out.push(info_of(p));
                }
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    out
}

fn info_of(p: &Peer) -> PeerInfo {
    PeerInfo { id: p.id.clone(), addr: p.addr.clone(), fingerprint: p.fingerprint, files: p.files.len() as u32 }
}

#[cfg(test)]
mod tests;

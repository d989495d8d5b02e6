//! What the index knows: the peers online, what each serves, and which
//! contents downloaders reported bad. A plain state machine, with the time
//! as an argument; the server around it does the talking.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::hash::Hash;
use crate::manifest::MAX_FILE_SIZE;
use crate::name::FileName;
use crate::protocol::{FileInfo, FileRef, IndexedFile, MAX_SOURCES, PeerInfo, Sources};
use crate::runtime::Time;
use crate::transport::Fingerprint;

/// Bounds of an index.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Peers listed at once.
    pub max_peers: usize,
    /// Files listed for one peer.
    pub max_files_per_peer: usize,
    /// Contents named in one answer for a name served with different
    /// contents (the most served first).
    pub max_contents: usize,
    /// How long a content reported bad is left out of the answers for the
    /// peer that served it.
    pub suspect_for: Duration,
    /// Files listed in all (the sum over peers).
    pub max_files: usize,
    /// Peers listed from one host (one address without the port).
    pub max_peers_per_host: usize,
    /// Reporters (told apart by certificate, else by host) after whose
    /// reports a peer is left out for everyone; before, only for them.
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
            suspect_for: Duration::from_secs(600),
            max_files: 2_000_000,
            max_peers_per_host: 1024,
            hide_after_reporters: 3,
            max_reports: 100_000,
        }
    }
}

/// How a peer is told apart: its certificate where its session was over
/// TLS (so nobody else can announce for it), else its address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKey {
    /// Proven by TLS.
    Identity(Fingerprint),
    /// Only an address.
    Address(String),
}

/// Why the index turned something down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// Publishing before joining, or after another session took over.
    #[error("not joined: send Join first")]
    NotJoined,
    /// A file larger than any peer can serve.
    #[error("{0} is larger than the 4 TiB limit")]
    TooLarge(FileName),
}

#[derive(Debug)]
struct Peer {
    id: String,
    addr: String,
    fingerprint: Option<Fingerprint>,
    /// The session that announces for it now.
    session: u64,
    files: BTreeMap<FileName, FileInfo>,
}

/// The index's knowledge.
#[derive(Debug, Default)]
pub struct IndexState {
    limits: Limits,
    peers: BTreeMap<PeerKey, Peer>,
    /// Who serves each content, and under which name.
    by_hash: HashMap<Hash, BTreeSet<(PeerKey, FileName)>>,
    /// The network's files: (name, content) → (size, peers serving it),
    /// kept as peers come and go, so a listing is a copy, not a count.
    listing: BTreeMap<(FileName, Hash), (u64, u32)>,
    /// The last listing made, shared by the queries until something
    /// changes.
    listed: Option<Arc<Vec<IndexedFile>>>,
    /// Who serves each name.
    by_name: HashMap<FileName, BTreeSet<PeerKey>>,
    /// Peers listed per host.
    hosts: HashMap<String, usize>,
    /// Files listed in all.
    files_total: usize,
    /// Contents reported bad, per peer address, by whom and when.
    suspects: HashMap<Hash, Vec<Suspicion>>,
    reports: usize,
}

/// A peer reported to serve bad data for a content.
#[derive(Debug)]
struct Suspicion {
    addr: String,
    /// Who reported it (certificate, else host), and when.
    reporters: Vec<(String, Time)>,
}

impl IndexState {
    /// An empty index.
    pub fn new(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// Peers online.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A peer joins (or joins again, from a new session: what it published
    /// before is forgotten, it publishes a full list next).
    pub fn join(
        &mut self,
        key: PeerKey,
        id: String,
        addr: String,
        fingerprint: Option<Fingerprint>,
        session: u64,
    ) -> Result<(), IndexError> {
        let known = self.peers.contains_key(&key);
        if !known && self.peers.len() >= self.limits.max_peers {
            return Err(IndexError::Full(self.limits.max_peers));
        }
        if !known && self.hosts.get(host_of(&addr)).copied().unwrap_or(0) >= self.limits.max_peers_per_host {
            return Err(IndexError::HostFull(self.limits.max_peers_per_host));
        }
        self.remove_peer(&key);
        *self.hosts.entry(host_of(&addr).to_owned()).or_default() += 1;
        self.peers.insert(key, Peer { id, addr, fingerprint, session, files: BTreeMap::new() });
        Ok(())
    }

    /// The session of `key` ended: the peer leaves, unless a newer session
    /// announces for it by now.
    pub fn leave(&mut self, key: &PeerKey, session: u64) {
        if self.peers.get(key).is_some_and(|p| p.session == session) {
            self.remove_peer(key);
        }
    }

    fn remove_peer(&mut self, key: &PeerKey) {
        self.forget_files(key);
        if let Some(peer) = self.peers.remove(key) {
            let host = host_of(&peer.addr);
            if let Some(n) = self.hosts.get_mut(host) {
                *n -= 1;
                if *n == 0 {
                    self.hosts.remove(host);
                }
            }
        }
    }

    /// A page of the peer's files. Returns how many it now serves.
    pub fn publish(
        &mut self,
        key: &PeerKey,
        session: u64,
        files: Vec<FileInfo>,
        removed: Vec<FileName>,
        reset: bool,
    ) -> Result<usize, IndexError> {
        if self.peers.get(key).is_none_or(|p| p.session != session) {
            return Err(IndexError::NotJoined);
        }
        if let Some(big) = files.iter().find(|f| f.size > MAX_FILE_SIZE) {
            return Err(IndexError::TooLarge(big.name.clone()));
        }
        if reset {
            self.forget_files(key);
        }
        for name in removed {
            self.unlist(key, &name);
        }
        let max = self.limits.max_files_per_peer;
        let mut over = None;
        for info in files {
            let Some(peer) = self.peers.get_mut(key) else { break };
            let new = !peer.files.contains_key(&info.name);
            if new && peer.files.len() >= max {
                over = Some(IndexError::TooManyFiles(max));
                continue;
            }
            if new && self.files_total >= self.limits.max_files {
                over = Some(IndexError::FilesFull(self.limits.max_files));
                continue;
            }
            if let Some(old) = peer.files.insert(info.name.clone(), info.clone()) {
                self.unindex(key, &old);
            }
            self.files_total += 1;
            self.listing.entry((info.name.clone(), info.hash)).or_insert((info.size, 0)).1 += 1;
            self.listed = None;
            self.by_name.entry(info.name.clone()).or_default().insert(key.clone());
            self.by_hash.entry(info.hash).or_default().insert((key.clone(), info.name));
        }
        if let Some(e) = over {
            return Err(e);
        }
        Ok(self.peers.get(key).map_or(0, |p| p.files.len()))
    }

    /// A downloader (`reporter`: its certificate, else its host) says the
    /// peer at `addr` served bad data for `hash`. The peer is left out of
    /// the reporter's own answers for that content at once, and of
    /// everyone's once enough reporters agree: one client cannot hide an
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
        let listed = self
            .by_hash
            .get(&hash)
            .is_some_and(|holders| holders.iter().any(|(k, _)| self.peers.get(k).is_some_and(|p| p.addr == addr)));
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
                        .map(|((name, hash), (size, sources))| IndexedFile {
                            info: FileInfo { name: name.clone(), size: *size, hash: *hash },
                            sources: *sources,
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

    /// Who serves `file`: per content (the most served first, at most
    /// [`Limits::max_contents`]), at most [`MAX_SOURCES`] peers each,
    /// leaving out peers reported bad for it.
    pub fn locate(&self, file: &FileRef, now: Time, asker: &str) -> Vec<Sources> {
        let holders: Vec<(&PeerKey, &FileName)> = match file {
            FileRef::Hash(h) => self.by_hash.get(h).into_iter().flatten().map(|(k, n)| (k, n)).collect(),
            FileRef::Name(raw) => match FileName::new(raw).ok().and_then(|n| self.by_name.get_key_value(&n)) {
                Some((name, keys)) => keys.iter().map(|k| (k, name)).collect(),
                None => Vec::new(),
            },
        };
        let mut contents: BTreeMap<Hash, Sources> = BTreeMap::new();
        for (key, name) in holders {
            let Some(peer) = self.peers.get(key) else { continue };
            let Some(info) = peer.files.get(name) else { continue };
            if self.is_suspect(&peer.addr, info.hash, asker, now) {
                continue;
            }
            let entry = contents.entry(info.hash).or_insert_with(|| Sources { info: info.clone(), peers: Vec::new() });
            if entry.peers.len() < MAX_SOURCES {
                entry.peers.push(info_of(peer));
            }
        }
        let mut found: Vec<Sources> = contents.into_values().collect();
        // Most served first; ties by hash, so answers are stable.
        found.sort_by(|a, b| b.peers.len().cmp(&a.peers.len()).then(a.info.hash.cmp(&b.info.hash)));
        found.truncate(self.limits.max_contents);
        found
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

    fn unlist(&mut self, key: &PeerKey, name: &FileName) {
        let Some(peer) = self.peers.get_mut(key) else { return };
        if let Some(old) = peer.files.remove(name) {
            self.unindex(key, &old);
        }
    }

    fn forget_files(&mut self, key: &PeerKey) {
        let Some(peer) = self.peers.get_mut(key) else { return };
        for old in std::mem::take(&mut peer.files).into_values() {
            self.unindex(key, &old);
        }
    }

    /// `key` no longer serves `old`.
    fn unindex(&mut self, key: &PeerKey, old: &FileInfo) {
        self.files_total -= 1;
        if let Some(set) = self.by_name.get_mut(&old.name) {
            set.remove(key);
            if set.is_empty() {
                self.by_name.remove(&old.name);
            }
        }
        if let Some(set) = self.by_hash.get_mut(&old.hash) {
            set.remove(&(key.clone(), old.name.clone()));
            if set.is_empty() {
                self.by_hash.remove(&old.hash);
            }
        }
        let entry = (old.name.clone(), old.hash);
        if let Some((_, n)) = self.listing.get_mut(&entry) {
            *n -= 1;
            if *n == 0 {
                self.listing.remove(&entry);
            }
        }
        self.listed = None;
    }
}

/// The host part of `host:port`.
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

fn info_of(p: &Peer) -> PeerInfo {
    PeerInfo { id: p.id.clone(), addr: p.addr.clone(), fingerprint: p.fingerprint, files: p.files.len() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &[u8]) -> FileInfo {
        FileInfo { name: FileName::new(name).unwrap(), size: content.len() as u64, hash: Hash::of(content) }
    }

    fn key(addr: &str) -> PeerKey {
        PeerKey::Address(addr.into())
    }

    fn join(s: &mut IndexState, addr: &str, session: u64) {
        s.join(key(addr), format!("p{session}"), addr.into(), None, session).unwrap();
    }

    #[test]
    fn peers_publish_change_and_leave() {
        let mut s = IndexState::new(Limits::default());
        join(&mut s, "10.0.0.1:5000", 1);
        join(&mut s, "10.0.0.2:5000", 2);
        assert_eq!(s.publish(&key("10.0.0.1:5000"), 1, vec![file("a", b"A"), file("b", b"B")], vec![], true), Ok(2));
        assert_eq!(s.publish(&key("10.0.0.2:5000"), 2, vec![file("a", b"A")], vec![], true), Ok(1));
        let files = s.files();
        assert_eq!(files.len(), 2);
        assert_eq!((files[0].info.name.as_str(), files[0].sources), ("a", 2));
        // A change and a removal.
        let n = s.publish(&key("10.0.0.1:5000"), 1, vec![file("a", b"A2")], vec![FileName::new("b").unwrap()], false);
        assert_eq!(n, Ok(1));
        let located = s.locate(&FileRef::Name("a".into()), Time::ZERO, "me");
        assert_eq!(located.len(), 2, "two contents under one name: {located:?}");
        assert!(s.locate(&FileRef::Hash(Hash::of(b"B")), Time::ZERO, "me").is_empty());
        // Leaving forgets everything the peer served.
        s.leave(&key("10.0.0.1:5000"), 1);
        assert_eq!(s.peer_count(), 1);
        assert!(s.locate(&FileRef::Hash(Hash::of(b"A2")), Time::ZERO, "me").is_empty());
        assert_eq!(s.files().len(), 1);
    }

    #[test]
    fn a_newer_session_keeps_the_peer_when_the_old_one_ends() {
        let mut s = IndexState::new(Limits::default());
        join(&mut s, "10.0.0.1:5000", 1);
        s.publish(&key("10.0.0.1:5000"), 1, vec![file("a", b"A")], vec![], true).unwrap();
        // The peer restarted and joined again before the index saw the
        // old connection close.
        join(&mut s, "10.0.0.1:5000", 7);
        assert_eq!(
            s.publish(&key("10.0.0.1:5000"), 1, vec![file("x", b"X")], vec![], false),
            Err(IndexError::NotJoined)
        );
        s.publish(&key("10.0.0.1:5000"), 7, vec![file("a", b"A")], vec![], true).unwrap();
        s.leave(&key("10.0.0.1:5000"), 1);
        assert_eq!(s.peer_count(), 1);
        assert_eq!(s.files().len(), 1);
    }

    #[test]
    fn limits_hold() {
        let limits = Limits { max_peers: 2, max_files_per_peer: 3, max_contents: 2, ..Limits::default() };
        let mut s = IndexState::new(limits);
        join(&mut s, "a:1", 1);
        join(&mut s, "b:1", 2);
        assert_eq!(s.join(key("c:1"), "c".into(), "c:1".into(), None, 3), Err(IndexError::Full(2)));
        let many: Vec<FileInfo> = (0..5).map(|i| file(&format!("f{i}"), &[i])).collect();
        assert_eq!(s.publish(&key("a:1"), 1, many, vec![], true), Err(IndexError::TooManyFiles(3)));
        assert_eq!(s.files().len(), 3, "what fits is listed");
        let huge = FileInfo { size: MAX_FILE_SIZE + 1, ..file("huge", b"h") };
        assert!(matches!(s.publish(&key("b:1"), 2, vec![huge], vec![], false), Err(IndexError::TooLarge(_))));
        // Three contents under one name: the two most served are named.
        s.publish(&key("b:1"), 2, vec![file("f0", b"other")], vec![], false).unwrap();
        let named = s.locate(&FileRef::Name("f0".into()), Time::ZERO, "me");
        assert_eq!(named.len(), 2);
        assert!(s.locate(&FileRef::Name("../etc".into()), Time::ZERO, "me").is_empty());
    }

    #[test]
    fn a_content_reported_bad_is_left_out_for_the_reporter_and_then_for_all() {
        let mut s = IndexState::new(Limits { suspect_for: Duration::from_secs(60), ..Limits::default() });
        join(&mut s, "a:1", 1);
        join(&mut s, "b:1", 2);
        for (addr, session) in [("a:1", 1), ("b:1", 2)] {
            s.publish(&key(addr), session, vec![file("x", b"X")], vec![], true).unwrap();
        }
        let t = |secs| Time::ZERO + Duration::from_secs(secs);
        let x = FileRef::Hash(Hash::of(b"X"));
        let addrs = |s: &IndexState, asker: &str, at| -> Vec<String> {
            s.locate(&x, t(at), asker)[0].peers.iter().map(|p| p.addr.clone()).collect()
        };
        s.suspect("a:1", Hash::of(b"X"), "r1", t(10));
        assert_eq!(addrs(&s, "r1", 20), ["b:1"], "left out for the reporter");
        assert_eq!(addrs(&s, "someone", 20), ["a:1", "b:1"], "one report hides nobody from the others");
        s.suspect("a:1", Hash::of(b"X"), "r2", t(11));
        s.suspect("a:1", Hash::of(b"X"), "r2", t(12));
        assert_eq!(addrs(&s, "someone", 20), ["a:1", "b:1"], "a reporter counts once");
        s.suspect("a:1", Hash::of(b"X"), "r3", t(13));
        assert_eq!(addrs(&s, "someone", 20), ["b:1"], "three reporters: left out for all");
        assert_eq!(addrs(&s, "someone", 75), ["a:1", "b:1"], "forgiven after a while");
        // A report about a peer or content the index does not list is dropped.
        s.suspect("nobody:1", Hash::of(b"X"), "r1", t(80));
        s.suspect("a:1", Hash::of(b"nothing"), "r1", t(80));
        assert_eq!(s.reports, 0, "the old reports expired and no new one was kept");
    }

    #[test]
    fn hosts_and_the_whole_index_are_bounded() {
        let limits = Limits { max_peers_per_host: 2, max_files: 3, ..Limits::default() };
        let mut s = IndexState::new(limits);
        join(&mut s, "10.0.0.1:1", 1);
        join(&mut s, "10.0.0.1:2", 2);
        let third = s.join(key("10.0.0.1:3"), "x".into(), "10.0.0.1:3".into(), None, 3);
        assert_eq!(third, Err(IndexError::HostFull(2)));
        join(&mut s, "10.0.0.2:1", 4);
        let two: Vec<FileInfo> = (0..2).map(|i| file(&format!("f{i}"), &[i])).collect();
        s.publish(&key("10.0.0.1:1"), 1, two.clone(), vec![], true).unwrap();
        assert_eq!(s.publish(&key("10.0.0.2:1"), 4, two, vec![], true), Err(IndexError::FilesFull(3)));
        assert_eq!(s.files_total, 3);
        // Leaving gives the room back.
        s.leave(&key("10.0.0.1:1"), 1);
        assert_eq!(s.files_total, 1);
        join(&mut s, "10.0.0.1:3", 5);
    }
}

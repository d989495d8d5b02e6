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
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_peers: 20_000, max_files_per_peer: 100_000, max_contents: 16, suspect_for: Duration::from_secs(600) }
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
    /// (peer address, content) reported bad, and since when.
    suspects: HashMap<(String, Hash), Time>,
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
        if !self.peers.contains_key(&key) && self.peers.len() >= self.limits.max_peers {
            return Err(IndexError::Full(self.limits.max_peers));
        }
        self.forget_files(&key);
        self.peers.insert(key, Peer { id, addr, fingerprint, session, files: BTreeMap::new() });
        Ok(())
    }

    /// The session of `key` ended: the peer leaves, unless a newer session
    /// announces for it by now.
    pub fn leave(&mut self, key: &PeerKey, session: u64) {
        if self.peers.get(key).is_some_and(|p| p.session == session) {
            self.forget_files(key);
            self.peers.remove(key);
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
        let mut over = false;
        for info in files {
            let Some(peer) = self.peers.get_mut(key) else { break };
            if !peer.files.contains_key(&info.name) && peer.files.len() >= max {
                over = true;
                continue;
            }
            if let Some(old) = peer.files.insert(info.name.clone(), info.clone()) {
                self.unindex(key, &old);
            }
            self.listing.entry((info.name.clone(), info.hash)).or_insert((info.size, 0)).1 += 1;
            self.listed = None;
            self.by_hash.entry(info.hash).or_default().insert((key.clone(), info.name));
        }
        if over {
            return Err(IndexError::TooManyFiles(max));
        }
        Ok(self.peers.get(key).map_or(0, |p| p.files.len()))
    }

    /// A downloader says the peer at `addr` served bad data for `hash`.
    pub fn suspect(&mut self, addr: &str, hash: Hash, now: Time) {
        let forget_after = self.limits.suspect_for;
        self.suspects.retain(|_, since| now.saturating_since(*since) < forget_after);
        // Bounded like the peers: one entry per listed peer and content.
        let listed = self.peers.values().any(|p| p.addr == addr && p.files.values().any(|f| f.hash == hash));
        if listed {
            self.suspects.insert((addr.to_owned(), hash), now);
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
    pub fn locate(&self, file: &FileRef, now: Time) -> Vec<Sources> {
        let holders: Vec<(&PeerKey, &FileName)> = match file {
            FileRef::Hash(h) => self.by_hash.get(h).into_iter().flatten().map(|(k, n)| (k, n)).collect(),
            FileRef::Name(raw) => match FileName::new(raw) {
                Ok(name) => {
                    self.peers.iter().filter_map(|(k, p)| p.files.get_key_value(&name).map(|(n, _)| (k, n))).collect()
                }
                Err(_) => Vec::new(),
            },
        };
        let mut contents: BTreeMap<Hash, Sources> = BTreeMap::new();
        for (key, name) in holders {
            let Some(peer) = self.peers.get(key) else { continue };
            let Some(info) = peer.files.get(name) else { continue };
            if self.is_suspect(&peer.addr, info.hash, now) {
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

    fn is_suspect(&self, addr: &str, hash: Hash, now: Time) -> bool {
        self.suspects
            .get(&(addr.to_owned(), hash))
            .is_some_and(|since| now.saturating_since(*since) < self.limits.suspect_for)
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
        let located = s.locate(&FileRef::Name("a".into()), Time::ZERO);
        assert_eq!(located.len(), 2, "two contents under one name: {located:?}");
        assert!(s.locate(&FileRef::Hash(Hash::of(b"B")), Time::ZERO).is_empty());
        // Leaving forgets everything the peer served.
        s.leave(&key("10.0.0.1:5000"), 1);
        assert_eq!(s.peer_count(), 1);
        assert!(s.locate(&FileRef::Hash(Hash::of(b"A2")), Time::ZERO).is_empty());
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
        let named = s.locate(&FileRef::Name("f0".into()), Time::ZERO);
        assert_eq!(named.len(), 2);
        assert!(s.locate(&FileRef::Name("../etc".into()), Time::ZERO).is_empty());
    }

    #[test]
    fn a_content_reported_bad_is_left_out_for_that_peer_for_a_while() {
        let mut s = IndexState::new(Limits { suspect_for: Duration::from_secs(60), ..Limits::default() });
        join(&mut s, "a:1", 1);
        join(&mut s, "b:1", 2);
        for (addr, session) in [("a:1", 1), ("b:1", 2)] {
            s.publish(&key(addr), session, vec![file("x", b"X")], vec![], true).unwrap();
        }
        let t = |secs| Time::ZERO + Duration::from_secs(secs);
        s.suspect("a:1", Hash::of(b"X"), t(10));
        let found = s.locate(&FileRef::Hash(Hash::of(b"X")), t(20));
        assert_eq!(found[0].peers.iter().map(|p| p.addr.as_str()).collect::<Vec<_>>(), ["b:1"]);
        assert_eq!(s.locate(&FileRef::Hash(Hash::of(b"X")), t(71))[0].peers.len(), 2, "forgiven");
        // A report about a peer or content the index does not list is dropped.
        s.suspect("nobody:1", Hash::of(b"X"), t(80));
        s.suspect("a:1", Hash::of(b"nothing"), t(80));
        assert_eq!(s.suspects.len(), 0, "the old report expired and no new one was kept");
    }
}

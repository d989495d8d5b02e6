//! Manifests to a crowd. A peer with the whole file that a crowd asks for
//! its manifest at once sends it to the first few ([`FIRST`] a window),
//! and points each of the others ([`Message::Elsewhere`]) to
//! peers that got it already and serve it (those that fetch the content
//! from here, subscribed: they subscribe once they have the manifest).
//! Each such peer is named as the first to ask to at most [`PER_HOLDER`]
//! askers a window, so the manifest spreads as a tree, and the seed's
//! uplink carries blocks instead of dozens of copies of the manifest (with
//! 50 downloaders of a 16 MiB file, a tenth of a copy of the file, all of
//! it at the start, when every downloader waits for it).
//!
//! A window is as long as a peer takes to pass the manifest on to its
//! share of askers ([`window_for`]): the tree grows a level a window, so a
//! small file's manifest reaches a crowd of a thousand in a few tenths of
//! a second rather than in a few seconds.
//!
//! An asker that finds no such peer waits for one, at most [`WAIT`]; then
//! it is sent the manifest. This is the sans-IO part: the server asks
//! [`Crowd::decide`] with the time and the peers that have the manifest,
//! and sends, points elsewhere, or waits as told.
//!
//! [`Message::Elsewhere`]: crate::protocol::Message::Elsewhere

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::hash::Hash;
use crate::runtime::Time;

/// Manifests of one content sent a window before askers are pointed
/// elsewhere: a crowd is more askers than this at once.
pub(super) const FIRST: usize = 8;
/// The rate a peer is assumed to pass a manifest on at: a share of a
/// home uplink (8 Mbit/s).
const HOLDER_RATE: u64 = 1_000_000;
/// A round trip's allowance in a window: asking, and the first bytes.
const ROUND: Duration = Duration::from_millis(50);
/// The longest window (a manifest of 128 KiB, the largest up to 16 GiB).
pub(super) const MAX_WINDOW: Duration = Duration::from_secs(1);

/// The window the counts of a content are kept over, for a manifest of
/// `bytes`: a round trip and the time to send [`PER_HOLDER`] copies at
/// [`HOLDER_RATE`] (115 ms for a 4 MiB file, 574 ms for 32 MiB), at most
/// [`MAX_WINDOW`].
pub(super) fn window_for(bytes: u64) -> Duration {
    let sending =
        Duration::from_micros(bytes.saturating_mul(PER_HOLDER as u64).saturating_mul(1_000_000) / HOLDER_RATE);
    (ROUND + sending).min(MAX_WINDOW)
}
/// Askers one peer is named first to in a window.
pub(super) const PER_HOLDER: usize = 8;
/// Peers named in one answer: the asker tries them in turn.
pub(super) const NAMED: usize = 4;
/// How often a waiting asker looks again (a peer that joins wakes it
/// sooner; this is for peers named to their fill until the window moves).
pub(super) const RECHECK: Duration = Duration::from_millis(100);
/// Longest an asker waits for peers to be pointed to before it is sent
/// the manifest.
pub(super) const WAIT: Duration = Duration::from_secs(2);

/// What to do with a manifest request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Send the manifest.
    Send,
    /// Point the asker to these peers.
    Elsewhere(Vec<String>),
    /// Ask again when a peer joins, or a little later.
    Wait,
}

/// The manifests of whole contents this peer sent lately, and the askers
/// it pointed to each peer.
#[derive(Debug, Default)]
pub(super) struct Crowd {
    inner: Mutex<HashMap<Hash, Asked>>,
}

#[derive(Debug)]
struct Asked {
    window: Duration,
    /// When manifests of the content were sent, within the window.
    sent: VecDeque<Time>,
    /// When each peer was named first, within the window.
    named: HashMap<String, VecDeque<Time>>,
}

impl Asked {
    fn new(window: Duration) -> Self {
        Asked { window, sent: VecDeque::new(), named: HashMap::new() }
    }

    fn forget(&mut self, now: Time) {
        let window = self.window;
        let old = |t: &Time| now.saturating_since(*t) >= window;
        while self.sent.front().is_some_and(old) {
            self.sent.pop_front();
        }
        self.named.retain(|_, times| {
            while times.front().is_some_and(old) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    fn is_empty(&self) -> bool {
        self.sent.is_empty() && self.named.is_empty()
    }
}

impl Crowd {
    /// What to do with a request for the manifest of `hash` (of
    /// `manifest_bytes`), whose `holders` (peers that fetch it from here
    /// and serve it) could be named. `may_point` is whether the asker
    /// takes an answer elsewhere and may still wait; if not, it is sent
    /// the manifest.
    pub(super) fn decide(
        &self,
        hash: Hash,
        manifest_bytes: u64,
        may_point: bool,
        holders: &[String],
        now: Time,
    ) -> Decision {
        let mut all = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, a| {
            a.forget(now);
            !a.is_empty()
        });
        let asked = all.entry(hash).or_insert_with(|| Asked::new(window_for(manifest_bytes)));
        if !may_point || asked.sent.len() < FIRST {
            asked.sent.push_back(now);
            return Decision::Send;
        }
        // Those named least in the window first; each at most so often.
        let mut free: Vec<(usize, &String)> = holders
            .iter()
            .map(|h| (asked.named.get(h).map_or(0, VecDeque::len), h))
            .filter(|(n, _)| *n < PER_HOLDER)
            .collect();
        if free.is_empty() {
            return Decision::Wait;
        }
        free.sort();
        free.truncate(NAMED);
        let peers: Vec<String> = free.into_iter().map(|(_, h)| h.clone()).collect();
        asked.named.entry(peers[0].clone()).or_default().push_back(now);
        Decision::Elsewhere(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest whose window is the longest, a second.
    const BIG: u64 = 128 * 1024;

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_window_lasts_as_long_as_passing_a_manifest_on_takes() {
        assert_eq!(window_for(BIG), MAX_WINDOW);
        // 4 MiB: 256 blocks, 8 KiB of manifest, sent 8 times at 1 MB/s.
        assert_eq!(window_for(8 * 1024), Duration::from_micros(50_000 + 65_536));
        assert_eq!(window_for(64 * 1024), Duration::from_micros(50_000 + 524_288));
        assert_eq!(window_for(u64::MAX), MAX_WINDOW);
        // A small manifest's holders are free again sooner.
        let crowd = Crowd::default();
        let hash = Hash::of(b"small");
        let holders = vec!["198.18.0.1:5000".to_string()];
        for _ in 0..FIRST {
            assert_eq!(crowd.decide(hash, 8 * 1024, true, &holders, at(0)), Decision::Send);
        }
        for _ in 0..PER_HOLDER {
            assert!(matches!(crowd.decide(hash, 8 * 1024, true, &holders, at(10)), Decision::Elsewhere(_)));
        }
        assert_eq!(crowd.decide(hash, 8 * 1024, true, &holders, at(100)), Decision::Wait);
        // 116 ms on, a new window: the first few are sent it, and the
        // holder is named again.
        for _ in 0..FIRST {
            assert_eq!(crowd.decide(hash, 8 * 1024, true, &holders, at(130)), Decision::Send);
        }
        assert!(matches!(crowd.decide(hash, 8 * 1024, true, &holders, at(130)), Decision::Elsewhere(_)));
    }

    #[test]
    fn the_first_askers_get_the_manifest_and_the_rest_are_pointed_to_holders_a_few_each() {
        let crowd = Crowd::default();
        let hash = Hash::of(b"image");
        for _ in 0..FIRST {
            assert_eq!(crowd.decide(hash, BIG, true, &[], at(0)), Decision::Send);
        }
        // Nobody has it yet: wait.
        assert_eq!(crowd.decide(hash, BIG, true, &[], at(1)), Decision::Wait);
        // One that takes no answer elsewhere is sent it.
        assert_eq!(crowd.decide(hash, BIG, false, &[], at(1)), Decision::Send);
        let holders: Vec<String> = (1..=3).map(|i| format!("198.18.0.{i}:5000")).collect();
        let mut first: HashMap<String, usize> = HashMap::new();
        for _ in 0..3 * PER_HOLDER {
            let Decision::Elsewhere(peers) = crowd.decide(hash, BIG, true, &holders, at(20)) else {
                panic!("expected peers to point to");
            };
            assert!(!peers.is_empty() && peers.len() <= 3, "{peers:?}");
            *first.entry(peers[0].clone()).or_default() += 1;
        }
        // Spread evenly, and then full until the window passes.
        assert!(first.values().all(|&n| n == PER_HOLDER), "{first:?}");
        assert_eq!(crowd.decide(hash, BIG, true, &holders, at(30)), Decision::Wait);
        // A window later, a new crowd: the first few are sent it again, and
        // the holders are free to be named.
        for _ in 0..FIRST {
            assert_eq!(crowd.decide(hash, BIG, true, &holders, at(1030)), Decision::Send);
        }
        assert!(matches!(crowd.decide(hash, BIG, true, &holders, at(1030)), Decision::Elsewhere(_)));
    }

    #[test]
    fn another_content_and_a_later_asker_get_the_manifest_from_here() {
        let crowd = Crowd::default();
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        let holders = vec!["198.18.0.1:5000".to_string()];
        for _ in 0..FIRST {
            assert_eq!(crowd.decide(a, BIG, true, &holders, at(0)), Decision::Send);
        }
        assert!(matches!(crowd.decide(a, BIG, true, &holders, at(0)), Decision::Elsewhere(_)));
        assert_eq!(crowd.decide(b, BIG, true, &holders, at(0)), Decision::Send);
        // A window later the crowd is gone: sent again, and the map forgot.
        assert_eq!(crowd.decide(a, BIG, true, &holders, at(2000)), Decision::Send);
        let all = crowd.inner.lock().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[&a].sent.len(), 1);
    }
}

//! Who keeps a connection when there are not enough for everyone: a plain
//! state machine, with the time as input and the connections to close as
//! output. The file server and the index share it.
//!
//! A connection is *pending* from the moment it is accepted until its
//! handshakes are done and the gate has said who it is; then it is
//! *established*, and idle (waiting for a request) or busy. Pending
//! connections cost a socket and, over TLS, a handshake: at most so many
//! are taken at once, and the rest wait in the listener's backlog, in the
//! order they came. A pending connection has [`Limits::grace`] to finish
//! its handshakes undisturbed; after that, while others wait, the oldest
//! gives way (a connection from a host no known peer uses first), so
//! connections that never finish a handshake hold up a queue for a moment,
//! never for good. Established connections are bounded in all, strangers
//! per host, and strangers leave a share for known peers (pinned or
//! remembered): a new one takes the place of the connection that has been
//! idle the longest, a stranger's first. One taking part in a swarm
//! (subscribed, waiting for its turn) gives way only once it has been idle
//! for long ([`Limits::swarm_idle_after`]): a crowd larger than the
//! server's places is told "busy" and finds the content elsewhere, instead
//! of pushing out the peers that are trading it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::runtime::Time;

/// A connection's number, given when it arrives.
pub(crate) type ConnId = u64;

/// Bounds on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Established connections at once.
    pub(crate) max_connections: usize,
    /// Of those, how many strangers may never take: kept for known peers.
    pub(crate) reserved: usize,
    /// Established connections of strangers from one host.
    pub(crate) per_host: usize,
    /// Connections not yet through their handshakes, at once.
    pub(crate) max_pending: usize,
    /// How long a pending connection may finish its handshakes before it
    /// gives way to one waiting.
    pub(crate) grace: Duration,
    /// How long a connection subscribed to a swarm waits for a request
    /// before it may give way to a new one.
    pub(crate) swarm_idle_after: Duration,
}

impl Limits {
    /// Limits for a server that may serve `max_connections` at once.
    pub(crate) fn for_connections(max_connections: usize, max_pending: usize, known_peers: bool) -> Self {
        let max_connections = max_connections.max(1);
        let max_pending = max_pending.max(1);
        Self {
            max_connections,
            reserved: if known_peers { max_connections / 4 } else { 0 },
            per_host: (max_connections / 4).max(1),
            max_pending,
            grace: Duration::from_secs(1),
            swarm_idle_after: Duration::from_secs(30),
        }
    }
}

/// Why an established connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Full {
    /// Every connection is busy.
    #[error("serving {0} connections already; try again later")]
    Connections(usize),
    /// The strangers' share is taken by busy connections.
    #[error("serving as many unknown clients as it may ({0}); try again later")]
    Strangers(usize),
    /// This host's share is taken by busy connections.
    #[error("serving {0} connections from this host already; try again later")]
    Host(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    /// Waiting for a request, since then; whether subscribed to a swarm.
    Idle(Time, bool),
    Busy,
}

#[derive(Debug)]
struct Conn {
    host: String,
    arrived: Time,
    phase: Phase,
    known: bool,
}

/// Hosts remembered as ones known peers connect from.
const KNOWN_HOSTS: usize = 4096;

/// The connections of a server, and who gives way to whom.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    conns: BTreeMap<ConnId, Conn>,
    next: ConnId,
    /// Hosts known peers connected from, and when last.
    known_hosts: HashMap<String, Time>,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Self { limits, conns: BTreeMap::new(), next: 0, known_hosts: HashMap::new() }
    }

    /// Whether a connection may be accepted now: `Ok(None)` if there is
    /// room; `Ok(Some(id))` if pending connection `id`, past its grace,
    /// was dropped to make room (close it); or else the time at which one
    /// will be past its grace.
    pub(crate) fn make_room(&mut self, now: Time) -> Result<Option<ConnId>, Time> {
        let pending = |c: &Conn| c.phase == Phase::Pending;
        if self.count(pending) < self.limits.max_pending {
            return Ok(None);
        }
        let grace = self.limits.grace;
        let known = |c: &Conn| self.known_hosts.contains_key(&c.host);
        let over = |c: &Conn| pending(c) && now.saturating_since(c.arrived) >= grace;
        let victim = self.oldest(|c| over(c) && !known(c)).or_else(|| self.oldest(over));
        match victim {
            Some(v) => {
                self.conns.remove(&v);
                Ok(Some(v))
            }
            None => Err(self.conns.values().filter(|c| pending(c)).map(|c| c.arrived + grace).min().unwrap_or(now)),
        }
    }

    /// A connection from `host` was accepted (after [`make_room`]).
    /// Returns its number.
    ///
    /// [`make_room`]: Self::make_room
    pub(crate) fn arrive(&mut self, host: &str, now: Time) -> ConnId {
        self.next += 1;
        let id = self.next;
        self.conns.insert(id, Conn { host: host.to_owned(), arrived: now, phase: Phase::Pending, known: false });
        id
    }

    /// Connection `id` is through its handshakes, known or a stranger.
    /// Returns the idle connections to close to make room for it, or why
    /// there is none (it should then be told so and closed).
    pub(crate) fn establish(&mut self, id: ConnId, known: bool, now: Time) -> Result<Vec<ConnId>, Full> {
        let Some(host) = self.conns.get(&id).map(|c| c.host.clone()) else { return Ok(Vec::new()) };
        let established = |c: &Conn| c.phase != Phase::Pending;
        let mut close = Vec::new();
        let l = self.limits;
        if known {
            self.known_hosts.insert(host.clone(), now);
            if self.known_hosts.len() > KNOWN_HOSTS
                && let Some(old) = self.known_hosts.iter().min_by_key(|(_, t)| **t).map(|(h, _)| h.clone())
            {
                self.known_hosts.remove(&old);
            }
            if self.count(established) >= l.max_connections {
                let victim = self.oldest_idle(now, |c| !c.known).or_else(|| self.oldest_idle(now, |_| true));
                close.push(victim.ok_or(Full::Connections(l.max_connections))?);
            }
        } else {
            let stranger = |c: &Conn| established(c) && !c.known;
            // (A host cap as large as the strangers' share is that share.)
            if l.per_host < l.max_connections - l.reserved
                && self.count(|c| stranger(c) && c.host == host) >= l.per_host
            {
                close.push(self.oldest_idle(now, |c| !c.known && c.host == host).ok_or(Full::Host(l.per_host))?);
            } else if self.count(stranger) >= l.max_connections - l.reserved {
                let full = match l.reserved {
                    0 => Full::Connections(l.max_connections),
                    _ => Full::Strangers(l.max_connections - l.reserved),
                };
                close.push(self.oldest_idle(now, |c| !c.known).ok_or(full)?);
            } else if self.count(established) >= l.max_connections {
                close.push(self.oldest_idle(now, |c| !c.known).ok_or(Full::Connections(l.max_connections))?);
            }
        }
        for v in &close {
            self.conns.remove(v);
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.phase = Phase::Idle(now, false);
            c.known = known;
        }
        Ok(close)
    }

    /// Connection `id` is working on a request: it is not closed for room.
    pub(crate) fn busy(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id).filter(|c| c.phase != Phase::Pending) {
            c.phase = Phase::Busy;
        }
    }

    /// Connection `id` waits for its next request, from `now` (unless it
    /// already did), subscribed to a swarm or not.
    pub(crate) fn idle(&mut self, id: ConnId, now: Time, swarming: bool) {
        if let Some(c) = self.conns.get_mut(&id).filter(|c| c.phase != Phase::Pending) {
            let since = match c.phase {
                Phase::Idle(since, _) => since,
                _ => now,
            };
            c.phase = Phase::Idle(since, swarming);
        }
    }

    /// Connection `id` is gone.
    pub(crate) fn leave(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    /// Connections open now (pending or established).
    pub(crate) fn open(&self) -> usize {
        self.conns.len()
    }

    fn count(&self, f: impl Fn(&Conn) -> bool) -> usize {
        self.conns.values().filter(|c| f(c)).count()
    }

    /// The connection that arrived first among those `f` picks.
    fn oldest(&self, f: impl Fn(&Conn) -> bool) -> Option<ConnId> {
        self.conns.iter().filter(|(_, c)| f(c)).min_by_key(|(id, c)| (c.arrived, **id)).map(|(id, _)| *id)
    }

    /// The connection idle the longest among those `f` picks, if it has
    /// been idle long enough to give way at `now`.
    fn oldest_idle(&self, now: Time, f: impl Fn(&Conn) -> bool) -> Option<ConnId> {
        let l = &self.limits;
        self.conns
            .iter()
            .filter_map(|(id, c)| match c.phase {
                Phase::Idle(since, swarming) if f(c) => {
                    let long = now.saturating_since(since) >= l.swarm_idle_after;
                    (!swarming || long).then_some((since, *id))
                }
                _ => None,
            })
            .min()
            .map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            reserved: 1,
            per_host: 2,
            max_pending: 2,
            grace: Duration::from_secs(1),
            swarm_idle_after: Duration::ZERO,
        }
    }

    #[test]
    fn pending_connections_get_their_grace_then_the_oldest_gives_way() {
        let mut a = Admission::new(limits());
        assert_eq!(a.make_room(t(0)), Ok(None));
        let s1 = a.arrive("silent", t(0));
        let s2 = a.arrive("silent", t(500));
        // Full: the next one waits until the oldest is past its grace.
        assert_eq!(a.make_room(t(600)), Err(t(1000)));
        assert_eq!(a.make_room(t(1000)), Ok(Some(s1)));
        let honest = a.arrive("honest", t(1000));
        assert_eq!(a.establish(honest, false, t(1010)), Ok(vec![]));
        // One finished its handshakes: room again, nobody dropped.
        assert_eq!(a.make_room(t(1010)), Ok(None));
        let _ = s2;
    }

    #[test]
    fn pending_connections_of_hosts_known_peers_use_give_way_last() {
        let mut a = Admission::new(limits());
        let k = a.arrive("lab", t(0));
        assert_eq!(a.establish(k, true, t(1)), Ok(vec![]));
        let lab = a.arrive("lab", t(2));
        let flood = a.arrive("flood", t(3));
        assert_eq!(a.make_room(t(5000)), Ok(Some(flood)), "the stranger's host first, though younger");
        let flood2 = a.arrive("flood", t(5000));
        assert_eq!(a.make_room(t(5500)), Ok(Some(lab)), "then the oldest");
        let _ = flood2;
    }

    #[test]
    fn the_connection_idle_the_longest_makes_room_and_busy_ones_stay() {
        let mut a = Admission::new(Limits { per_host: 8, reserved: 0, ..limits() });
        let mut ids = Vec::new();
        for i in 0..4 {
            let id = a.arrive("h", t(i));
            assert_eq!(a.establish(id, false, t(i)), Ok(vec![]));
            ids.push(id);
        }
        a.busy(ids[0]);
        a.busy(ids[1]);
        a.idle(ids[1], t(10), false);
        let new = a.arrive("h", t(20));
        // ids[2] has been idle since 2 ms: the longest.
        assert_eq!(a.establish(new, false, t(20)), Ok(vec![ids[2]]));
        for &id in &ids {
            a.busy(id);
        }
        a.busy(new);
        let late = a.arrive("h", t(30));
        assert_eq!(a.establish(late, false, t(30)), Err(Full::Connections(4)), "all busy: told so");
        a.leave(late);
        assert_eq!(a.open(), 4);
    }

    #[test]
    fn strangers_leave_a_share_for_known_peers_and_a_host_is_capped() {
        let mut a = Admission::new(limits());
        // Strangers from many hosts fill their share (3 of 4) and stay busy.
        for (i, host) in ["x", "y", "z"].into_iter().enumerate() {
            let id = a.arrive(host, t(i as u64));
            assert_eq!(a.establish(id, false, t(i as u64)), Ok(vec![]));
            a.busy(id);
        }
        let s = a.arrive("w", t(10));
        assert_eq!(a.establish(s, false, t(10)), Err(Full::Strangers(3)));
        a.leave(s);
        let k = a.arrive("lab", t(11));
        assert_eq!(a.establish(k, true, t(11)), Ok(vec![]), "the reserved share");
        // One host may hold only its share of strangers' connections.
        let mut b = Admission::new(Limits { reserved: 0, ..limits() });
        let h1 = b.arrive("h", t(0));
        b.establish(h1, false, t(0)).unwrap();
        let h2 = b.arrive("h", t(1));
        b.establish(h2, false, t(1)).unwrap();
        b.busy(h2);
        let h3 = b.arrive("h", t(2));
        assert_eq!(b.establish(h3, false, t(2)), Ok(vec![h1]), "its own idle one gives way");
        b.busy(h3);
        let h4 = b.arrive("h", t(3));
        assert_eq!(b.establish(h4, false, t(3)), Err(Full::Host(2)));
    }

    #[test]
    fn a_known_peer_takes_the_place_of_an_idle_stranger_when_all_is_full() {
        let mut a = Admission::new(Limits { reserved: 0, per_host: 4, ..limits() });
        for i in 0..4 {
            let id = a.arrive("flood", t(i));
            a.establish(id, false, t(i)).unwrap();
        }
        let k = a.arrive("lab", t(9));
        assert_eq!(a.establish(k, true, t(9)), Ok(vec![1]));
    }

    #[test]
    fn a_connection_in_a_swarm_gives_way_only_once_idle_for_long() {
        let l = Limits { reserved: 0, per_host: 8, swarm_idle_after: Duration::from_secs(30), ..limits() };
        let mut a = Admission::new(l);
        let mut ids = Vec::new();
        for i in 0..4 {
            let id = a.arrive("h", t(i));
            assert_eq!(a.establish(id, false, t(i)), Ok(vec![]));
            ids.push(id);
        }
        // All take part in a swarm: they stay longer, then the one idle
        // the longest gives way. Looking again does not make it younger.
        for &id in &ids {
            a.busy(id);
            a.idle(id, t(1000 + id), true);
            a.idle(id, t(20_000), true);
        }
        let new = a.arrive("h", t(20_000));
        assert_eq!(a.establish(new, false, t(20_000)), Err(Full::Connections(4)));
        a.leave(new);
        let new = a.arrive("h", t(31_001));
        assert_eq!(a.establish(new, false, t(31_001)), Ok(vec![ids[0]]));
    }
}

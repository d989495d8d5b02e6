//! Whom a peer serves a content it is still downloading to, when many
//! fetch it from it: a plain state machine, the time in, the choke state
//! of each subscriber out.
//!
//! Split over every requester, a partial source's uplink gives each a
//! crawl, and a block it has just verified reaches all of them at once,
//! late, with nobody to pass it on sooner. Served a few at a time
//! ([`SLOTS`]), each gets it at a useful rate and can serve it onward
//! while the others still wait: a block spreads as a tree, not a star.
//!
//! * Only subscribers that say they want something ([`Message::Interest`])
//!   hold a slot; one that stops wanting frees its slot at once.
//! * Slots go to those waiting longest since their last turn, newcomers
//!   (never served) first: a newcomer soon has something to trade.
//! * A turn lasts [`TURN`] while others wait; then the slot goes to the
//!   next in line, so that nobody waits for long. A subscriber served
//!   that reads nothing for [`IDLE`] (all it wants from here is asked of
//!   others now) gives its slot to one waiting sooner.
//! * A read of a subscriber out of turn is refused
//!   ([`ErrorCode::Choked`]); one already being sent is finished. Served anyway,
//!   such reads shared the uplink with those whose turn it was, and at a
//!   source that the whole crowd asked first they crawled: a 1,000-peer
//!   crowd's last downloader waited 18 s there for blocks that twenty
//!   other peers had.
//!
//! Subscribers without [`CAP_CHOKE`](crate::protocol::CAP_CHOKE) are not
//! members: they are served as they ask.
//!
//! [`Message::Interest`]: crate::protocol::Message::Interest
//! [`ErrorCode::Choked`]: crate::protocol::ErrorCode::Choked

use std::collections::BTreeMap;
use std::time::Duration;

use super::admission::ConnId;
use crate::runtime::Time;

/// Subscribers served at once. Since the turns hold (reads out of turn
/// are refused), fewer slots starve a swarm: 4 took a 50-peer crowd
/// 18.5 s where 8 took 16.2 s (simnet, `scenarios/flash_crowd.ron`).
pub(super) const SLOTS: usize = 8;
/// How long a subscriber is served while others wait.
pub(super) const TURN: Duration = Duration::from_secs(4);
/// How long a subscriber served may read nothing before its turn ends,
/// while others wait.
pub(super) const IDLE: Duration = Duration::from_millis(500);

/// The subscribers of one content that take turns.
#[derive(Debug, Default)]
pub(super) struct Choker {
    members: BTreeMap<ConnId, Member>,
    /// How many times someone was choked or unchoked.
    changes: u64,
    /// When a turn ends next while someone waits for a slot ([`deadline`]),
    /// as of the last decision: every change that could move it decides
    /// again, so a tick before then has nothing to do (it is asked at
    /// every subscriber's news, and a decision looks at every member).
    ///
    /// [`deadline`]: Choker::deadline
    wake: Option<Time>,
}

#[derive(Debug, Default)]
struct Member {
    interested: bool,
    /// Served since then.
    since: Option<Time>,
    /// When its last turn ended (never served: none, first in line).
    last_turn: Option<Time>,
    /// What it was last told (none yet: it is told once it joins).
    told: Option<bool>,
    /// Its reads being answered now.
    reading: u32,
    /// When it last started or ended a read.
    last_read: Option<Time>,
}

impl Member {
    /// Whether it waits for a turn: interested, and not served.
    fn waits(&self) -> bool {
        self.interested && self.since.is_none()
    }

    /// Since when it has been served and read nothing, if it is.
    fn idle_from(&self) -> Option<Time> {
        let since = self.since?;
        (self.reading == 0).then(|| self.last_read.map_or(since, |r| r.max(since)))
    }

    /// When its turn ends if others wait, as of now.
    fn ends(&self) -> Option<Time> {
        let turn = self.since? + TURN;
        Some(self.idle_from().map_or(turn, |idle| turn.min(idle + IDLE)))
    }
}

impl Choker {
    /// Subscriber `conn` joins, choked and not interested until it says.
    pub(super) fn join(&mut self, conn: ConnId) {
        self.members.entry(conn).or_default();
    }

    /// Subscriber `conn` left.
    pub(super) fn leave(&mut self, conn: ConnId, now: Time) {
        if self.members.remove(&conn).is_some() {
            self.decide(now);
        }
    }

    /// Whether `conn` is a member.
    pub(super) fn has(&self, conn: ConnId) -> bool {
        self.members.contains_key(&conn)
    }

    /// `conn` wants something (or nothing more) from this peer.
    pub(super) fn interest(&mut self, conn: ConnId, interested: bool, now: Time) {
        let Some(m) = self.members.get_mut(&conn) else { return };
        if m.interested == interested {
            return;
        }
        m.interested = interested;
        self.decide(now);
    }

    /// Ends the turns that are over.
    pub(super) fn tick(&mut self, now: Time) {
        if self.wake.is_some_and(|w| now >= w) {
            self.decide(now);
        }
    }

    /// When a turn ends next, if anyone waits for a slot.
    pub(super) fn deadline(&self) -> Option<Time> {
        self.wake
    }

    /// How many times someone was choked or unchoked so far.
    pub(super) fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether `conn` is choked, if it has not been told yet.
    pub(super) fn take(&mut self, conn: ConnId) -> Option<bool> {
        let m = self.members.get_mut(&conn)?;
        let choked = m.since.is_none();
        if m.told == Some(choked) {
            return None;
        }
        m.told = Some(choked);
        Some(choked)
    }

    /// Whether `conn` waits for a turn: interested, and not served.
    pub(super) fn waits(&self, conn: ConnId) -> bool {
        self.members.get(&conn).is_some_and(Member::waits)
    }

    /// `conn` starts a read (`started`) or is done with one.
    pub(super) fn read(&mut self, conn: ConnId, started: bool, now: Time) {
        let Some(m) = self.members.get_mut(&conn) else { return };
        m.reading = if started { m.reading + 1 } else { m.reading.saturating_sub(1) };
        m.last_read = Some(now);
        // Idle from now on: looked at again then, if anyone waits.
        if m.reading == 0 && m.since.is_some() {
            self.wake = self.wake.map(|w| w.min(now + IDLE));
        }
    }

    /// Whether a read of `conn` is to be refused: it is a member, not
    /// served now. It is then as good as told so (the refusal says it),
    /// so that it is told when it is served again.
    pub(super) fn refuses(&mut self, conn: ConnId, now: Time) -> bool {
        self.tick(now);
        let Some(m) = self.members.get_mut(&conn) else { return false };
        if m.since.is_some() {
            return false;
        }
        m.told = Some(true);
        true
    }

    /// Frees the slots of those no longer interested or whose turn is
    /// over (while others wait), then fills the free slots in turn.
    /// (And notes when to look again.)
    fn decide(&mut self, now: Time) {
        self.fill(now);
        self.wake = if self.members.values().any(Member::waits) {
            self.members.values().filter_map(|m| m.ends()).min()
        } else {
            None
        };
    }

    /// The decision itself.
    fn fill(&mut self, now: Time) {
        for m in self.members.values_mut() {
            if !m.interested && m.since.is_some() {
                m.since = None;
                m.last_turn = Some(now);
                self.changes += 1;
            }
        }
        // Those whose turn ends now wait for the next round.
        let mut ended = Vec::new();
        loop {
            let served = self.members.values().filter(|m| m.since.is_some()).count();
            // The one waiting longest: never served first, then by the end
            // of its last turn, then by connection (the oldest).
            let next = self
                .members
                .iter()
                .filter(|(c, m)| m.waits() && !ended.contains(*c))
                .min_by_key(|&(&c, m)| (m.last_turn, c))
                .map(|(&c, _)| c);
            let Some(next) = next else { return };
            if served >= SLOTS {
                // An idle one, or a turn that is over, makes room.
                let over = self
                    .members
                    .iter()
                    .filter_map(|(&c, m)| {
                        let since = m.since?;
                        match m.idle_from() {
                            Some(idle) if now >= idle + IDLE => Some((0, idle, c)),
                            _ if now >= since + TURN => Some((1, since, c)),
                            _ => None,
                        }
                    })
                    .min();
                let Some((_, _, c)) = over else { return };
                if let Some(m) = self.members.get_mut(&c) {
                    m.since = None;
                    m.last_turn = Some(now);
                }
                ended.push(c);
                self.changes += 1;
            }
            if let Some(m) = self.members.get_mut(&next) {
                m.since = Some(now);
            }
            self.changes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(c: &mut Choker, conns: &[ConnId]) -> Vec<(ConnId, bool)> {
        conns.iter().filter_map(|&k| c.take(k).map(|x| (k, x))).collect()
    }

    /// `conns` join, each wanting something.
    fn interested(c: &mut Choker, conns: &[ConnId], now: Time) {
        for &k in conns {
            c.join(k);
            c.interest(k, true, now);
        }
    }

    #[test]
    fn a_few_interested_subscribers_are_served_and_the_rest_wait_their_turn() {
        let mut c = Choker::default();
        let t0 = Time::ZERO;
        let n = SLOTS as ConnId;
        let all: Vec<ConnId> = (1..=n + 2).collect();
        for &k in &all {
            c.join(k);
        }
        // Nobody is interested yet: all are told they are choked, once.
        assert_eq!(told(&mut c, &all), all.iter().map(|&k| (k, true)).collect::<Vec<_>>());
        assert!(told(&mut c, &all).is_empty());
        assert_eq!(c.deadline(), None);
        for &k in &all {
            c.interest(k, true, t0);
        }
        // The first SLOTS (by connection) are served, and read; two wait.
        assert_eq!(told(&mut c, &all), (1..=n).map(|k| (k, false)).collect::<Vec<_>>());
        for k in 1..=n {
            c.read(k, true, t0);
        }
        // Looked at once they could be idle: they read, so they stay.
        c.tick(t0 + IDLE);
        assert!(told(&mut c, &all).is_empty());
        assert_eq!(c.deadline(), Some(t0 + TURN));
        // One loses interest: the next in line gets its slot at once.
        let t1 = t0 + IDLE + Duration::from_millis(300);
        c.interest(2, false, t1);
        assert_eq!(told(&mut c, &all), [(2, true), (n + 1, false)]);
        c.read(n + 1, true, t1);
        // The turns of the first ones end; those waiting go first.
        let t2 = t0 + TURN;
        c.tick(t2);
        assert_eq!(told(&mut c, &all), [(1, true), (n + 2, false)]);
        c.read(n + 2, true, t2);
        // Nobody else waits: the rest keep their slots past their turn.
        c.tick(t2 + TURN);
        assert_eq!(told(&mut c, &all), [(1, false), (3, true)]);
        c.interest(1, false, t2 + TURN);
        c.interest(n + 1, false, t2 + TURN);
        c.interest(n + 2, false, t2 + TURN);
        assert_eq!(told(&mut c, &all), [(1, true), (3, false), (n + 1, true), (n + 2, true)]);
        assert_eq!(c.deadline(), None, "nobody waits");
    }

    #[test]
    fn a_newcomer_goes_first_and_leaving_frees_a_slot() {
        let mut c = Choker::default();
        let t0 = Time::ZERO;
        let n = SLOTS as ConnId;
        interested(&mut c, &(1..=n + 1).collect::<Vec<_>>(), t0);
        for k in 1..=n {
            c.read(k, true, t0);
        }
        let all: Vec<ConnId> = (1..=n + 3).collect();
        let _ = told(&mut c, &all);
        let t1 = t0 + TURN;
        c.tick(t1);
        // 1 made room for the one waiting; nobody else waits, so the
        // others stay.
        assert_eq!(told(&mut c, &all), [(1, true), (n + 1, false)]);
        c.read(n + 1, true, t1);
        // A newcomer takes the slot of the one served longest, and 1 (who
        // waits) that of the next.
        let t2 = t1 + Duration::from_millis(100);
        c.join(n + 3);
        c.interest(n + 3, true, t2);
        assert_eq!(told(&mut c, &all), [(1, false), (2, true), (3, true), (n + 3, false)]);
        // Leaving frees a slot for the one waiting longest (2), and 3 takes
        // that of 4, whose turn is over too.
        c.leave(n + 3, t2);
        assert!(!c.has(n + 3));
        assert_eq!(told(&mut c, &all), [(2, false), (3, false), (4, true)]);
        assert_eq!(c.deadline(), Some(t0 + TURN), "4 waits; the turns of 5 and on are over");
    }

    #[test]
    fn a_subscriber_served_that_reads_nothing_gives_its_turn_to_one_waiting() {
        let mut c = Choker::default();
        let t0 = Time::ZERO;
        let n = SLOTS as ConnId;
        let all: Vec<ConnId> = (1..=n + 1).collect();
        interested(&mut c, &all, t0);
        let _ = told(&mut c, &all);
        // All served read but 1.
        for k in 2..=n {
            c.read(k, true, t0);
        }
        assert_eq!(c.deadline(), Some(t0 + IDLE));
        c.tick(t0 + (IDLE - Duration::from_millis(1)));
        assert!(told(&mut c, &all).is_empty(), "not idle for long yet");
        let t1 = t0 + IDLE;
        c.tick(t1);
        assert_eq!(told(&mut c, &all), [(1, true), (n + 1, false)]);
        c.read(n + 1, true, t1);
        // A read ends and none follows: idle from then.
        c.read(2, false, t1);
        assert_eq!(c.deadline(), Some(t1 + IDLE));
        c.tick(t1 + IDLE / 2);
        assert!(told(&mut c, &all).is_empty());
        c.tick(t1 + IDLE);
        assert_eq!(told(&mut c, &all), [(1, false), (2, true)]);
    }

    #[test]
    fn a_read_out_of_turn_is_refused_and_the_next_turn_is_told() {
        let mut c = Choker::default();
        let t0 = Time::ZERO;
        let all: Vec<ConnId> = (1..=SLOTS as ConnId + 1).collect();
        interested(&mut c, &all, t0);
        let last = *all.last().expect("members");
        let _ = told(&mut c, &all);
        assert!(!c.refuses(1, t0), "served now");
        assert!(c.refuses(last, t0), "waits for a slot");
        assert!(!c.refuses(99, t0), "not a member: served as it asks");
        // The turn of 1 ends, and before it hears, it reads again: refused,
        // and that refusal tells it.
        let t1 = t0 + TURN;
        assert!(c.refuses(1, t1));
        assert_eq!(c.take(1), None, "told by the refusal");
        assert_eq!(c.take(last), Some(false));
        // Its next turn is told, though it never heard a choke.
        c.tick(t1 + TURN);
        assert_eq!(c.take(1), Some(false));
        assert!(!c.refuses(1, t1 + TURN));
    }
}

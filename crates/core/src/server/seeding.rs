//! How a peer with a whole file spreads its uplink over a crowd fetching
//! it. A plain state machine: the time comes in, pieces to show come out.
//!
//! Alone, a subscriber is told the peer has every block. Once several
//! fetch the same file, each newcomer is *shown* the file a piece at a
//! time ([`Message::Have`](crate::protocol::Message::Have) of the piece's
//! blocks) instead, so that:
//!
//! * the uplink goes to a few pieces at a time, each fetched at a useful
//!   rate, rather than to every subscriber at a crawl; the subscribers
//!   take turns, newcomers first, so that a newcomer soon has a piece to
//!   trade, but in at most [`NEWCOMER_SLOTS`] of the slots, so that a
//!   crowd that keeps arriving does not starve those that came first;
//! * [`SLOTS`] pieces at most wait to be asked for. A piece asked for
//!   frees its slot at once: the next in line is shown one while it is
//!   still being sent, so the uplink always has the next piece asked for
//!   when one is done (waiting for the answer first leaves the uplink idle
//!   for a round trip and more per piece, most of it on a loaded link).
//!   [`MAX_OPEN`] pieces at most are shown and not fetched yet;
//! * each piece shown is the one shown least so far: the uplink puts new
//!   pieces into the swarm, and a second copy of a piece leaves only once
//!   every piece has left once, and only while fewer than [`REPLICATED`]
//!   subscribers said they have it (the others pass it on; on mixed
//!   links, a seed that kept showing every piece again sent 1.6 copies);
//! * a piece read in parts, in any order, is fetched once all its blocks
//!   are sent;
//! * a piece not asked for within [`ASK_WITHIN`] (the subscriber got it
//!   from another peer) or not fetched within [`SHOWN_FOR`] (it is slow)
//!   is no longer waited for;
//! * a piece read by another subscriber (one told of every block before
//!   the crowd formed) counts as shown, so that the pieces shown next are
//!   new ones;
//! * a subscriber that says which blocks it got from other peers
//!   ([`Message::Got`](crate::protocol::Message::Got)) is not shown the
//!   pieces it has: a piece shown to it and not asked for yet frees its
//!   slot at once when it gets it elsewhere, and the next piece shown to
//!   it is one it lacks.
//!
//! Anything may still be read from the peer: showing pieces steers the
//! subscribers that swarm, it does not refuse anyone.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use super::admission::ConnId;
use crate::bitfield::Bitfield;
use crate::runtime::Time;

/// The bytes of a piece: what is shown at once, and asked for in one
/// request. 128 KiB leave a 20 Mbit/s uplink in 50 ms, so that each
/// newcomer soon has a piece to trade, and 6 of them waiting keep the
/// uplink busy through a round trip and the subscribers' news delay.
pub(super) const PIECE: u64 = 128 << 10;
/// Pieces shown and not asked for yet, at most.
pub(super) const SLOTS: usize = 6;
/// Pieces shown and not fetched yet, at most: what the uplink has queued
/// (1.5 MiB: most of a second of a 20 Mbit/s uplink).
pub(super) const MAX_OPEN: usize = 2 * SLOTS;
/// Pieces one subscriber may have open at once: one being fetched, the
/// next asked for.
const PER_SUBSCRIBER: usize = 2;
/// Of the pieces waiting to be asked for, how many may be shown to
/// newcomers (shown nothing yet): the others go to those waiting longest.
/// With every slot for newcomers, a crowd that keeps arriving (a thousand
/// over a few seconds) kept the first ones waiting for a second piece
/// until the last had a first: they finished last, long after the rest.
pub(super) const NEWCOMER_SLOTS: usize = 2;
/// How long a shown piece holds its slot unless asked for: the
/// subscriber asks at once if it lacks the piece (it may have it from
/// another peer by now).
pub(super) const ASK_WITHIN: Duration = Duration::from_millis(500);
/// How long a piece asked for holds its slot at most.
pub(super) const SHOWN_FOR: Duration = Duration::from_secs(5);
/// A piece shown already is shown again only while fewer subscribers
/// than this said they have it whole: the others trade the rest.
pub(super) const REPLICATED: u32 = 2;
/// A subscriber that said it got nothing new and was shown nothing for
/// this long is shown any piece it lacks: what it needs may be held only
/// by peers that do not pass it on (gone, lying, or full).
pub(super) const STARVED: Duration = Duration::from_secs(1);

/// The crowd fetching one whole file from this peer.
#[derive(Debug)]
pub(super) struct Seeding {
    blocks: u64,
    piece_blocks: u64,
    /// How many times each piece was shown.
    shown: Vec<u32>,
    /// Where the search for the next piece starts (pieces are shown in
    /// turn among equals).
    cursor: usize,
    /// Subscribers in turn: newcomers first, then the one shown a piece
    /// longest ago.
    turn: VecDeque<ConnId>,
    /// The pieces shown to each, or that it has.
    seen: HashMap<ConnId, Bitfield>,
    /// The blocks each said it has (those that say).
    held: HashMap<ConnId, Bitfield>,
    /// How many subscribers said they have each piece whole.
    whole: Vec<u32>,
    /// When each last said it got something new, or was shown a piece.
    news: HashMap<ConnId, Time>,
    /// When to look again for subscribers that starve.
    retry: Option<Time>,
    /// Pieces shown and not fetched yet.
    open: Vec<Open>,
    /// Blocks to tell each subscriber of.
    tell: HashMap<ConnId, Vec<u32>>,
    /// How many pieces were shown so far.
    shows: u64,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    conn: ConnId,
    piece: u64,
    since: Time,
    asked: bool,
    /// Shown to a newcomer.
    newcomer: bool,
    /// Its blocks sent so far.
    sent: u64,
}

impl Open {
    fn until(&self) -> Time {
        self.since + if self.asked { SHOWN_FOR } else { ASK_WITHIN }
    }
}

impl Seeding {
    /// A file of `blocks` blocks, shown in pieces of `piece_blocks`.
    pub(super) fn new(blocks: u64, piece_blocks: u64) -> Self {
        let piece_blocks = piece_blocks.max(1);
        let pieces = blocks.div_ceil(piece_blocks).max(1);
        Self {
            blocks,
            piece_blocks,
            shown: vec![0; pieces as usize],
            cursor: 0,
            turn: VecDeque::new(),
            seen: HashMap::new(),
            held: HashMap::new(),
            whole: vec![0; pieces as usize],
            news: HashMap::new(),
            retry: None,
            open: Vec::new(),
            tell: HashMap::new(),
            shows: 0,
        }
    }

    fn pieces(&self) -> u64 {
        self.shown.len() as u64
    }

    /// Subscriber `conn` joins the crowd.
    pub(super) fn join(&mut self, conn: ConnId, now: Time) {
        if self.seen.contains_key(&conn) {
            return;
        }
        self.seen.insert(conn, Bitfield::new(self.pieces()));
        self.news.insert(conn, now);
        // A newcomer first: it has nothing to trade yet.
        self.turn.push_front(conn);
        self.fill(now);
    }

    /// Subscriber `conn` left.
    pub(super) fn leave(&mut self, conn: ConnId, now: Time) {
        self.seen.remove(&conn);
        self.news.remove(&conn);
        if let Some(held) = self.held.remove(&conn) {
            let (n, pb) = (self.blocks, self.piece_blocks);
            for (p, w) in self.whole.iter_mut().enumerate() {
                let p = p as u64;
                if piece_range(p, pb, n).all(|b| held.get(b)) {
                    *w = w.saturating_sub(1);
                }
            }
        }
        self.tell.remove(&conn);
        self.turn.retain(|&c| c != conn);
        self.open.retain(|o| o.conn != conn);
        self.fill(now);
    }

    /// Whether anyone is in the crowd.
    pub(super) fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// `conn` asked for `blocks`: a piece of them shown to it stays open
    /// until fetched (or [`SHOWN_FOR`]), and its slot goes to the next in
    /// line.
    pub(super) fn asked(&mut self, conn: ConnId, blocks: Range<u64>, now: Time) {
        let pb = self.piece_blocks;
        let mut any = false;
        for o in self.open.iter_mut().filter(|o| o.conn == conn && !o.asked && overlaps(o.piece, pb, &blocks)) {
            o.asked = true;
            any = true;
        }
        if any {
            self.fill(now);
        }
    }

    /// How many pieces were shown so far: when it changes, subscribers
    /// may have pieces to be told of.
    pub(super) fn shows(&self) -> u64 {
        self.shows
    }

    /// A read of `blocks` for `conn` was answered: a piece of them shown
    /// to `conn` is fetched; read by one not shown it, a piece counts as
    /// shown.
    pub(super) fn served(&mut self, conn: ConnId, blocks: Range<u64>, now: Time) {
        let pb = self.piece_blocks;
        // Fetched once all its blocks are sent (a piece may be read in
        // parts, in any order); until then it holds its place in what the
        // uplink has queued.
        let (before, n) = (self.open.len(), self.blocks);
        let mut shown = false;
        for o in self.open.iter_mut().filter(|o| o.conn == conn) {
            let piece = piece_range(o.piece, pb, n);
            let both = piece.start.max(blocks.start)..piece.end.min(blocks.end);
            if both.start < both.end {
                shown = true;
                o.sent += both.end - both.start;
            }
        }
        self.open.retain(|o| {
            let piece = piece_range(o.piece, pb, n);
            o.sent < piece.end - piece.start
        });
        if self.open.len() != before {
            self.fill(now);
        }
        if shown {
            return;
        }
        let pieces = blocks.start / pb..blocks.end.div_ceil(pb).min(self.pieces());
        for p in pieces {
            let seen = self.seen.get(&conn).is_some_and(|s| s.get(p));
            if !seen {
                self.shown[p as usize] += 1;
            }
        }
    }

    /// `conn` has `blocks` (it got them from other peers): the pieces it
    /// has whole are not shown to it, and one shown to it and not asked
    /// for yet frees its slot.
    pub(super) fn got(&mut self, conn: ConnId, blocks: &[u32], now: Time) {
        let (n, pb) = (self.blocks, self.piece_blocks);
        let Some(seen) = self.seen.get_mut(&conn) else { return };
        let held = self.held.entry(conn).or_insert_with(|| Bitfield::new(n));
        let mut pieces: Vec<u64> = Vec::new();
        for &b in blocks {
            let b = u64::from(b);
            if b < n && !held.get(b) {
                held.set(b);
                pieces.push(b / pb);
            }
        }
        if !pieces.is_empty() {
            self.news.insert(conn, now);
        }
        // Blocks may come in any order: each piece once.
        pieces.sort_unstable();
        pieces.dedup();
        let mut whole = Vec::new();
        for p in pieces {
            if piece_range(p, pb, n).all(|b| held.get(b)) {
                seen.set(p);
                whole.push(p);
                if let Some(w) = self.whole.get_mut(p as usize) {
                    *w += 1;
                }
            }
        }
        let before = self.open.len();
        self.open.retain(|o| !(o.conn == conn && whole.contains(&o.piece)));
        if self.open.len() != before {
            self.fill(now);
        }
    }

    /// Gives up on pieces not asked for, or not fetched, in time.
    /// Also shows pieces to subscribers that starve.
    pub(super) fn tick(&mut self, now: Time) {
        let before = self.open.len();
        self.open.retain(|o| now < o.until());
        let retry = self.retry.is_some_and(|t| t <= now);
        if retry {
            self.retry = None;
        }
        if self.open.len() != before || retry {
            self.fill(now);
        }
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub(super) fn deadline(&self) -> Option<Time> {
        self.open.iter().map(Open::until).chain(self.retry).min()
    }

    /// The blocks to tell `conn` of now.
    pub(super) fn take(&mut self, conn: ConnId) -> Vec<u32> {
        self.tell.remove(&conn).unwrap_or_default()
    }

    /// Shows pieces while slots are free and someone has a piece left to
    /// be shown.
    fn fill(&mut self, now: Time) {
        loop {
            let waiting = self.open.iter().filter(|o| !o.asked).count();
            if waiting >= SLOTS || self.open.len() >= MAX_OPEN {
                return;
            }
            // The first in turn with no piece waiting to be asked for, room
            // for one more, and one left to be shown; it goes to the back of
            // the line. A newcomer only while newcomers hold few slots: the
            // others get their first blocks from those that came before.
            let newcomers = self.open.iter().filter(|o| !o.asked && o.newcomer).count();
            let next = self.next_in_turn(newcomers >= NEWCOMER_SLOTS, now);
            let Some((i, conn, piece)) = next else {
                // Slots are free: some may starve by then.
                self.retry.get_or_insert(now + STARVED);
                return;
            };
            let newcomer = self.is_newcomer(conn);
            self.turn.remove(i);
            self.turn.push_back(conn);
            self.shown[piece as usize] += 1;
            self.shows += 1;
            self.cursor = (piece as usize + 1) % self.shown.len();
            if let Some(seen) = self.seen.get_mut(&conn) {
                seen.set(piece);
            }
            self.news.insert(conn, now);
            self.open.push(Open { conn, piece, since: now, asked: false, newcomer, sent: 0 });
            let blocks = piece_range(piece, self.piece_blocks, self.blocks);
            self.tell.entry(conn).or_default().extend(blocks.map(|b| b as u32));
        }
    }

    /// The first in turn (skipping newcomers if `no_newcomer`) with no
    /// piece waiting to be asked for, room for one more, and a piece left
    /// to be shown: its place in line, and that piece.
    fn next_in_turn(&self, no_newcomer: bool, now: Time) -> Option<(usize, ConnId, u64)> {
        self.turn.iter().enumerate().find_map(|(i, &c)| {
            if no_newcomer && self.is_newcomer(c) {
                return None;
            }
            let (mut open, mut waits) = (0, false);
            for o in self.open.iter().filter(|o| o.conn == c) {
                open += 1;
                waits |= !o.asked;
            }
            if waits || open >= PER_SUBSCRIBER {
                return None;
            }
            self.least_shown(c, now).map(|p| (i, c, p))
        })
    }

    /// Whether `conn` was shown nothing and has no piece whole.
    fn is_newcomer(&self, conn: ConnId) -> bool {
        self.seen.get(&conn).is_some_and(|s| s.ones() == 0)
    }

    /// The piece shown least that `conn` has not been shown, the first
    /// from the cursor among equals; one shown already only while few said
    /// they have it. To one that starves: any piece it lacks.
    fn least_shown(&self, conn: ConnId, now: Time) -> Option<u64> {
        let seen = self.seen.get(&conn)?;
        let starved = self.news.get(&conn).is_some_and(|&t| now.saturating_since(t) >= STARVED);
        let (n, pb) = (self.shown.len(), self.piece_blocks);
        // `seen` covers the pieces shown to it (open ones too); one that
        // starves may be shown again what it was shown and did not get.
        let lacks = |p: u64| match self.held.get(&conn) {
            Some(held) if starved => {
                !piece_range(p, pb, self.blocks).all(|b| held.get(b))
                    && !self.open.iter().any(|o| o.conn == conn && o.piece == p)
            }
            _ => !seen.get(p),
        };
        (0..n)
            .map(|i| (self.cursor + i) % n)
            .filter(|&p| lacks(p as u64) && (starved || self.shown[p] == 0 || self.whole[p] < REPLICATED))
            .min_by_key(|&p| self.shown[p])
            .map(|p| p as u64)
    }
}

/// The blocks of piece `p`, of `pb` blocks, in a file of `n` blocks.
fn piece_range(p: u64, pb: u64, n: u64) -> Range<u64> {
    p * pb..((p + 1) * pb).min(n)
}

/// Whether piece `p` (of `pb` blocks) overlaps `blocks`.
fn overlaps(p: u64, pb: u64, blocks: &Range<u64>) -> bool {
    p * pb < blocks.end && blocks.start < (p + 1) * pb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    fn pieces_told(s: &mut Seeding, conn: ConnId) -> Vec<u64> {
        let mut p: Vec<u64> = s.take(conn).iter().map(|&b| u64::from(b) / s.piece_blocks).collect();
        p.dedup();
        p
    }

    #[test]
    fn a_few_subscribers_at_a_time_each_shown_a_new_piece() {
        // 2 x SLOTS pieces of 4 blocks; SLOTS + 2 subscribers.
        let (pieces, n) = (2 * SLOTS as u64, SLOTS as u64 + 2);
        let mut s = Seeding::new(4 * pieces, 4);
        for c in 1..=n {
            s.join(c, t(0));
        }
        let first: Vec<Vec<u64>> = (1..=n).map(|c| pieces_told(&mut s, c)).collect();
        let want: Vec<Vec<u64>> =
            (1..=n).map(|c| if c <= NEWCOMER_SLOTS as u64 { vec![c - 1] } else { vec![] }).collect();
        assert_eq!(first, want, "newcomers take a few slots at a time, in turn");
        // 1 and 2 ask for theirs: the newest newcomers are shown the next
        // pieces, and the slots newcomers may not take go to 1 and 2, who
        // came first, rather than to the others still waiting for a first.
        s.asked(1, 0..4, t(10));
        s.asked(2, 4..8, t(10));
        let told: Vec<(ConnId, Vec<u64>)> = [n, n - 1, 1, 2].into_iter().map(|c| (c, pieces_told(&mut s, c))).collect();
        assert_eq!(told, [(n, vec![2]), (n - 1, vec![4]), (1, vec![3]), (2, vec![5])]);
        assert!((3..n - 1).all(|c| pieces_told(&mut s, c).is_empty()));
        // n fetched its piece: the newest newcomer left is shown the next.
        s.served(n, 8..12, t(100));
        assert_eq!(pieces_told(&mut s, n - 2), [6]);
        // Every piece leaves once before any leaves twice.
        let mut now = 100;
        while s.shown.contains(&0) {
            now += 100;
            let Some(&Open { conn: c, piece: p, .. }) = s.open.first() else { panic!("nothing open") };
            s.served(c, p * 4..p * 4 + 4, t(now));
        }
        assert!(s.shown.iter().all(|&n| n == 1), "{:?}", s.shown);
    }

    #[test]
    fn a_piece_not_asked_for_or_not_fetched_in_time_frees_its_slot() {
        let mut s = Seeding::new(12, 4);
        s.join(1, t(0));
        s.join(2, t(0));
        assert_eq!(pieces_told(&mut s, 1), [0]);
        assert_eq!(pieces_told(&mut s, 2), [1]);
        assert_eq!(s.deadline(), Some(t(0) + ASK_WITHIN));
        // 1 asks at once: while its piece is sent, the next in line with
        // room is shown one (1 itself: 2 still has one to ask for).
        s.asked(1, 0..4, t(100));
        assert_eq!(pieces_told(&mut s, 1), [2]);
        // 2 does not ask (it has piece 1 from elsewhere): once ASK_WITHIN
        // is over it is shown another.
        s.tick(t(0) + ASK_WITHIN);
        assert_eq!(pieces_told(&mut s, 2), [0], "2 is shown the next piece");
        assert!(pieces_told(&mut s, 1).is_empty());
        // 1 never fetches piece 0 (nor asks for piece 2): after SHOWN_FOR
        // both are given up, and each is shown the piece it was not shown.
        s.tick(t(100) + SHOWN_FOR);
        assert!(s.open.iter().all(|o| o.since > t(100)), "{:?}", s.open);
        assert_eq!(pieces_told(&mut s, 1), [1]);
        assert_eq!(pieces_told(&mut s, 2), [2]);
        s.leave(1, t(10_000));
        s.leave(2, t(10_000));
        assert!(s.is_empty());
    }

    #[test]
    fn a_piece_asked_for_lets_the_next_in_line_be_shown_while_it_is_sent() {
        // 40 pieces of one block; 12 subscribers.
        let mut s = Seeding::new(40, 1);
        for c in 1..=12 {
            s.join(c, t(0));
        }
        let told = |s: &mut Seeding| (1..=12).filter(|&c| !pieces_told(s, c).is_empty()).count();
        assert_eq!(told(&mut s), NEWCOMER_SLOTS, "newcomers take a few slots");
        // Each asks for its piece at once: the uplink keeps the next ones
        // asked for before these are sent, up to MAX_OPEN.
        for round in 1..=MAX_OPEN as u64 {
            let waiting: Vec<Open> = s.open.iter().filter(|o| !o.asked).copied().collect();
            for o in waiting {
                s.asked(o.conn, o.piece..o.piece + 1, t(10 * round));
            }
        }
        assert_eq!(s.open.len(), MAX_OPEN, "no more than MAX_OPEN at once");
        assert_eq!(s.open.iter().filter(|o| !o.asked).count(), 0);
        assert!(told(&mut s) > 0);
        // One is sent: one more is shown, to a subscriber that had none.
        let o = s.open[0];
        s.served(o.conn, o.piece..o.piece + 1, t(100));
        let open: Vec<ConnId> = s.open.iter().map(|o| o.conn).collect();
        let new = s.open.last().map(|o| o.conn);
        assert_eq!(open.len(), MAX_OPEN);
        assert!(new.is_some_and(|c| open.iter().filter(|&&x| x == c).count() == 1));
        // New pieces only: none has left twice.
        assert!(s.shown.iter().all(|&n| n <= 1), "{:?}", s.shown);
    }

    #[test]
    fn a_piece_read_in_parts_holds_its_place_until_all_its_blocks_are_sent() {
        let mut s = Seeding::new(16, 4);
        s.join(1, t(0));
        assert_eq!(pieces_told(&mut s, 1), [0]);
        s.asked(1, 0..4, t(10));
        assert_eq!(pieces_told(&mut s, 1), [1], "the next while piece 0 is sent");
        s.served(1, 2..4, t(20));
        assert!(s.open.iter().any(|o| o.piece == 0), "half of it is sent");
        assert!(pieces_told(&mut s, 1).is_empty());
        s.served(1, 0..2, t(30));
        assert!(s.open.iter().all(|o| o.piece != 0));
        // Nothing counts twice.
        assert_eq!(s.shown, [1, 1, 0, 0]);
    }

    #[test]
    fn a_piece_is_shown_again_only_while_few_subscribers_say_they_have_it() {
        // 2 pieces of 1 block.
        let mut s = Seeding::new(2, 1);
        s.join(1, t(0));
        s.join(2, t(0));
        assert_eq!(pieces_told(&mut s, 1), [0]);
        assert_eq!(pieces_told(&mut s, 2), [1]);
        // Each has its own; the other's is held by one only, so each is
        // shown it.
        s.got(1, &[0], t(10));
        s.got(2, &[1], t(10));
        assert_eq!(pieces_told(&mut s, 1), [1]);
        assert_eq!(pieces_told(&mut s, 2), [0]);
        s.got(1, &[1], t(20));
        s.got(2, &[0], t(20));
        // Every piece is held by two: a newcomer gets them from those.
        s.join(3, t(30));
        assert!(pieces_told(&mut s, 3).is_empty());
        assert!(s.open.is_empty());
        // One of them leaves: its pieces are shown again.
        s.leave(1, t(40));
        assert_eq!(pieces_told(&mut s, 3).len(), 1);
        assert_eq!(s.whole, [1, 1]);
    }

    #[test]
    fn a_subscriber_that_starves_is_shown_what_it_lacks_whoever_says_they_have_it() {
        // 2 pieces of 1 block. 1 and 2 say they have both (they may lie,
        // or be gone without a word).
        let mut s = Seeding::new(2, 1);
        s.join(1, t(0));
        s.join(2, t(0));
        s.got(1, &[0, 1], t(0));
        s.got(2, &[0, 1], t(0));
        assert_eq!(s.whole, [2, 2]);
        s.join(3, t(10));
        s.got(3, &[], t(10));
        assert!(pieces_told(&mut s, 3).is_empty());
        // It hears of nothing new for a while: it is shown a piece.
        let retry = s.deadline().expect("a time to look again");
        assert!(retry <= t(10) + STARVED);
        s.tick(retry);
        let mut now = retry;
        while pieces_told(&mut s, 3).is_empty() {
            now = s.deadline().expect("a time to look again");
            assert!(now <= t(10) + 2 * STARVED, "{now:?}");
            s.tick(now);
        }
        // Then, once it has it, the other one, when it starves again.
        let Some(&Open { piece, .. }) = s.open.iter().find(|o| o.conn == 3) else { panic!("nothing open") };
        s.served(3, piece..piece + 1, now);
        s.got(3, &[piece as u32], now);
        s.tick(now + STARVED);
        assert_eq!(pieces_told(&mut s, 3), [1 - piece]);
    }

    #[test]
    fn pieces_read_by_others_count_as_shown() {
        let mut s = Seeding::new(12, 4);
        // Connection 9 was told of every block and read piece 0.
        s.served(9, 0..4, t(0));
        s.join(1, t(0));
        assert_eq!(pieces_told(&mut s, 1), [1], "piece 0 has left already");
    }

    #[test]
    fn a_subscriber_that_says_what_it_got_is_shown_only_what_it_lacks() {
        // 4 pieces of 4 blocks; 2 subscribers.
        let mut s = Seeding::new(16, 4);
        s.join(1, t(0));
        s.join(2, t(0));
        assert_eq!(pieces_told(&mut s, 1), [0]);
        assert_eq!(pieces_told(&mut s, 2), [1]);
        // 2 got pieces 1 and 2 and most of 3 from other peers before it
        // asked: the slot of piece 1 frees at once, and 2 is shown a piece
        // it lacks. (Blocks may come in any order.)
        let got: Vec<u32> = vec![4, 8, 5, 9, 6, 10, 7, 11, 12, 13, 14];
        s.got(2, &got, t(10));
        assert_eq!(pieces_told(&mut s, 2), [3]);
        // Then the only piece it lacks.
        s.got(2, &[15], t(20));
        assert_eq!(pieces_told(&mut s, 2), [0]);
        // Blocks out of range, or said twice, change nothing.
        s.got(2, &[15, 99], t(30));
        assert_eq!(s.whole, [0, 1, 1, 1]);
        assert_eq!(s.open.len(), 2);
        assert!(pieces_told(&mut s, 2).is_empty());
        // Nor do those of one not in the crowd.
        s.got(9, &[0], t(30));
        assert!(!s.held.contains_key(&9));
    }
}

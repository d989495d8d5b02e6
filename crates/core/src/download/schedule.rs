//! Which byte ranges to ask which source for, and when. A plain state
//! machine: no IO, no clock of its own, tested on its own.
//!
//! Inputs: a range arrived, a range failed, a source joined or is gone,
//! and [`Schedule::poll`] with the time. Outputs: [`Action`]s, ranges to
//! fetch and requests to cancel.
//!
//! * Every source works at once. Each keeps about `rate × target` bytes
//!   queued: it starts with a small window that grows by what it delivers
//!   (slow start), then follows its measured rate, between a floor of two
//!   requests and a cap. The floor holds for a source that holds only part
//!   of the file too: its uplink is shared by many and its rate per
//!   downloader low, but with a single request queued it idles for a
//!   round trip between answers, and on a loaded machine that round trip
//!   is long (a crowd of 30 on real links took 2.42 x the minimum time
//!   with two, 2.61 x with one).
//! * A request is about a quarter of the window, in whole blocks, between
//!   one block and [`MAX_REQUEST`], unless the caller pins its size.
//! * When nothing is left to hand out, a source with room takes over a
//!   range pending at a source that would finish it at least three times
//!   later (by its rate, or by how long the range has waited there once
//!   that is longer: a source that stalled); the first verified answer
//!   wins and the other is cancelled.
//!   While swarming, only once every missing byte is asked of someone
//!   (the end game).
//! * A request that takes far longer than its source's rate promises is
//!   cancelled and handed out again, and the source rests for a while
//!   (doubling each time) before it gets more work. After
//!   [`MAX_STRIKES`] such strikes in a row the source is given up.
//! * Bytes in flight are capped per download; the caller may lower the cap
//!   at each poll (a budget shared by the downloads of a process).
//! * Swarming: a source may hold only some blocks ([`Schedule::holding`],
//!   [`Schedule::has`]). Then each source is asked for blocks it has, the
//!   rarest first among the sources known (random among equals, so that
//!   downloaders fetch different blocks and have something to trade), and
//!   the first few blocks at random. Requests are then at most
//!   [`SWARM_REQUEST`], so that blocks spread while the file arrives.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use crate::bitfield::Bitfield;
use crate::runtime::Time;

/// Largest request: 8 MiB.
pub const MAX_REQUEST: u64 = 8 << 20;
/// First request of a source whose rate is not known yet.
const FIRST_REQUEST: u64 = 256 << 10;
/// How much of a source's history each new answer keeps (about the last
/// ten answers count).
const RATE_DECAY: f64 = 0.9;
/// A source must be this many times slower to lose a range to another.
const STEAL_FACTOR: f64 = 3.0;
/// Stealing is not worth it for less than this much time saved.
const STEAL_MIN: Duration = Duration::from_millis(100);
/// Longest rest of a source after a request timed out.
const MAX_REST: Duration = Duration::from_secs(30);
/// How often requests kept past the timeout are looked at again (a slow
/// source's queue may hold them longer): a late one is found this much
/// later at most.
const LATE_EVERY: Duration = Duration::from_millis(100);
/// Largest request while swarming: small enough that a block is passed on
/// soon after it arrives.
pub const SWARM_REQUEST: u64 = 256 << 10;
/// Blocks a downloader takes at random before rarest first: something to
/// trade at once, whatever everyone else has.
const RANDOM_FIRST: u64 = 4;
/// Strikes in a row (requests late or refused, with nothing delivered in
/// between) after which a source is given up: it is not asked forever.
pub const MAX_STRIKES: u32 = 5;

/// Tuning of a schedule.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Seconds of a source's rate to keep queued at it.
    pub target: Duration,
    /// Most bytes queued at one source.
    pub peer_cap: u64,
    /// Most bytes in flight for the whole download.
    pub download_cap: u64,
    /// A pinned request size (rounded to whole blocks unless smaller than
    /// one, in which case the source splits its ranges into such reads).
    pub request: Option<u64>,
    /// The least time any request is given before it counts as late.
    pub request_timeout: Duration,
    /// Seeds the random choices among equally rare blocks (the same seed
    /// plays the same way; downloaders of one swarm should differ).
    pub seed: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            target: Duration::from_millis(500),
            peer_cap: 32 << 20,
            download_cap: 128 << 20,
            request: None,
            request_timeout: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `peer` for `range`.
    Fetch {
        /// The source.
        peer: usize,
        /// The bytes.
        range: Range<u64>,
    },
    /// Tell `peer` to stop sending `range` (asked for earlier).
    Cancel {
        /// The source.
        peer: usize,
        /// The bytes.
        range: Range<u64>,
    },
    /// Stop using `peer`: it failed [`MAX_STRIKES`] requests in a row. Its
    /// ranges are handed out again already.
    GiveUp {
        /// The source.
        peer: usize,
    },
}

#[derive(Debug)]
struct Flight {
    peer: usize,
    range: Range<u64>,
    sent: Time,
    /// The same range asked of another source (end game).
    twin: Option<u64>,
}

#[derive(Debug, Default)]
struct Peer {
    active: bool,
    /// Its flights, in the order asked (a source answers in order).
    queue: VecDeque<u64>,
    queued: u64,
    /// Bytes per second, once measured.
    rate: Option<f64>,
    /// Decaying sums of bytes delivered and the time they took.
    acc_bytes: f64,
    acc_secs: f64,
    window: u64,
    slow_start: bool,
    /// When its last answer ended (the next one's clock starts there).
    last_done: Option<Time>,
    rest_until: Option<Time>,
    strikes: u32,
    /// The blocks it has, if not all (swarming).
    holds: Option<Bitfield>,
    /// It had nothing missing to give as of this [`Schedule::put_backs`]:
    /// not looked at again until something goes back to the missing
    /// ranges or it has more.
    dry: Option<u64>,
    /// It serves others now, not this download ([`Schedule::choke`]).
    choked: bool,
    /// Whether it has something missing, and as of which count of changes
    /// to the missing ranges; forgotten when its blocks change (a crowd's
    /// download asks after every batch of news, for every source).
    wants: std::cell::Cell<Option<(u64, bool)>>,
    /// It has no block that is not here yet, as of its blocks now (blocks
    /// only ever arrive, so this holds until it has more).
    useless: std::cell::Cell<bool>,
    /// A block it has that is not here yet, as last found: looked at
    /// first (every source's interest is asked after every event).
    witness: std::cell::Cell<Option<u64>>,
}

/// Hands out the ranges of a file to sources.
#[derive(Debug)]
pub struct Schedule {
    config: ScheduleConfig,
    block: u64,
    size: u64,
    /// Ranges nobody has and nobody is asked for: start → end.
    missing: BTreeMap<u64, u64>,
    /// The blocks with bytes in `missing`, worked out again when asked for
    /// after it changed (`None`): every source's wants are looked at often,
    /// and going through `missing` for each costs a crowd dearly.
    missing_blocks: std::cell::RefCell<Option<Bitfield>>,
    /// Counts the changes to `missing`.
    missing_gen: u64,
    flights: BTreeMap<u64, Flight>,
    next_flight: u64,
    peers: Vec<Peer>,
    remaining: u64,
    in_flight: u64,
    /// Whether some source holds only part of the file: blocks are then
    /// chosen by rarity.
    swarm: bool,
    /// For each block, how many active sources that hold only part of
    /// the file have it (those with all of it add the same to each).
    counts: Vec<u32>,
    /// Blocks delivered (for the random first few).
    delivered_blocks: u64,
    /// Blocks not wholly here yet (missing, or asked for).
    unfinished: Bitfield,
    /// How many times bytes went back to `missing` (see `Peer::dry`).
    put_backs: u64,
    /// No request can be late before this: the requests are not looked
    /// through again until then (the scheduler is polled after every
    /// event, and a crowd brings many).
    check_late_at: Option<Time>,
    rng: fastrand::Rng,
}

impl Schedule {
    /// A schedule for `size` bytes in blocks of `block_size`, of which
    /// `have` (block-aligned ranges) are already in place.
    pub fn new(size: u64, block_size: u32, config: ScheduleConfig, have: &[Range<u64>]) -> Self {
        let config_seed = config.seed;
        let mut missing = BTreeMap::new();
        let mut have: Vec<Range<u64>> = have.iter().filter(|r| r.start < r.end && r.end <= size).cloned().collect();
        have.sort_by_key(|r| r.start);
        let mut pos = 0;
        let mut remaining = 0;
        for r in have.iter().chain(std::iter::once(&(size..size))) {
            if r.start > pos {
                missing.insert(pos, r.start);
                remaining += r.start - pos;
            }
            pos = pos.max(r.end);
        }
        let block = u64::from(block_size).max(1);
        let mut unfinished = Bitfield::new(size.div_ceil(block));
        for (&start, &end) in &missing {
            for b in start / block..end.div_ceil(block) {
                unfinished.set(b);
            }
        }
        Self {
            config,
            block,
            size,
            missing,
            missing_blocks: std::cell::RefCell::new(None),
            missing_gen: 0,
            flights: BTreeMap::new(),
            next_flight: 0,
            peers: Vec::new(),
            remaining,
            in_flight: 0,
            swarm: false,
            counts: Vec::new(),
            delivered_blocks: 0,
            unfinished,
            put_backs: 0,
            check_late_at: None,
            rng: fastrand::Rng::with_seed(config_seed),
        }
    }

    /// Source `peer` holds only `blocks` (a [`Bitfield`] of the file's
    /// blocks), or every block (`None`). It takes requests once it
    /// [joined](Self::join). Replaces what it said before: requests for
    /// blocks it no longer says it holds are cancelled, and handed out
    /// again.
    #[must_use]
    pub fn holding(&mut self, peer: usize, blocks: Option<Bitfield>) -> Vec<Action> {
        if self.peers.len() <= peer {
            self.peers.resize_with(peer + 1, Peer::default);
        }
        self.uncount(peer);
        if blocks.is_some() {
            self.swarm = true;
        }
        self.peers[peer].holds = blocks;
        self.peers[peer].wants.set(None);
        self.peers[peer].useless.set(false);
        self.peers[peer].dry = None;
        self.count(peer);
        let gone: Vec<u64> = self.peers[peer]
            .queue
            .iter()
            .copied()
            .filter(|id| self.flights.get(id).is_some_and(|f| !self.holds(peer, &f.range)))
            .collect();
        let mut actions = Vec::new();
        for id in gone {
            if let Some(f) = self.flights.get(&id) {
                actions.push(Action::Cancel { peer, range: f.range.clone() });
            }
            self.give_back(id);
        }
        actions
    }

    /// Source `peer` has `block` now.
    pub fn has(&mut self, peer: usize, block: u64) {
        let start = block * self.block;
        let missing = self.missing.range(..=start).next_back().is_some_and(|(_, &end)| end > start);
        let Some(p) = self.peers.get_mut(peer) else { return };
        let Some(holds) = p.holds.as_mut() else { return };
        let new = holds.set(block);
        if new {
            p.wants.set(None);
            p.useless.set(false);
        }
        if new && p.active {
            if missing {
                p.dry = None;
            }
            self.counts_mut()[block as usize] += 1;
        }
    }

    /// Whether source `peer` has every block of `range` (as far as known).
    pub fn holds(&self, peer: usize, range: &Range<u64>) -> bool {
        let Some(p) = self.peers.get(peer) else { return false };
        match &p.holds {
            None => true,
            Some(h) => self.blocks_of(range).all(|b| h.get(b)),
        }
    }

    /// Source `peer` serves this download now, or not (it takes turns
    /// among those fetching from it). Choked, it is asked nothing more;
    /// what was asked of it and not yet started there is
    /// [turned away](Self::turned_away).
    pub fn choke(&mut self, peer: usize, choked: bool) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.choked = choked;
        }
    }

    /// Whether source `peer` has anything for this download: a block not
    /// here yet, whether asked of nobody or of another source, or requests
    /// still open there. (A source is told so, and serves in turn those
    /// that are.) Not only what nobody is asked for: that flips with every
    /// request sent and turned away, and each flip costs a turn. In a
    /// crowd of 1,000, a downloader with two blocks left flipped three
    /// sources' turns every round trip, for an hour.
    pub fn interested_in(&self, peer: usize) -> bool {
        let Some(p) = self.peers.get(peer) else { return false };
        if p.active && !p.queue.is_empty() {
            return true;
        }
        match &p.holds {
            None => self.remaining > 0,
            Some(_) if p.useless.get() => false,
            Some(h) => {
                if p.witness.get().is_some_and(|b| h.get(b) && self.unfinished.get(b)) {
                    return true;
                }
                let witness = h.first_common(&self.unfinished);
                p.witness.set(witness);
                p.useless.set(witness.is_none());
                witness.is_some()
            }
        }
    }

    /// Whether a source has something this download still needs (missing
    /// and not asked of anyone).
    pub fn wants_from(&self, peer: usize) -> bool {
        let Some(p) = self.peers.get(peer) else { return false };
        if p.dry == Some(self.put_backs) {
            return false;
        }
        match &p.holds {
            None => !self.missing.is_empty(),
            Some(h) => {
                if let Some((generation, wants)) = p.wants.get()
                    && generation == self.missing_gen
                {
                    return wants;
                }
                let mut cached = self.missing_blocks.borrow_mut();
                let missing = cached.get_or_insert_with(|| {
                    let mut m = Bitfield::new(self.size.div_ceil(self.block));
                    for (&s, &e) in &self.missing {
                        for b in self.blocks_of(&(s..e)) {
                            m.set(b);
                        }
                    }
                    m
                });
                let wants = h.intersects(missing);
                p.wants.set(Some((self.missing_gen, wants)));
                wants
            }
        }
    }

    fn blocks_of(&self, range: &Range<u64>) -> Range<u64> {
        range.start / self.block..range.end.div_ceil(self.block)
    }

    fn counts_mut(&mut self) -> &mut Vec<u32> {
        if self.counts.is_empty() {
            self.counts = vec![0; self.size.div_ceil(self.block).max(1) as usize];
        }
        &mut self.counts
    }

    /// Adds an active source's blocks to the counts.
    fn count(&mut self, peer: usize) {
        if !self.peers[peer].active {
            return;
        }
        let Some(holds) = self.peers[peer].holds.take() else { return };
        let counts = self.counts_mut();
        for b in holds.iter() {
            if let Some(c) = counts.get_mut(b as usize) {
                *c += 1;
            }
        }
        self.peers[peer].holds = Some(holds);
    }

    /// Takes a source's blocks out of the counts.
    fn uncount(&mut self, peer: usize) {
        if !self.peers[peer].active {
            return;
        }
        let Some(holds) = self.peers[peer].holds.take() else { return };
        for b in holds.iter() {
            if let Some(c) = self.counts.get_mut(b as usize) {
                *c = c.saturating_sub(1);
            }
        }
        self.peers[peer].holds = Some(holds);
    }

    /// Source `peer` can take requests from now on.
    pub fn join(&mut self, peer: usize) {
        if self.peers.len() <= peer {
            self.peers.resize_with(peer + 1, Peer::default);
        }
        let first = self.first_request();
        let p = &mut self.peers[peer];
        if !p.active {
            let (holds, choked) = (p.holds.take(), p.choked);
            *p = Peer { active: true, window: 4 * first, slow_start: true, holds, choked, ..Peer::default() };
            self.count(peer);
        }
    }

    /// Bytes not yet delivered.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether every byte has arrived.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Bytes asked for and not yet delivered (duplicates count twice).
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Sources that can take requests.
    pub fn active(&self) -> usize {
        self.peers.iter().filter(|p| p.active).count()
    }

    /// The measured rate of `peer` in bytes per second.
    pub fn rate(&self, peer: usize) -> Option<f64> {
        self.peers.get(peer).and_then(|p| p.rate)
    }

    /// `peer` delivered `range`, verified and written. Returns the cancel
    /// of its twin, if another source was asked for it too. An answer for
    /// a range not asked of `peer` (cancelled meanwhile) changes nothing.
    pub fn arrived(&mut self, peer: usize, range: &Range<u64>, now: Time) -> Vec<Action> {
        let Some(id) = self.find(peer, range) else { return Vec::new() };
        let Some(flight) = self.remove_flight(id) else { return Vec::new() };
        self.remaining -= range.end - range.start;
        self.delivered_blocks += self.blocks_of(range).count() as u64;
        // The blocks it covers wholly (the last may be short).
        for b in self.blocks_of(range) {
            if b * self.block >= range.start && ((b + 1) * self.block).min(self.size) <= range.end {
                self.unfinished.unset(b);
            }
        }
        let len = (range.end - range.start) as f64;
        let p = &mut self.peers[peer];
        let start = p.last_done.map_or(flight.sent, |d| d.max(flight.sent));
        // Bytes over time, both decaying: answers that arrive bunched
        // together add bytes but little time, and average out, where a
        // ratio per answer would swing wildly.
        p.acc_bytes = p.acc_bytes * RATE_DECAY + len;
        p.acc_secs = p.acc_secs * RATE_DECAY + now.saturating_since(start).as_secs_f64();
        if p.acc_secs > 0.0 {
            p.rate = Some(p.acc_bytes / p.acc_secs);
        }
        p.last_done = Some(now);
        p.strikes = 0;
        if p.slow_start {
            p.window += range.end - range.start;
        }
        let floor = 2 * self.first_request();
        let p = &mut self.peers[peer];
        if let Some(rate) = p.rate {
            let want = (rate * self.config.target.as_secs_f64()) as u64;
            if !p.slow_start || p.window >= want {
                p.slow_start = false;
                p.window = want;
            }
        }
        p.window = p.window.clamp(floor.min(self.config.peer_cap), self.config.peer_cap);
        let mut actions = Vec::new();
        if let Some(twin) = flight.twin.and_then(|t| self.remove_flight(t)) {
            actions.push(Action::Cancel { peer: twin.peer, range: twin.range });
        }
        actions
    }

    /// `peer` could not deliver `range` but is still there (it was busy,
    /// or refused this one request): the range goes back, and the source
    /// rests before it gets more.
    pub fn failed(&mut self, peer: usize, range: &Range<u64>, now: Time) {
        if let Some(id) = self.find(peer, range) {
            self.give_back(id);
            self.rest(peer, now);
        }
    }

    /// `peer` does not have `range` after all (it said it had, and its
    /// download there stopped, say): the range goes back, without a
    /// strike, and is not asked of it again.
    pub fn not_yet(&mut self, peer: usize, range: &Range<u64>) {
        if let Some(id) = self.find(peer, range) {
            self.give_back(id);
        }
        if peer >= self.peers.len() {
            return;
        }
        let (blocks, count) = (self.blocks_of(range), self.size.div_ceil(self.block).max(1));
        self.uncount(peer);
        let holds = self.peers[peer].holds.get_or_insert_with(|| Bitfield::full(count));
        for b in blocks {
            holds.unset(b);
        }
        self.peers[peer].wants.set(None);
        self.swarm = true;
        self.count(peer);
    }

    /// `peer` serves others now and turned `range` away: the range goes
    /// back, without a strike, and the source is asked nothing more until
    /// it serves this download again ([`choke`](Self::choke)).
    pub fn turned_away(&mut self, peer: usize, range: &Range<u64>) {
        if let Some(id) = self.find(peer, range) {
            self.give_back(id);
        }
        if let Some(p) = self.peers.get_mut(peer) {
            p.choked = true;
        }
    }

    /// `peer` is gone: its unfinished ranges go to the others.
    pub fn gone(&mut self, peer: usize) {
        if peer >= self.peers.len() {
            return;
        }
        self.uncount(peer);
        let p = &mut self.peers[peer];
        p.active = false;
        let ids: Vec<u64> = p.queue.iter().copied().collect();
        for id in ids {
            self.give_back(id);
        }
    }

    /// The requests to send and cancel at `now`. `cap` lowers the cap on
    /// bytes in flight for this call (a shared budget); `None` keeps the
    /// configured one.
    #[must_use]
    pub fn poll(&mut self, now: Time, cap: Option<u64>) -> Vec<Action> {
        let mut actions = Vec::new();
        self.expire(now, &mut actions);
        for peer in 0..self.peers.len() {
            if self.peers[peer].active && self.peers[peer].strikes >= MAX_STRIKES {
                self.gone(peer);
                actions.push(Action::GiveUp { peer });
            }
        }
        let cap = cap.map_or(self.config.download_cap, |c| c.min(self.config.download_cap));
        // One request per source per round, so that sources share what is
        // left fairly (a small file is spread over all of them).
        let mut open: Vec<usize> = (0..self.peers.len()).collect();
        while !open.is_empty() {
            open.retain(|&peer| {
                let p = &self.peers[peer];
                if !p.active || p.choked || p.rest_until.is_some_and(|t| now < t) || p.queued >= p.window {
                    return false;
                }
                if self.in_flight >= cap {
                    return false;
                }
                let want = self.request_size(peer);
                if let Some(range) = self.cut_for(peer, want) {
                    self.add_flight(peer, range.clone(), now, None);
                    actions.push(Action::Fetch { peer, range });
                    true
                } else if let Some(victim) = self.end_game(peer).then(|| self.steal_for(peer, now)).flatten() {
                    let range = self.flights[&victim].range.clone();
                    tracing::trace!(target: "p2p::waste", len = range.end - range.start, "a range asked twice");
                    let twin = self.add_flight(peer, range.clone(), now, Some(victim));
                    if let Some(v) = self.flights.get_mut(&victim) {
                        v.twin = Some(twin);
                    }
                    actions.push(Action::Fetch { peer, range });
                    true
                } else {
                    false
                }
            });
        }
        actions
    }

    /// Cancels requests far later than their source's rate promised.
    fn expire(&mut self, now: Time, actions: &mut Vec<Action>) {
        if self.check_late_at.is_some_and(|t| now < t) {
            return;
        }
        // No request is late before the timeout: none sent later than the
        // earliest now can be late before that one. Requests kept longer
        // (a slow source's queue) are looked at again every LATE_EVERY.
        let earliest = self.flights.values().map(|f| f.sent).min().unwrap_or(now);
        self.check_late_at = Some((earliest + self.config.request_timeout).max(now + LATE_EVERY));
        let mut late = Vec::new();
        for (peer, p) in self.peers.iter().enumerate() {
            let mut ahead = 0u64;
            for &id in &p.queue {
                let f = &self.flights[&id];
                let len = f.range.end - f.range.start;
                ahead += len;
                let expected = p.rate.map_or(Duration::ZERO, |r| Duration::from_secs_f64(ahead as f64 / r.max(1.0)));
                let limit = self.config.request_timeout.max(expected * 8);
                if now.saturating_since(f.sent) > limit {
                    late.push((peer, id));
                }
            }
        }
        let mut struck = Vec::new();
        for (peer, id) in late {
            if let Some(f) = self.flights.get(&id) {
                actions.push(Action::Cancel { peer, range: f.range.clone() });
            }
            self.give_back(id);
            // One strike per source per round, however many of its
            // requests were late together.
            if !struck.contains(&peer) {
                struck.push(peer);
                self.rest(peer, now);
            }
        }
    }

    fn rest(&mut self, peer: usize, now: Time) {
        let p = &mut self.peers[peer];
        p.strikes += 1;
        let rest = Duration::from_secs(1 << p.strikes.min(5)).min(MAX_REST);
        p.rest_until = Some(now + rest);
        p.window = (p.window / 2).max(self.block);
        p.slow_start = false;
    }

    fn first_request(&self) -> u64 {
        match self.config.request {
            Some(r) => self.round(r),
            None => self.round(FIRST_REQUEST),
        }
    }

    /// Whole blocks, at least one.
    fn round(&self, bytes: u64) -> u64 {
        (bytes / self.block).max(1) * self.block
    }

    fn request_size(&self, peer: usize) -> u64 {
        if let Some(r) = self.config.request {
            return self.round(r);
        }
        let p = &self.peers[peer];
        let cap = if self.swarm { self.round(SWARM_REQUEST) } else { u64::MAX };
        let size = match p.rate {
            // Small enough that every source gets a share of a small file.
            None => self.first_request().min(self.round(self.size / (4 * self.active() as u64).max(1))),
            Some(_) => self.round((p.window / 4).clamp(self.block, MAX_REQUEST)).min(MAX_REQUEST.max(self.block)),
        };
        size.min(cap)
    }

    /// Up to `want` bytes for `peer`: the front of what is missing, or
    /// while swarming, a run of blocks it has, starting at the rarest.
    fn cut_for(&mut self, peer: usize, want: u64) -> Option<Range<u64>> {
        if !self.swarm {
            return self.cut(want);
        }
        if self.peers[peer].dry == Some(self.put_backs) {
            return None;
        }
        let random = self.delivered_blocks < RANDOM_FIRST;
        let holds = self.peers[peer].holds.as_ref();
        // The rarest block it has, random among equals (reservoir
        // sampling: the n-th equal replaces the pick with chance 1/n).
        let mut best: Option<(u32, u64, u64)> = None;
        let mut equals = 0u64;
        for (&start, &end) in &self.missing {
            for b in start / self.block..end.div_ceil(self.block) {
                if holds.is_some_and(|h| !h.get(b)) {
                    continue;
                }
                let rarity = if random { 0 } else { self.counts.get(b as usize).copied().unwrap_or(0) };
                match best {
                    Some((r, _, _)) if rarity > r => continue,
                    Some((r, _, _)) if rarity == r => {
                        equals += 1;
                        if self.rng.u64(..equals) != 0 {
                            continue;
                        }
                    }
                    _ => equals = 1,
                }
                best = Some((rarity, b, start));
            }
        }
        let Some((_, first, start)) = best else {
            self.peers[peer].dry = Some(self.put_backs);
            return None;
        };
        let end = self.missing[&start];
        let from = (first * self.block).max(start);
        let mut to = from;
        let mut b = first;
        while to < end && to - from < want && holds.is_none_or(|h| h.get(b)) {
            to = ((b + 1) * self.block).min(end);
            b += 1;
        }
        self.missing.remove(&start);
        if start < from {
            self.missing.insert(start, from);
        }
        if to < end {
            self.missing.insert(to, end);
        }
        self.missing_changed();
        Some(from..to)
    }

    /// The missing ranges changed: what was worked out from them is stale.
    fn missing_changed(&mut self) {
        self.missing_blocks.get_mut().take();
        self.missing_gen += 1;
    }

    /// Takes up to `want` bytes off the front of the first missing range.
    fn cut(&mut self, want: u64) -> Option<Range<u64>> {
        let (&start, &end) = self.missing.iter().next()?;
        self.missing.remove(&start);
        let mut cut = (start + want).min(end);
        // Whole blocks, unless this is the file's end.
        if cut < end && cut % self.block != 0 {
            cut = (cut / self.block + 1) * self.block;
            cut = cut.min(end);
        }
        if cut < end {
            self.missing.insert(cut, end);
        }
        self.missing_changed();
        Some(start..cut)
    }

    /// Whether `peer` may take over another's request. While swarming,
    /// only once every missing byte is asked of some source: until then a
    /// source that has nothing else to fetch waits (it will have soon)
    /// rather than duplicate another's request.
    fn end_game(&self, peer: usize) -> bool {
        // While swarming, only a source with nothing to do takes over:
        // the sources are many, and most are busy.
        !self.swarm || (self.missing.is_empty() && self.peers[peer].queued == 0)
    }

    /// A flight elsewhere that `peer` would finish at least
    /// [`STEAL_FACTOR`] times sooner: the one that would finish last.
    fn steal_for(&self, peer: usize, now: Time) -> Option<u64> {
        let me = &self.peers[peer];
        let my_rate = me.rate?;
        let mut best: Option<(Duration, u64)> = None;
        for (q, p) in self.peers.iter().enumerate() {
            if q == peer {
                continue;
            }
            let mut ahead = 0u64;
            for &id in &p.queue {
                let f = &self.flights[&id];
                let len = f.range.end - f.range.start;
                ahead += len;
                if f.twin.is_some() || !self.holds(peer, &f.range) {
                    continue;
                }
                let waited = now.saturating_since(f.sent);
                let theirs = match p.rate {
                    // Overdue (its source stalled: a lost connection, a
                    // queue at a busy peer): as long again as it waited.
                    Some(r) => Duration::from_secs_f64(ahead as f64 / r.max(1.0)).max(waited),
                    // Nothing delivered yet: as slow as its wait so far says.
                    None => waited * 2,
                };
                let mine = Duration::from_secs_f64((me.queued + len) as f64 / my_rate.max(1.0));
                if theirs > mine.mul_f64(STEAL_FACTOR)
                    && theirs - mine > STEAL_MIN
                    && best.is_none_or(|(t, _)| theirs > t)
                {
                    best = Some((theirs, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    fn find(&self, peer: usize, range: &Range<u64>) -> Option<u64> {
        let p = self.peers.get(peer)?;
        p.queue.iter().copied().find(|id| self.flights.get(id).is_some_and(|f| f.range == *range))
    }

    fn add_flight(&mut self, peer: usize, range: Range<u64>, now: Time, twin: Option<u64>) -> u64 {
        let id = self.next_flight;
        self.next_flight += 1;
        let len = range.end - range.start;
        self.in_flight += len;
        let p = &mut self.peers[peer];
        p.queued += len;
        p.queue.push_back(id);
        self.flights.insert(id, Flight { peer, range, sent: now, twin });
        id
    }

    fn remove_flight(&mut self, id: u64) -> Option<Flight> {
        let f = self.flights.remove(&id)?;
        let len = f.range.end - f.range.start;
        self.in_flight -= len;
        let p = &mut self.peers[f.peer];
        p.queued -= len;
        p.queue.retain(|&i| i != id);
        Some(f)
    }

    /// A flight ends without its bytes: unless its twin still runs, the
    /// range is missing again.
    fn give_back(&mut self, id: u64) {
        let Some(f) = self.remove_flight(id) else { return };
        match f.twin.and_then(|t| self.flights.get_mut(&t)) {
            Some(twin) => twin.twin = None,
            None => self.put_back(f.range),
        }
    }

    fn put_back(&mut self, range: Range<u64>) {
        let (mut start, mut end) = (range.start, range.end);
        // Merge with neighbours, so that ranges stay few and large.
        if let Some((&s, &e)) = self.missing.range(..start).next_back()
            && e == start
        {
            self.missing.remove(&s);
            start = s;
        }
        if let Some(e) = self.missing.remove(&end) {
            end = e;
        }
        debug_assert!(end <= self.size);
        self.missing.insert(start, end);
        self.missing_changed();
        self.put_backs += 1;
    }
}

#[cfg(test)]
mod tests;

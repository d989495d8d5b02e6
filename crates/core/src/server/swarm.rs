//! The serving side of swarming: subscriptions to what this peer has of a
//! content ([`Message::Subscribe`]), and peer exchange.
//!
//! A subscriber hears which blocks this peer has (a bitfield, then each
//! block as it is verified and written, batched into [`Message::Have`]s
//! between the answers to its other requests) and which other peers fetch
//! the same content from this one and serve it (at most
//! [`MAX_EXCHANGE`] per message and [`TOLD_AT_MOST`] in all). A content is
//! whole (in the catalog) or [live](crate::live) (being downloaded here).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use event_listener::{Event, EventListener};

use super::admission::ConnId;
use super::choke::Choker;
use super::seeding::{PIECE, Seeding};
use crate::bitfield::Bitfield;
use crate::hash::Hash;
use crate::live::{Live, Standing};
use crate::protocol::{CAP_CHOKE, CAP_GOT, MAX_EXCHANGE, MAX_HAVE, Message};
use crate::runtime::Time;

/// Peers one subscription is told of, in all.
pub(super) const TOLD_AT_MOST: usize = 200;

/// How often at most a subscriber that waits for its turn here (choked,
/// and already interested) hears of the blocks verified meanwhile. More
/// blocks cannot make it more interested, and it cannot ask for them
/// before its turn, when it hears of them all at once. In a crowd most
/// subscribers wait: news to each of them every 50 ms were most of the
/// messages a peer sent.
pub(super) const WAITING_NEWS: Duration = Duration::from_millis(500);

/// Who fetches each content from this peer and serves it: the peers to
/// tell each other of.
#[derive(Debug, Default)]
pub(super) struct Swarms {
    inner: Mutex<HashMap<Hash, Members>>,
    /// Fires when a member that serves a content joins, whichever content.
    joined_any: Event,
}

#[derive(Debug, Default)]
struct Members {
    /// Each subscribing connection that serves the content, and where.
    peers: BTreeMap<ConnId, String>,
    /// How many subscribers each was told of, and who: the least told of
    /// first.
    told_of: HashMap<ConnId, u32>,
    by_told: BTreeSet<(u32, ConnId)>,
    /// How many serving members joined so far (a subscription looks for
    /// peers to be told of only when this moved).
    joined: u64,
    /// Connections subscribed, serving or not.
    subscribers: usize,
    changed: Arc<Event>,
    /// The crowd fetching it whole from here, once there is one, and
    /// the file's block size.
    seeding: Option<(Seeding, u64)>,
    /// The subscribers that take turns at it while it is downloaded here.
    choker: Choker,
}

impl Swarms {
    /// Connection `conn` fetches `hash` and serves it at `addr` (none: it
    /// serves nothing). Returns the event that fires when the members of
    /// `hash` change.
    pub(super) fn join(&self, hash: Hash, conn: ConnId, addr: Option<String>) -> Arc<Event> {
        let mut all = self.lock();
        let members = all.entry(hash).or_default();
        members.subscribers += 1;
        if let Some(addr) = addr {
            if members.peers.insert(conn, addr).is_none() {
                let told = *members.told_of.entry(conn).or_default();
                members.by_told.insert((told, conn));
            }
            members.joined += 1;
            members.changed.notify(usize::MAX);
            self.joined_any.notify(usize::MAX);
        }
        members.changed.clone()
    }

    /// Fires when a member that serves a content joins (taken before
    /// looking at [`Swarms::holders`], so that no join is missed).
    pub(super) fn listen_joins(&self) -> EventListener {
        self.joined_any.listen()
    }

    /// Where the members of `hash` that serve it do (each has its
    /// manifest: a peer subscribes once it has it).
    pub(super) fn holders(&self, hash: &Hash) -> Vec<String> {
        self.lock().get(hash).map_or_else(Vec::new, |m| m.peers.values().cloned().collect())
    }

    /// A subscription of connection `conn` to `hash` ends; unless
    /// `another` of its subscriptions to it stays, it is no member.
    pub(super) fn leave(&self, hash: &Hash, conn: ConnId, another: bool, now: Time) {
        let mut all = self.lock();
        if let Some(m) = all.get_mut(hash) {
            if !another && m.peers.remove(&conn).is_some() {
                if let Some(told) = m.told_of.remove(&conn) {
                    m.by_told.remove(&(told, conn));
                }
                m.changed.notify(usize::MAX);
            }
            m.subscribers = m.subscribers.saturating_sub(1);
            if !another && m.choker.has(conn) {
                m.choker.leave(conn, now);
                m.changed.notify(usize::MAX);
            }
            if !another && let Some((seeding, _)) = m.seeding.as_mut() {
                seeding.leave(conn, now);
                if seeding.is_empty() {
                    m.seeding = None;
                }
                m.changed.notify(usize::MAX);
            }
            if m.subscribers == 0 {
                all.remove(hash);
            }
        }
    }

    /// Whether `conn`, fetching the whole file `hash` (of `blocks` blocks
    /// of `block_size` bytes), is shown it piece by piece: it is, once
    /// another fetches it too.
    fn seed(&self, hash: &Hash, conn: ConnId, blocks: u64, block_size: u64, now: Time) -> bool {
        let mut all = self.lock();
        let Some(m) = all.get_mut(hash) else { return false };
        if m.seeding.is_none() && m.subscribers >= 2 {
            let piece_blocks = (PIECE / block_size.max(1)).max(1);
            m.seeding = Some((Seeding::new(blocks, piece_blocks), block_size));
        }
        let Some((seeding, _)) = m.seeding.as_mut() else { return false };
        seeding.join(conn, now);
        m.changed.notify(usize::MAX);
        true
    }

    /// The blocks of `hash` to show `conn` now (after freeing the slots
    /// of pieces shown too long ago), and when to look again.
    fn shown(&self, hash: &Hash, conn: ConnId, now: Time) -> (Vec<u32>, Option<Time>) {
        let mut all = self.lock();
        let Some(m) = all.get_mut(hash) else { return (Vec::new(), None) };
        let Some((seeding, _)) = m.seeding.as_mut() else { return (Vec::new(), None) };
        let before = seeding.shows();
        seeding.tick(now);
        if seeding.shows() != before {
            // Others may have been shown pieces.
            m.changed.notify(usize::MAX);
        }
        (seeding.take(conn), seeding.deadline())
    }

    /// `conn`, shown `hash` piece by piece, has `blocks`.
    fn got(&self, hash: &Hash, conn: ConnId, blocks: &[u32], now: Time) {
        let mut all = self.lock();
        let Some(m) = all.get_mut(hash) else { return };
        let Some((seeding, _)) = m.seeding.as_mut() else { return };
        let before = seeding.shows();
        seeding.got(conn, blocks, now);
        if seeding.shows() != before {
            m.changed.notify(usize::MAX);
        }
    }

    /// `conn` takes turns with the other subscribers of `hash`.
    fn take_turns(&self, hash: &Hash, conn: ConnId) {
        if let Some(m) = self.lock().get_mut(hash) {
            m.choker.join(conn);
        }
    }

    /// `conn` wants something of `hash` from here, or nothing more.
    fn interest(&self, hash: &Hash, conn: ConnId, interested: bool, now: Time) {
        self.turns(hash, |c| c.interest(conn, interested, now));
    }

    /// Runs `f` on the turns at `hash`, if it has members; when anyone was
    /// choked or unchoked, every subscription of it is woken to be told.
    fn turns<T>(&self, hash: &Hash, f: impl FnOnce(&mut Choker) -> T) -> Option<T> {
        let mut all = self.lock();
        let m = all.get_mut(hash)?;
        let before = m.choker.changes();
        let out = f(&mut m.choker);
        if m.choker.changes() != before {
            m.changed.notify(usize::MAX);
        }
        Some(out)
    }

    /// Whether `conn` is to be told it is choked (or unchoked) now, after
    /// the turns that are over ended; and whether it waits for its turn.
    fn choked(&self, hash: &Hash, conn: ConnId, now: Time) -> (Option<bool>, bool) {
        self.turns(hash, |c| {
            c.tick(now);
            (c.take(conn), c.waits(conn))
        })
        .unwrap_or((None, false))
    }

    /// `conn` starts a read of `hash` (`started`) or is done with one.
    fn read(&self, hash: &Hash, conn: ConnId, started: bool, now: Time) {
        self.turns(hash, |c| c.read(conn, started, now));
    }

    /// Whether a read of `hash` by `conn` is refused: it takes turns and
    /// is not served now.
    fn refuses(&self, hash: &Hash, conn: ConnId, now: Time) -> bool {
        self.turns(hash, |c| c.refuses(conn, now)).unwrap_or(false)
    }

    /// When the turns at `hash` change by themselves.
    fn turns_deadline(&self, hash: &Hash) -> Option<Time> {
        self.lock().get(hash)?.choker.deadline()
    }

    /// Whether `hash` is shown piece by piece to a crowd.
    fn is_seeding(&self, hash: &Hash) -> bool {
        self.lock().get(hash).is_some_and(|m| m.seeding.is_some())
    }

    /// When the slots of `hash`'s crowd change by themselves.
    fn shown_deadline(&self, hash: &Hash) -> Option<Time> {
        let all = self.lock();
        all.get(hash)?.seeding.as_ref()?.0.deadline()
    }

    /// `conn` asked for `hash`'s bytes `range`.
    fn asked(&self, hash: &Hash, conn: ConnId, range: Range<u64>, now: Time) {
        let mut all = self.lock();
        let Some(m) = all.get_mut(hash) else { return };
        let Some((seeding, bs)) = m.seeding.as_mut() else { return };
        let before = seeding.shows();
        seeding.asked(conn, range.start / *bs..range.end.div_ceil(*bs), now);
        if seeding.shows() != before {
            m.changed.notify(usize::MAX);
        }
    }

    /// A read of `hash`'s bytes `range` for `conn` was answered.
    fn served(&self, hash: &Hash, conn: ConnId, range: Range<u64>, now: Time) {
        let mut all = self.lock();
        let Some(m) = all.get_mut(hash) else { return };
        let Some((seeding, bs)) = m.seeding.as_mut() else { return };
        let before = seeding.shows();
        tracing::trace!(?now, conn, ?range, "served to a crowd");
        seeding.served(conn, range.start / *bs..range.end.div_ceil(*bs), now);
        if seeding.shows() != before {
            m.changed.notify(usize::MAX);
        }
    }

    /// How many serving members of `hash` joined so far.
    fn joined(&self, hash: &Hash) -> u64 {
        self.lock().get(hash).map_or(0, |m| m.joined)
    }

    /// Up to `limit` members of `hash` other than `conn`, except those in
    /// `told`: those told of least so far first, so that every member is
    /// known to about as many as the others (a member nobody is told of
    /// uploads to nobody).
    fn others(&self, hash: &Hash, conn: ConnId, told: &HashSet<String>, limit: usize) -> Vec<String> {
        let mut all = self.lock();
        let Some(m) = all.get_mut(hash) else { return Vec::new() };
        // In order of (times told of, connection): at most the ones it was
        // told of and itself are passed over, however large the crowd.
        let mut chosen: Vec<(u32, ConnId, String)> = Vec::new();
        for &(times, c) in &m.by_told {
            if chosen.len() >= limit {
                break;
            }
            let Some(addr) = m.peers.get(&c) else { continue };
            if c != conn && !told.contains(addr) {
                chosen.push((times, c, addr.clone()));
            }
        }
        for (times, c, _) in &chosen {
            m.by_told.remove(&(*times, *c));
            m.by_told.insert((times + 1, *c));
            m.told_of.insert(*c, times + 1);
        }
        chosen.into_iter().map(|(_, _, a)| a).collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Hash, Members>> {
        // Maps only, each change whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's subscriptions.
pub(super) struct Subscriptions<W> {
    conn: ConnId,
    swarms: Arc<Swarms>,
    subs: Vec<Sub<W>>,
    /// The time last heard (for leaving when the connection ends).
    now: Time,
}

struct Sub<W> {
    id: u32,
    hash: Hash,
    /// The content being downloaded here; `None` for a whole file.
    live: Option<Arc<Live<W>>>,
    /// How far into the live content's log the subscriber has heard.
    cursor: usize,
    members: Arc<Event>,
    /// The peers it was told of.
    told: HashSet<String>,
    /// It is shown a whole file piece by piece ([`Seeding`]).
    seeding: bool,
    /// For a whole file: its blocks and block size.
    whole: Option<(u64, u64)>,
    /// It takes turns with the other subscribers ([`Choker`]).
    turns: bool,
    /// It says which blocks it got elsewhere, if shown pieces.
    tells_got: bool,
    /// When it was last told of the blocks verified here, and whether
    /// some were held back since (see [`WAITING_NEWS`]).
    blocks_told: Time,
    held: bool,
    /// The members joined when it was last told of every one (see
    /// [`Swarms::joined`]): nobody new to tell of until that moves. (Every
    /// change of the turns wakes every subscription of the content.)
    joined_seen: u64,
}

/// What a subscription is to, when it starts.
pub(super) enum Held<W> {
    /// A whole file of the catalog: its blocks and block size.
    Whole { blocks: u64, block_size: u64 },
    /// A content being downloaded here.
    Live(Arc<Live<W>>),
}

/// The next thing to send for a subscription.
pub(super) enum News {
    Have(Message),
    /// The download it was to stopped: the subscription ends with this
    /// refusal.
    Gone(u32),
}

impl<W> Subscriptions<W> {
    pub(super) fn new(conn: ConnId, swarms: Arc<Swarms>) -> Self {
        Self { conn, swarms, subs: Vec::new(), now: Time::ZERO }
    }

    /// Starts subscription `id` to `hash` (serving it at `addr`, if
    /// anywhere) and returns its first answer. A subscription of the same
    /// id replaces the older one. `caps` are its client's capabilities:
    /// with [`CAP_CHOKE`] it takes turns at a content downloaded here;
    /// with [`CAP_GOT`], shown a whole file piece by piece, it is told so
    /// ([`Message::Showing`]) and may say what it gets elsewhere.
    pub(super) fn subscribe(
        &mut self,
        id: u32,
        hash: Hash,
        addr: Option<String>,
        held: Held<W>,
        caps: u32,
        now: Time,
    ) -> Vec<Message> {
        let (chokes, tells_got) = (caps & CAP_CHOKE != 0, caps & CAP_GOT != 0);
        self.now = now;
        self.cancel(id, now);
        let members = self.swarms.join(hash, self.conn, addr.clone());
        let told = self.swarms.others(&hash, self.conn, &HashSet::new(), MAX_EXCHANGE);
        let mut seeding = false;
        let mut whole = None;
        let (complete, bits, cursor, live) = match held {
            Held::Whole { blocks, block_size } => {
                whole = Some((blocks, block_size));
                seeding = self.swarms.seed(&hash, self.conn, blocks, block_size, now);
                match seeding {
                    // Shown piece by piece, from nothing.
                    true => (false, Bitfield::new(blocks).as_bytes().to_vec(), 0, None),
                    false => (true, Vec::new(), 0, None),
                }
            }
            Held::Live(live) => {
                if let Some(addr) = &addr {
                    live.met(addr);
                }
                let (have, cursor, standing) = live.snapshot();
                let complete = standing == Standing::Complete || have.is_full();
                let bits = if complete { Vec::new() } else { have.as_bytes().to_vec() };
                (complete, bits, cursor, Some(live))
            }
        };
        let first = Message::Holding { id, complete, bits, peers: told.clone() };
        let told: HashSet<String> = told.into_iter().collect();
        let turns = chokes && live.is_some();
        if turns {
            self.swarms.take_turns(&hash, self.conn);
        }
        let joined_seen = self.swarms.joined(&hash);
        let sub = Sub {
            id,
            hash,
            live,
            cursor,
            members,
            told,
            seeding,
            whole,
            turns,
            tells_got,
            blocks_told: now,
            held: false,
            joined_seen,
        };
        self.subs.push(sub);
        let mut answer = vec![first];
        if seeding && tells_got {
            answer.push(Message::Showing { id });
        }
        answer
    }

    /// Subscriber `id`, shown a whole file piece by piece, has `blocks`.
    pub(super) fn got(&mut self, id: u32, blocks: &[u32], now: Time) {
        self.now = now;
        if let Some(s) = self.subs.iter().find(|s| s.id == id && s.seeding) {
            self.swarms.got(&s.hash, self.conn, blocks, now);
        }
    }

    /// Whether a read of `hash` is refused ([`ErrorCode::Choked`]): the
    /// subscriber takes turns there and it is not its turn. Served, its
    /// reads would share this uplink with those whose turn it is, and
    /// the turns would not hold: at a source the whole crowd asked first,
    /// a thousand choked subscribers' reads crawled for tens of seconds.
    ///
    /// [`ErrorCode::Choked`]: crate::protocol::ErrorCode::Choked
    pub(super) fn refuses(&mut self, hash: &Hash, now: Time) -> bool {
        self.now = now;
        self.takes_turns(hash) && self.swarms.refuses(hash, self.conn, now)
    }

    /// Whether a subscription here takes turns at `hash`.
    fn takes_turns(&self, hash: &Hash) -> bool {
        self.subs.iter().any(|s| s.turns && s.hash == *hash)
    }

    /// A read of `hash` starts (`started`) or ends: a subscriber served in
    /// turn that reads nothing gives its turn up.
    pub(super) fn reading(&mut self, hash: &Hash, started: bool, now: Time) {
        self.now = now;
        if self.takes_turns(hash) {
            self.swarms.read(hash, self.conn, started, now);
        }
    }

    /// Subscriber `id` wants something from here, or nothing more.
    pub(super) fn interest(&mut self, id: u32, interested: bool, now: Time) {
        self.now = now;
        if let Some(s) = self.subs.iter().find(|s| s.id == id && s.turns) {
            self.swarms.interest(&s.hash, self.conn, interested, now);
        }
    }

    /// Ends subscription `id`, if there is one.
    pub(super) fn cancel(&mut self, id: u32, now: Time) {
        if let Some(i) = self.subs.iter().position(|s| s.id == id) {
            let sub = self.subs.remove(i);
            let another = self.subs.iter().any(|s| s.hash == sub.hash);
            self.swarms.leave(&sub.hash, self.conn, another, now);
        }
    }

    /// Listens for the next change of anything subscribed to; taken before
    /// [`news`](Self::news) is read, so that no change is missed between.
    pub(super) fn listen(&self) -> AnyOf {
        let mut listeners = Vec::new();
        for s in &self.subs {
            listeners.push(s.members.listen());
            if let Some(live) = &s.live {
                listeners.push(live.listen());
            }
        }
        AnyOf(listeners)
    }

    /// What to send now: each subscription's blocks and peers since it
    /// last heard.
    pub(super) fn news(&mut self, now: Time) -> Vec<News> {
        self.now = now;
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for s in &mut self.subs {
            let mut blocks = Vec::new();
            if let Some((count, block_size)) = s.whole
                && !s.seeding
                && self.swarms.is_seeding(&s.hash)
            {
                // A crowd formed after it was told of every block: it is
                // told again, of none, and shown pieces from now on.
                s.seeding = self.swarms.seed(&s.hash, self.conn, count, block_size, now);
                if s.seeding {
                    let bits = Bitfield::new(count).as_bytes().to_vec();
                    out.push(News::Have(Message::Holding { id: s.id, complete: false, bits, peers: Vec::new() }));
                    if s.tells_got {
                        out.push(News::Have(Message::Showing { id: s.id }));
                    }
                }
            }
            if s.seeding {
                blocks = self.swarms.shown(&s.hash, self.conn, now).0;
            }
            let (choke, waits) = match s.turns {
                true => self.swarms.choked(&s.hash, self.conn, now),
                false => (None, false),
            };
            if let Some(live) = &s.live {
                let (new, cursor, standing) = live.since(s.cursor);
                if standing == Standing::Gone {
                    ended.push(s.id);
                    continue;
                }
                s.held = waits && now < s.blocks_told + WAITING_NEWS && !new.is_empty();
                if !s.held {
                    s.cursor = cursor;
                    s.blocks_told = now;
                    blocks = new;
                }
            }
            if let Some(choked) = choke {
                out.push(News::Have(Message::Choke { id: s.id, choked }));
            }
            let mut peers = Vec::new();
            let joined = self.swarms.joined(&s.hash);
            if s.told.len() < TOLD_AT_MOST && joined != s.joined_seen {
                let limit = MAX_EXCHANGE.min(TOLD_AT_MOST - s.told.len());
                peers = self.swarms.others(&s.hash, self.conn, &s.told, limit);
                s.told.extend(peers.iter().cloned());
                if peers.len() < limit {
                    // Every member was told of: nobody more until one joins.
                    s.joined_seen = joined;
                }
            }
            let mut chunks = blocks.chunks(MAX_HAVE).peekable();
            if chunks.peek().is_none() && !peers.is_empty() {
                out.push(News::Have(Message::Have { id: s.id, blocks: Vec::new(), peers }));
                continue;
            }
            let mut peers = Some(peers);
            for chunk in chunks {
                let peers = peers.take().unwrap_or_default();
                out.push(News::Have(Message::Have { id: s.id, blocks: chunk.to_vec(), peers }));
            }
        }
        for id in ended {
            self.cancel(id, now);
            out.push(News::Gone(id));
        }
        out
    }

    /// A read of `hash`'s bytes `range` is being answered.
    pub(super) fn asked(&self, hash: &Hash, range: Range<u64>, now: Time) {
        if self.subs.iter().any(|s| s.seeding && s.hash == *hash) {
            self.swarms.asked(hash, self.conn, range, now);
        }
    }

    /// A read of `hash`'s bytes `range` was answered (a connection not
    /// subscribed to it touches nothing shared).
    pub(super) fn served(&self, hash: &Hash, range: Range<u64>, now: Time) {
        if self.subs.iter().any(|s| s.hash == *hash) {
            self.swarms.served(hash, self.conn, range, now);
        }
    }

    /// When [`news`](Self::news) may have something to say without any
    /// change: a shown piece's slot frees up then, a turn ends, or news
    /// held back are due.
    pub(super) fn deadline(&self) -> Option<Time> {
        let shown = self.subs.iter().filter(|s| s.seeding).filter_map(|s| self.swarms.shown_deadline(&s.hash));
        let turns = self.subs.iter().filter(|s| s.turns).filter_map(|s| self.swarms.turns_deadline(&s.hash));
        let held = self.subs.iter().filter(|s| s.held).map(|s| s.blocks_told + WAITING_NEWS);
        shown.chain(turns).chain(held).min()
    }

    /// Whether there is any subscription.
    pub(super) fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

impl<W> Drop for Subscriptions<W> {
    fn drop(&mut self) {
        for s in &self.subs {
            self.swarms.leave(&s.hash, self.conn, false, self.now);
        }
    }
}

/// Completes when any of its listeners does (never, without any).
pub(super) struct AnyOf(Vec<EventListener>);

impl Future for AnyOf {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for l in &mut self.0 {
            if Pin::new(l).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// The bitfield of a subscription's first answer, for tests.
#[cfg(test)]
fn bits_of(m: &Message, count: u64) -> Option<Bitfield> {
    match m {
        Message::Holding { complete: true, .. } => Some(Bitfield::full(count)),
        Message::Holding { bits, .. } => Bitfield::from_bytes(bits, count),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Going;
    use crate::manifest::manifest_of;
    use crate::name::FileName;

    /// A content of 16 KiB blocks being downloaded here, with the blocks of
    /// `have`; and the download (blocks are added through it, and the
    /// content is gone once it is dropped).
    fn downloading(have: Bitfield) -> (Hash, Arc<Live<()>>, Going<()>) {
        let data = vec![7u8; have.count() as usize * 16 * 1024];
        let manifest = Arc::new(manifest_of(&data));
        let hash = manifest.root();
        let registry = Arc::new(Mutex::new(HashMap::new()));
        let live = Arc::new(Live::new(FileName::new("f").unwrap(), manifest, (), have));
        registry.lock().unwrap().insert(hash, live.clone());
        let going = Going::new(live.clone(), registry);
        (hash, live, going)
    }

    /// Subscriber `conn` of `live`, taking turns, wanting something.
    fn in_line(swarms: &Arc<Swarms>, conn: ConnId, hash: Hash, live: &Arc<Live<()>>, now: Time) -> Subscriptions<()> {
        let mut s = Subscriptions::new(conn, swarms.clone());
        let _ = s.subscribe(1, hash, None, Held::Live(live.clone()), CAP_CHOKE, now);
        s.interest(1, true, now);
        s
    }

    #[test]
    fn subscribers_hear_of_blocks_and_of_each_other() {
        let swarms = Arc::new(Swarms::default());
        let mut have = Bitfield::new(5);
        have.set(0);
        let (hash, live, going) = downloading(have);

        let mut a = Subscriptions::new(1, swarms.clone());
        let now = Time::ZERO;
        let first = a.subscribe(7, hash, Some("10.0.0.1:5000".into()), Held::Live(live.clone()), 0, now).remove(0);
        assert_eq!(bits_of(&first, 5).unwrap().iter().collect::<Vec<_>>(), [0]);
        assert!(a.news(now).is_empty());
        // A second subscriber: each hears of the other.
        let mut b = Subscriptions::<()>::new(2, swarms.clone());
        let Message::Holding { peers, .. } =
            b.subscribe(3, hash, Some("10.0.0.2:5000".into()), Held::Live(live.clone()), 0, now).remove(0)
        else {
            panic!()
        };
        assert_eq!(peers, ["10.0.0.1:5000"]);
        let told = a.news(now);
        assert!(
            matches!(&told[..], [News::Have(Message::Have { id: 7, blocks, peers })] if blocks.is_empty() && peers == &["10.0.0.2:5000"])
        );
        // Blocks as they come, each once.
        let wake = a.listen();
        going.add(3);
        going.add(1);
        futures_lite::future::block_on(wake);
        let told = a.news(now);
        assert!(matches!(&told[..], [News::Have(Message::Have { blocks, .. })] if blocks == &[3, 1]));
        assert!(a.news(now).is_empty());
        // The download stops: the subscription ends.
        drop(going);
        assert!(matches!(&a.news(now)[..], [News::Gone(7)]));
        assert!(a.is_empty());
        drop(b);
        drop(a);
        assert!(swarms.lock().is_empty(), "members leave with their connections");
    }

    #[test]
    fn a_subscriber_out_of_turn_has_its_reads_refused_and_one_without_turns_never() {
        let swarms = Arc::new(Swarms::default());
        let (hash, live, _going) = downloading(Bitfield::full(5));
        let now = Time::ZERO;
        // One more subscriber that takes turns than there are slots.
        let mut turns: Vec<Subscriptions<()>> =
            (0..=super::super::choke::SLOTS as ConnId).map(|conn| in_line(&swarms, conn, hash, &live, now)).collect();
        let refused: Vec<bool> = turns.iter_mut().map(|s| s.refuses(&hash, now)).collect();
        assert_eq!(refused.iter().filter(|&&r| r).count(), 1, "{refused:?}");
        assert!(refused.last() == Some(&true), "the last to ask waits: {refused:?}");
        // It was told so by the refusal; a subscriber without turns, or of
        // another content, is served as it asks.
        let waiting = turns.last_mut().expect("subscribers");
        assert!(!waiting.news(now).iter().any(|n| matches!(n, News::Have(Message::Choke { choked: true, .. }))));
        let mut plain = Subscriptions::<()>::new(100, swarms.clone());
        let _ = plain.subscribe(1, hash, None, Held::Live(live.clone()), 0, now);
        assert!(!plain.refuses(&hash, now));
        assert!(!waiting.refuses(&Hash([9; 32]), now));
    }

    #[test]
    fn a_subscriber_waiting_for_its_turn_hears_of_blocks_less_often_and_all_at_its_turn() {
        use super::super::choke::SLOTS;
        let swarms = Arc::new(Swarms::default());
        let (hash, live, going) = downloading(Bitfield::new(40));
        let t0 = Time::ZERO;
        // Every slot taken; then one more that wants something waits, and
        // one that wants nothing yet.
        let mut served: Vec<Subscriptions<()>> =
            (0..SLOTS as ConnId).map(|conn| in_line(&swarms, conn, hash, &live, t0)).collect();
        let mut waiting = in_line(&swarms, 100, hash, &live, t0);
        let mut idle = Subscriptions::<()>::new(101, swarms.clone());
        let _ = idle.subscribe(1, hash, None, Held::Live(live.clone()), CAP_CHOKE, t0);
        let blocks = |news: &[News]| -> Vec<u32> {
            news.iter()
                .flat_map(|n| match n {
                    News::Have(Message::Have { blocks, .. }) => blocks.clone(),
                    _ => Vec::new(),
                })
                .collect()
        };
        let chokes = |news: &[News]| -> Vec<bool> {
            news.iter()
                .filter_map(|n| match n {
                    News::Have(Message::Choke { choked, .. }) => Some(*choked),
                    _ => None,
                })
                .collect()
        };
        for s in served.iter_mut().chain([&mut waiting, &mut idle]) {
            let _ = s.news(t0);
        }
        // The served ones read, and so keep their turns.
        for s in &mut served {
            s.reading(&hash, true, t0);
        }

        going.add(0);
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(blocks(&served[0].news(t1)), [0], "one served hears at once");
        assert_eq!(blocks(&idle.news(t1)), [0], "one that wants nothing yet hears at once");
        assert_eq!(blocks(&waiting.news(t1)), Vec::<u32>::new(), "one that waits hears later");
        assert_eq!(waiting.deadline(), Some(t0 + WAITING_NEWS), "when it is due");
        going.add(1);
        let t2 = t0 + WAITING_NEWS;
        assert_eq!(blocks(&waiting.news(t2)), [0, 1], "then of every block since");
        assert!(waiting.deadline().is_none_or(|d| d > t2 + WAITING_NEWS), "nothing held back");

        // Its turn comes (a served one leaves): it hears of what came
        // meanwhile at once, with the news of its turn.
        going.add(2);
        let t3 = t2 + Duration::from_millis(50);
        assert!(blocks(&waiting.news(t3)).is_empty());
        drop(served.remove(0));
        let news = waiting.news(t3);
        assert_eq!(chokes(&news), [false]);
        assert_eq!(blocks(&news), [2]);
    }

    #[test]
    fn a_crowd_fetching_a_whole_file_is_shown_it_piece_by_piece() {
        let swarms = Arc::new(Swarms::default());
        let hash = crate::hash::Hash::of(b"file");
        // 64 blocks of 16 KiB: pieces of 8 blocks (128 KiB).
        let whole = || Held::<()>::Whole { blocks: 64, block_size: 16 << 10 };
        let now = Time::ZERO;
        let mut a = Subscriptions::new(1, swarms.clone());
        let first = a.subscribe(1, hash, None, whole(), 0, now).remove(0);
        assert!(matches!(first, Message::Holding { complete: true, .. }), "alone, it is told of every block");
        let mut b = Subscriptions::new(2, swarms.clone());
        let Message::Holding { complete: false, bits, .. } = b.subscribe(1, hash, None, whole(), 0, now).remove(0)
        else {
            panic!("a second is shown pieces")
        };
        assert!(bits.iter().all(|&x| x == 0));
        let told = b.news(now);
        let [News::Have(Message::Have { blocks, .. })] = &told[..] else { panic!() };
        assert_eq!(blocks, &(0..8).collect::<Vec<u32>>());
        // a was told of every block; now it is told again, of none, and
        // shown the next piece.
        let told = a.news(now);
        let [News::Have(Message::Holding { complete: false, .. }), News::Have(Message::Have { blocks, .. })] =
            &told[..]
        else {
            panic!("{}", told.len())
        };
        assert_eq!(blocks, &(8..16).collect::<Vec<u32>>());
        // Fetched: b has taken its slot's piece; the next comes with time
        // or the next read, not before.
        b.served(&hash, 0..PIECE, now);
        let told = b.news(now);
        let [News::Have(Message::Have { blocks, .. })] = &told[..] else { panic!("{}", told.len()) };
        assert_eq!(blocks, &(16..24).collect::<Vec<u32>>());
        assert!(b.deadline().is_some());
        // A third that says what it gets elsewhere is told it may.
        let mut c = Subscriptions::new(3, swarms.clone());
        let answer = c.subscribe(5, hash, None, whole(), CAP_GOT, now);
        assert!(matches!(&answer[..], [Message::Holding { .. }, Message::Showing { id: 5 }]));
        let told = c.news(now);
        let [News::Have(Message::Have { blocks, .. })] = &told[..] else { panic!("{}", told.len()) };
        assert_eq!(blocks, &(24..32).collect::<Vec<u32>>());
        // It got that piece elsewhere: it is shown the next at once.
        c.got(5, &(24..32).collect::<Vec<u32>>(), now);
        let told = c.news(now);
        let [News::Have(Message::Have { blocks, .. })] = &told[..] else { panic!("{}", told.len()) };
        assert_eq!(blocks, &(32..40).collect::<Vec<u32>>());
        drop(c);
        drop(b);
        drop(a);
        assert!(swarms.lock().is_empty());
    }

    #[test]
    fn peer_exchange_names_the_members_told_of_least_first_and_never_the_asker() {
        let swarms = Swarms::default();
        let hash = crate::hash::Hash::of(b"file");
        let addr = |c: ConnId| format!("198.18.0.{c}:5000");
        for c in 1..=5 {
            drop(swarms.join(hash, c, Some(addr(c))));
        }
        // Someone who serves nothing is nobody to tell of.
        drop(swarms.join(hash, 6, None));
        let none = HashSet::new();
        assert_eq!(swarms.others(&hash, 1, &none, 2), [addr(2), addr(3)]);
        assert_eq!(swarms.others(&hash, 1, &none, 2), [addr(4), addr(5)], "2 and 3 were told of once");
        let told: HashSet<String> = [addr(4)].into();
        assert_eq!(swarms.others(&hash, 2, &told, 3), [addr(1), addr(3), addr(5)]);
        // One that leaves is told of no more; one that comes back starts
        // again from nothing.
        swarms.leave(&hash, 1, false, Time::ZERO);
        assert!(!swarms.others(&hash, 2, &none, 10).contains(&addr(1)));
        drop(swarms.join(hash, 1, Some(addr(1))));
        assert_eq!(swarms.others(&hash, 2, &none, 1), [addr(1)]);
    }
}

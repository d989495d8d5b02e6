//! The serving side of swarming: subscriptions to what this peer has of a
//! content ([`Message::Subscribe`]), and peer exchange.
//!
//! A subscriber hears which blocks this peer has (a bitfield, then each
//! block as it is verified and written, batched into [`Message::Have`]s
//! between the answers to its other requests) and which other peers fetch
//! the same content from this one and serve it (at most
//! [`MAX_EXCHANGE`] per message and [`TOLD_AT_MOST`] in all). A content is
//! whole (in the catalog) or [live](crate::live) (being downloaded here).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};

use super::admission::ConnId;
#[cfg(test)]
use crate::bitfield::Bitfield;
use crate::hash::Hash;
use crate::live::{Live, Standing};
use crate::protocol::{MAX_EXCHANGE, MAX_HAVE, Message};

/// Peers one subscription is told of, in all.
pub(super) const TOLD_AT_MOST: usize = 200;

/// Who fetches each content from this peer and serves it: the peers to
/// tell each other of.
#[derive(Debug, Default)]
pub(super) struct Swarms {
    inner: Mutex<HashMap<Hash, Members>>,
}

#[derive(Debug, Default)]
struct Members {
    /// Each subscribing connection that serves the content, and where.
    peers: BTreeMap<ConnId, String>,
    /// Connections subscribed, serving or not.
    subscribers: usize,
    changed: Arc<Event>,
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
            members.peers.insert(conn, addr);
            members.changed.notify(usize::MAX);
        }
        members.changed.clone()
    }

    /// A subscription of connection `conn` to `hash` ends; unless
    /// `another` of its subscriptions to it stays, it is no member.
    pub(super) fn leave(&self, hash: &Hash, conn: ConnId, another: bool) {
        let mut all = self.lock();
        if let Some(m) = all.get_mut(hash) {
            if !another && m.peers.remove(&conn).is_some() {
                m.changed.notify(usize::MAX);
            }
            m.subscribers = m.subscribers.saturating_sub(1);
            if m.subscribers == 0 {
                all.remove(hash);
            }
        }
    }

    /// The members of `hash` other than `conn`, except those in `told`.
    fn others(&self, hash: &Hash, conn: ConnId, told: &[String]) -> Vec<String> {
        let all = self.lock();
        let Some(m) = all.get(hash) else { return Vec::new() };
        m.peers.iter().filter(|(c, a)| **c != conn && !told.contains(a)).map(|(_, a)| a.clone()).collect()
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
    told: Vec<String>,
}

/// What a subscription is to, when it starts.
pub(super) enum Held<W> {
    /// A whole file of the catalog.
    Whole,
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
        Self { conn, swarms, subs: Vec::new() }
    }

    /// Starts subscription `id` to `hash` (serving it at `addr`, if
    /// anywhere) and returns its first answer. A subscription of the same
    /// id replaces the older one.
    pub(super) fn subscribe(&mut self, id: u32, hash: Hash, addr: Option<String>, held: Held<W>) -> Message {
        self.cancel(id);
        let members = self.swarms.join(hash, self.conn, addr);
        let mut told = self.swarms.others(&hash, self.conn, &[]);
        told.truncate(MAX_EXCHANGE);
        let (complete, bits, cursor, live) = match held {
            Held::Whole => (true, Vec::new(), 0, None),
            Held::Live(live) => {
                let (have, cursor, standing) = live.snapshot();
                let complete = standing == Standing::Complete || have.is_full();
                let bits = if complete { Vec::new() } else { have.as_bytes().to_vec() };
                (complete, bits, cursor, Some(live))
            }
        };
        let first = Message::Holding { id, complete, bits, peers: told.clone() };
        self.subs.push(Sub { id, hash, live, cursor, members, told });
        first
    }

    /// Ends subscription `id`, if there is one.
    pub(super) fn cancel(&mut self, id: u32) {
        if let Some(i) = self.subs.iter().position(|s| s.id == id) {
            let sub = self.subs.remove(i);
            let another = self.subs.iter().any(|s| s.hash == sub.hash);
            self.swarms.leave(&sub.hash, self.conn, another);
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
    pub(super) fn news(&mut self) -> Vec<News> {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for s in &mut self.subs {
            let mut blocks = Vec::new();
            if let Some(live) = &s.live {
                let (new, cursor, standing) = live.since(s.cursor);
                s.cursor = cursor;
                if standing == Standing::Gone {
                    ended.push(s.id);
                    continue;
                }
                blocks = new;
            }
            let mut peers = Vec::new();
            if s.told.len() < TOLD_AT_MOST {
                peers = self.swarms.others(&s.hash, self.conn, &s.told);
                peers.truncate(MAX_EXCHANGE.min(TOLD_AT_MOST - s.told.len()));
                s.told.extend(peers.iter().cloned());
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
            self.cancel(id);
            out.push(News::Gone(id));
        }
        out
    }

    /// Whether there is any subscription.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

impl<W> Drop for Subscriptions<W> {
    fn drop(&mut self) {
        for s in &self.subs {
            self.swarms.leave(&s.hash, self.conn, false);
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
    use crate::manifest::manifest_of;
    use crate::name::FileName;

    #[test]
    fn subscribers_hear_of_blocks_and_of_each_other() {
        let swarms = Arc::new(Swarms::default());
        let data = vec![7u8; 5 * 16 * 1024];
        let manifest = Arc::new(manifest_of(&data));
        let hash = manifest.root();
        let mut have = Bitfield::new(5);
        have.set(0);
        let registry = Arc::new(Mutex::new(HashMap::new()));
        let live = Arc::new(Live::new(FileName::new("f").unwrap(), manifest.clone(), (), have));
        registry.lock().unwrap().insert(hash, live.clone());
        let going = crate::live::Going::new(live.clone(), registry);

        let mut a = Subscriptions::new(1, swarms.clone());
        let first = a.subscribe(7, hash, Some("10.0.0.1:5000".into()), Held::Live(live.clone()));
        assert_eq!(bits_of(&first, 5).unwrap().iter().collect::<Vec<_>>(), [0]);
        assert!(a.news().is_empty());
        // A second subscriber: each hears of the other.
        let mut b = Subscriptions::<()>::new(2, swarms.clone());
        let Message::Holding { peers, complete: true, .. } =
            b.subscribe(3, hash, Some("10.0.0.2:5000".into()), Held::Whole)
        else {
            panic!()
        };
        assert_eq!(peers, ["10.0.0.1:5000"]);
        let told = a.news();
        assert!(
            matches!(&told[..], [News::Have(Message::Have { id: 7, blocks, peers })] if blocks.is_empty() && peers == &["10.0.0.2:5000"])
        );
        // Blocks as they come, each once.
        let wake = a.listen();
        going.add(3);
        going.add(1);
        futures_lite::future::block_on(wake);
        let told = a.news();
        assert!(matches!(&told[..], [News::Have(Message::Have { blocks, .. })] if blocks == &[3, 1]));
        assert!(a.news().is_empty());
        // The download stops: the subscription ends.
        drop(going);
        assert!(matches!(&a.news()[..], [News::Gone(7)]));
        assert!(a.is_empty());
        drop(b);
        drop(a);
        assert!(swarms.lock().is_empty(), "members leave with their connections");
    }
}

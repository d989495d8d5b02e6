//! The in-memory network: a [`Transport`] whose connections are pairs of
//! byte pipes, timed on the virtual clock.
//!
//! Each peer has an uplink and a downlink of given rates, and each byte
//! also pays its link's latency (plus jitter from the link's own random
//! stream). A chunk written at `now` leaves once the sender's uplink is
//! free, and arrives after the latency, no sooner than the receiver's
//! downlink can take it. A pipe holds at most the link's queue size in
//! flight: a writer waits beyond that, which is the back-pressure TCP
//! gives.
//!
//! What is written waits in its connection (as in a socket's buffer)
//! until the uplink takes it. An uplink queues at most [`UPLINK_QUEUE`] of
//! sending ahead of itself (the benchmarks' shapers: tc tbf, `latency
//! 50ms`), and takes from its connections in turn, up to a chunk each, a
//! connection that was idle first (as Linux's fair queueing does). So
//! connections share an uplink evenly, and a small message does not wait
//! behind every other connection's window. Partitions hold bytes (as lost
//! packets that TCP keeps resending) until healed; a dropped connection is
//! seen by the other side as the end of the stream, one latency later.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use p2p_core::runtime::Time;
use p2p_core::transport::{Connected, Incoming, Listener, Transport};

use crate::clock::Clock;
use crate::units::{Rate, Size};

/// The largest chunk a write moves at once.
const CHUNK: usize = 64 * 1024;
/// The port every simulated peer listens on.
pub const PORT: u16 = 5000;
/// The most sending an uplink queues ahead of itself.
const UPLINK_QUEUE: Duration = Duration::from_millis(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A peer's connection to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    /// One-way latency.
    pub latency: Duration,
    /// Up to this much extra latency, drawn per chunk.
    pub jitter: Duration,
    /// Upload rate.
    pub up: Rate,
    /// Download rate.
    pub down: Rate,
    /// Bytes a connection may have in flight.
    pub queue: Size,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            up: Rate(125_000_000),
            down: Rate(125_000_000),
            queue: Size(1 << 20),
        }
    }
}

/// The connections waiting for an uplink, in turn.
#[derive(Debug, Default)]
struct Uplink {
    /// Those that were idle: served first.
    new: VecDeque<Arc<Mutex<Pipe>>>,
    /// Those served a turn that have more.
    old: VecDeque<Arc<Mutex<Pipe>>>,
    /// The timer that runs the uplink when its queue has room.
    timer: Option<(Time, u64)>,
}

/// Runs an uplink when its timer fires.
struct Pump {
    net: Weak<Network>,
    peer: usize,
}

impl Wake for Pump {
    fn wake(self: Arc<Self>) {
        if let Some(net) = self.net.upgrade() {
            lock(&net.state).uplinks[self.peer].timer = None;
            net.pump(self.peer);
        }
    }
}

/// The network all peers of one run share.
#[derive(Debug)]
pub struct Network {
    clock: Arc<Clock>,
    seed: u64,
    state: Mutex<NetState>,
}

#[derive(Debug, Default)]
struct NetState {
    links: Vec<LinkSpec>,
    up_free: Vec<Time>,
    /// Each uplink's connections with bytes waiting for it.
    uplinks: Vec<Uplink>,
    /// When each downlink is busy: start → end, merged where they touch.
    down_busy: Vec<BTreeMap<Time, Time>>,
    sent: Vec<u64>,
    received: Vec<u64>,
    /// Directed pairs (from, to) whose bytes are held.
    cut: BTreeSet<(usize, usize)>,
    rngs: BTreeMap<(usize, usize), fastrand::Rng>,
    listeners: BTreeMap<String, (usize, async_channel::Sender<SimIncoming>)>,
    pipes: Vec<Weak<Mutex<Pipe>>>,
    connections: u64,
}

impl Network {
    /// A network on `clock`; link randomness derives from `seed`.
    pub fn new(clock: Arc<Clock>, seed: u64) -> Arc<Self> {
        Arc::new(Network { clock, seed, state: Mutex::default() })
    }

    /// Adds a peer with `link`; returns its index.
    pub fn add_peer(&self, link: LinkSpec) -> usize {
        let mut s = lock(&self.state);
        s.links.push(link);
        s.up_free.push(Time::ZERO);
        s.uplinks.push(Uplink::default());
        s.down_busy.push(BTreeMap::new());
        s.sent.push(0);
        s.received.push(0);
        s.links.len() - 1
    }

    /// Changes a peer's link from now on.
    pub fn set_link(&self, peer: usize, link: LinkSpec) {
        lock(&self.state).links[peer] = link;
    }

    /// A peer's link now.
    pub fn link(&self, peer: usize) -> LinkSpec {
        lock(&self.state).links[peer]
    }

    /// Bytes a peer has sent and received.
    pub fn counters(&self, peer: usize) -> (u64, u64) {
        let s = lock(&self.state);
        (s.sent[peer], s.received[peer])
    }

    /// Connections made so far.
    pub fn connections(&self) -> u64 {
        lock(&self.state).connections
    }

    /// Holds everything `from` sends to `to` until [`Network::heal`].
    pub fn cut(&self, from: usize, to: usize) {
        lock(&self.state).cut.insert((from, to));
    }

    /// Delivers again from `from` to `to`, starting with what was held.
    pub fn heal(&self, from: usize, to: usize) {
        let pipes: Vec<_> = {
            let mut s = lock(&self.state);
            s.cut.remove(&(from, to));
            s.pipes.retain(|p| p.strong_count() > 0);
            s.pipes.iter().filter_map(Weak::upgrade).collect()
        };
        for pipe in pipes {
            let held: Vec<(usize, u64)> = {
                let p = lock(&pipe);
                if (p.from, p.to) != (from, to) {
                    continue;
                }
                let held = |c: &&Chunk| c.sent && c.at.is_none();
                p.chunks.iter().enumerate().filter(|(_, c)| held(c)).map(|(i, c)| (i, c.len())).collect()
            };
            let now = self.clock.now();
            let times: Vec<Time> =
                held.iter().map(|&(_, len)| self.schedule(from, to, len, true).unwrap_or(now)).collect();
            let mut p = lock(&pipe);
            let mut last = Time::ZERO;
            for ((i, _), t) in held.into_iter().zip(times) {
                if let Some(c) = p.chunks.get_mut(i) {
                    last = last.max(t);
                    c.at = Some(last);
                }
            }
            p.wake_reader();
        }
    }

    /// When `len` bytes written now from `from` arrive at `to`, or `None`
    /// while the way is cut. Counts the bytes. (An empty chunk, the end of
    /// a stream, takes the time of one byte and counts as none.)
    fn schedule(&self, from: usize, to: usize, len: u64, force: bool) -> Option<Time> {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        if !force && s.cut.contains(&(from, to)) {
            return None;
        }
        let (src, dst) = (s.links[from], s.links[to]);
        let left = s.up_free[from].max(now) + src.up.time_for(len.max(1));
        s.up_free[from] = left;
        let jitter_max = src.jitter.max(dst.jitter).as_nanos() as u64;
        let jitter = if jitter_max > 0 {
            let seed = self.seed;
            let rng = s.rngs.entry((from, to)).or_insert_with(|| fastrand::Rng::with_seed(mix(seed, from, to)));
            Duration::from_nanos(rng.u64(..=jitter_max))
        } else {
            Duration::ZERO
        };
        let latency = src.latency.max(dst.latency) + jitter;
        // The chunk takes the downlink for its size, ending no sooner than
        // its last byte can arrive. Slots are taken in arrival order, not
        // in the order chunks were written: a chunk still crossing a slow
        // uplink does not hold up one that arrives before it.
        let take = dst.down.time_for(len.max(1));
        let earliest = Time::from_epoch((left + latency).since_epoch().saturating_sub(take));
        let arrive = reserve(&mut s.down_busy[to], now, earliest, take);
        s.sent[from] += len;
        s.received[to] += len;
        tracing::trace!(target: "simnet::wire", from, to, len, now = now.since_epoch().as_secs_f64(), left = left.since_epoch().as_secs_f64(), "chunk");
        Some(arrive)
    }

    /// Moves bytes waiting in `peer`'s connections onto its uplink while
    /// its queue has room, a turn of up to a chunk per connection; sets a
    /// timer for when it has room again.
    fn pump(self: &Arc<Self>, peer: usize) {
        loop {
            let pipe = {
                let now = self.clock.now();
                let mut s = lock(&self.state);
                let free = s.up_free[peer];
                if free.saturating_since(now) > UPLINK_QUEUE {
                    let at = Time::from_epoch(free.since_epoch() - UPLINK_QUEUE);
                    if s.uplinks[peer].timer.is_none() {
                        let waker = Waker::from(Arc::new(Pump { net: Arc::downgrade(self), peer }));
                        s.uplinks[peer].timer = Some(self.clock.wake_at(at, waker));
                    }
                    return;
                }
                let up = &mut s.uplinks[peer];
                match up.new.pop_front().or_else(|| up.old.pop_front()) {
                    Some(p) => p,
                    None => return,
                }
            };
            let mut p = lock(&pipe);
            let (from, to) = (p.from, p.to);
            let mut turn = 0;
            let mut last = p.last_at;
            let first = p.chunks.iter().position(|c| !c.sent).unwrap_or(p.chunks.len());
            for c in p.chunks.iter_mut().skip(first) {
                if turn > 0 && turn + c.data.len() > CHUNK {
                    break;
                }
                turn += c.data.len().max(1);
                c.sent = true;
                // Bytes of one connection arrive in order, jitter or not.
                c.at = self.schedule(from, to, c.data.len() as u64, false).map(|t| {
                    last = last.max(t);
                    last
                });
            }
            p.last_at = last;
            p.wake_reader();
            if p.chunks.back().is_some_and(|c| !c.sent) {
                drop(p);
                lock(&self.state).uplinks[peer].old.push_back(pipe);
            } else {
                p.listed = false;
            }
        }
    }

    /// The handle peer `me` uses to connect and listen, as `name`.
    pub fn transport(self: &Arc<Self>, me: usize, name: &str) -> SimTransport {
        SimTransport { net: self.clone(), me, name: name.to_string() }
    }

    fn queue_of(&self, peer: usize) -> usize {
        usize::try_from(lock(&self.state).links[peer].queue.0).unwrap_or(usize::MAX).max(CHUNK)
    }

    fn latency(&self, a: usize, b: usize) -> Duration {
        let s = lock(&self.state);
        s.links[a].latency.max(s.links[b].latency)
    }

    fn is_cut(&self, from: usize, to: usize) -> bool {
        lock(&self.state).cut.contains(&(from, to))
    }
}

/// Takes the first free slot of `len` at or after `earliest` in `busy`
/// (which forgets what ended before `now`); returns the slot's end.
fn reserve(busy: &mut BTreeMap<Time, Time>, now: Time, earliest: Time, len: Duration) -> Time {
    while let Some((&start, &end)) = busy.first_key_value() {
        if end > now {
            break;
        }
        busy.remove(&start);
    }
    let mut start = earliest;
    for (&s, &e) in busy.iter() {
        if e <= start {
            continue;
        }
        if s >= start + len {
            break;
        }
        start = e;
    }
    let mut end = start + len;
    // Merge with the neighbours it touches, so the map stays small.
    let mut begin = start;
    if let Some((&s, &e)) = busy.range(..=start).next_back()
        && e == start
    {
        busy.remove(&s);
        begin = s;
    }
    if let Some(e) = busy.remove(&end) {
        end = e;
    }
    busy.insert(begin, end);
    start + len
}

/// A per-link random stream: the same for a pair whatever else exists.
fn mix(seed: u64, a: usize, b: usize) -> u64 {
    let h = blake3::hash(&[seed.to_le_bytes(), (a as u64).to_le_bytes(), (b as u64).to_le_bytes()].concat());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(eight)
}

#[derive(Debug)]
struct Chunk {
    /// Arrival time; `None` while held by a partition, or waiting for
    /// the uplink.
    at: Option<Time>,
    /// The uplink took it.
    sent: bool,
    data: Vec<u8>,
    read: usize,
    /// The writer closed after this chunk (an empty chunk).
    fin: bool,
}

impl Chunk {
    fn len(&self) -> u64 {
        (self.data.len() - self.read) as u64
    }
}

/// One direction of a connection.
#[derive(Debug)]
struct Pipe {
    from: usize,
    to: usize,
    chunks: VecDeque<Chunk>,
    in_flight: usize,
    cap: usize,
    reader_gone: bool,
    writer_done: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    last_at: Time,
    /// Waiting for the uplink to take its bytes.
    listed: bool,
}

impl Pipe {
    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// A connection end.
#[derive(Debug)]
pub struct SimStream {
    net: Arc<Network>,
    read: Arc<Mutex<Pipe>>,
    write: Arc<Mutex<Pipe>>,
    timer: Option<(Time, u64)>,
}

impl SimStream {
    fn pair(net: &Arc<Network>, a: usize, b: usize) -> (SimStream, SimStream) {
        let pipe = |from, to| {
            let p = Arc::new(Mutex::new(Pipe {
                from,
                to,
                chunks: VecDeque::new(),
                in_flight: 0,
                cap: net.queue_of(from),
                reader_gone: false,
                writer_done: false,
                reader: None,
                writer: None,
                last_at: Time::ZERO,
                listed: false,
            }));
            lock(&net.state).pipes.push(Arc::downgrade(&p));
            p
        };
        let (ab, ba) = (pipe(a, b), pipe(b, a));
        lock(&net.state).connections += 1;
        (
            SimStream { net: net.clone(), read: ba.clone(), write: ab.clone(), timer: None },
            SimStream { net: net.clone(), read: ab, write: ba, timer: None },
        )
    }

    /// Queues `data` for the uplink.
    fn push(&self, data: Vec<u8>, fin: bool) {
        let from = {
            let mut p = lock(&self.write);
            p.in_flight += data.len();
            p.chunks.push_back(Chunk { at: None, sent: false, data, read: 0, fin });
            let from = p.from;
            if std::mem::replace(&mut p.listed, true) {
                return;
            }
            from
        };
        lock(&self.net.state).uplinks[from].new.push_back(self.write.clone());
        self.net.pump(from);
    }
}

impl AsyncRead for SimStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let now = this.net.clock.now();
        let wait = {
            let mut p = lock(&this.read);
            match p.chunks.front_mut() {
                Some(c) if c.at.is_some_and(|t| t <= now) => {
                    if let Some(k) = this.timer.take() {
                        this.net.clock.cancel(k);
                    }
                    if c.fin {
                        return Poll::Ready(Ok(0));
                    }
                    let n = buf.len().min(c.data.len() - c.read);
                    buf[..n].copy_from_slice(&c.data[c.read..c.read + n]);
                    c.read += n;
                    if c.read == c.data.len() {
                        p.chunks.pop_front();
                    }
                    p.in_flight -= n;
                    p.wake_writer();
                    return Poll::Ready(Ok(n));
                }
                Some(c) => c.at,
                None => None,
            }
        };
        let mut p = lock(&this.read);
        p.reader = Some(cx.waker().clone());
        drop(p);
        // Woken when the chunk in front arrives (the same timer while it
        // is the same chunk).
        this.net.clock.arm(&mut this.timer, wait, cx.waker());
        Poll::Pending
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = {
            let mut p = lock(&self.write);
            if p.reader_gone {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if p.writer_done {
                return Poll::Ready(Err(io::Error::other("write after close")));
            }
            let room = p.cap.saturating_sub(p.in_flight);
            if room == 0 {
                p.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            buf.len().min(room).min(CHUNK)
        };
        self.push(buf[..n].to_vec(), false);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done = std::mem::replace(&mut lock(&self.write).writer_done, true);
        if !done {
            self.push(Vec::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if let Some(k) = self.timer.take() {
            self.net.clock.cancel(k);
        }
        let done = std::mem::replace(&mut lock(&self.write).writer_done, true);
        if !done {
            self.push(Vec::new(), true);
        }
        let mut r = lock(&self.read);
        r.reader_gone = true;
        r.chunks.clear();
        r.in_flight = 0;
        r.wake_writer();
    }
}

/// Peer `me`'s view of the network.
#[derive(Debug, Clone)]
pub struct SimTransport {
    net: Arc<Network>,
    me: usize,
    name: String,
}

/// Listening as `name:5000`.
#[derive(Debug)]
pub struct SimListener {
    net: Arc<Network>,
    addr: String,
    incoming: async_channel::Receiver<SimIncoming>,
}

/// A connection waiting to be accepted.
#[derive(Debug)]
pub struct SimIncoming {
    stream: SimStream,
    remote: String,
}

impl Transport for SimTransport {
    type Stream = SimStream;
    type Listener = SimListener;

    fn name(&self) -> &'static str {
        "sim"
    }

    async fn connect(&self, addr: &str) -> io::Result<Connected<SimStream>> {
        let target =
            lock(&self.net.state).listeners.get(addr).filter(|(_, tx)| !tx.is_closed()).map(|(i, tx)| (*i, tx.clone()));
        let Some((to, tx)) = target else {
            // A refusal comes back after a round trip.
            let rtt = self.net.latency(self.me, self.me) * 2;
            self.net.clock.sleep_until(self.net.clock.now() + rtt).await;
            return Err(io::ErrorKind::ConnectionRefused.into());
        };
        // The handshake takes a round trip, and waits while either way is
        // cut (lost packets; the caller's connect timeout decides).
        let rtt = self.net.latency(self.me, to) * 2;
        loop {
            self.net.clock.sleep_until(self.net.clock.now() + rtt).await;
            if !self.net.is_cut(self.me, to) && !self.net.is_cut(to, self.me) {
                break;
            }
        }
        let (mine, theirs) = SimStream::pair(&self.net, self.me, to);
        let remote = format!("{}:{}", self.name, 40000 + self.net.connections() % 20000);
        tx.send(SimIncoming { stream: theirs, remote })
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
        Ok(Connected::anonymous(mine))
    }

    async fn bind(&self, addr: &str) -> io::Result<SimListener> {
        let (tx, rx) = async_channel::unbounded();
        let mut s = lock(&self.net.state);
        if s.listeners.get(addr).is_some_and(|(_, tx)| !tx.is_closed()) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        s.listeners.insert(addr.to_string(), (self.me, tx));
        Ok(SimListener { net: self.net.clone(), addr: addr.to_string(), incoming: rx })
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        // A closed channel refuses connects; forget it unless the address
        // was bound again since.
        self.incoming.close();
        let mut s = lock(&self.net.state);
        if s.listeners.get(&self.addr).is_some_and(|(_, tx)| tx.is_closed()) {
            s.listeners.remove(&self.addr);
        }
    }
}

impl Listener for SimListener {
    type Stream = SimStream;
    type Incoming = SimIncoming;

    async fn accept(&self) -> io::Result<SimIncoming> {
        self.incoming.recv().await.map_err(|_| io::Error::other("listener closed"))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.addr.clone())
    }
}

impl Incoming for SimIncoming {
    type Stream = SimStream;

    fn remote(&self) -> String {
        self.remote.clone()
    }

    async fn establish(self) -> io::Result<Connected<SimStream>> {
        Ok(Connected::anonymous(self.stream))
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use p2p_core::runtime::Runtime;

    use super::*;
    use crate::clock::{Host, SimRuntime};

    /// Peer 0 writes `bulk` bytes to each of peers 1 and 2 at once, and,
    /// once they are under way, `small` bytes to peer 3. Returns when the
    /// last byte reached each of 1, 2 and 3.
    fn share_an_uplink(bulk: usize, small: usize) -> [Time; 3] {
        let clock = Arc::new(Clock::default());
        let net = Network::new(clock.clone(), 7);
        // 1 MB/s up: a chunk of 64 KiB leaves in 65.5 ms.
        let up = LinkSpec { up: Rate(1_000_000), latency: Duration::from_millis(5), ..LinkSpec::default() };
        let down = LinkSpec { latency: Duration::from_millis(5), ..LinkSpec::default() };
        let peers: Vec<usize> = [up, down, down, down].into_iter().map(|l| net.add_peer(l)).collect();
        let host = Host::up(&clock, 0);
        let rt = SimRuntime::new(clock.clone(), &host, 1);
        let arrived = Arc::new(Mutex::new([Time::ZERO; 3]));
        for (i, &to) in peers[1..].iter().enumerate() {
            let (mut tx, mut rx) = SimStream::pair(&net, peers[0], to);
            let (rt2, arrived) = (rt.clone(), arrived.clone());
            let len = if i < 2 { bulk } else { small };
            rt.spawn(async move {
                if i == 2 {
                    rt2.sleep(Duration::from_millis(200)).await;
                }
                tx.write_all(&vec![7u8; len]).await.expect("writes");
                tx.close().await.expect("closes");
            })
            .detach();
            let rt2 = rt.clone();
            rt.spawn(async move {
                let mut got = Vec::new();
                rx.read_to_end(&mut got).await.expect("reads");
                assert_eq!(got.len(), len);
                lock(&arrived)[i] = rt2.now();
            })
            .detach();
        }
        for _ in 0..100_000 {
            while host.tick() {}
            match clock.next_deadline() {
                Some(t) => {
                    clock.advance_to(t);
                }
                None => break,
            }
        }
        *lock(&arrived)
    }

    #[test]
    fn connections_take_turns_on_an_uplink_and_a_small_message_does_not_wait_behind_them() {
        let ms = |t: Time| t.since_epoch().as_millis();
        let [a, b, small] = share_an_uplink(1 << 20, 100);
        // 2 MiB leave at 1 MB/s in 2.1 s; in turns, both end within two
        // chunks of each other (the first one written took the first two).
        let last = ms(a.max(b));
        assert!((2090..2200).contains(&last), "{last}");
        assert!(ms(a).abs_diff(ms(b)) <= 2 * 66, "{} and {}", ms(a), ms(b));
        // The small one, written at 200 ms, waits for at most the uplink's
        // queue and the chunk in its way, not for 2 MiB.
        assert!(ms(small) < 200 + 50 + 66 + 10, "{}", ms(small));
    }
}

//! The index server: sessions of serving peers that join and publish
//! what they serve, and clients that ask what is on the network and who
//! serves a file. It never carries file data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::state::{IndexError, IndexState, Limits};
use crate::conn::{Conn, ConnError, Wait, kind};
use crate::manifest::verify_proof;
use crate::protocol::{CAP_INDEX, CAP_SWARM, ErrorCode, Hello, LIST_PAGE, Message, PEER_PAGE};
use crate::runtime::{Runtime, Time, timeout};
use crate::server::accept::{self, Connections, Slot};
use crate::server::{ClientInfo, Gate, Standing};
use crate::transport::{Connected, Listener, Stream};
use crate::transport::{host_of, with_port};

/// Settings of an index.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// This index's id, sent in the handshake.
    pub peer_id: String,
    /// A joined peer that stays silent this long is forgotten.
    pub ttl: Duration,
    /// Only peers the gate knows may join, list or ask.
    pub private: bool,
    /// Decides who a client is; without one, nobody is known.
    pub gate: Option<Arc<dyn Gate>>,
    /// What the index holds at most.
    pub limits: Limits,
    /// Longest wait for the rest of a frame, or for a write to progress.
    pub io_timeout: Duration,
    /// Longest a client that has not joined may stay silent.
    pub idle_timeout: Duration,
    /// Connections served at once (joined peers included). When all are
    /// taken, a new one takes the place of the one idle the longest that
    /// has not joined; see [`ServerConfig`](crate::server::ServerConfig).
    pub max_connections: usize,
    /// Connections not through their handshakes at once.
    pub max_handshakes: usize,
    /// Longest a transport handshake may take.
    pub handshake_timeout: Duration,
    /// Publish pages and reports a session may send in a burst, and per
    /// second after.
    pub publish_burst: u32,
    /// See `publish_burst`.
    pub publish_per_sec: u32,
    /// Queries (a Locate, a page of a listing) a session may make in a
    /// burst, and per second after.
    pub query_burst: u32,
    /// See `query_burst`.
    pub query_per_sec: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            peer_id: String::new(),
            ttl: Duration::from_secs(30),
            private: false,
            gate: None,
            limits: Limits::default(),
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 25_000,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            publish_burst: 256,
            publish_per_sec: 64,
            query_burst: 1024,
            query_per_sec: 512,
        }
    }
}

/// The refusal of a query over the session's budget.
const ASKING_TOO_OFTEN: &str = "the index is asked too often on this connection; wait a second and ask again";

/// The index. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct Tracker<R> {
    rt: R,
    config: TrackerConfig,
    shared: Arc<Shared>,
    conns: Arc<Connections>,
}

#[derive(Debug)]
struct Shared {
    /// One lock, held only for a step of the state machine (no await).
    state: Mutex<IndexState>,
    sessions: AtomicU64,
    /// Connections taken since the start.
    taken: AtomicU64,
}

/// One client connection as the index sees it.
struct Client<St, R> {
    conn: Conn<St, R>,
    who: String,
    info: ClientInfo,
    standing: Standing,
    /// The session this connection announces for.
    joined: Option<u64>,
    /// Its Hello had `CAP_SWARM`: it is named partial sources.
    swarms: bool,
    /// Publish pages and reports it may still send.
    publishes: Bucket,
    /// Queries it may still make.
    queries: Bucket,
}

/// A token bucket: `rate` tokens a second, up to `burst`.
struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    refilled: Time,
}

impl Bucket {
    fn new(burst: u32, rate: u32, now: Time) -> Self {
        Self { tokens: f64::from(burst), burst: f64::from(burst), rate: f64::from(rate), refilled: now }
    }

    /// Takes `n` tokens if there are that many now. A request dearer than
    /// the whole burst costs the whole burst, so it can still be served.
    fn take(&mut self, n: usize, now: Time) -> bool {
        self.tokens = (self.tokens + now.saturating_since(self.refilled).as_secs_f64() * self.rate).min(self.burst);
        self.refilled = now;
        let n = (n as f64).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

impl<R: Runtime> Tracker<R> {
    /// An empty index.
    pub fn new(rt: R, config: TrackerConfig) -> Self {
        let state = Mutex::new(IndexState::new(config.limits.clone()));
        let limits = crate::server::admission::Limits::for_connections(
            config.max_connections,
            config.max_handshakes,
            config.gate.is_some(),
        );
        let conns = Connections::new(limits, config.handshake_timeout.min(config.io_timeout));
        Self {
            rt,
            config,
            shared: Arc::new(Shared { state, sessions: AtomicU64::new(0), taken: AtomicU64::new(0) }),
            conns,
        }
    }

    /// Serves connections until `stop` completes.
    pub async fn run<L: Listener>(&self, listener: L, stop: impl std::future::Future<Output = ()>) {
        let this = self.clone();
        let serve = move |connected, remote, slot| {
            let this = this.clone();
            async move { this.serve_connection(connected, remote, slot).await }
        };
        accept::run(&self.rt, &self.conns, listener, stop, serve).await;
    }

    /// Connections the index has taken since it started (peers and askers).
    pub fn connections_taken(&self) -> u64 {
        self.shared.taken.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.conns.open()
    }

    /// The peers online now.
    pub fn peers(&self) -> Vec<crate::protocol::PeerInfo> {
        self.state().peers()
    }

    /// Every file on the network now.
    pub fn files(&self) -> Arc<Vec<crate::protocol::IndexedFile>> {
        self.state().files()
    }

    /// How many files the network has now (each content of a name once).
    pub fn file_count(&self) -> usize {
        self.state().file_count()
    }

    /// How many peers are online now.
    pub fn peer_count(&self) -> usize {
        self.state().peer_count()
    }

    /// Serves one established connection until it closes or fails.
    async fn serve_connection<St: Stream>(&self, connected: Connected<St>, remote: String, slot: Slot<R>) {
        let conn = Conn::new(connected.stream, self.rt.clone(), self.config.io_timeout);
        self.shared.taken.fetch_add(1, Ordering::Relaxed);
        let info = ClientInfo { claimed_id: String::new(), identity: connected.peer, remote: remote.clone() };
        let mut client = Client {
            conn,
            who: remote,
            info,
            standing: Standing::Stranger,
            joined: None,
            swarms: false,
            publishes: Bucket::new(self.config.publish_burst, self.config.publish_per_sec, self.rt.now()),
            queries: Bucket::new(self.config.query_burst, self.config.query_per_sec, self.rt.now()),
        };
        let result = self.connection(&mut client, &slot).await;
        if let Some(session) = client.joined.take() {
            self.state().leave(session);
            tracing::info!("{} left", client.who);
        }
        match result {
            Ok(()) | Err(ConnError::Closed) => {}
            Err(e) => {
                let message = e.to_string();
                let error = Message::Error { id: 0, code: ErrorCode::BadRequest, message: message.clone() };
                let _ = client.conn.send(&error).await;
                tracing::warn!(client = %client.who, error = %message, "dropped connection");
            }
        }
        client.conn.close().await;
    }

    async fn connection<St: Stream>(&self, c: &mut Client<St, R>, slot: &Slot<R>) -> Result<(), ConnError> {
        let theirs = timeout(&self.rt, self.config.io_timeout, c.conn.handshake_accept()).await??;
        c.info.claimed_id = crate::sanitize(&theirs.peer_id, crate::protocol::MAX_PEER_ID);
        c.swarms = theirs.capabilities & CAP_SWARM != 0;
        if !c.info.claimed_id.is_empty() {
            c.who = format!("{} ({})", c.info.claimed_id, c.who);
        }
        if let Some(gate) = &self.config.gate {
            match gate.admit(&c.info) {
                Ok(standing) => c.standing = standing,
                Err(reason) => {
                    tracing::warn!("refused {}: {reason}", c.who);
                    return c.conn.send(&Message::Error { id: 0, code: ErrorCode::Forbidden, message: reason }).await;
                }
            }
        }
        if let Err(full) = slot.establish(c.standing == Standing::Known) {
            tracing::warn!("refused {}: {full}", c.who);
            let message = format!("the index is {full}");
            return c.conn.send(&Message::Error { id: 0, code: ErrorCode::Busy, message }).await;
        }
        let hello = Hello { peer_id: self.config.peer_id.clone(), agent: crate::AGENT.into(), capabilities: CAP_INDEX };
        c.conn.send(&Message::Hello(hello)).await?;
        loop {
            // A joined peer's session keeps its place; an asker waiting for
            // its next question may make room for others.
            if c.joined.is_none() {
                slot.idle(false);
            }
            // A joined peer must say something within the TTL.
            let wait = if c.joined.is_some() { self.config.ttl } else { self.config.idle_timeout };
            let msg = match c.conn.read_message(Wait::Idle(wait)).await {
                Ok(m) => m,
                Err(ConnError::Closed) => return Ok(()),
                Err(ConnError::Stalled(_)) if c.joined.is_some() => {
                    tracing::info!("{} went silent for {:?}", c.who, self.config.ttl);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            slot.busy();
            self.request(c, msg).await?;
        }
    }

    async fn request<St: Stream>(&self, c: &mut Client<St, R>, msg: Message) -> Result<(), ConnError> {
        let refuse = |id: u32, code: ErrorCode, message: String| Message::Error { id, code, message };
        let forbidden = self.config.private && c.standing != Standing::Known;
        let answer = match msg {
            _ if forbidden => {
                let id = request_id(&msg).unwrap_or(0);
                refuse(id, ErrorCode::Forbidden, "this index serves known peers only".into())
            }
            Message::Join { id, port } => self.join(c, id, port),
            Message::Publish { id, files, removed, reset } => {
                let Some(session) = c.joined else {
                    return c.conn.send(&refuse(id, ErrorCode::BadRequest, IndexError::NotJoined.to_string())).await;
                };
                if !c.publishes.take(1, self.rt.now()) {
                    let message = format!(
                        "publishing too often: at most {} pages a second; send the full list again later",
                        self.config.publish_per_sec
                    );
                    refuse(id, ErrorCode::Busy, message)
                } else {
                    match self.state().publish(session, files, removed, reset) {
                        Ok(n) => Message::Published { id, files: n as u32 },
                        Err(e @ IndexError::NotJoined) => {
                            // Its entry is gone: it must join again.
                            c.joined = None;
                            refuse(id, ErrorCode::BadRequest, e.to_string())
                        }
                        Err(e) => refuse(id, ErrorCode::TooLarge, e.to_string()),
                    }
                }
            }
            Message::Fetching { id, info } => {
                let Some(session) = c.joined else {
                    return c.conn.send(&refuse(id, ErrorCode::BadRequest, IndexError::NotJoined.to_string())).await;
                };
                if !c.publishes.take(1, self.rt.now()) {
                    refuse(id, ErrorCode::Busy, "saying what it fetches too often".into())
                } else {
                    match self.state().fetch(session, info) {
                        Ok(n) => Message::Published { id, files: n as u32 },
                        Err(e @ IndexError::NotJoined) => {
                            c.joined = None;
                            refuse(id, ErrorCode::BadRequest, e.to_string())
                        }
                        Err(e) => refuse(id, ErrorCode::TooLarge, e.to_string()),
                    }
                }
            }
            Message::Ping { id } => match c.joined {
                // Its entry is gone (the same peer joined again from
                // another session): it must join again to be listed.
                Some(session) if !self.state().is_joined(session) => {
                    c.joined = None;
                    refuse(id, ErrorCode::BadRequest, IndexError::NotJoined.to_string())
                }
                _ => Message::Pong { id },
            },
            Message::IndexList { id } => {
                let files = self.state().files();
                if !c.queries.take(files.len().div_ceil(LIST_PAGE).max(1), self.rt.now()) {
                    return c.conn.send(&refuse(id, ErrorCode::Busy, ASKING_TOO_OFTEN.into())).await;
                }
                return c
                    .conn
                    .send_pages(&files, LIST_PAGE, |files, last| Message::IndexFiles { id, files, last })
                    .await;
            }
            Message::Locate { id, file } => {
                if !c.queries.take(1, self.rt.now()) {
                    refuse(id, ErrorCode::Busy, ASKING_TOO_OFTEN.into())
                } else {
                    let asker = host_of(&c.info.remote);
                    Message::Located { id, found: self.state().locate(&file, self.rt.now(), &asker, c.swarms) }
                }
            }
            Message::ListPeers { id } => {
                let peers = self.state().peers();
                if !c.queries.take(peers.len().div_ceil(PEER_PAGE).max(1), self.rt.now()) {
                    return c.conn.send(&refuse(id, ErrorCode::Busy, ASKING_TOO_OFTEN.into())).await;
                }
                return c.conn.send_pages(&peers, PEER_PAGE, |peers, last| Message::PeerPage { id, peers, last }).await;
            }
            Message::Suspect { id, .. } => refuse(
                id,
                ErrorCode::BadRequest,
                "a report must carry evidence (the bad block, proven against the file's hash): upgrade p2p".into(),
            ),
            Message::Report { id, hash, addr, bad } => {
                if !c.publishes.take(1, self.rt.now()) {
                    refuse(
                        id,
                        ErrorCode::Busy,
                        "reporting too often: the index takes a few reports a second; wait and report again".into(),
                    )
                } else {
                    let addr = crate::sanitize(&addr, 300);
                    let size = self.state().size_of(&hash);
                    let proven = size.is_some_and(|size| {
                        bad.got != bad.want && verify_proof(size, hash, bad.block, &bad.want, &bad.proof)
                    });
                    if proven {
                        tracing::info!("{} reports {addr} served bad data of {}", c.who, hash.short());
                        self.state().suspect(&addr, hash, &host_of(&c.info.remote), self.rt.now());
                        Message::Noted { id }
                    } else {
                        let message = format!(
                            "the report's evidence does not check out against blake3 {} (or no peer lists it)",
                            hash.short()
                        );
                        refuse(id, ErrorCode::BadRequest, message)
                    }
                }
            }
            other => {
                return Err(ConnError::Unexpected(format!("{} is not a request an index answers", kind(&other))));
            }
        };
        c.conn.send(&answer).await
    }

    fn join<St: Stream>(&self, c: &mut Client<St, R>, id: u32, port: u16) -> Message {
        if port == 0 {
            return Message::Error { id, code: ErrorCode::BadRequest, message: "port 0 cannot be served on".into() };
        }
        // The address is where the connection comes from: a peer can only
        // announce itself.
        let addr = with_port(&c.info.remote, port);
        // A session joins once; joining again starts over.
        if let Some(session) = c.joined.take() {
            self.state().leave(session);
        }
        let session = self.shared.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let id_text = c.info.claimed_id.clone();
        match self.state().join(session, id_text, addr.clone(), c.info.identity) {
            Ok(()) => {
                c.joined = Some(session);
                tracing::info!("{} joined, serving on {addr}", c.who);
                Message::Joined { id, ttl_secs: self.config.ttl.as_secs().max(1) as u32 }
            }
            Err(e) => Message::Error { id, code: ErrorCode::Busy, message: e.to_string() },
        }
    }

    fn state(&self) -> MutexGuard<'_, IndexState> {
        // Every change of the state is one call that leaves it whole: a
        // panic elsewhere leaves nothing half-done behind.
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn request_id(m: &Message) -> Option<u32> {
    match m {
        Message::Join { id, .. }
        | Message::Publish { id, .. }
        | Message::Fetching { id, .. }
        | Message::Ping { id }
        | Message::IndexList { id }
        | Message::Locate { id, .. }
        | Message::ListPeers { id }
        | Message::Suspect { id, .. }
        | Message::Report { id, .. } => Some(*id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Bucket;
    use crate::runtime::Time;
    use crate::transport::with_port;

    #[test]
    fn a_bucket_refills_at_its_rate_and_serves_a_request_dearer_than_its_burst() {
        let t0 = Time::from_epoch(Duration::from_secs(100));
        let mut b = Bucket::new(4, 2, t0);
        assert!(b.take(3, t0));
        assert!(!b.take(2, t0), "one token left");
        assert!(b.take(2, t0 + Duration::from_millis(500)), "one more after half a second");
        // A listing of many pages, more than the burst: served once full.
        assert!(!b.take(10, t0 + Duration::from_millis(500)));
        assert!(b.take(10, t0 + Duration::from_secs(3)));
        assert!(!b.take(1, t0 + Duration::from_secs(3)), "it took the whole burst");
    }

    #[test]
    fn the_address_is_the_connection_s_host_with_the_announced_port() {
        assert_eq!(with_port("10.1.2.3:41234", 5000), "10.1.2.3:5000");
        assert_eq!(with_port("[::1]:41234", 5000), "[::1]:5000");
        assert_eq!(with_port("peer7:9", 5000), "peer7:5000");
    }
}

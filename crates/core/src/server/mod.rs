//! The serving side: answers listings, manifests and reads, and receives
//! uploads, for many connections at once.
//!
//! Each connection is one task that owns its stream and serves requests in
//! order. Limits keep a misbehaving client from hurting the others: a small
//! request queue that takes only requests, a deadline on every frame (a
//! trickle is a stall), an idle timeout, a cap on connections, and two
//! memory budgets shared by all connections (file data being sent; uploads
//! being received), so memory does not grow with the number of clients.

pub(crate) mod accept;
pub(crate) mod admission;
mod choke;
mod crowd;
mod fair;
mod link;
mod read;
mod seeding;
mod swarm;
mod upload;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_lock::Semaphore;

use crate::catalog::Catalog;
use crate::catalog::PartialReader;
use crate::conn::{Conn, ConnError, kind};
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{
    CAP_ELSEWHERE, CAP_GOT, CAP_SERVE, CAP_SWARM, CAP_UPLOAD, ErrorCode, FileRef, Hello, LIST_PAGE, MANIFEST_PAGE,
    Message,
};
use crate::runtime::{Runtime, Time, timeout};
use crate::store::{Store, StoreError};
use crate::transport::{Connected, Fingerprint, Listener, Stream};
use link::Link;

/// Limits and policy of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This peer's id, sent in the handshake.
    pub peer_id: String,
    /// Who may push files.
    pub uploads: UploadPolicy,
    /// Serve (list, manifest, read) known clients only.
    pub private: bool,
    /// Decides who a client is; without one, no client is known.
    pub gate: Option<Arc<dyn Gate>>,
    /// Whether an upload may replace a file with different content.
    pub allow_overwrite: bool,
    /// Longest wait for the rest of a frame, or for a write to progress.
    pub io_timeout: Duration,
    /// Longest wait for the next request on an open connection.
    pub idle_timeout: Duration,
    /// Connections served at once. When all are taken, a new one takes
    /// the place of the connection idle the longest (a stranger's first);
    /// if every one is busy, it is told "busy" and closed. Strangers may
    /// take at most three quarters of them, and one host a quarter.
    pub max_connections: usize,
    /// Connections accepted but not through their handshakes (TLS, then
    /// p2p's) at once; one host may hold half. A new one takes the place of
    /// the oldest of its host (or, when all are taken, of a host no known
    /// peer connects from), so clients that never finish a handshake
    /// cannot keep anyone out.
    pub max_handshakes: usize,
    /// Longest a transport handshake may take (capped by `io_timeout`).
    pub handshake_timeout: Duration,
    /// Requests a client may queue on one connection.
    pub max_queued: usize,
    /// Bytes of file data all connections together hold in memory while
    /// sending; the connections of one host at most half of it. A
    /// connection whose client does not read what it sent gives
    /// its share back after a moment; such connections may hold as much
    /// again between them, and past that the one stalled longest is closed.
    pub read_budget: usize,
    /// Bytes all uploads in progress together may hold (manifests and
    /// buffers); an upload that does not fit is told "busy".
    pub upload_budget: usize,
    /// Serve only what this process downloads (or is downloading) into the
    /// catalog, by hash, to peers of its swarms: nothing is listed, and no
    /// other file of the folder is served. What `p2p download` listens
    /// with.
    pub downloads_only: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            peer_id: String::new(),
            uploads: UploadPolicy::KnownPeers,
            private: false,
            gate: None,
            allow_overwrite: false,
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 512,
            max_handshakes: 256,
            handshake_timeout: Duration::from_secs(10),
            max_queued: 16,
            read_budget: 32 << 20,
            upload_budget: 64 << 20,
            downloads_only: false,
        }
    }
}

/// Who may push files to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadPolicy {
    /// Nobody: the folder is read-only to others.
    Nobody,
    /// Clients the [`Gate`] knows (a pinned or remembered identity).
    #[default]
    KnownPeers,
    /// Anyone who can connect (a trusted network).
    Anyone,
}

/// A client as the server sees it after the handshake.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer id it claims in its Hello (empty if none).
    pub claimed_id: String,
    /// The fingerprint its transport proved, if the transport authenticates.
    pub identity: Option<Fingerprint>,
    /// Where it connects from.
    pub remote: String,
}

/// Who a client is, once admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// An identity the server knows (pinned, or remembered for a listed peer).
    Known,
    /// Anyone else.
    Stranger,
}

/// Decides who a client is from the id it claims and the identity its
/// transport proved: known, a stranger, or refused outright (an identity
/// that contradicts a pin).
pub trait Gate: Send + Sync + std::fmt::Debug + 'static {
    /// The client's standing, or why it is refused.
    fn admit(&self, client: &ClientInfo) -> Result<Standing, String>;
}

/// A peer's serving side.
#[derive(Debug)]
pub struct Server<S: Store, R> {
    catalog: Catalog<S>,
    rt: R,
    config: ServerConfig,
    shared: Arc<Shared>,
    conns: Arc<accept::Connections>,
}

impl<S: Store, R: Clone> Clone for Server<S, R> {
    fn clone(&self) -> Self {
        Self {
            catalog: self.catalog.clone(),
            rt: self.rt.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
            conns: self.conns.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    /// Names with an upload in progress.
    uploading: Mutex<HashSet<FileName>>,
    /// Permits of [`read::CHUNK`] bytes each, for file data being sent,
    /// first come first served.
    buffers: Arc<fair::Fair>,
    /// Permits of one MiB each, for uploads being received.
    uploads: Arc<Semaphore>,
    /// Reads of contents being downloaded here answered at once (see
    /// [`read`]).
    passing: Semaphore,
    /// File data held by connections whose client stopped reading it.
    stalled: Mutex<read::Stalled>,
    /// Who fetches each content from here and serves it (peer exchange).
    swarms: Arc<swarm::Swarms>,
    /// Manifests sent lately, and askers pointed elsewhere for them.
    crowd: crowd::Crowd,
    /// Whether any client has connected.
    connected_ever: std::sync::atomic::AtomicBool,
    /// When a request for an unknown hash last made the catalog look at
    /// the whole store again.
    last_rescan: Mutex<Option<Time>>,
    /// How late the waits between news wake up, on average (microseconds):
    /// how far behind this machine runs (see [`news_every`]).
    news_late: std::sync::atomic::AtomicU64,
}

/// How often a request for an unknown hash may make the server look at its
/// whole folder again (for a file added since it was last listed). More
/// often would let anyone asking for random hashes keep the disk busy.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// How often at most a connection looks for news for its subscriptions
/// (blocks verified, turns, peers): what changed meanwhile goes out in one
/// message. A partial source verifies a block every few milliseconds, and
/// the turns and pieces of a crowd change as often; looking at each
/// change woke every subscriber's connection each time, and that work,
/// not the bytes, took most of a crowded machine's CPU.
const NEWS_EVERY: Duration = Duration::from_millis(50);

/// Longest wait between news, on a machine that runs far behind.
const NEWS_SLOWEST: Duration = Duration::from_millis(400);

/// How much longer news wait for each unit of lateness of their timers.
const NEWS_BACKOFF: u32 = 10;

/// How often news go out when the waits between them wake `late_us`
/// microseconds late on average: every [`NEWS_EVERY`] on a machine that
/// keeps up, less often on one that runs behind. Each piece of news wakes
/// a connection at both ends; dozens of peers on two cores spent most of
/// their CPU on news, and finished later for it.
fn news_every(late_us: u64) -> Duration {
    (NEWS_EVERY + Duration::from_micros(late_us) * NEWS_BACKOFF).min(NEWS_SLOWEST)
}

/// The average lateness of the news waits (microseconds), `old` updated
/// with one that woke `behind` late: about the last few dozen count.
fn news_late(old: u64, behind: Duration) -> u64 {
    let behind = u64::try_from(behind.as_micros()).unwrap_or(u64::MAX);
    old - old / 32 + behind / 32
}

/// Why a request failed, as told to the client.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(n) => Refusal::new(ErrorCode::NotFound, format!("{n} not found")),
            StoreError::Exists(n) => Refusal::new(ErrorCode::Exists, format!("{n} already exists")),
            StoreError::Changed(n) => Refusal::new(ErrorCode::Changed, format!("{n} changed while being read")),
            StoreError::TooLarge(n) => Refusal::new(ErrorCode::TooLarge, format!("{n} is over the 4 TiB limit")),
            StoreError::NoSpace { name, needed, free, .. } => Refusal::new(
                ErrorCode::TooLarge,
                format!(
                    "{name} needs {}, and the receiving peer has {} free",
                    crate::units::bytes(needed),
                    crate::units::bytes(free)
                ),
            ),
            StoreError::Io { ref source, .. } => {
                tracing::warn!(error = %e, "storage error");
                Refusal::new(ErrorCode::Internal, io_words(source))
            }
        }
    }
}

/// A storage error on this peer, in words for the client: what kind of
/// trouble, never the paths (those go to this peer's log).
fn io_words(e: &std::io::Error) -> String {
    // EMFILE and ENFILE have these numbers on Linux, macOS and the BSDs.
    const TOO_MANY_OPEN_FILES: [i32; 2] = [23, 24];
    if e.kind() == std::io::ErrorKind::StorageFull {
        "the serving peer's disk is full".into()
    } else if cfg!(unix) && e.raw_os_error().is_some_and(|n| TOO_MANY_OPEN_FILES.contains(&n)) {
        "the serving peer has too many files open; try again later".into()
    } else {
        "storage error on the serving peer (see its log)".into()
    }
}

/// What a connection did, for its log line.
#[derive(Default)]
struct ConnStats {
    /// Bytes sent per file.
    sent: HashMap<Hash, (FileName, u64)>,
}

impl<S: Store, R: Runtime> Server<S, R> {
    /// A server for `store`.
    pub fn new(store: S, rt: R, config: ServerConfig) -> Self {
        Self::with_catalog(Catalog::new(store), rt, config)
    }

    /// A server for `catalog`'s store, sharing its cache and the contents
    /// being downloaded into it (a downloader with a clone of the catalog
    /// has its downloads served block by block).
    pub fn with_catalog(catalog: Catalog<S>, rt: R, config: ServerConfig) -> Self {
        let read_permits = (config.read_budget / read::CHUNK).max(2);
        let upload_permits = (config.upload_budget >> 20).max(upload::MIN_PERMITS);
        let limits =
            admission::Limits::for_connections(config.max_connections, config.max_handshakes, config.gate.is_some());
        let conns = accept::Connections::new(limits, config.handshake_timeout.min(config.io_timeout));
        let stalled = Mutex::new(read::Stalled::new(config.read_budget));
        Self {
            catalog,
            rt,
            config,
            shared: Arc::new(Shared {
                uploading: Mutex::default(),
                // One host may hold half the budget: others always find room.
                buffers: fair::Fair::new(read_permits, read_permits / 2),
                uploads: Arc::new(Semaphore::new(upload_permits)),
                passing: Semaphore::new(read::PASSING),
                stalled,
                swarms: Arc::default(),
                crowd: crowd::Crowd::default(),
                connected_ever: std::sync::atomic::AtomicBool::new(false),
                last_rescan: Mutex::default(),
                news_late: std::sync::atomic::AtomicU64::new(0),
            }),
            conns,
        }
    }

    /// The served files.
    pub fn catalog(&self) -> &Catalog<S> {
        &self.catalog
    }

    /// Hashes every served file now, so that the first listing is quick.
    /// Returns the number of files.
    pub async fn index(&self) -> Result<usize, StoreError> {
        Ok(self.catalog.list().await?.len())
    }

    /// Accepts connections and serves each on its own task until `stop`
    /// completes. Then every connection is cancelled, and this returns once
    /// they are all gone: uploads in progress are abandoned and their
    /// partial files removed. A failed accept (a connection reset early, a
    /// short shortage of file descriptors) is logged and retried.
    pub async fn run<L: Listener>(&self, listener: L, stop: impl Future<Output = ()>) {
        let this = self.clone();
        let serve = move |connected, remote, slot| {
            let this = this.clone();
            async move { this.serve_connection(connected, remote, slot).await }
        };
        accept::run(&self.rt, &self.conns, listener, stop, serve).await;
    }

    /// Connections open now (through their handshakes or not).
    pub fn connections_open(&self) -> usize {
        self.conns.open()
    }

    /// Whether any client has connected since the server started.
    pub fn connected_ever(&self) -> bool {
        self.shared.connected_ever.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serves one established connection until it closes or fails.
    async fn serve_connection<St: Stream>(&self, connected: Connected<St>, remote: String, slot: accept::Slot<R>) {
        self.shared.connected_ever.store(true, std::sync::atomic::Ordering::Relaxed);
        let conn = Conn::new(connected.stream, self.rt.clone(), self.config.io_timeout);
        let started = self.rt.now();
        let who = match connected.peer {
            Some(fp) => format!("{remote}, cert {}", fp.short()),
            None => remote.clone(),
        };
        let mut link = Link {
            conn,
            queue: VecDeque::new(),
            discard: None,
            who,
            identity: connected.peer,
            standing: Standing::Stranger,
            stats: ConnStats::default(),
            max_queued: self.config.max_queued,
            id: slot.id(),
            host: Arc::from(crate::transport::host_of(&remote)),
            remote: remote.clone(),
            caps: 0,
            pointed: false,
        };
        if let Err(e) = self.connection(&mut link, &remote, &slot).await {
            match e {
                // A client that simply went away is not worth a warning.
                ConnError::Closed => tracing::debug!(client = %link.who, "connection closed"),
                e => {
                    let message = e.to_string();
                    let error = Message::Error { id: 0, code: ErrorCode::BadRequest, message: message.clone() };
                    let _ = link.conn.send(&error).await;
                    tracing::warn!(client = %link.who, error = %message, "dropped connection");
                }
            }
        }
        link.conn.close().await;
        let secs = (self.rt.now() - started).as_secs_f64();
        for (name, bytes) in std::mem::take(&mut link.stats.sent).into_values() {
            tracing::info!("sent {name}: {} to {} in {secs:.2}s", crate::units::bytes(bytes), link.who);
        }
    }

    /// The handshake, then the request loop.
    async fn connection<St: Stream>(
        &self,
        link: &mut Link<St, R>,
        remote: &str,
        slot: &accept::Slot<R>,
    ) -> Result<(), ConnError> {
        let uploads = if self.config.uploads == UploadPolicy::Nobody { 0 } else { CAP_UPLOAD };
        let caps = CAP_SERVE | CAP_SWARM | CAP_GOT | uploads;
        let hello = Hello { peer_id: self.config.peer_id.clone(), agent: crate::AGENT.into(), capabilities: caps };
        let handshake = link.conn.handshake_accept();
        let theirs = timeout(&self.rt, self.config.io_timeout, handshake).await??;
        let client = crate::sanitize(&theirs.peer_id, crate::protocol::MAX_PEER_ID);
        link.caps = theirs.capabilities;
        if !client.is_empty() {
            link.who = format!("{client} ({})", link.who);
        }
        if let Some(gate) = &self.config.gate {
            let info = ClientInfo { claimed_id: client, identity: link.identity, remote: remote.to_owned() };
            match gate.admit(&info) {
                Ok(standing) => link.standing = standing,
                Err(reason) => {
                    tracing::warn!("refused {}: {reason}", link.who);
                    let refusal = Message::Error { id: 0, code: ErrorCode::Forbidden, message: reason };
                    return link.conn.send(&refusal).await;
                }
            }
        }
        if let Err(full) = slot.establish(link.standing == Standing::Known) {
            tracing::warn!("refused {}: {full}", link.who);
            return link.conn.send(&Message::Error { id: 0, code: ErrorCode::Busy, message: full.to_string() }).await;
        }
        link.conn.send(&Message::Hello(hello)).await?;
        let mut subs = swarm::Subscriptions::new(link.id, self.shared.swarms.clone());
        loop {
            // Waiting for a request, the connection may be closed to make
            // room for another; serving one, it keeps its place.
            if link.queue.is_empty() {
                slot.idle(!subs.is_empty());
            }
            // Subscribers hear what changed between the answers to their
            // requests; the listener is taken first, so nothing is missed.
            let changed = subs.listen();
            let now = self.rt.now();
            for news in subs.news(now) {
                match news {
                    swarm::News::Have(m) => link.conn.queue(&m)?,
                    swarm::News::Gone(id) => {
                        let message = "the download of it here stopped".to_string();
                        link.conn.queue(&Message::Error { id, code: ErrorCode::NotFound, message })?;
                    }
                }
            }
            link.conn.flush().await?;
            // A shown piece's slot frees up at its deadline.
            let wake = subs.deadline().map(|d| self.rt.sleep(d.saturating_since(now)));
            let rt = &self.rt;
            let next =
                futures_lite::future::or(async { Some(link.next_request(self.config.idle_timeout).await) }, async {
                    match wake {
                        Some(w) => futures_lite::future::or(changed, w).await,
                        None => changed.await,
                    }
                    // Changes that come close together are told at once.
                    let since = rt.now().saturating_since(now);
                    let late = &self.shared.news_late;
                    let every = news_every(late.load(Ordering::Relaxed));
                    if since < every {
                        let (wait, start) = (every - since, rt.now());
                        rt.sleep(wait).await;
                        let behind = rt.now().saturating_since(start).saturating_sub(wait);
                        // A lost race between two connections only blurs it.
                        late.store(news_late(late.load(Ordering::Relaxed), behind), Ordering::Relaxed);
                    }
                    None
                })
                .await;
            let msg = match next {
                None => continue,
                Some(Ok(Some(msg))) => msg,
                Some(Ok(None)) => return Ok(()),
                Some(Err(e)) => return Err(e),
            };
            slot.busy();
            self.request(link, &mut subs, msg).await?;
        }
    }

    async fn request<St: Stream>(
        &self,
        link: &mut Link<St, R>,
        subs: &mut swarm::Subscriptions<PartialReader<S>>,
        msg: Message,
    ) -> Result<(), ConnError> {
        if self.config.private
            && link.standing != Standing::Known
            && let Message::List { id }
            | Message::GetManifest { id, .. }
            | Message::Read { id, .. }
            | Message::Subscribe { id, .. } = msg
        {
            let message = "this peer serves known peers only".to_string();
            return link.conn.send(&Message::Error { id, code: ErrorCode::Forbidden, message }).await;
        }
        let (id, result) = match msg {
            Message::List { id } => (id, self.list(link, id).await),
            Message::GetManifest { id, file } => (id, self.manifest(link, id, file).await),
            Message::Read { id, hash, .. } if subs.refuses(&hash, self.rt.now()) => {
                let message = "serving other subscribers of this content now".to_string();
                return link.conn.send(&Message::Error { id, code: ErrorCode::Choked, message }).await;
            }
            Message::Read { id, hash, offset, len } => {
                subs.asked(&hash, offset..offset.saturating_add(len), self.rt.now());
                subs.reading(&hash, true, self.rt.now());
                let result = self.read(link, read::ReadRequest { id, hash, offset, len }).await;
                subs.reading(&hash, false, self.rt.now());
                if result.is_ok() {
                    subs.served(&hash, offset..offset.saturating_add(len), self.rt.now());
                }
                (id, result)
            }
            Message::Offer { id, name, size, hash } => {
                // Whatever happens, data still on its way for this offer is
                // dropped rather than taken for a protocol error.
                link.discard = Some(id);
                (id, self.upload(link, upload::Offer { id, name, size, hash }).await)
            }
            Message::Subscribe { id, hash, port } => (id, self.subscribe(link, subs, id, hash, port).await),
            // A subscription ends; any other request finished before its
            // cancel arrived.
            Message::Cancel { id } => {
                subs.cancel(id, self.rt.now());
                return Ok(());
            }
            Message::Interest { id, interested } => {
                subs.interest(id, interested, self.rt.now());
                return Ok(());
            }
            Message::Got { id, blocks } => {
                subs.got(id, &blocks, self.rt.now());
                return Ok(());
            }
            other => return Err(ConnError::Unexpected(format!("{} is not a request", kind(&other)))),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Failure::Conn(e)) => Err(e),
            Err(Failure::Refused(r)) => link.conn.send(&Message::Error { id, code: r.code, message: r.message }).await,
        }
    }

    async fn list<St: Stream>(&self, link: &mut Link<St, R>, id: u32) -> Result<(), Failure> {
        let files = match self.config.downloads_only {
            true => Vec::new(),
            false => link.working(id, self.catalog.list()).await?.map_err(Refusal::from)?,
        };
        link.conn.send_pages(&files, LIST_PAGE, |files, last| Message::Files { id, files, last }).await?;
        Ok(())
    }

    /// The file with content `hash`. A hash the catalog does not know makes
    /// it look at the store again, at most once every [`RESCAN_EVERY`].
    async fn by_hash(&self, hash: &Hash) -> Result<Option<crate::catalog::Entry>, StoreError> {
        if self.config.downloads_only && !self.catalog.went_live(hash) {
            return Ok(None);
        }
        if let Some(e) = self.catalog.by_hash(hash).await? {
            return Ok(Some(e));
        }
        let now = self.rt.now();
        {
            let mut last = self.shared.last_rescan.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.saturating_since(t) < RESCAN_EVERY) {
                return Ok(None);
            }
            *last = Some(now);
        }
        self.catalog.list().await?;
        self.catalog.by_hash(hash).await
    }

    async fn manifest<St: Stream>(&self, link: &mut Link<St, R>, id: u32, file: FileRef) -> Result<(), Failure> {
        let live = matches!(&file, FileRef::Hash(h) if self.catalog.live(h).is_some());
        let entry = match file {
            FileRef::Name(raw) => {
                let name = FileName::new(&raw).map_err(|e| {
                    Refusal::new(ErrorCode::InvalidName, format!("{:?}: {e}", crate::sanitize(&raw, 300)))
                })?;
                if self.config.downloads_only {
                    let message = "this peer serves what it downloads only, by hash".to_string();
                    return Err(Refusal::new(ErrorCode::NotFound, message).into());
                }
                link.working(id, self.catalog.by_name(&name)).await?.map_err(Refusal::from)?
            }
            FileRef::Hash(hash) => match link.working(id, self.by_hash(&hash)).await?.map_err(Refusal::from)? {
                Some(entry) => entry,
                // A content being downloaded here: its manifest is known.
                None => match self.catalog.live(&hash) {
                    Some(live) => crate::catalog::Entry {
                        info: crate::protocol::FileInfo {
                            name: live.name().clone(),
                            size: live.manifest().size(),
                            hash,
                        },
                        manifest: live.manifest().clone(),
                    },
                    None => return Err(Refusal::new(ErrorCode::NotFound, format!("no file with hash {hash}")).into()),
                },
            },
        };
        // A crowd asking at once for the manifest of a file held whole is
        // pointed to the peers that got it already (see [`crowd`]).
        if !live && entry.info.size >= crate::download::SWARM_FROM {
            let hash = entry.info.hash;
            let until = self.rt.now() + crowd::WAIT;
            loop {
                let joins = self.shared.swarms.listen_joins();
                let now = self.rt.now();
                let may_point = link.caps & CAP_ELSEWHERE != 0 && !link.pointed && now < until;
                let holders = if may_point { self.shared.swarms.holders(&hash) } else { Vec::new() };
                let manifest_bytes = entry.manifest.block_count().saturating_mul(32);
                match self.shared.crowd.decide(hash, manifest_bytes, may_point, &holders, now) {
                    crowd::Decision::Send => break,
                    crowd::Decision::Elsewhere(peers) => {
                        link.pointed = true;
                        link.conn.send(&Message::Elsewhere { id, info: entry.info.clone(), peers }).await?;
                        return Ok(());
                    }
                    crowd::Decision::Wait => {
                        let later = self.rt.sleep(crowd::RECHECK.min(until.saturating_since(now)));
                        link.working(id, futures_lite::future::or(joins, later)).await?;
                    }
                }
            }
        }
        let conn = &mut link.conn;
        let m = &entry.manifest;
        let mut first = 0u64;
        for page in m.cvs().chunks(MANIFEST_PAGE) {
            let last = first + page.len() as u64 == m.block_count();
            conn.send(&Message::ManifestPage {
                id,
                info: entry.info.clone(),
                block_size: m.block_size(),
                first_block: first,
                cvs: page.to_vec(),
                last,
            })
            .await?;
            first += page.len() as u64;
        }
        Ok(())
    }

    /// Starts subscription `id` to what this peer has of `hash`.
    async fn subscribe<St: Stream>(
        &self,
        link: &mut Link<St, R>,
        subs: &mut swarm::Subscriptions<PartialReader<S>>,
        id: u32,
        hash: Hash,
        port: u16,
    ) -> Result<(), Failure> {
        let held = match link.working(id, self.by_hash(&hash)).await?.map_err(Refusal::from)? {
            Some(entry) => swarm::Held::Whole {
                blocks: entry.manifest.block_count(),
                block_size: u64::from(entry.manifest.block_size()),
            },
            None => match self.catalog.live(&hash) {
                Some(live) => swarm::Held::Live(live),
                None => return Err(Refusal::new(ErrorCode::NotFound, format!("no file with hash {hash}")).into()),
            },
        };
        // The subscriber serves the content where its connection comes
        // from, on the port it names.
        let addr = (port != 0).then(|| crate::transport::with_port(&link.remote, port));
        for answer in subs.subscribe(id, hash, addr, held, link.caps, self.rt.now()) {
            link.conn.send(&answer).await?;
        }
        Ok(())
    }

    fn uploading(&self) -> std::sync::MutexGuard<'_, HashSet<FileName>> {
        // A plain set: a panic elsewhere cannot leave it half-updated.
        self.shared.uploading.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a request ended badly: refused (tell the client, keep serving) or
/// with a broken connection.
enum Failure {
    Refused(Refusal),
    Conn(ConnError),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<ConnError> for Failure {
    fn from(e: ConnError) -> Self {
        Failure::Conn(e)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    #[test]
    fn storage_errors_are_told_to_the_client_by_kind_without_paths() {
        assert_eq!(super::io_words(&io::ErrorKind::StorageFull.into()), "the serving peer's disk is full");
        if cfg!(unix) {
            let emfile = io::Error::from_raw_os_error(24);
            assert_eq!(super::io_words(&emfile), "the serving peer has too many files open; try again later");
        }
        let other = io::Error::other("/home/secret/path: boom");
        assert_eq!(super::io_words(&other), "storage error on the serving peer (see its log)");
    }

    #[test]
    fn news_go_out_less_often_on_a_machine_that_runs_behind() {
        use super::{NEWS_EVERY, NEWS_SLOWEST, news_every, news_late};
        use std::time::Duration;
        // Waits that wake on time (always so in simnet's virtual time).
        let mut late = 0;
        for _ in 0..100 {
            late = news_late(late, Duration::ZERO);
        }
        assert_eq!(news_every(late), NEWS_EVERY);
        // Waits that wake 5 ms late, a few dozen times: news every 100 ms.
        for _ in 0..200 {
            late = news_late(late, Duration::from_millis(5));
        }
        let every = news_every(late);
        assert!(every > Duration::from_millis(90) && every <= Duration::from_millis(100), "{every:?}");
        // Far behind: bounded; and back to the start once it keeps up.
        assert_eq!(news_every(news_late(late, Duration::from_secs(100))), NEWS_SLOWEST);
        for _ in 0..400 {
            late = news_late(late, Duration::ZERO);
        }
        assert!(news_every(late) < NEWS_EVERY + Duration::from_millis(1), "{:?}", news_every(late));
    }
}

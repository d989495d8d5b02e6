//! The serving side: answers listings, manifests and reads, and receives
//! uploads, for many connections at once.
//!
//! Each connection is one task that owns its stream and serves requests in
//! order. Limits keep a misbehaving client from hurting the others: a
//! bounded request queue, a stall timeout mid-frame, an idle timeout, a cap
//! on connections, and one budget of read buffers shared by all
//! connections so memory does not grow with the number of readers.

mod read;
mod upload;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_lock::Semaphore;

use crate::catalog::Catalog;
use crate::conn::{Conn, ConnError, Wait, kind};
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::codec::Frame;
use crate::protocol::{CAP_SERVE, CAP_UPLOAD, ErrorCode, FileRef, Hello, LIST_PAGE, MANIFEST_PAGE, MAX_DATA, Message};
use crate::runtime::{Runtime, Task};
use crate::store::{Store, StoreError};
use crate::transport::{Listener, Stream};

/// Limits and policy of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This peer's id, sent in the handshake.
    pub peer_id: String,
    /// Whether uploads are accepted at all.
    pub accept_uploads: bool,
    /// Whether an upload may replace a file with different content.
    pub allow_overwrite: bool,
    /// Longest wait for the rest of a frame, or for a write to progress.
    pub io_timeout: Duration,
    /// Longest wait for the next request on an open connection.
    pub idle_timeout: Duration,
    /// Connections served at once; more are told "busy" and closed.
    pub max_connections: usize,
    /// Requests a client may queue on one connection.
    pub max_queued: usize,
    /// Bytes of file data all connections together hold in memory.
    pub read_budget: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            peer_id: String::new(),
            accept_uploads: true,
            allow_overwrite: false,
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 512,
            max_queued: 64,
            read_budget: 32 << 20,
        }
    }
}

/// A peer's serving side.
#[derive(Debug)]
pub struct Server<S, R> {
    catalog: Catalog<S>,
    rt: R,
    config: ServerConfig,
    shared: Arc<Shared>,
}

impl<S, R: Clone> Clone for Server<S, R>
where
    Catalog<S>: Clone,
{
    fn clone(&self) -> Self {
        Self {
            catalog: self.catalog.clone(),
            rt: self.rt.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared {
    /// Names with an upload in progress.
    uploading: Mutex<HashSet<FileName>>,
    /// Permits of `MAX_DATA` bytes each, for file data held in memory.
    buffers: Arc<Semaphore>,
    connections: AtomicUsize,
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
            StoreError::Io { .. } => {
                tracing::warn!(error = %e, "storage error");
                Refusal::new(ErrorCode::Internal, "storage error on the serving peer (see its log)")
            }
        }
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
        let permits = (config.read_budget / MAX_DATA).max(2);
        Self {
            catalog: Catalog::new(store),
            rt,
            config,
            shared: Arc::new(Shared {
                uploading: Mutex::default(),
                buffers: Arc::new(Semaphore::new(permits)),
                connections: AtomicUsize::new(0),
            }),
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
        let mut tasks: HashMap<u64, Task<()>> = HashMap::new();
        let serve = async {
            let (done_tx, done_rx) = async_channel::unbounded::<u64>();
            let mut next = 0u64;
            loop {
                let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    if let Ok(id) = done_rx.recv().await {
                        tasks.remove(&id);
                    }
                    None
                })
                .await;
                let accepted = match accepted {
                    None => continue,
                    Some(Ok(a)) => a,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "accept failed");
                        self.rt.sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                next += 1;
                let id = next;
                let this = self.clone();
                let done = done_tx.clone();
                let task = self.rt.spawn(async move {
                    this.serve_connection(accepted.stream, accepted.remote).await;
                    let _ = done.send(id).await;
                });
                tasks.insert(id, task);
            }
        };
        futures_lite::future::or(serve, stop).await;
        for (_, task) in tasks.drain() {
            task.cancel().await;
        }
    }

    /// Serves one connection until it closes or fails.
    pub async fn serve_connection<St: Stream>(&self, stream: St, remote: String) {
        let mut conn = Conn::new(stream, self.rt.clone(), self.config.io_timeout);
        let count = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let _count = Decrement(&self.shared.connections);
        if count > self.config.max_connections {
            let _ = conn
                .send(&Message::Error {
                    id: 0,
                    code: ErrorCode::Busy,
                    message: format!("serving {} connections already; try again later", self.config.max_connections),
                })
                .await;
            conn.close().await;
            tracing::warn!(%remote, "refused: too many connections");
            return;
        }
        let mut stats = ConnStats::default();
        let started = self.rt.now();
        let result = self.connection(&mut conn, &remote, &mut stats).await;
        let mut who = remote.clone();
        match result {
            Ok(id) if !id.is_empty() => who = format!("{id} ({remote})"),
            Ok(_) => {}
            Err((id, e)) => {
                if !id.is_empty() {
                    who = format!("{id} ({remote})");
                }
                // A client that simply went away is not worth a warning.
                match e {
                    ConnError::Closed => tracing::debug!(client = %who, "connection closed"),
                    e => {
                        let message = e.to_string();
                        let _ = conn
                            .send(&Message::Error { id: 0, code: ErrorCode::BadRequest, message: message.clone() })
                            .await;
                        tracing::warn!(client = %who, error = %message, "dropped connection");
                    }
                }
            }
        }
        conn.close().await;
        let secs = (self.rt.now() - started).as_secs_f64();
        for (name, bytes) in stats.sent.into_values() {
            tracing::info!("sent {name}: {} to {who} in {secs:.2}s", crate::units::bytes(bytes));
        }
    }

    /// The request loop. Returns the client's peer id; on error, with it.
    async fn connection<St: Stream>(
        &self,
        conn: &mut Conn<St, R>,
        remote: &str,
        stats: &mut ConnStats,
    ) -> Result<String, (String, ConnError)> {
        let caps = CAP_SERVE | if self.config.accept_uploads { CAP_UPLOAD } else { 0 };
        let hello = Hello { peer_id: self.config.peer_id.clone(), agent: crate::AGENT.into(), capabilities: caps };
        let theirs = conn.handshake_accept(hello).await.map_err(|e| (String::new(), e))?;
        let client = crate::sanitize(&theirs.peer_id, crate::protocol::MAX_PEER_ID);
        let who = if client.is_empty() { remote.to_owned() } else { format!("{client} ({remote})") };
        let mut queue = VecDeque::new();
        // An upload refused midway: its remaining data is still on the way
        // and is dropped quietly, so the uploader reads our error instead
        // of a reset connection.
        let mut discard = None;
        loop {
            let msg = match queue.pop_front() {
                Some(m) => m,
                None => match conn.read_frame(Wait::Idle(self.config.idle_timeout)).await {
                    Ok(None) => return Ok(client),
                    Ok(Some(Frame::Control(m))) => m,
                    Ok(Some(Frame::Data(d))) if Some(d.id) == discard => continue,
                    Ok(Some(Frame::Data(d))) => {
                        let e = ConnError::Unexpected(format!("data for request {} that is not an upload", d.id));
                        return Err((client, e));
                    }
                    Err(e) => return Err((client, e)),
                },
            };
            if let Message::Offer { id, .. } = &msg {
                discard = Some(*id);
            }
            if let Err(e) = self.request(conn, msg, &mut queue, &who, stats).await {
                return Err((client, e));
            }
        }
    }

    async fn request<St: Stream>(
        &self,
        conn: &mut Conn<St, R>,
        msg: Message,
        queue: &mut VecDeque<Message>,
        who: &str,
        stats: &mut ConnStats,
    ) -> Result<(), ConnError> {
        let (id, result) = match msg {
            Message::List { id } => (id, self.list(conn, id).await),
            Message::GetManifest { id, file } => (id, self.manifest(conn, id, file).await),
            Message::Read { id, hash, offset, len } => {
                (id, self.read(conn, queue, read::ReadRequest { id, hash, offset, len }, stats).await)
            }
            Message::Offer { id, name, size, hash } => {
                (id, self.upload(conn, queue, upload::Offer { id, name, size, hash }, who).await)
            }
            // The request finished before its cancel arrived.
            Message::Cancel { .. } => return Ok(()),
            other => return Err(ConnError::Unexpected(format!("{} is not a request", kind(&other)))),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Failure::Conn(e)) => Err(e),
            Err(Failure::Refused(r)) => conn.send(&Message::Error { id, code: r.code, message: r.message }).await,
        }
    }

    async fn list<St: Stream>(&self, conn: &mut Conn<St, R>, id: u32) -> Result<(), Failure> {
        let files = self.catalog.list().await.map_err(Refusal::from)?;
        let mut pages = files.chunks(LIST_PAGE).peekable();
        if pages.peek().is_none() {
            conn.send(&Message::Files { id, files: Vec::new(), last: true }).await?;
        }
        while let Some(page) = pages.next() {
            let last = pages.peek().is_none();
            conn.send(&Message::Files { id, files: page.to_vec(), last }).await?;
        }
        Ok(())
    }

    async fn manifest<St: Stream>(&self, conn: &mut Conn<St, R>, id: u32, file: FileRef) -> Result<(), Failure> {
        let entry = match file {
            FileRef::Name(raw) => {
                let name = FileName::new(&raw).map_err(|e| {
                    Refusal::new(ErrorCode::InvalidName, format!("{:?}: {e}", crate::sanitize(&raw, 300)))
                })?;
                self.catalog.by_name(&name).await.map_err(Refusal::from)?
            }
            FileRef::Hash(hash) => self
                .catalog
                .by_hash(&hash)
                .await
                .map_err(Refusal::from)?
                .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no file with hash {hash}")))?,
        };
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

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes control messages that arrive while a transfer is running: cancels
/// for `id` stop it (returns true), others wait in `queue`.
async fn poll_incoming<St: Stream, R: Runtime>(
    conn: &mut Conn<St, R>,
    queue: &mut VecDeque<Message>,
    id: u32,
    max_queued: usize,
) -> Result<bool, ConnError> {
    while let Some(frame) = conn.try_read_frame().await? {
        match frame {
            Frame::Control(Message::Cancel { id: c }) if c == id => return Ok(true),
            Frame::Control(Message::Cancel { id: c }) => {
                queue.retain(|m| request_id(m) != Some(c));
            }
            Frame::Control(m) => {
                if queue.len() >= max_queued {
                    return Err(ConnError::Unexpected(format!("more than {max_queued} requests queued")));
                }
                queue.push_back(m);
            }
            Frame::Data(d) => {
                return Err(ConnError::Unexpected(format!("data for request {} that is not an upload", d.id)));
            }
        }
    }
    Ok(false)
}

fn request_id(m: &Message) -> Option<u32> {
    match m {
        Message::List { id }
        | Message::GetManifest { id, .. }
        | Message::Read { id, .. }
        | Message::Offer { id, .. } => Some(*id),
        _ => None,
    }
}

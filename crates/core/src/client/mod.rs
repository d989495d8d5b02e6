//! The asking side: a session with one peer, for listings, manifests and
//! uploads. Downloads use sessions too, see [`crate::download`].

mod index;
mod upload;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Entry;
use crate::conn::{Conn, ConnError, Wait, kind};
use crate::manifest::{MAX_FILE_SIZE, Manifest, ManifestError, block_count, block_size_for};
use crate::protocol::codec::Frame;
use crate::protocol::{
    CAP_CHOKE, CAP_ELSEWHERE, CAP_GOT, CAP_SWARM, ErrorCode, FileInfo, FileRef, Hello, MAX_EXCHANGE, MAX_HAVE, Message,
};
use crate::runtime::{Runtime, Time, timeout};
use crate::transport::{Fingerprint, Transport};

/// Most entries an answer made of pages (a listing, the index's files or
/// peers) may have: far more than a folder anyone shares.
pub const MAX_LISTING: usize = 500_000;

/// Most bytes an answer made of pages may take, counted as its entries'
/// names plus a fixed cost for each entry and each page: what a client
/// holds in memory for it is a small multiple of this.
pub const MAX_LISTING_BYTES: usize = 64 << 20;

/// The cost of each entry and each page of a paged answer, on top of the
/// names in it, against [`MAX_LISTING_BYTES`].
const ENTRY_COST: usize = 64;

/// Keep-alives (`Working`) a peer may send per second of a request's
/// deadline: a peer that works sends one a second.
const KEEPALIVES_PER_SEC: u64 = 2;

/// Settings of the asking side.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our peer id, sent in the handshake (empty for a plain client).
    pub peer_id: String,
    /// Longest wait for a connection and its handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response, or for a write to
    /// progress.
    pub io_timeout: Duration,
    /// Longest a request may wait for its whole answer, however many
    /// keep-alives (`Working`) the peer sends meanwhile (a peer hashing a
    /// large file sends one a second). A paged answer gets longer by the
    /// time its bytes take at the slowest rate a transfer may have.
    pub request_timeout: Duration,
    /// Whether this client serves what it downloads to the others fetching
    /// it (a swarming download with a port): it then says it takes a
    /// manifest from the peers a seed in a crowd points it to
    /// ([`CAP_ELSEWHERE`]), and such a seed may wait for it to have the
    /// manifest to point the next askers to it.
    pub serves_downloads: bool,
}

impl ClientConfig {
    /// Settings with `io` as the IO timeout and 20 times that as the
    /// deadline of a request.
    pub fn with_timeout(peer_id: &str, io: Duration) -> Self {
        Self {
            peer_id: peer_id.to_owned(),
            connect_timeout: io.min(Duration::from_secs(10)),
            io_timeout: io,
            request_timeout: io * 20,
            serves_downloads: false,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::with_timeout("", Duration::from_secs(30))
    }
}

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No connection or handshake within the connect timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    ConnectTimeout {
        /// The address tried.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection broke or the peer broke the protocol.
    #[error("{0}")]
    Conn(#[from] ConnError),
    /// The peer refused the request.
    #[error("{message}")]
    Refused {
        /// The kind of refusal.
        code: ErrorCode,
        /// The peer's explanation (control characters removed).
        message: String,
    },
    /// The peer sent a manifest that does not match the file's hash.
    #[error("sent a bad manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// The peer did not finish its answer by the request's deadline.
    #[error("kept a request open for {0:?} without finishing its answer")]
    Deadline(Duration),
    /// The peer broke the rules of an answer.
    #[error("{0}")]
    Misbehaved(Misbehavior),
    /// Reading the local file failed.
    #[error("{0}")]
    Local(#[from] crate::store::StoreError),
}

impl ClientError {
    /// The peer's refusal code, if it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } | Self::Conn(ConnError::Refused { code, .. }) => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn refused(code: ErrorCode, message: &str) -> Self {
        Self::Refused { code, message: crate::sanitize(message, 500) }
    }
}

/// How a peer broke the rules of an answer: each is a reason to stop
/// asking it, never to wait longer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misbehavior {
    /// A page marked "not last" with nothing on it: pages must progress.
    #[error("sent an empty page of an answer that was not its last")]
    EmptyPage,
    /// More keep-alives than any work needs.
    #[error("sent {0} keep-alives for one request")]
    Keepalives(u64),
    /// A paged answer larger than any honest peer sends.
    #[error("{who} lists more than {limit} {what}")]
    TooLarge {
        /// Who answered ("the peer", "the index").
        who: &'static str,
        /// What it lists ("files", "peers").
        what: &'static str,
        /// The bound passed: a count, or bytes.
        limit: String,
    },
    /// Pages of one manifest that disagree.
    #[error("sent manifest pages that disagree")]
    InconsistentPages,
    /// Pointed elsewhere for a manifest twice on one connection, or for
    /// another file than the one asked for by hash.
    #[error("pointed elsewhere for a manifest it should have sent")]
    Elsewhere,
}

/// A peer's answer to a manifest request.
#[derive(Debug)]
pub enum ManifestAnswer {
    /// The manifest.
    Here(Entry),
    /// The file is `info`; its manifest is for the asking (by hash) from
    /// `peers`, which fetch it from this one. Asked again, this peer sends it.
    Elsewhere {
        /// Name, size and hash, as this peer has them.
        info: FileInfo,
        /// Peers that have the manifest (`host:port`).
        peers: Vec<String>,
    },
}

/// An open, handshaken connection to one peer.
pub struct Session<S, R> {
    conn: Conn<S, R>,
    peer: Hello,
    identity: Option<Fingerprint>,
    transport: &'static str,
    next_id: u32,
    request_timeout: Duration,
    /// The request being answered, and its deadline.
    asking: Option<Asking>,
}

/// A request being answered: when its answer must be complete, and the
/// keep-alives it has had.
#[derive(Debug, Clone, Copy)]
struct Asking {
    id: u32,
    started: Time,
    deadline: Time,
    keepalives: u64,
}

impl<S, R> std::fmt::Debug for Session<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl<S: crate::transport::Stream, R: Runtime> Session<S, R> {
    /// Connects to `addr` and does the handshake.
    pub async fn connect<T>(transport: &T, rt: &R, addr: &str, config: &ClientConfig) -> Result<Self, ClientError>
    where
        T: Transport<Stream = S>,
    {
        let setup = async {
            let connected = transport
                .connect(addr)
                .await
                .map_err(|source| ClientError::Connect { addr: addr.to_owned(), source })?;
            let mut conn = Conn::new(connected.stream, rt.clone(), config.io_timeout);
            // CAP_SWARM: this client understands partial sources (an index
            // names them to it); CAP_CHOKE: it takes turns at them;
            // CAP_GOT: it tells a seed showing it pieces what it has;
            // CAP_ELSEWHERE: it serves what it downloads, and takes a
            // manifest from the peers a seed in a crowd points it to.
            let elsewhere = if config.serves_downloads { CAP_ELSEWHERE } else { 0 };
            let capabilities = CAP_SWARM | CAP_CHOKE | CAP_GOT | elsewhere;
            let hello = Hello { peer_id: config.peer_id.clone(), agent: crate::AGENT.into(), capabilities };
            let peer = conn.handshake_connect(hello).await?;
            let transport = transport.name();
            Ok::<_, ClientError>(Session {
                conn,
                peer,
                identity: connected.peer,
                transport,
                next_id: 1,
                request_timeout: config.request_timeout,
                asking: None,
            })
        };
        match timeout(rt, config.connect_timeout, setup).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::ConnectTimeout { addr: addr.to_owned(), timeout: config.connect_timeout }),
        }
    }

    /// The peer's handshake.
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    /// The peer's certificate fingerprint, where the transport
    /// authenticated it.
    pub fn identity(&self) -> Option<Fingerprint> {
        self.identity
    }

    /// The transport's name ("tcp", "tls").
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// The peer's files.
    pub async fn list(&mut self) -> Result<Vec<FileInfo>, ClientError> {
        let id = self.id();
        self.conn.send(&Message::List { id }).await?;
        self.pages(id, "the peer", "files", |m| match m {
            Message::Files { files, last, .. } => Ok((files, last)),
            other => Err(other),
        })
        .await
    }

    /// The pages of the answer to request `id`, gathered: `page` takes
    /// each message apart into its items and whether it is the last. Every
    /// page but the last must hold something, and the whole is bounded by
    /// [`MAX_LISTING`] entries and [`MAX_LISTING_BYTES`]; the request's
    /// deadline grows by the time each page's bytes take at the slowest
    /// rate a transfer may have.
    pub(crate) async fn pages<T: Weigh>(
        &mut self,
        id: u32,
        who: &'static str,
        what: &'static str,
        page: impl Fn(Message) -> Result<(Vec<T>, bool), Message>,
    ) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut bytes = 0usize;
        loop {
            let (more, last) = page(self.response(id).await?).map_err(|other| unexpected(&other))?;
            if more.is_empty() && !last {
                return Err(ClientError::Misbehaved(Misbehavior::EmptyPage));
            }
            let cost = ENTRY_COST + more.iter().map(|t| ENTRY_COST + t.weight()).sum::<usize>();
            bytes = bytes.saturating_add(cost);
            let limit = if items.len() + more.len() > MAX_LISTING {
                Some(format!("{MAX_LISTING}"))
            } else if bytes > MAX_LISTING_BYTES {
                Some(format!("{} of", crate::units::bytes(MAX_LISTING_BYTES as u64)))
            } else {
                None
            };
            if let Some(limit) = limit {
                return Err(ClientError::Misbehaved(Misbehavior::TooLarge { who, what, limit }));
            }
            if let Some(a) = self.asking.as_mut() {
                a.deadline = a.deadline + crate::conn::rate_time(cost);
            }
            items.extend(more);
            if last {
                return Ok(items);
            }
        }
    }

    /// A file's manifest, checked against its hash.
    pub async fn manifest(&mut self, file: FileRef) -> Result<Entry, ClientError> {
        match self.manifest_or_elsewhere(file.clone()).await? {
            ManifestAnswer::Here(entry) => Ok(entry),
            // Asked again on the same connection, a peer sends it.
            ManifestAnswer::Elsewhere { .. } => match self.manifest_or_elsewhere(file).await? {
                ManifestAnswer::Here(entry) => Ok(entry),
                ManifestAnswer::Elsewhere { .. } => Err(ClientError::Misbehaved(Misbehavior::Elsewhere)),
            },
        }
    }

    /// A file's manifest, or the peers to ask for it instead (a peer with
    /// the whole file may say so to a crowd: see [`CAP_ELSEWHERE`]).
    pub async fn manifest_or_elsewhere(&mut self, file: FileRef) -> Result<ManifestAnswer, ClientError> {
        let id = self.id();
        let by_hash = match &file {
            FileRef::Hash(h) => Some(*h),
            FileRef::Name(_) => None,
        };
        self.conn.send(&Message::GetManifest { id, file }).await?;
        let mut cvs = Vec::new();
        let mut head: Option<(FileInfo, u32)> = None;
        loop {
            let (info, block_size, first_block, page, last) = match self.response(id).await? {
                Message::ManifestPage { info, block_size, first_block, cvs, last, .. } => {
                    (info, block_size, first_block, cvs, last)
                }
                Message::Elsewhere { info, peers, .. } if head.is_none() => {
                    if info.size > MAX_FILE_SIZE {
                        return Err(ClientError::Manifest(ManifestError::TooLarge(info.size)));
                    }
                    if by_hash.is_some_and(|h| h != info.hash) {
                        return Err(ClientError::Misbehaved(Misbehavior::Elsewhere));
                    }
                    if peers.len() > MAX_EXCHANGE {
                        let limit = MAX_EXCHANGE.to_string();
                        return Err(ClientError::Misbehaved(Misbehavior::TooLarge {
                            who: "the peer",
                            what: "peers",
                            limit,
                        }));
                    }
                    return Ok(ManifestAnswer::Elsewhere { info, peers });
                }
                _ => return Err(ClientError::Conn(ConnError::Unexpected("expected a manifest page".into()))),
            };
            if info.size > MAX_FILE_SIZE {
                return Err(ClientError::Manifest(ManifestError::TooLarge(info.size)));
            }
            let (first_info, bs) = head.get_or_insert_with(|| (info.clone(), block_size));
            if *first_info != info || *bs != block_size || first_block != cvs.len() as u64 {
                return Err(ClientError::Misbehaved(Misbehavior::InconsistentPages));
            }
            if page.is_empty() && !last {
                return Err(ClientError::Misbehaved(Misbehavior::EmptyPage));
            }
            // Bound memory by what the file size implies before collecting.
            if block_size != block_size_for(info.size)
                || cvs.len() as u64 + page.len() as u64 > block_count(info.size, block_size)
            {
                return Err(ClientError::Manifest(ManifestError::BlockCount {
                    got: cvs.len() as u64 + page.len() as u64,
                    want: block_count(info.size, block_size_for(info.size)),
                }));
            }
            cvs.extend(page);
            if last {
                let (info, bs) = head.unwrap_or_else(|| (info.clone(), block_size));
                let manifest = Manifest::from_parts(info.size, bs, cvs, info.hash)?;
                return Ok(ManifestAnswer::Here(Entry { info, manifest: Arc::new(manifest) }));
            }
        }
    }

    /// The next message answering request `id`; an error answer becomes
    /// [`ClientError::Refused`]. `Working` notes are skipped (each proves
    /// the peer is alive, and each read has its own timeout), but only
    /// until the request's deadline, and only so many.
    async fn response(&mut self, id: u32) -> Result<Message, ClientError> {
        let rt = self.conn.rt().clone();
        let mut asking = match self.asking {
            Some(a) if a.id == id => a,
            _ => {
                let now = rt.now();
                Asking { id, started: now, deadline: now + self.request_timeout, keepalives: 0 }
            }
        };
        let most = KEEPALIVES_PER_SEC * self.request_timeout.as_secs().max(1);
        let result = loop {
            let now = rt.now();
            if now >= asking.deadline {
                break Err(ClientError::Deadline(asking.deadline - asking.started));
            }
            let msg = match timeout(&rt, asking.deadline - now, self.conn.read_message(Wait::Busy)).await {
                Ok(read) => read?,
                Err(_) => break Err(ClientError::Deadline(asking.deadline - asking.started)),
            };
            match msg {
                Message::Working { id: i } if i == id => {
                    asking.keepalives += 1;
                    if asking.keepalives > most {
                        break Err(ClientError::Misbehaved(Misbehavior::Keepalives(asking.keepalives)));
                    }
                }
                Message::Error { id: i, code, message } if i == id => {
                    break Err(ClientError::refused(code, &message));
                }
                // An error for the whole connection: it is over.
                Message::Error { id: 0, code, message } => break Err(connection_refused(code, &message)),
                m if response_id(&m) == Some(id) => break Ok(m),
                other => break Err(unexpected(&other)),
            }
        };
        self.asking = Some(asking);
        result
    }

    /// Starts the clock of request `id`'s deadline again (an upload's
    /// answer, once all its data is sent).
    pub(crate) fn restart_deadline(&mut self) {
        self.asking = None;
    }

    /// Sends a read request (the answer comes as data frames).
    pub(crate) async fn send_read(
        &mut self,
        hash: crate::hash::Hash,
        offset: u64,
        len: u64,
    ) -> Result<u32, ClientError> {
        let id = self.id();
        self.conn.send(&Message::Read { id, hash, offset, len }).await?;
        Ok(id)
    }

    /// Subscribes to what the peer has of `hash` (the answers come as
    /// control frames); `port` is where this side serves it, 0 for
    /// nowhere.
    pub(crate) async fn send_subscribe(&mut self, hash: crate::hash::Hash, port: u16) -> Result<u32, ClientError> {
        let id = self.id();
        self.conn.send(&Message::Subscribe { id, hash, port }).await?;
        Ok(id)
    }

    /// The next frame while nothing is asked of the peer, only subscribed
    /// to: it may stay silent for up to `idle`.
    pub(crate) async fn next_frame_idle(&mut self, idle: Duration) -> Result<Frame<'_>, ClientError> {
        match self.conn.read_frame(Wait::Idle(idle)).await? {
            Some(Frame::Control(Message::Error { id: 0, code, message })) => Err(connection_refused(code, &message)),
            Some(f) => Ok(f),
            None => Err(ConnError::Closed.into()),
        }
    }

    /// Tells the peer whether this side wants anything it has of
    /// subscription `id` (it takes turns: `CAP_CHOKE`).
    pub(crate) async fn send_interest(&mut self, id: u32, interested: bool) -> Result<(), ClientError> {
        Ok(self.conn.send(&Message::Interest { id, interested }).await?)
    }

    /// Tells the peer, which shows this side a whole file piece by piece
    /// on subscription `id`, that this side has `blocks` (`CAP_GOT`).
    pub(crate) async fn send_got(&mut self, id: u32, blocks: &[u32]) -> Result<(), ClientError> {
        for chunk in blocks.chunks(MAX_HAVE) {
            self.conn.send(&Message::Got { id, blocks: chunk.to_vec() }).await?;
        }
        Ok(())
    }

    /// Stops an earlier request (frames of it may still arrive).
    pub(crate) async fn send_cancel(&mut self, id: u32) -> Result<(), ClientError> {
        Ok(self.conn.send(&Message::Cancel { id }).await?)
    }

    /// The next frame of a transfer in progress. An error for the whole
    /// connection fails; an error for one request is the caller's to read.
    pub(crate) async fn next_frame(&mut self) -> Result<Frame<'_>, ClientError> {
        match self.conn.read_frame(Wait::Busy).await? {
            Some(Frame::Control(Message::Error { id: 0, code, message })) => Err(connection_refused(code, &message)),
            Some(f) => Ok(f),
            None => Err(ConnError::Closed.into()),
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        self.conn.close().await;
    }
}

/// The peer's error for the whole connection (id 0), which it closes.
fn connection_refused(code: ErrorCode, message: &str) -> ClientError {
    ClientError::Conn(ConnError::Refused { code, message: crate::sanitize(message, 500) })
}

fn response_id(m: &Message) -> Option<u32> {
    match m {
        Message::Files { id, .. }
        | Message::ManifestPage { id, .. }
        | Message::Elsewhere { id, .. }
        | Message::Accept { id }
        | Message::Stored { id, .. }
        | Message::Error { id, .. }
        | Message::Working { id }
        | Message::Joined { id, .. }
        | Message::Published { id, .. }
        | Message::Pong { id }
        | Message::IndexFiles { id, .. }
        | Message::Located { id, .. }
        | Message::PeerPage { id, .. }
        | Message::Noted { id } => Some(*id),
        _ => None,
    }
}

fn unexpected(m: &Message) -> ClientError {
    ClientError::Conn(ConnError::Unexpected(format!("unexpected {}", kind(m))))
}

/// What an entry of a paged answer costs, beyond a fixed amount per entry:
/// the bytes of its names.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for FileInfo {
    fn weight(&self) -> usize {
        self.name.as_str().len()
    }
}

impl Weigh for crate::protocol::IndexedFile {
    fn weight(&self) -> usize {
        self.info.weight()
    }
}

impl Weigh for crate::protocol::PeerInfo {
    fn weight(&self) -> usize {
        self.id.len() + self.addr.len()
    }
}

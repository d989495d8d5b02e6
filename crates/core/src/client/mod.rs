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
use crate::protocol::{ErrorCode, FileInfo, FileRef, Hello, Message};
use crate::runtime::{Runtime, timeout};
use crate::transport::{Fingerprint, Transport};

/// Most files a listing may have: about 100 MiB of names at worst, and far
/// more than a folder anyone shares.
pub const MAX_LISTING: usize = 500_000;

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
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self { peer_id: String::new(), connect_timeout: Duration::from_secs(10), io_timeout: Duration::from_secs(30) }
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

/// An open, handshaken connection to one peer.
pub struct Session<S, R> {
    conn: Conn<S, R>,
    peer: Hello,
    identity: Option<Fingerprint>,
    transport: &'static str,
    next_id: u32,
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
            let hello = Hello { peer_id: config.peer_id.clone(), agent: crate::AGENT.into(), capabilities: 0 };
            let peer = conn.handshake_connect(hello).await?;
            let transport = transport.name();
            Ok::<_, ClientError>(Session { conn, peer, identity: connected.peer, transport, next_id: 1 })
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
    /// each message apart into its items and whether it is the last. More
    /// than [`MAX_LISTING`] items in all is an error ("`who` lists more
    /// than ... `what`").
    pub(crate) async fn pages<T>(
        &mut self,
        id: u32,
        who: &str,
        what: &str,
        page: impl Fn(Message) -> Result<(Vec<T>, bool), Message>,
    ) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        loop {
            let (more, last) = page(self.response(id).await?).map_err(|other| unexpected(&other))?;
            if items.len() + more.len() > MAX_LISTING {
                let message = format!("{who} lists more than {MAX_LISTING} {what}");
                return Err(ConnError::Unexpected(message).into());
            }
            items.extend(more);
            if last {
                return Ok(items);
            }
        }
    }

    /// A file's manifest, checked against its hash.
    pub async fn manifest(&mut self, file: FileRef) -> Result<Entry, ClientError> {
        let id = self.id();
        self.conn.send(&Message::GetManifest { id, file }).await?;
        let mut cvs = Vec::new();
        let mut head: Option<(FileInfo, u32)> = None;
        loop {
            let Message::ManifestPage { info, block_size, first_block, cvs: page, last, .. } =
                self.response(id).await?
            else {
                return Err(ClientError::Conn(ConnError::Unexpected("expected a manifest page".into())));
            };
            if info.size > MAX_FILE_SIZE {
                return Err(ClientError::Manifest(ManifestError::TooLarge(info.size)));
            }
            let (first_info, bs) = head.get_or_insert_with(|| (info.clone(), block_size));
            if *first_info != info || *bs != block_size || first_block != cvs.len() as u64 {
                return Err(ConnError::Unexpected("inconsistent manifest pages".into()).into());
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
                return Ok(Entry { info, manifest: Arc::new(manifest) });
            }
        }
    }

    /// The next message answering request `id`; an error answer becomes
    /// [`ClientError::Refused`]. `Working` notes are skipped: each one
    /// proves the peer is alive, and each read has its own timeout.
    async fn response(&mut self, id: u32) -> Result<Message, ClientError> {
        loop {
            let msg = self.conn.read_message(Wait::Busy).await?;
            match msg {
                Message::Working { id: i } if i == id => {}
                Message::Error { id: i, code, message } if i == id => {
                    return Err(ClientError::refused(code, &message));
                }
                // An error for the whole connection: it is over.
                Message::Error { id: 0, code, message } => return Err(connection_refused(code, &message)),
                m if response_id(&m) == Some(id) => return Ok(m),
                other => return Err(unexpected(&other)),
            }
        }
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

//! The p2p wire protocol, version 1.
//!
//! # Goals
//!
//! * Every byte of file data is verified before it is written: data travels
//!   with a [manifest](crate::manifest) that is itself checked against the
//!   file's BLAKE3 hash.
//! * Requests are pipelined on one connection; a slow disk or a large
//!   response never needs a second connection to the same peer.
//! * A peer that sends garbage costs the receiver a bounded amount of memory
//!   and time: every frame has a hard size limit, every decode is checked.
//! * The codec is pure ([`codec`]): it decodes from a byte slice and encodes
//!   into a caller's buffer, so it is tested and fuzzed without sockets.
//!
//! # Non-goals
//!
//! Encryption and peer authentication belong to the transport (TLS wraps
//! any transport); the protocol runs the same over both. The index speaks
//! the same framing with its own requests (see [`crate::index`]); it
//! never carries file data.
//!
//! # Connection
//!
//! Both sides start by sending an 8-byte [preamble](codec::encode_preamble):
//! the magic `p2p\0`, the protocol version (`u16`, little endian) and two
//! reserved zero bytes. A side that does not speak the other's version
//! sends an [`ErrorCode::UnsupportedVersion`] error and closes. Then the
//! connecting side sends [`Message::Hello`] and the accepting side answers
//! with its own `Hello`.
//!
//! # Frames
//!
//! ```text
//! frame   = length:u32le kind:u8 body          length counts kind + body
//! control = kind 0x01, body = postcard(Message)     body <= MAX_CONTROL
//! data    = kind 0x02, body = id:u32le offset:u64le bytes   bytes <= MAX_DATA
//! ```
//!
//! Control messages are serde types encoded with postcard; file bytes travel
//! raw in data frames, never re-encoded. A frame longer than its limit is a
//! protocol error: the receiver closes the connection as soon as it has read
//! the length, before reading the body. A frame that has started must also
//! finish in time: the IO timeout plus its size at 32 KiB/s.
//!
//! # Requests
//!
//! Every request carries an `id` chosen by the requester, unique among its
//! requests still open; every response and error carries the id of the
//! request it answers (id 0 is the connection itself). A side serves the
//! requests of one connection in order.
//!
//! | request | answer |
//! |---|---|
//! | [`Message::List`] | one or more [`Message::Files`] pages, the last with `last: true` |
//! | [`Message::GetManifest`] | one or more [`Message::ManifestPage`]s; to a client with [`CAP_ELSEWHERE`], once per connection, [`Message::Elsewhere`] instead |
//! | [`Message::Read`] | data frames covering the range in order, nothing after |
//! | [`Message::Offer`] (upload) | [`Message::Stored`] at once if unchanged; else [`Message::Accept`], then the uploader sends the manifest pages and the data frames, and the receiver answers [`Message::Stored`] once the file is verified, synced and in place |
//! | [`Message::Cancel`] | nothing; the named request stops at the next frame |
//! | [`Message::Subscribe`] (a peer with [`CAP_SWARM`]) | [`Message::Holding`], then [`Message::Have`] as it gets blocks or hears of peers, until cancelled or it has every block; to a client with [`CAP_CHOKE`], [`Message::Choke`] too; to a client with [`CAP_GOT`], [`Message::Showing`] if the whole content is shown piece by piece |
//! | [`Message::Interest`] (on a subscription, a client with [`CAP_CHOKE`]) | nothing |
//! | [`Message::Got`] (on a subscription answered with [`Message::Showing`]) | nothing |
//!
//! A peer with [`CAP_SWARM`] serves the contents it is still downloading,
//! block by block as each is verified and written: [`Message::GetManifest`]
//! by hash and [`Message::Read`] work for them, and a read of blocks it
//! does not have yet is answered [`ErrorCode::NotYet`]. Such contents are
//! never listed. A subscription's [`Message::Have`]s come between the
//! answers to other requests.
//!
//! An index (its Hello has [`CAP_INDEX`]) answers these instead:
//!
//! | request | answer |
//! |---|---|
//! | [`Message::Join`] (a serving peer, once per session) | [`Message::Joined`] with the TTL |
//! | [`Message::Publish`] (after Join) | [`Message::Published`] |
//! | [`Message::Fetching`] (after Join) | [`Message::Published`] (the contents it fetches) |
//! | [`Message::Ping`] | [`Message::Pong`] |
//! | [`Message::IndexList`] | one or more [`Message::IndexFiles`] pages, the last with `last: true` |
//! | [`Message::Locate`] | [`Message::Located`] |
//! | [`Message::ListPeers`] | one or more [`Message::PeerPage`]s |
//! | [`Message::Report`] | [`Message::Noted`] |
//! | [`Message::Suspect`] (kept so that older clients get an answer) | [`Message::Error`]: a report needs evidence |
//!
//! A joined peer's session must carry a request at least every TTL, or the
//! index forgets the peer; so does closing the connection.
//!
//! Any request may instead be answered by [`Message::Error`] with a typed
//! [`ErrorCode`]. Before its answer, a request that takes long may get
//! [`Message::Working`] every second or so.
//!
//! # Limits
//!
//! [`MAX_CONTROL`] and [`MAX_DATA`] bound a frame; [`MAX_READ`] bounds one
//! read request; [`LIST_PAGE`] and [`MANIFEST_PAGE`] bound the pages of the
//! answers that can grow with the folder or the file. A server also bounds
//! the requests it queues per connection and closes connections that stall
//! mid-frame or stay idle.

pub mod codec;

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::name::FileName;

/// The first four bytes on every connection.
pub const MAGIC: [u8; 4] = *b"p2p\0";
/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Length of the preamble: magic, version, two reserved bytes.
pub const PREAMBLE_LEN: usize = 8;
/// Largest postcard body of a control frame: 1 MiB.
pub const MAX_CONTROL: usize = 1 << 20;
/// Largest payload of a data frame: 1 MiB.
pub const MAX_DATA: usize = 1 << 20;
/// Largest range one [`Message::Read`] may ask for: 16 MiB.
pub const MAX_READ: u64 = 16 << 20;
/// Most file entries in one [`Message::Files`] page.
pub const LIST_PAGE: usize = 2048;
/// Most chaining values in one [`Message::ManifestPage`] (512 KiB).
pub const MANIFEST_PAGE: usize = 16384;
/// Longest peer id in a [`Hello`].
pub const MAX_PEER_ID: usize = 128;
/// Most peers the index names for one content in a [`Message::Located`].
pub const MAX_SOURCES: usize = 200;
/// Most peers in one [`Message::PeerPage`].
pub const PEER_PAGE: usize = 1024;

/// Capability bit: this side answers List, GetManifest and Read.
pub const CAP_SERVE: u32 = 1;
/// Capability bit: this side may accept uploads (policy still applies).
pub const CAP_UPLOAD: u32 = 2;
/// Capability bit: this side is an index (Join, Publish, IndexList,
/// Locate, ListPeers, Report).
pub const CAP_INDEX: u32 = 4;
/// Capability bit: this side swarms. It answers [`Message::Subscribe`]
/// (which blocks of a content it has, as it gets more, and who else
/// fetches it), serves the verified blocks of contents it is still
/// downloading, and answers a read of blocks it does not have yet with
/// [`ErrorCode::NotYet`].
pub const CAP_SWARM: u32 = 8;
/// Capability bit (a client's): this side takes turns at partial sources.
/// A peer serving a content it is still downloading then serves a few
/// such subscribers at a time: it tells each whether it is served now
/// ([`Message::Choke`]) and turns the reads of the others away
/// ([`ErrorCode::Choked`]), and each tells it whether it wants anything it
/// has ([`Message::Interest`]). Subscribers without the bit are served as
/// they ask.
pub const CAP_CHOKE: u32 = 16;
/// Capability bit: this side tells, or hears, which blocks a subscriber got
/// from other peers. A server with the whole content that shows it piece
/// by piece to a crowd says so to a client with the bit
/// ([`Message::Showing`]); the client then tells it what it gets
/// elsewhere ([`Message::Got`]), and is shown only pieces it lacks
/// instead of pieces it may have already. Both sides need the bit.
pub const CAP_GOT: u32 = 32;
/// Capability bit (a client's): this side serves what it downloads (it
/// subscribes with a port) and takes [`Message::Elsewhere`] for an answer
/// to [`Message::GetManifest`]. A peer with the whole file and a crowd of
/// such clients asking for its manifest at once sends it to the first few
/// and points the others to peers that got it already (each serves it by
/// hash), waiting a moment for the first to subscribe, so that its uplink
/// carries blocks rather than dozens of copies of the manifest. Asked
/// again on the same connection, it sends the manifest. Clients without
/// the bit are sent it at once.
pub const CAP_ELSEWHERE: u32 = 64;
/// Most bytes of a [`Message::Holding`] bitfield: one bit per block of the
/// largest file.
pub const MAX_BITFIELD: usize = 1 << 17;
/// Most blocks in one [`Message::Have`].
pub const MAX_HAVE: usize = 4096;
/// Most peer addresses in one [`Message::Holding`] or [`Message::Have`].
pub const MAX_EXCHANGE: usize = 50;

/// A control message.
///
/// The variant order is the wire encoding (postcard writes the variant
/// index): append new variants, never reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message of each side after the preambles.
    Hello(Hello),
    /// Asks for the list of served files.
    List {
        /// Request id.
        id: u32,
    },
    /// A page of the file list.
    Files {
        /// The List request answered.
        id: u32,
        /// Files on this page.
        files: Vec<FileInfo>,
        /// Whether this is the last page.
        last: bool,
    },
    /// Asks for a file's manifest.
    GetManifest {
        /// Request id.
        id: u32,
        /// Which file.
        file: FileRef,
    },
    /// A page of a manifest. Sent by a server answering GetManifest, and by
    /// an uploader after [`Message::Accept`].
    ManifestPage {
        /// The request this page belongs to.
        id: u32,
        /// The file: name, size and hash.
        info: FileInfo,
        /// Block size of the manifest.
        block_size: u32,
        /// Index of the first block on this page.
        first_block: u64,
        /// Chaining values of the blocks on this page.
        cvs: Vec<[u8; 32]>,
        /// Whether this is the last page.
        last: bool,
    },
    /// Answers [`Message::GetManifest`] of a client with [`CAP_ELSEWHERE`]:
    /// the file is `info`, and its manifest is for the asking (by hash)
    /// from these peers (at most [`MAX_EXCHANGE`]), which fetch it from
    /// this one. The manifest is checked against `info.hash` as any is.
    Elsewhere {
        /// The GetManifest answered.
        id: u32,
        /// The file: name, size and hash.
        info: FileInfo,
        /// Peers that have the manifest (`host:port`, as this one sees them).
        peers: Vec<String>,
    },
    /// Asks for `len` bytes of the file with `hash`, starting at `offset`.
    Read {
        /// Request id.
        id: u32,
        /// The file's hash.
        hash: Hash,
        /// First byte.
        offset: u64,
        /// Number of bytes, at most [`MAX_READ`].
        len: u64,
    },
    /// Stops an earlier request.
    Cancel {
        /// The request to stop.
        id: u32,
    },
    /// Offers to push a file (an upload).
    Offer {
        /// Request id.
        id: u32,
        /// The name to store it under. Raw text: the receiver checks it and
        /// answers [`ErrorCode::InvalidName`] rather than dropping the
        /// connection.
        name: String,
        /// Size in bytes.
        size: u64,
        /// BLAKE3 of the content.
        hash: Hash,
    },
    /// The receiver takes the offered file: send the manifest, then data.
    Accept {
        /// The Offer answered.
        id: u32,
    },
    /// The upload is complete.
    Stored {
        /// The Offer answered.
        id: u32,
        /// What the receiver did.
        outcome: StoreOutcome,
    },
    /// A request failed.
    Error {
        /// The request that failed; 0 for the connection.
        id: u32,
        /// What kind of failure.
        code: ErrorCode,
        /// Details for people.
        message: String,
    },
    /// The request is still being worked on (a large file being hashed, an
    /// upload being synced): sent about once a second until the answer, so
    /// the asking side knows the peer is alive.
    Working {
        /// The request.
        id: u32,
    },
    /// A serving peer joins the index: it serves on `port` of the address
    /// its connection comes from. The first message of an announcing
    /// session; the session lasts as long as the connection.
    Join {
        /// Request id.
        id: u32,
        /// The port the peer serves on.
        port: u16,
    },
    /// The index took the peer: it must hear from it (a Publish or a Ping)
    /// at least every `ttl_secs`, or it forgets it.
    Joined {
        /// The Join answered.
        id: u32,
        /// Seconds of silence after which the index forgets the peer.
        ttl_secs: u32,
    },
    /// A page of a joined peer's files: `files` are new or changed,
    /// `removed` are gone. `reset` (on the first page of a full list)
    /// forgets everything the peer published before.
    Publish {
        /// Request id.
        id: u32,
        /// Files added or changed, at most [`LIST_PAGE`].
        files: Vec<FileInfo>,
        /// Names no longer served, at most [`LIST_PAGE`].
        removed: Vec<FileName>,
        /// Replace, rather than amend, what the peer published.
        reset: bool,
    },
    /// The index took a Publish.
    Published {
        /// The Publish answered.
        id: u32,
        /// Files the index now lists for the peer.
        files: u32,
    },
    /// Keeps an announcing session alive; answered by [`Message::Pong`].
    Ping {
        /// Request id.
        id: u32,
    },
    /// Answers a Ping.
    Pong {
        /// The Ping answered.
        id: u32,
    },
    /// Asks the index for every file on the network.
    IndexList {
        /// Request id.
        id: u32,
    },
    /// A page of the network's files, sorted by name then hash.
    IndexFiles {
        /// The IndexList answered.
        id: u32,
        /// Files on this page.
        files: Vec<IndexedFile>,
        /// Whether this is the last page.
        last: bool,
    },
    /// Asks the index who serves a file: by name (every content served
    /// under it) or by hash.
    Locate {
        /// Request id.
        id: u32,
        /// Which file.
        file: FileRef,
    },
    /// Who serves the file, per content.
    Located {
        /// The Locate answered.
        id: u32,
        /// Each content with its sources (at most [`MAX_SOURCES`] each).
        found: Vec<Sources>,
    },
    /// Asks the index for the peers online.
    ListPeers {
        /// Request id.
        id: u32,
    },
    /// A page of the peers online, sorted by id then address.
    PeerPage {
        /// The ListPeers answered.
        id: u32,
        /// Peers on this page.
        peers: Vec<PeerInfo>,
        /// Whether this is the last page.
        last: bool,
    },
    /// A downloader tells the index that the peer at `addr` served data
    /// of `hash` that failed verification.
    Suspect {
        /// Request id.
        id: u32,
        /// The content.
        hash: Hash,
        /// The peer's address, as the index gave it.
        addr: String,
    },
    /// The index took a report.
    Noted {
        /// The Report answered.
        id: u32,
    },
    /// A downloader tells the index that the peer at `addr` sent a block of
    /// `hash` that failed verification, with the evidence: which block,
    /// the value the bad data had, and the value the block should have
    /// had, proven against `hash` (see [`crate::manifest::verify_proof`]).
    Report {
        /// Request id.
        id: u32,
        /// The content.
        hash: Hash,
        /// The peer's address, as the index gave it.
        addr: String,
        /// What was wrong (boxed: the largest message by far).
        bad: Box<BadBlock>,
    },
    /// Asks which blocks of `hash` the peer has, now and as it gets more,
    /// and which other peers fetch `hash` from it. The asker fetches `hash`
    /// too, and serves what it has of it on `port` (0: it serves nothing).
    /// Answered by [`Message::Holding`], then [`Message::Have`] as the peer
    /// gets blocks or learns of peers, until [`Message::Cancel`] or the
    /// peer has every block.
    Subscribe {
        /// Request id.
        id: u32,
        /// The content.
        hash: Hash,
        /// Where the asker serves it; 0 for nowhere.
        port: u16,
    },
    /// What the peer has of a content: every block, or those whose bits
    /// are set (bit `i % 8` of byte `i / 8` for block `i`, at most
    /// [`MAX_BITFIELD`] bytes); and up to [`MAX_EXCHANGE`] other peers that
    /// fetch it (`host:port`, as the peer sees them). It may come again
    /// for the same subscription: it then replaces what was said (a peer
    /// with the whole file that starts showing it piece by piece to a
    /// crowd says it holds none, then tells of pieces with `Have`).
    Holding {
        /// The Subscribe answered.
        id: u32,
        /// It has every block (`bits` is then empty).
        complete: bool,
        /// The blocks it has, if not every one.
        bits: Vec<u8>,
        /// Others that fetch the content and serve it.
        peers: Vec<String>,
    },
    /// More for a [`Message::Subscribe`]: blocks the peer got since (at
    /// most [`MAX_HAVE`]), and peers it learned of (at most
    /// [`MAX_EXCHANGE`]).
    Have {
        /// The Subscribe answered.
        id: u32,
        /// Blocks it has now.
        blocks: Vec<u32>,
        /// Others that fetch the content and serve it.
        peers: Vec<String>,
    },
    /// A joined peer (one with [`CAP_SWARM`]) downloads `info` and serves
    /// the blocks it has of it on its joined port, by hash (see
    /// [`Message::Subscribe`]). The index names it as a partial source of
    /// the content to askers that swarm, and never lists it as a file.
    /// It lasts as long as the session.
    Fetching {
        /// Request id.
        id: u32,
        /// The content: the name it is saved under, size and hash.
        info: FileInfo,
    },
    /// For a [`Message::Subscribe`] of a client with [`CAP_CHOKE`] to a
    /// content the peer is still downloading: whether the peer serves the
    /// subscriber's reads now. A choked subscriber asks others: a read of
    /// it that the peer has not started is answered [`ErrorCode::Choked`]
    /// (one being sent is finished). It is unchoked in turn while it is
    /// interested.
    Choke {
        /// The Subscribe answered.
        id: u32,
        /// Not served now.
        choked: bool,
    },
    /// From a subscriber with [`CAP_CHOKE`], on its subscription: whether
    /// the peer has blocks it still wants. No answer.
    Interest {
        /// The Subscribe it is about.
        id: u32,
        /// It wants some of the peer's blocks.
        interested: bool,
    },
    /// To a subscriber with [`CAP_GOT`], after [`Message::Holding`]: this
    /// peer holds the whole content and shows it piece by piece; tell it
    /// which blocks you get elsewhere ([`Message::Got`]).
    Showing {
        /// The Subscribe answered.
        id: u32,
    },
    /// From a subscriber, on a subscription that was answered with
    /// [`Message::Showing`]: blocks it has (first all, then those it got
    /// since it last said; at most [`MAX_HAVE`] in one). No answer.
    Got {
        /// The Subscribe it is about.
        id: u32,
        /// Blocks it has now.
        blocks: Vec<u32>,
    },
}

/// A block that failed verification, as evidence anyone who knows the
/// file's hash and size can check: the block's true value is proven
/// against the hash, and the value the data had differs from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadBlock {
    /// The block's index.
    pub block: u64,
    /// The value the received data had as that block.
    pub got: [u8; 32],
    /// The value the block has in the file's manifest.
    pub want: [u8; 32],
    /// The values that merge with `want` into the file's hash, one per
    /// level of the tree, from the top.
    pub proof: Vec<[u8; 32]>,
}

/// A file on the network, as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedFile {
    /// Name, size and hash.
    pub info: FileInfo,
    /// Peers serving this content under this name.
    pub sources: u32,
}

/// A peer as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The id it gave (empty if none).
    pub id: String,
    /// Where it serves: `host:port`.
    pub addr: String,
    /// Its certificate's fingerprint, where its session was over TLS.
    pub fingerprint: Option<crate::transport::Fingerprint>,
    /// Files it serves.
    pub files: u32,
}

/// One content of a located file and the peers serving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    /// Name, size and hash.
    pub info: FileInfo,
    /// The peers.
    pub peers: Vec<PeerInfo>,
}

/// The handshake message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's peer id (as in peer_settings.txt), at most
    /// [`MAX_PEER_ID`] bytes; empty for a pure client.
    pub peer_id: String,
    /// Software name and version, for diagnostics.
    pub agent: String,
    /// `CAP_*` bits.
    pub capabilities: u32,
}

/// One served file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileInfo {
    /// Its name in the served folder.
    pub name: FileName,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub hash: Hash,
}

/// How a request names a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileRef {
    /// By name in the served folder (raw text, checked by the receiver).
    Name(String),
    /// By content.
    Hash(Hash),
}

/// What a receiver did with an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOutcome {
    /// The file is now in the served folder.
    Stored,
    /// The served folder already had this exact file; nothing was written.
    Unchanged,
}

/// Typed failures a peer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No such file.
    NotFound,
    /// Another upload of this name is in progress.
    AlreadyUploading,
    /// A different file already has this name and overwriting is off.
    Exists,
    /// Policy does not allow this request.
    Forbidden,
    /// The name is not an acceptable file name.
    InvalidName,
    /// The file or request is larger than allowed.
    TooLarge,
    /// The peer is at its limit; try later.
    Busy,
    /// The file changed while it was being served.
    Changed,
    /// Received data did not match its manifest.
    Corrupt,
    /// The request breaks the protocol.
    BadRequest,
    /// The peer speaks another protocol version.
    UnsupportedVersion,
    /// The peer failed on its side (disk error...).
    Internal,
    /// The peer is still downloading the content and does not have these
    /// blocks yet (see [`CAP_SWARM`]): ask again later, or another peer.
    NotYet,
    /// The peer serves other subscribers of this content now (it said so
    /// with [`Message::Choke`], or says so with this answer): ask another
    /// peer, or again once unchoked. Only to a client with [`CAP_CHOKE`].
    Choked,
}

impl ErrorCode {
    /// A short phrase for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::AlreadyUploading => "already being uploaded",
            Self::Exists => "exists with different content",
            Self::Forbidden => "forbidden",
            Self::InvalidName => "invalid name",
            Self::TooLarge => "too large",
            Self::Busy => "busy",
            Self::Changed => "changed while being served",
            Self::Corrupt => "corrupt data",
            Self::BadRequest => "bad request",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::Internal => "internal error",
            Self::NotYet => "not there yet",
            Self::Choked => "serving others now",
        }
    }
}

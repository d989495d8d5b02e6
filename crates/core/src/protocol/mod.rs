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
//! any transport); the protocol runs the same over both. Discovery belongs
//! to the index.
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
//! | [`Message::GetManifest`] | one or more [`Message::ManifestPage`]s |
//! | [`Message::Read`] | data frames covering the range in order, nothing after |
//! | [`Message::Offer`] (upload) | [`Message::Stored`] at once if unchanged; else [`Message::Accept`], then the uploader sends the manifest pages and the data frames, and the receiver answers [`Message::Stored`] once the file is verified, synced and in place |
//! | [`Message::Cancel`] | nothing; the named request stops at the next frame |
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

/// Capability bit: this side answers List, GetManifest and Read.
pub const CAP_SERVE: u32 = 1;
/// Capability bit: this side may accept uploads (policy still applies).
pub const CAP_UPLOAD: u32 = 2;

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
        }
    }
}

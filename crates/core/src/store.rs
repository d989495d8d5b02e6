//! The `Store` handle: where a peer's files live.
//!
//! A store is a flat folder of files plus a little state of its own (cached
//! manifests, partial files). Files under their final names are always
//! whole and verified: new content is written to a [`PartialFile`], made
//! durable, and only then renamed into place by [`PartialFile::commit`].
//!
//! `p2p-host` has the disk implementation; simnet has an in-memory one that
//! models crashes.

use std::future::Future;
use std::io;

use crate::manifest::Manifest;
use crate::name::FileName;

/// A file in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Its name.
    pub name: FileName,
    /// Size in bytes.
    pub size: u64,
    /// A version stamp that changes whenever the content may have changed
    /// (on disk: the modification time in nanoseconds).
    pub modified: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No file by that name.
    #[error("{0} not found")]
    NotFound(FileName),
    /// Committing would replace a file, and overwriting was not allowed.
    #[error("{0} already exists")]
    Exists(FileName),
    /// The file changed while it was being read.
    #[error("{0} changed while it was being read")]
    Changed(FileName),
    /// The file is larger than the protocol moves.
    #[error("{0} is larger than the 4 TiB limit")]
    TooLarge(FileName),
    /// Not enough free space for the file.
    #[error("{name} needs {} more, and {location} has {} free", crate::units::bytes(*.needed), crate::units::bytes(*.free))]
    NoSpace {
        /// The file.
        name: FileName,
        /// Where it would go.
        location: String,
        /// Bytes still to write.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// An IO error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What the store was doing, naming the path.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// Wraps an IO error with a description of what failed.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

/// Characters at the start of a resume key that name the file (see
/// [`Store::resume_partial`]).
pub const NAME_KEY: usize = 16;

/// A folder of files. Implementations are cheap handles: clone them freely.
pub trait Store: Clone + Send + Sync + 'static {
    /// A file opened for reading.
    type File: ReadAt;
    /// New content on its way to a final name.
    type Partial: PartialFile;

    /// Where the store is, for messages (a path on disk).
    fn location(&self) -> String;

    /// All whole files. Never includes partial files or the store's state.
    fn list(&self) -> impl Future<Output = Result<Vec<FileMeta>, StoreError>> + Send;

    /// One file's metadata, or `None` if there is no such file.
    fn stat(&self, name: &FileName) -> impl Future<Output = Result<Option<FileMeta>, StoreError>> + Send;

    /// Opens a file for reading.
    fn open(&self, name: &FileName) -> impl Future<Output = Result<(Self::File, FileMeta), StoreError>> + Send;

    /// Reads the file once and computes its manifest, off the async threads
    /// where that matters. Fails with [`StoreError::Changed`] if the file
    /// changed meanwhile.
    fn hash(&self, name: &FileName) -> impl Future<Output = Result<(FileMeta, Manifest), StoreError>> + Send;

    /// Starts new content for `name`, `size` bytes long.
    fn create_partial(
        &self,
        name: &FileName,
        size: u64,
    ) -> impl Future<Output = Result<Self::Partial, StoreError>> + Send;

    /// Continues the resumable content `key` (letters and digits; its first
    /// [`NAME_KEY`] name the file, the rest its content) for `name`, `size`
    /// bytes long, or starts it. Unlike
    /// [`create_partial`](Self::create_partial), dropping it keeps the
    /// content and its [resume record](PartialFile::save_record) for the
    /// next try; only [`commit`](PartialFile::commit) and
    /// [`discard`](PartialFile::discard) end it, and a commit also drops
    /// what is kept of other contents of the same name (stale now). Fails
    /// if another download holds the same content open.
    fn resume_partial(
        &self,
        name: &FileName,
        key: &str,
        size: u64,
    ) -> impl Future<Output = Result<Self::Partial, StoreError>> + Send;

    /// Reads a state record (`key` is `[a-z0-9_-]` words joined by `/`).
    fn load_state(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Writes a state record atomically.
    fn save_state(&self, key: &str, data: Vec<u8>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A stamp that changes whenever files are added to the folder or
    /// removed or renamed in it (on disk: the folder's modification and
    /// change times), if there is one.
    fn stamp(&self) -> impl Future<Output = Option<u64>> + Send {
        std::future::ready(None)
    }

    /// Bytes that may still be written to the store (the free space of its
    /// disk), if known. Offers and downloads larger than this are refused
    /// before they start.
    fn available(&self) -> impl Future<Output = Option<u64>> + Send {
        std::future::ready(None)
    }
}

/// Positional writes.
pub trait WriteAt: Clone + Send + Sync + 'static {
    /// Writes `data` at `offset`; returns the buffer for reuse.
    fn write_at(&self, offset: u64, data: Vec<u8>) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
}

/// Positional reads.
pub trait ReadAt: Send + Sync + 'static {
    /// Reads exactly `len` bytes at `offset` into `buf` (cleared first) and
    /// returns it; fails with `UnexpectedEof` if the file is shorter.
    fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
}

/// A file being written. Dropping it without [`commit`](Self::commit)
/// removes it at once: nothing partial is left under any name a user sees.
///
/// Only the owner decides the file's fate. Tasks that write get a
/// [`writer`](Self::writer), which does not keep the file alive: if the
/// owner is dropped (a cancelled download), the file goes even while
/// writers are still running.
pub trait PartialFile: Send + Sync + 'static {
    /// A handle for positional writes (and reads of what was written).
    type Writer: WriteAt + ReadAt + Clone;

    /// A writer for this file.
    fn writer(&self) -> Self::Writer;

    /// Makes everything written so far durable.
    fn sync(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// The resume record saved with this content, if any.
    fn record(&self) -> impl Future<Output = io::Result<Option<Vec<u8>>>> + Send;

    /// Replaces the resume record, atomically and durably. Callers
    /// [`sync`](Self::sync) first: a record must never claim bytes that a
    /// crash could lose.
    fn save_record(&self, data: Vec<u8>) -> impl Future<Output = io::Result<()>> + Send;

    /// Removes the content and its record now.
    fn discard(self) -> impl Future<Output = ()> + Send;

    /// Makes the content durable and renames it to its final name. Unless
    /// `overwrite` is set, fails with [`StoreError::Exists`] (and keeps
    /// nothing) if the name is taken by then.
    fn commit(self, overwrite: bool) -> impl Future<Output = Result<FileMeta, StoreError>> + Send;
}

//! Downloads: files from several sources at once.
//!
//! Every source is asked for the file's manifest (by name or by hash). The
//! download is pinned to one content: the hash the request names, or else
//! the content offered from the most distinct hosts (the first-named source
//! breaks ties); a source offering anything else is dropped and named. A [`Schedule`](schedule::Schedule) then hands ranges to all
//! sources at once, as deep as each one's rate deserves, and near the end
//! lets fast sources take over what slow ones still hold. Each source
//! verifies every block against the manifest and writes it to a partial
//! file. A source that fails or sends corrupt data is dropped and its
//! unfinished ranges go to the others.
//!
//! The partial file is resumable: every so often it is synced and a record
//! of the blocks in place is saved beside it. An interrupted download keeps
//! both; the next try reads back and re-verifies what the record claims
//! and fetches only the rest. The file appears under its name only when
//! every byte is verified and synced.
//!
//! A [`Downloader`] runs any number of downloads, one after the other or at
//! once. They share its sessions (a peer is connected to once, not once
//! per file, which is what makes thousands of small files quick) and a cap
//! on the bytes they have in flight together. [`download`] is one download
//! with a downloader of its own.
//!
//! ```no_run
//! # async fn demo<T: p2p_core::transport::Transport, R: p2p_core::runtime::Runtime, S: p2p_core::store::Store>(
//! #     transport: T, rt: R, store: S) -> Result<(), Box<dyn std::error::Error>> {
//! use p2p_core::catalog::Catalog;
//! use p2p_core::download::{DownloadConfig, Downloader, SourceSpec};
//! use p2p_core::name::FileName;
//!
//! let sources = [SourceSpec { label: "peer1".into(), addr: "127.0.0.1:5000".into() }];
//! let downloader = Downloader::new(transport, rt, Catalog::new(store), DownloadConfig::default());
//! for name in ["a.txt", "b.txt"] {
//!     let report = downloader.download(&FileName::new(name)?, &sources, |_progress| {}).await?;
//!     println!("{} {}", report.info.name, report.info.hash);
//! }
//! downloader.close().await;
//! # Ok(()) }
//! ```

mod downloader;
mod find;
mod peer;
mod pin;
mod pool;
mod report;
mod resume;
pub mod schedule;

pub use downloader::Downloader;
pub use find::Finder;
pub(crate) use peer::SWARM_FROM;
pub use peer::SourceError;
pub use report::{DownloadError, DownloadReport, Outcome, Problem, ProblemKind, Progress, SourceReport};

use crate::catalog::Catalog;
use crate::client::ClientConfig;
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::FileRef;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::transport::Transport;
use schedule::ScheduleConfig;

/// A peer to download from.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// How reports name it (a peer id, or the address).
    pub label: String,
    /// Where it is.
    pub addr: String,
}

/// What to download. A download is for one content, fixed before the
/// first byte is fetched; every source that offers another is dropped and
/// named. The file is saved under the name the request gives, never under
/// one a peer chose, except for a download by hash alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// The file sources serve under this name, with the content offered
    /// from the most distinct hosts (the first-named source breaks ties),
    /// saved under this name.
    Name(FileName),
    /// The file with this content, asked of sources by hash. It is saved
    /// under the name the first source offering it gives, which passes
    /// [`FileName`]'s rules and never replaces a local file.
    Hash(Hash),
    /// This content, saved under this name (what the index answered for a
    /// name): asked of sources by hash.
    Exact {
        /// The name to save it under.
        name: FileName,
        /// The content.
        hash: Hash,
    },
}

impl Wanted {
    /// What to ask a source for.
    pub fn request(&self) -> FileRef {
        match self {
            Wanted::Name(n) => FileRef::Name(n.to_string()),
            Wanted::Hash(hash) | Wanted::Exact { hash, .. } => FileRef::Hash(*hash),
        }
    }

    /// The content, if the request fixes it.
    pub fn pinned(&self) -> Option<Hash> {
        match self {
            Wanted::Name(_) => None,
            Wanted::Hash(hash) | Wanted::Exact { hash, .. } => Some(*hash),
        }
    }

    /// The name to save under, if the request gives one.
    pub fn name(&self) -> Option<&FileName> {
        match self {
            Wanted::Name(name) | Wanted::Exact { name, .. } => Some(name),
            Wanted::Hash(_) => None,
        }
    }
}

impl From<&FileName> for Wanted {
    fn from(name: &FileName) -> Self {
        Wanted::Name(name.clone())
    }
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Name(n) | Wanted::Exact { name: n, .. } => write!(f, "{n}"),
            Wanted::Hash(h) => write!(f, "blake3 {h}"),
        }
    }
}

/// Options of a download.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Replace a local file of the same name with different content.
    pub overwrite: bool,
    /// Scheduling of each download: request sizes, depths, its own cap.
    pub schedule: ScheduleConfig,
    /// Most bytes in flight for all the downloads of one [`Downloader`]
    /// together.
    pub total_cap: u64,
    /// Swarming: whether to subscribe to what sources that swarm hold,
    /// fetch from the partial sources they name (peer exchange), and where
    /// this peer serves its downloads to them (a port; 0 for nowhere).
    /// `None`: fetch whole files from the sources given only.
    pub swarm: Option<u16>,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            overwrite: false,
            schedule: ScheduleConfig::default(),
            total_cap: 256 << 20,
            swarm: Some(0),
        }
    }
}

/// Downloads `wanted` from `sources` into `catalog`'s store: one download
/// with a [`Downloader`] of its own.
pub async fn download<T, R, S>(
    transport: &T,
    rt: &R,
    catalog: &Catalog<S>,
    wanted: impl Into<Wanted>,
    sources: &[SourceSpec],
    config: &DownloadConfig,
    progress: impl FnMut(Progress),
) -> Result<DownloadReport, DownloadError>
where
    T: Transport,
    R: Runtime,
    S: Store,
{
    let downloader = Downloader::new(transport.clone(), rt.clone(), catalog.clone(), config.clone());
    let result = downloader.download(wanted, sources, progress).await;
    downloader.close().await;
    result
}

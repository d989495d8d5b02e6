//! p2p-host: what a real machine provides to p2p-core.
//!
//! * [`SmolRuntime`]: p2p-core's `Runtime` on smol's executor, timers
//!   and blocking thread pool, with the real clock.
//! * [`FsStore`]: p2p-core's `Store` on a folder on disk. Blocking file
//!   work runs on the blocking pool, never on the async threads.
//! * [`open_files_limit`] and [`connection_caps`]: the process's limit on
//!   open files, raised, and caps on connections that fit in it.
//!
//! ```no_run
//! use p2p_host::{FsStore, SmolRuntime};
//!
//! let rt = SmolRuntime::new(2);
//! let store = FsStore::new("served_files");
//! rt.block_on(async {
//!     // hand `rt` and `store` to p2p_core::server::Server::new ...
//! });
//! ```
#![warn(missing_docs)]

mod fs_store;
mod limits;
mod runtime;
mod state_dir;

pub use fs_store::{FsFile, FsPartial, FsStore, FsWriter};
pub use limits::{connection_caps, open_files_limit};
pub use runtime::SmolRuntime;

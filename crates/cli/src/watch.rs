//! Watching the served folder (the notify crate): every change of a file
//! in it is a signal to the announcer, which looks at the folder again and
//! publishes what changed. Signals are coalesced: one pending is enough.
//! p2p's own state (`.p2p/`: partial files, cached hashes) is not watched
//! for; a download or upload shows up when it is renamed into place.

use std::path::Path;

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher};
use p2p_core::name::STATE_DIR;

/// Starts watching `dir`; each change sends `()` on `changes` unless one
/// is pending already. Watching stops when the returned watcher is dropped.
pub(crate) fn watch(dir: &Path, changes: async_channel::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let state = dir.join(STATE_DIR);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) if matches!(e.kind, EventKind::Access(_)) && !closed_after_writing(&e.kind) => {}
        Ok(e) if !e.paths.is_empty() && e.paths.iter().all(|p| p.starts_with(&state)) => {}
        Ok(_) => {
            // Full means a signal is pending already: nothing is lost.
            let _ = changes.try_send(());
        }
        // Events were lost (a queue overflow): a full look finds everything.
        Err(e) => {
            tracing::debug!("folder watcher: {e}");
            let _ = changes.try_send(());
        }
    })
    .context("cannot watch the served folder")?;
    watcher.watch(dir, RecursiveMode::NonRecursive).with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}

/// A file closed after writing: the moment a copied file is complete.
fn closed_after_writing(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)))
}

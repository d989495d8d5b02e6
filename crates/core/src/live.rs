//! Contents a peer is still downloading, as its server serves them: the
//! manifest, which blocks are verified and written, and the partial file
//! to read them from. A block is served only once it is both.
//!
//! A download [goes live](crate::catalog::Catalog::go_live) as soon as its
//! content is fixed and its partial file exists, adds each block as its
//! write lands, and leaves when it ends: complete (its file is then in the
//! catalog, whole) or not (its partial file is not served any more).
//! Subscribers ([`Message::Subscribe`](crate::protocol::Message::Subscribe))
//! hear of each block in the order they came.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::{Event, EventListener};

use crate::bitfield::Bitfield;
use crate::manifest::Manifest;
use crate::name::FileName;

/// A content being downloaded, served block by block.
#[derive(Debug)]
pub struct Live<W> {
    name: FileName,
    manifest: Arc<Manifest>,
    reader: W,
    state: Mutex<State>,
    changed: Event,
}

/// How a live content stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Still downloading.
    Growing,
    /// Whole: the file is in the catalog.
    Complete,
    /// Given up: nothing more will come, and its blocks are not served.
    Gone,
}

#[derive(Debug)]
struct State {
    have: Bitfield,
    /// The blocks in the order they came, for subscribers to catch up on.
    log: Vec<u32>,
    standing: Standing,
    /// Peers that fetch the same content from this one and serve it
    /// (`host:port`), in the order they came: sources for the download
    /// here too.
    met: Vec<String>,
}

/// Peers remembered per live content as fetching it from here.
const MAX_MET: usize = 256;

impl<W> Live<W> {
    pub(crate) fn new(name: FileName, manifest: Arc<Manifest>, reader: W, have: Bitfield) -> Self {
        let log = have.iter().map(|b| b as u32).collect();
        let standing = if have.is_full() { Standing::Complete } else { Standing::Growing };
        Self {
            name,
            manifest,
            reader,
            state: Mutex::new(State { have, log, standing, met: Vec::new() }),
            changed: Event::new(),
        }
    }

    /// The name it will have.
    pub fn name(&self) -> &FileName {
        &self.name
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Where its blocks are read from.
    pub fn reader(&self) -> &W {
        &self.reader
    }

    /// The blocks it has now, and how far its log goes (for [`since`]).
    ///
    /// [`since`]: Self::since
    pub fn snapshot(&self) -> (Bitfield, usize, Standing) {
        let s = self.lock();
        (s.have.clone(), s.log.len(), s.standing)
    }

    /// The blocks that came after position `from` of its log, the new
    /// position, and how it stands.
    pub fn since(&self, from: usize) -> (Vec<u32>, usize, Standing) {
        let s = self.lock();
        let from = from.min(s.log.len());
        (s.log[from..].to_vec(), s.log.len(), s.standing)
    }

    /// Whether every block the byte range `start..end` touches is here.
    pub fn has_range(&self, start: u64, end: u64) -> bool {
        let s = self.lock();
        if s.standing == Standing::Gone {
            return false;
        }
        let bs = u64::from(self.manifest.block_size());
        (start / bs..end.div_ceil(bs).max(start / bs + 1)).all(|b| s.have.get(b))
    }

    /// A peer fetching this content from here serves it at `addr` (a
    /// connection goes one way: without this, a peer nobody was told of
    /// would upload to nobody).
    pub(crate) fn met(&self, addr: &str) {
        let mut s = self.lock();
        if s.met.len() < MAX_MET && !s.met.iter().any(|a| a == addr) {
            s.met.push(addr.to_owned());
        }
    }

    /// The peers met after position `from`, and the new position.
    pub fn met_since(&self, from: usize) -> (Vec<String>, usize) {
        let s = self.lock();
        let from = from.min(s.met.len());
        (s.met[from..].to_vec(), s.met.len())
    }

    /// A future that completes at its next change.
    pub fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    fn add(&self, block: u64) {
        let mut s = self.lock();
        if s.have.set(block) {
            s.log.push(block as u32);
            if s.have.is_full() {
                s.standing = Standing::Complete;
            }
            drop(s);
            self.changed.notify(usize::MAX);
        }
    }

    fn end(&self, standing: Standing) {
        let mut s = self.lock();
        if s.standing == Standing::Growing || standing == Standing::Gone {
            s.standing = standing;
        }
        drop(s);
        self.changed.notify(usize::MAX);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain state, each change whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A download's hold on its live content: blocks are added through it, and
/// it takes the content out of the catalog's live set when dropped (or
/// [finished](Self::finish)).
#[derive(Debug)]
pub struct Going<W> {
    live: Arc<Live<W>>,
    registry: Arc<Mutex<std::collections::HashMap<crate::hash::Hash, Arc<Live<W>>>>>,
    complete: bool,
}

impl<W> Going<W> {
    pub(crate) fn new(
        live: Arc<Live<W>>,
        registry: Arc<Mutex<std::collections::HashMap<crate::hash::Hash, Arc<Live<W>>>>>,
    ) -> Self {
        Self { live, registry, complete: false }
    }

    /// Block `block` is verified and written: it may be served.
    pub fn add(&self, block: u64) {
        self.live.add(block);
    }

    /// The content.
    pub fn live(&self) -> &Arc<Live<W>> {
        &self.live
    }

    /// The download ended with the whole file in place: subscribers hear
    /// it is complete.
    pub fn finish(mut self) {
        self.complete = true;
    }
}

impl<W> Drop for Going<W> {
    fn drop(&mut self) {
        let hash = self.live.manifest.root();
        let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if reg.get(&hash).is_some_and(|l| Arc::ptr_eq(l, &self.live)) {
            reg.remove(&hash);
        }
        drop(reg);
        self.live.end(if self.complete { Standing::Complete } else { Standing::Gone });
    }
}

//! The catalog: a store's files with their manifests, computed once.
//!
//! Hashing a large file takes a while, so a manifest is computed once per
//! content version (keyed by size and modification stamp), kept in memory,
//! and saved in the store's state so a restart does not hash again.
//! Concurrent requests for a file that is being hashed wait for that one
//! computation instead of starting their own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_lock::OnceCell;
use event_listener::{Event, EventListener};
use serde::{Deserialize, Serialize};

use crate::bitfield::Bitfield;
use crate::hash::Hash;
use crate::live::{Going, Live};
use crate::manifest::Manifest;
use crate::name::FileName;
use crate::protocol::FileInfo;
use crate::store::{FileMeta, PartialFile, Store, StoreError};

/// Files smaller than this are hashed again after a restart rather than
/// cached on disk: reading them is as quick as reading a cache record, and
/// a folder of many small files would get as many records.
const CACHE_FROM: u64 = 1 << 20;

/// How often a file that keeps changing under the hasher is retried.
const HASH_ATTEMPTS: usize = 3;

/// A store's files and their manifests, and the contents being
/// downloaded into it ([live](crate::live)). Cheap to clone; clones share
/// the cache.
pub struct Catalog<S: Store> {
    store: S,
    cache: Arc<Mutex<Cache>>,
    live: LiveSet<S>,
    /// Every content that went live here (downloaded, or being).
    went_live: Arc<Mutex<HashSet<Hash>>>,
    /// Told each time a content goes live.
    going_live: Arc<Event>,
}

/// The partial files of a store's downloads, as read from.
pub type PartialReader<S> = <<S as Store>::Partial as PartialFile>::Writer;

type LiveSet<S> = Arc<Mutex<HashMap<Hash, Arc<Live<PartialReader<S>>>>>>;

impl<S: Store> Clone for Catalog<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            cache: self.cache.clone(),
            live: self.live.clone(),
            went_live: self.went_live.clone(),
            going_live: self.going_live.clone(),
        }
    }
}

/// A file and its manifest.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Name, size and hash.
    pub info: FileInfo,
    /// The block list.
    pub manifest: Arc<Manifest>,
}

#[derive(Default)]
struct Cache {
    by_name: HashMap<FileName, Slot>,
    /// Every name known to have each content (several files may).
    by_hash: HashMap<Hash, BTreeSet<FileName>>,
    /// The names of the last scan and of files written since, by their
    /// folded form ([`FileName::folded`]), and the store's stamp at that
    /// scan; `None` before the first scan.
    folds: Option<(HashMap<String, FileName>, Option<u64>)>,
}

struct Slot {
    size: u64,
    modified: u64,
    manifest: Arc<OnceCell<Arc<Manifest>>>,
}

/// The saved form of a manifest.
#[derive(Serialize, Deserialize)]
struct Record {
    name: String,
    size: u64,
    modified: u64,
    block_size: u32,
    root: Hash,
    cvs: Vec<[u8; 32]>,
}

impl<S: Store> Catalog<S> {
    /// A catalog of `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            cache: Arc::default(),
            live: Arc::default(),
            went_live: Arc::default(),
            going_live: Arc::default(),
        }
    }

    /// Serves a download's content as it arrives: `have` is what is in
    /// place already. While the returned handle lives, the content is
    /// [`live`](Self::live) here (never listed).
    pub fn go_live(
        &self,
        name: FileName,
        manifest: Arc<Manifest>,
        reader: PartialReader<S>,
        have: Bitfield,
    ) -> Going<PartialReader<S>> {
        let live = Arc::new(Live::new(name, manifest.clone(), reader, have));
        self.live.lock().unwrap_or_else(PoisonError::into_inner).insert(manifest.root(), live.clone());
        self.went_live.lock().unwrap_or_else(PoisonError::into_inner).insert(manifest.root());
        self.going_live.notify(usize::MAX);
        Going::new(live, self.live.clone())
    }

    /// Completes when a content next goes live here: take it before
    /// looking at [`went_live`](Self::went_live), so none is missed.
    pub fn live_listener(&self) -> EventListener {
        self.going_live.listen()
    }

    /// Whether content `hash` was downloaded here (or is being) by this
    /// process.
    pub fn went_live(&self, hash: &Hash) -> bool {
        self.went_live.lock().unwrap_or_else(PoisonError::into_inner).contains(hash)
    }

    /// A content being downloaded here, if `hash` is one.
    pub fn live(&self, hash: &Hash) -> Option<Arc<Live<PartialReader<S>>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).get(hash).cloned()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Every whole file, sorted by name, without hashing anything. Forgets
    /// cached manifests of files that are gone.
    pub async fn scan(&self) -> Result<Vec<FileMeta>, StoreError> {
        let stamp = self.store.stamp().await;
        let mut metas = self.store.list().await?;
        metas.sort_by(|a, b| a.name.cmp(&b.name));
        let folds = metas.iter().map(|m| (m.name.folded(), m.name.clone())).collect();
        let mut cache = self.lock();
        let Cache { by_name, by_hash, folds: kept } = &mut *cache;
        by_name.retain(|name, _| metas.binary_search_by(|m| m.name.cmp(name)).is_ok());
        by_hash.retain(|_, names| {
            names.retain(|n| by_name.contains_key(n));
            !names.is_empty()
        });
        *kept = Some((folds, stamp));
        Ok(metas)
    }

    /// The folder changed by files this catalog was told of
    /// ([`insert`](Self::insert)) only: the names it knows are current, and
    /// [`collision`](Self::collision) need not scan again for that change.
    pub async fn written_by_us(&self) {
        let stamp = self.store.stamp().await;
        if let Some((_, seen)) = self.lock().folds.as_mut() {
            *seen = stamp;
        }
    }

    /// Another file of the store whose name would be the same file as
    /// `name` on a case-insensitive or normalizing file system (`README.md`
    /// and `readme.md`; `café` composed and decomposed): a name received
    /// beside it would make the folder impossible to copy to Windows or
    /// macOS whole. As of the last scan (made now if there was none) and
    /// the files written since; with `current`, scanned again if the folder
    /// changed since in a way p2p does not know of. (A downloader writing
    /// many files at once passes `false`: its own files change the folder
    /// between a commit and the [`insert`](Self::insert) that records it,
    /// and a scan of a large folder per file would cost more than the
    /// files.)
    pub async fn collision(&self, name: &FileName, current: bool) -> Result<Option<FileName>, StoreError> {
        let stamp = if current { self.store.stamp().await } else { None };
        let stale = match &self.lock().folds {
            None => true,
            // Something outside p2p changed the folder since.
            Some((_, seen)) => stamp.is_some() && stamp != *seen,
        };
        if stale {
            self.scan().await?;
        }
        let cache = self.lock();
        let other = cache.folds.as_ref().and_then(|(f, _)| f.get(&name.folded()));
        Ok(other.filter(|other| *other != name).cloned())
    }

    /// Every whole file with its hash, sorted by name. Forgets cached
    /// manifests of files that are gone.
    pub async fn list(&self) -> Result<Vec<FileInfo>, StoreError> {
        let metas = self.scan().await?;
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            match self.entry_for(meta).await {
                Ok(e) => out.push(e.info),
                // Deleted or rewritten between listing and hashing: it
                // will be in the next listing as it is then.
                Err(StoreError::NotFound(_) | StoreError::Changed(_)) => {}
                Err(StoreError::TooLarge(name)) => {
                    tracing::warn!(file = %name, "not listed: larger than the 4 TiB limit");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The file named `name` and its manifest.
    pub async fn by_name(&self, name: &FileName) -> Result<Entry, StoreError> {
        let mut last = None;
        for _ in 0..HASH_ATTEMPTS {
            let meta = self.store.stat(name).await?.ok_or_else(|| StoreError::NotFound(name.clone()))?;
            match self.entry_for(meta).await {
                Err(StoreError::Changed(n)) => last = Some(StoreError::Changed(n)),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Changed(name.clone())))
    }

    /// A file with content `hash`, among the files hashed so far (a
    /// [`list`](Self::list) hashes them all).
    pub async fn by_hash(&self, hash: &Hash) -> Result<Option<Entry>, StoreError> {
        let names = self.lock().by_hash.get(hash).cloned().unwrap_or_default();
        for name in names {
            match self.by_name(&name).await {
                Ok(e) if e.info.hash == *hash => return Ok(Some(e)),
                // Changed or gone since it was hashed: forget that name.
                Ok(_) | Err(StoreError::NotFound(_)) => self.forget(hash, &name),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn forget(&self, hash: &Hash, name: &FileName) {
        let mut cache = self.lock();
        if let Some(names) = cache.by_hash.get_mut(hash) {
            names.remove(name);
            if names.is_empty() {
                cache.by_hash.remove(hash);
            }
        }
    }

    /// Records the manifest of a file that was just written, so it is not
    /// hashed again.
    pub async fn insert(&self, meta: FileMeta, manifest: Arc<Manifest>) {
        let cell = Arc::new(OnceCell::from(manifest.clone()));
        {
            let mut cache = self.lock();
            cache.by_hash.entry(manifest.root()).or_default().insert(meta.name.clone());
            if let Some((folds, _)) = cache.folds.as_mut() {
                folds.insert(meta.name.folded(), meta.name.clone());
            }
            cache.by_name.insert(meta.name.clone(), Slot { size: meta.size, modified: meta.modified, manifest: cell });
        }
        self.save(&meta, &manifest).await;
    }

    /// The file `meta` describes (as [`scan`](Self::scan) found it) and its
    /// manifest: cached, or hashed now. Fails with [`StoreError::Changed`]
    /// if the file changed since.
    pub async fn entry(&self, meta: FileMeta) -> Result<Entry, StoreError> {
        self.entry_for(meta).await
    }

    async fn entry_for(&self, meta: FileMeta) -> Result<Entry, StoreError> {
        let cell = {
            let mut cache = self.lock();
            let slot = cache.by_name.entry(meta.name.clone()).or_insert_with(|| Slot {
                size: meta.size,
                modified: meta.modified,
                manifest: Arc::default(),
            });
            if slot.size != meta.size || slot.modified != meta.modified {
                *slot = Slot { size: meta.size, modified: meta.modified, manifest: Arc::default() };
            }
            slot.manifest.clone()
        };
        let manifest = cell.get_or_try_init(|| self.load_or_hash(&meta)).await?.clone();
        self.lock().by_hash.entry(manifest.root()).or_default().insert(meta.name.clone());
        let info = FileInfo { name: meta.name, size: manifest.size(), hash: manifest.root() };
        Ok(Entry { info, manifest })
    }

    async fn load_or_hash(&self, meta: &FileMeta) -> Result<Arc<Manifest>, StoreError> {
        if meta.size >= CACHE_FROM
            && let Some(m) = self.load(meta).await
        {
            return Ok(Arc::new(m));
        }
        let (hashed_meta, manifest) = self.store.hash(&meta.name).await?;
        if hashed_meta != *meta {
            return Err(StoreError::Changed(meta.name.clone()));
        }
        self.save(meta, &manifest).await;
        tracing::debug!(file = %meta.name, size = meta.size, hash = %manifest.root(), "hashed");
        Ok(Arc::new(manifest))
    }

    async fn load(&self, meta: &FileMeta) -> Option<Manifest> {
        let bytes = self.store.load_state(&state_key(&meta.name)).await.ok()??;
        let r: Record = postcard::from_bytes(&bytes).ok()?;
        if r.name != meta.name.as_str() || r.size != meta.size || r.modified != meta.modified {
            return None;
        }
        // A damaged record fails the root check and is recomputed.
        Manifest::from_parts(r.size, r.block_size, r.cvs, r.root).ok()
    }

    async fn save(&self, meta: &FileMeta, manifest: &Manifest) {
        if meta.size < CACHE_FROM {
            return;
        }
        let record = Record {
            name: meta.name.to_string(),
            size: meta.size,
            modified: meta.modified,
            block_size: manifest.block_size(),
            root: manifest.root(),
            cvs: manifest.cvs().to_vec(),
        };
        let Ok(bytes) = postcard::to_stdvec(&record) else { return };
        if let Err(e) = self.store.save_state(&state_key(&meta.name), bytes).await {
            // A read-only folder still serves; it just hashes again after a restart.
            tracing::debug!(file = %meta.name, error = %e, "manifest not cached");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break halfway.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Store> std::fmt::Debug for Catalog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

/// Where a file's manifest is saved: named by a hash of the file name, so
/// any name maps to a safe key.
fn state_key(name: &FileName) -> String {
    let h = Hash::of(name.as_str().as_bytes()).to_string();
    format!("manifests/{}", &h[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_are_plain() {
        let k = state_key(&FileName::new("a b.txt").unwrap());
        assert!(k.starts_with("manifests/"));
        assert!(k["manifests/".len()..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

//! A peer's folder in memory, with the crash model of a disk: files under
//! their names are durable; partial files are lost with the peer (they are
//! owned by its tasks, which a crash drops), except resumable ones, which
//! keep what was synced and lose what was not.
//!
//! Faults: a store can serve corrupt data (every read has a bit flipped,
//! while its own hashing sees the true bytes), and a slow disk delays reads
//! and writes by their size at a given rate, on the virtual clock.
//!
//! Content lives in [pages](crate::pages) shared across the simulation, so
//! a crowd of peers holding one file holds it once.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use p2p_core::manifest::{Manifest, block_size_for, manifest_of};
use p2p_core::name::FileName;
use p2p_core::runtime::Runtime;
use p2p_core::store::{FileMeta, PartialFile, ReadAt, Store, StoreError, WriteAt};

use crate::clock::SimRuntime;
use crate::pages::{Content, PagePool};
use crate::units::Rate;

/// Counts the changes to the whole files of every store that shares it,
/// so that a run's checks look at the stores again only when one moved.
#[derive(Debug, Clone, Default)]
pub struct Changes(Arc<AtomicU64>);

impl Changes {
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An in-memory store. Clones share the same files.
#[derive(Debug, Clone)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
    changes: Changes,
    label: String,
    faults: Arc<Mutex<Faults>>,
    rt: SimRuntime,
    pool: PagePool,
}

/// Fault switches of a store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Serve every read with a bit flipped.
    pub corrupt: bool,
    /// Serve one block in this many with a bit flipped (the block whose
    /// index is 37 past a multiple of 100, for 100), whatever the reads.
    pub corrupt_one_in: Option<u32>,
    /// Reads and writes take their size at this rate.
    pub disk: Option<Rate>,
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<FileName, Content>,
    versions: BTreeMap<FileName, u64>,
    state: BTreeMap<String, Vec<u8>>,
    next_version: u64,
    resumable: BTreeMap<String, Resumable>,
}

/// A resumable partial file.
#[derive(Debug)]
struct Resumable {
    /// What writes have made of it.
    current: Arc<Mutex<Content>>,
    /// What the last sync made durable.
    durable: Content,
    record: Option<Vec<u8>>,
    open: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemStore {
    /// Flips bits in `buf`, read at `offset` of a file of `size` bytes, as
    /// the store's faults say.
    fn spoil(&self, size: u64, offset: u64, buf: &mut [u8]) {
        let faults = *lock(&self.faults);
        if faults.corrupt
            && let Some(b) = buf.first_mut()
        {
            *b ^= 0x01;
        }
        if let Some(n) = faults.corrupt_one_in.filter(|&n| n > 0).map(u64::from) {
            let bs = u64::from(block_size_for(size));
            let end = offset + buf.len() as u64;
            for block in offset.div_ceil(bs)..end.div_ceil(bs) {
                if block % n == n * 37 / 100 {
                    buf[(block * bs - offset) as usize] ^= 0x01;
                }
            }
        }
    }

    /// An empty store named `label` (for messages), timed by `rt`, with
    /// its content in `pool`'s pages; every change of its whole files
    /// counts in `changes`.
    pub fn new(label: &str, rt: SimRuntime, pool: PagePool, changes: Changes) -> Self {
        MemStore { inner: Arc::default(), changes, label: label.to_string(), faults: Arc::default(), rt, pool }
    }

    /// The same files, seen through another runtime (after a restart).
    pub fn with_runtime(&self, rt: SimRuntime) -> Self {
        MemStore { rt, ..self.clone() }
    }

    /// Sets the fault switches.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// The fault switches.
    pub fn faults(&self) -> Faults {
        *lock(&self.faults)
    }

    /// The process died: resumable partial files fall back to what was
    /// synced, and nothing holds them open.
    pub fn crash(&self) {
        for r in lock(&self.inner).resumable.values_mut() {
            r.current = Arc::new(Mutex::new(r.durable.clone()));
            r.open = false;
        }
    }

    /// Puts a whole file in place (scenario set-up).
    pub fn put(&self, name: &FileName, data: &[u8]) {
        let content = Content::new(data, &self.pool);
        let mut inner = lock(&self.inner);
        inner.next_version += 1;
        self.changes.bump();
        let v = inner.next_version;
        inner.files.insert(name.clone(), content);
        inner.versions.insert(name.clone(), v);
    }

    /// Removes a whole file (scenario step); whether it was there.
    pub fn remove(&self, name: &FileName) -> bool {
        let mut inner = lock(&self.inner);
        inner.next_version += 1;
        self.changes.bump();
        inner.versions.remove(name);
        inner.files.remove(name).is_some()
    }

    /// A file's content, if it is there.
    pub fn get(&self, name: &FileName) -> Option<Content> {
        lock(&self.inner).files.get(name).cloned()
    }

    /// A file's size, if it is there.
    pub fn size(&self, name: &FileName) -> Option<u64> {
        lock(&self.inner).files.get(name).map(|c| c.len() as u64)
    }

    /// The names of all whole files.
    pub fn names(&self) -> Vec<FileName> {
        lock(&self.inner).files.keys().cloned().collect()
    }

    /// A version number that changes whenever any file changes.
    pub fn version(&self) -> u64 {
        lock(&self.inner).next_version
    }

    fn meta(inner: &Inner, name: &FileName) -> Option<FileMeta> {
        let data = inner.files.get(name)?;
        Some(FileMeta { name: name.clone(), size: data.len() as u64, modified: inner.versions.get(name).copied()? })
    }

    async fn disk_time(&self, bytes: usize) {
        let disk = lock(&self.faults).disk;
        if let Some(rate) = disk {
            self.rt.sleep(rate.time_for(bytes as u64)).await;
        }
    }
}

/// A whole file opened for reading.
#[derive(Debug)]
pub struct MemFile {
    data: Content,
    store: MemStore,
}

impl ReadAt for MemFile {
    async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        self.store.disk_time(len).await;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(len).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.clear();
        self.data.read_into(start, end, &mut buf).ok_or(io::ErrorKind::UnexpectedEof)?;
        self.store.spoil(self.data.len() as u64, offset, &mut buf);
        Ok(buf)
    }
}

/// New content on its way in. Dropping it loses it, unless it is
/// resumable.
#[derive(Debug)]
pub struct MemPartial {
    name: FileName,
    data: Arc<Mutex<Content>>,
    store: MemStore,
    /// The key of a resumable partial file.
    key: Option<String>,
}

impl Drop for MemPartial {
    fn drop(&mut self) {
        if let Some(key) = &self.key
            && let Some(r) = lock(&self.store.inner).resumable.get_mut(key)
        {
            r.open = false;
        }
    }
}

/// Writes into a partial file while its owner keeps it.
#[derive(Debug, Clone)]
pub struct MemWriter {
    data: Weak<Mutex<Content>>,
    store: MemStore,
}

impl ReadAt for MemWriter {
    async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        self.store.disk_time(len).await;
        let file = self.data.upgrade().ok_or_else(|| io::Error::other("the partial file was removed"))?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(len).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.clear();
        let size = {
            let file = lock(&file);
            file.read_into(start, end, &mut buf).ok_or(io::ErrorKind::UnexpectedEof)?;
            file.len() as u64
        };
        // A corrupt peer serves the blocks it is still downloading corrupt too.
        self.store.spoil(size, offset, &mut buf);
        Ok(buf)
    }
}

impl WriteAt for MemWriter {
    async fn write_at(&self, offset: u64, data: Vec<u8>) -> io::Result<Vec<u8>> {
        self.store.disk_time(data.len()).await;
        let file = self.data.upgrade().ok_or_else(|| io::Error::other("the partial file was removed"))?;
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        lock(&file).write(start, &data, &self.store.pool).ok_or(io::ErrorKind::InvalidInput)?;
        Ok(data)
    }
}

impl PartialFile for MemPartial {
    type Writer = MemWriter;

    fn writer(&self) -> MemWriter {
        MemWriter { data: Arc::downgrade(&self.data), store: self.store.clone() }
    }

    async fn sync(&self) -> io::Result<()> {
        let Some(key) = &self.key else { return Ok(()) };
        let mut inner = lock(&self.store.inner);
        let Some(r) = inner.resumable.get_mut(key) else { return Ok(()) };
        // A copy of the page list: the pages themselves are shared.
        r.durable = lock(&self.data).clone();
        Ok(())
    }

    async fn record(&self) -> io::Result<Option<Vec<u8>>> {
        let Some(key) = &self.key else { return Ok(None) };
        Ok(lock(&self.store.inner).resumable.get(key).and_then(|r| r.record.clone()))
    }

    async fn save_record(&self, data: Vec<u8>) -> io::Result<()> {
        let Some(key) = &self.key else { return Ok(()) };
        if let Some(r) = lock(&self.store.inner).resumable.get_mut(key) {
            r.record = Some(data);
        }
        Ok(())
    }

    async fn discard(self) {
        if let Some(key) = &self.key {
            lock(&self.store.inner).resumable.remove(key);
        }
    }

    async fn commit(self, overwrite: bool) -> Result<FileMeta, StoreError> {
        let data = std::mem::take(&mut *lock(&self.data));
        let mut inner = lock(&self.store.inner);
        if !overwrite && inner.files.contains_key(&self.name) {
            return Err(StoreError::Exists(self.name.clone()));
        }
        if let Some(key) = &self.key {
            inner.resumable.remove(key);
        }
        inner.next_version += 1;
        self.store.changes.bump();
        let v = inner.next_version;
        inner.files.insert(self.name.clone(), data);
        inner.versions.insert(self.name.clone(), v);
        MemStore::meta(&inner, &self.name).ok_or_else(|| StoreError::NotFound(self.name.clone()))
    }
}

impl Store for MemStore {
    type File = MemFile;
    type Partial = MemPartial;

    fn location(&self) -> String {
        format!("mem:{}", self.label)
    }

    async fn list(&self) -> Result<Vec<FileMeta>, StoreError> {
        let inner = lock(&self.inner);
        Ok(inner.files.keys().filter_map(|n| MemStore::meta(&inner, n)).collect())
    }

    async fn stat(&self, name: &FileName) -> Result<Option<FileMeta>, StoreError> {
        Ok(MemStore::meta(&lock(&self.inner), name))
    }

    async fn open(&self, name: &FileName) -> Result<(MemFile, FileMeta), StoreError> {
        let inner = lock(&self.inner);
        let meta = MemStore::meta(&inner, name).ok_or_else(|| StoreError::NotFound(name.clone()))?;
        let data = inner.files.get(name).cloned().ok_or_else(|| StoreError::NotFound(name.clone()))?;
        Ok((MemFile { data, store: self.clone() }, meta))
    }

    async fn hash(&self, name: &FileName) -> Result<(FileMeta, Manifest), StoreError> {
        let (file, meta) = self.open(name).await?;
        self.disk_time(file.data.len()).await;
        Ok((meta, manifest_of(&file.data.to_vec())))
    }

    async fn create_partial(&self, name: &FileName, size: u64) -> Result<MemPartial, StoreError> {
        let size = usize::try_from(size).map_err(|_| StoreError::TooLarge(name.clone()))?;
        let data = Arc::new(Mutex::new(Content::zeroed(size, &self.pool)));
        Ok(MemPartial { name: name.clone(), data, store: self.clone(), key: None })
    }

    async fn resume_partial(&self, name: &FileName, key: &str, size: u64) -> Result<MemPartial, StoreError> {
        let len = usize::try_from(size).map_err(|_| StoreError::TooLarge(name.clone()))?;
        let fresh = || {
            let zeroed = Content::zeroed(len, &self.pool);
            Resumable { current: Arc::new(Mutex::new(zeroed.clone())), durable: zeroed, record: None, open: false }
        };
        let mut inner = lock(&self.inner);
        let entry = inner.resumable.entry(key.to_string()).or_insert_with(fresh);
        if entry.open {
            let e = io::Error::new(io::ErrorKind::WouldBlock, "another download of it is running");
            return Err(StoreError::io(format!("downloading {name}"), e));
        }
        if lock(&entry.current).len() != len {
            *entry = fresh();
        }
        entry.open = true;
        let data = entry.current.clone();
        Ok(MemPartial { name: name.clone(), data, store: self.clone(), key: Some(key.to_string()) })
    }

    async fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.inner).state.get(key).cloned())
    }

    async fn save_state(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        lock(&self.inner).state.insert(key.to_string(), data);
        Ok(())
    }
}

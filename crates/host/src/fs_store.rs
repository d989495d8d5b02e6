//! p2p-core's `Store` on a folder on disk.
//!
//! Layout of a served folder:
//!
//! ```text
//! served_files/
//!   notes.txt                 whole, verified files: what is listed and served
//!   .p2p/partial/<pid><rand>.part   content on its way in (never listed)
//!   .p2p/resume/<key>.<rand>.part   a download to resume, and its record
//!   .p2p/resume/<key>.resume          (kept when interrupted, never listed)
//!   .p2p/manifests/<key>            cached manifests
//! ```
//!
//! Partial files live in the same folder tree as their final names, so the
//! final rename is atomic. p2p's own state is reached through directory
//! handles that follow no link ([`StateDir`]). Every blocking call runs on
//! the blocking pool.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use p2p_core::manifest::{MAX_FILE_SIZE, Manifest, ManifestBuilder};
use p2p_core::name::{FileName, STATE_DIR};
use p2p_core::store::{FileMeta, NAME_KEY, PartialFile, ReadAt, Store, StoreError, WriteAt};

use crate::state_dir::{Root, StateDir, random_tag};

/// How much of a file is read at a time while hashing it.
const HASH_READ: usize = 1 << 20;

/// A folder of files on disk. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: Arc<PathBuf>,
}

/// A file opened for reading.
#[derive(Debug, Clone)]
pub struct FsFile {
    file: Arc<File>,
}

/// Writes into an [`FsPartial`]; does not keep it alive.
#[derive(Debug, Clone)]
pub struct FsWriter {
    file: Arc<File>,
    flush: Arc<Writeback>,
}

/// After this many bytes written, start flushing them to disk in the
/// background, so the sync at commit finds little left to do and the disk
/// works while the network does.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Background writeback of a partial file.
#[derive(Debug, Default)]
struct Writeback {
    unsynced: AtomicU64,
    running: AtomicBool,
}

/// A file being written under `.p2p/partial/`, removed when dropped
/// unless committed; or a resumable one under `.p2p/resume/`, kept.
#[derive(Debug)]
pub struct FsPartial {
    file: Arc<File>,
    flush: Arc<Writeback>,
    /// Its folder, and its name there.
    dir: Arc<StateDir>,
    file_name: String,
    name: FileName,
    root: Arc<PathBuf>,
    committed: bool,
    /// The resume record's name in `dir`, for a resumable partial file.
    record: Option<String>,
}

/// How long an interrupted download's state is kept: the next try within
/// this long resumes it; after, it is removed.
const RESUME_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

impl FsStore {
    /// A store on the folder `root`, which should exist.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: Arc::new(root.into()) }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens any file on disk (not only in this folder) for reading, and
    /// computes its manifest: for uploading a file given by path.
    pub async fn open_path(path: PathBuf) -> Result<(FsFile, Manifest), StoreError> {
        blocking::unblock(move || {
            let what = || format!("reading {}", path.display());
            let file = File::open(&path).map_err(|e| StoreError::io(what(), e))?;
            let meta = file.metadata().map_err(|e| StoreError::io(what(), e))?;
            if !meta.is_file() {
                return Err(StoreError::io(what(), io::Error::other("not a regular file")));
            }
            let manifest = hash_open_file(&file, meta.len()).map_err(|e| StoreError::io(what(), e))?;
            let after = file.metadata().map_err(|e| StoreError::io(what(), e))?;
            if stamp(&after) != stamp(&meta) || after.len() != meta.len() {
                return Err(StoreError::io(what(), io::Error::other("the file changed while it was read")));
            }
            Ok((FsFile { file: Arc::new(file) }, manifest))
        })
        .await
    }

    /// Removes partial files left by transfers that died with their process
    /// (SIGKILL, power loss), and the state of downloads interrupted more
    /// than a week ago. A partial file is named after the process that
    /// wrote it; one whose process is gone is removed (where that cannot be
    /// told, one untouched for a day). Returns how many files went.
    pub fn sweep_partials(&self) -> usize {
        let mut removed = 0;
        if let Ok(dir) = StateDir::open(&self.root, "partial") {
            for name in dir.names().unwrap_or_default() {
                let pid = name.get(..8).and_then(|p| u32::from_str_radix(p, 16).ok());
                if pid == Some(std::process::id()) {
                    continue;
                }
                let abandoned = match pid {
                    Some(pid) if Path::new("/proc/self").exists() => !Path::new(&format!("/proc/{pid}")).exists(),
                    _ => dir.age(&name).is_some_and(|age| age.as_secs() > 24 * 3600),
                };
                if abandoned && dir.remove(&name).is_ok() {
                    removed += 1;
                }
            }
        }
        if let Ok(dir) = StateDir::open(&self.root, "resume") {
            for name in dir.names().unwrap_or_default() {
                if dir.age(&name).is_some_and(|age| age > RESUME_FOR) && dir.remove(&name).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    fn path(&self, name: &FileName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// The state folder and file name of state record `key`
    /// (`[a-z0-9_-]` words joined by `/`: a folder and a name).
    fn state_place(&self, key: &str) -> io::Result<(String, String)> {
        let word = |w: &str| {
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        match key.split_once('/') {
            Some((dir, name)) if word(dir) && word(name) => Ok((dir.to_owned(), name.to_owned())),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad state key {key:?}"))),
        }
    }
}

impl Store for FsStore {
    type File = FsFile;
    type Partial = FsPartial;

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn list(&self) -> Result<Vec<FileMeta>, StoreError> {
        let root = self.root.clone();
        blocking::unblock(move || {
            let what = || format!("listing {}", root.display());
            let mut out = Vec::new();
            for entry in fs::read_dir(&*root).map_err(|e| StoreError::io(what(), e))? {
                let entry = entry.map_err(|e| StoreError::io(what(), e))?;
                let Some(name) = entry.file_name().to_str().and_then(|n| FileName::new(n).ok()) else {
                    if entry.file_name() != STATE_DIR {
                        tracing::debug!(file = ?entry.file_name(), "not listed: not a portable file name");
                    }
                    continue;
                };
                // Follows symlinks: a link the owner put in the folder is shared.
                match fs::metadata(entry.path()) {
                    Ok(m) if m.is_file() => out.push(meta_of(name, &m)),
                    Ok(_) => {}
                    // Removed since read_dir saw it, or a dangling link.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(format!("reading {}", entry.path().display()), e)),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn stat(&self, name: &FileName) -> Result<Option<FileMeta>, StoreError> {
        let path = self.path(name);
        let name = name.clone();
        blocking::unblock(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(meta_of(name, &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
        })
        .await
    }

    async fn open(&self, name: &FileName) -> Result<(FsFile, FileMeta), StoreError> {
        let path = self.path(name);
        let name = name.clone();
        blocking::unblock(move || {
            let (file, m) = open_regular(&path, &name)?;
            Ok((FsFile { file: Arc::new(file) }, meta_of(name, &m)))
        })
        .await
    }

    async fn hash(&self, name: &FileName) -> Result<(FileMeta, Manifest), StoreError> {
        let path = self.path(name);
        let name = name.clone();
        blocking::unblock(move || {
            let (file, before) = open_regular(&path, &name)?;
            if before.len() > MAX_FILE_SIZE {
                return Err(StoreError::TooLarge(name));
            }
            let manifest = match hash_open_file(&file, before.len()) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(StoreError::Changed(name)),
                Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
            };
            let after = file.metadata().map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
            let meta = meta_of(name.clone(), &before);
            if meta_of(name.clone(), &after) != meta {
                return Err(StoreError::Changed(name));
            }
            Ok((meta, manifest))
        })
        .await
    }

    async fn create_partial(&self, name: &FileName, size: u64) -> Result<FsPartial, StoreError> {
        let root = self.root.clone();
        let name = name.clone();
        blocking::unblock(move || {
            let place = root.join(STATE_DIR).join("partial");
            let what = || format!("creating a partial file in {}", place.display());
            let dir = StateDir::open(&root, "partial").map_err(|e| StoreError::io(what(), e))?;
            // Named after this process (for the sweep), unpredictably.
            let file_name = format!("{:08x}{}.part", std::process::id(), random_tag());
            let file = dir.create_new(&file_name).map_err(|e| StoreError::io(what(), e))?;
            let partial = FsPartial {
                file: Arc::new(file),
                flush: Arc::default(),
                dir: Arc::new(dir),
                file_name,
                name,
                root,
                committed: false,
                record: None,
            };
            // Sparse until written; fails early if the size is impossible.
            partial.file.set_len(size).map_err(|e| StoreError::io(what(), e))?;
            Ok(partial)
        })
        .await
    }

    async fn resume_partial(&self, name: &FileName, key: &str, size: u64) -> Result<FsPartial, StoreError> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StoreError::io("resuming", io::Error::new(io::ErrorKind::InvalidInput, "bad resume key")));
        }
        let root = self.root.clone();
        let name = name.clone();
        let key = key.to_owned();
        blocking::unblock(move || {
            let place = root.join(STATE_DIR).join("resume");
            let what = || format!("opening a partial file in {}", place.display());
            let dir = StateDir::open(&root, "resume").map_err(|e| StoreError::io(what(), e))?;
            let record = format!("{key}.resume");
            // The partial file of an earlier try has an unpredictable name
            // after the key; a new one gets one.
            let prefix = format!("{key}.");
            let earlier = dir.names().map_err(|e| StoreError::io(what(), e))?.into_iter().find(|n| {
                n.starts_with(&prefix) && n.ends_with(".part") && !n[prefix.len()..n.len() - 5].contains('.')
            });
            let (file_name, file) = match earlier {
                Some(n) => match dir.open_existing(&n).map_err(|e| StoreError::io(what(), e))? {
                    Some(f) => (n, f),
                    None => return Err(StoreError::io(what(), io::ErrorKind::NotFound.into())),
                },
                None => {
                    let n = format!("{key}.{}.part", random_tag());
                    let f = dir.create_new(&n).map_err(|e| StoreError::io(what(), e))?;
                    let _ = dir.remove(&record);
                    (n, f)
                }
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let e = io::Error::new(io::ErrorKind::WouldBlock, "another p2p is downloading it there now");
                    return Err(StoreError::io(format!("downloading {name} into {}", root.display()), e));
                }
                Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(what(), e)),
            }
            let len = file.metadata().map_err(|e| StoreError::io(what(), e))?.len();
            if len != size {
                // New (or not this content after all): nothing to resume.
                let _ = dir.remove(&record);
                file.set_len(0).map_err(|e| StoreError::io(what(), e))?;
                file.set_len(size).map_err(|e| StoreError::io(what(), e))?;
            }
            Ok(FsPartial {
                file: Arc::new(file),
                flush: Arc::default(),
                dir: Arc::new(dir),
                file_name,
                name,
                root,
                committed: false,
                record: Some(record),
            })
        })
        .await
    }

    async fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (sub, name) = self.state_place(key).map_err(|e| StoreError::io("reading state", e))?;
        let root = self.root.clone();
        blocking::unblock(move || {
            let what = || format!("reading {}", root.join(STATE_DIR).join(&sub).join(&name).display());
            let dir = StateDir::open(&root, &sub).map_err(|e| StoreError::io(what(), e))?;
            dir.read(&name).map_err(|e| StoreError::io(what(), e))
        })
        .await
    }

    async fn save_state(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        let (sub, name) = self.state_place(key).map_err(|e| StoreError::io("writing state", e))?;
        let root = self.root.clone();
        blocking::unblock(move || {
            let what = || format!("writing {}", root.join(STATE_DIR).join(&sub).join(&name).display());
            let dir = StateDir::open(&root, &sub).map_err(|e| StoreError::io(what(), e))?;
            dir.write_atomic(&name, &data, false).map_err(|e| StoreError::io(what(), e))
        })
        .await
    }

    async fn stamp(&self) -> Option<u64> {
        let root = self.root.clone();
        blocking::unblock(move || fs::metadata(&*root).ok().map(|m| stamp(&m))).await
    }

    async fn available(&self) -> Option<u64> {
        let root = self.root.clone();
        blocking::unblock(move || free_space(&root)).await
    }
}

/// Bytes free for this user on the disk of `path`.
#[cfg(unix)]
fn free_space(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(not(unix))]
fn free_space(_: &Path) -> Option<u64> {
    None
}

impl ReadAt for FsFile {
    async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        let file = self.file.clone();
        blocking::unblock(move || {
            buf.clear();
            buf.resize(len, 0);
            read_exact_at(&file, &mut buf, offset)?;
            Ok(buf)
        })
        .await
    }
}

impl PartialFile for FsPartial {
    type Writer = FsWriter;

    fn writer(&self) -> FsWriter {
        FsWriter { file: self.file.clone(), flush: self.flush.clone() }
    }

    async fn sync(&self) -> io::Result<()> {
        let file = self.file.clone();
        blocking::unblock(move || file.sync_data()).await
    }

    async fn record(&self) -> io::Result<Option<Vec<u8>>> {
        let Some(record) = self.record.clone() else { return Ok(None) };
        let dir = self.dir.clone();
        blocking::unblock(move || dir.read(&record)).await
    }

    async fn save_record(&self, data: Vec<u8>) -> io::Result<()> {
        let Some(record) = self.record.clone() else { return Ok(()) };
        let dir = self.dir.clone();
        blocking::unblock(move || dir.write_atomic(&record, &data, true)).await
    }

    async fn discard(mut self) {
        let (dir, file_name, record) = (self.dir.clone(), self.file_name.clone(), self.record.take());
        // Marked done first, so that Drop does not race the removal.
        self.committed = true;
        blocking::unblock(move || {
            let _ = dir.remove(&file_name);
            if let Some(r) = record {
                let _ = dir.remove(&r);
            }
        })
        .await;
    }

    async fn commit(mut self, overwrite: bool) -> Result<FileMeta, StoreError> {
        blocking::unblock(move || {
            let target = self.root.join(self.name.as_str());
            let what = |verb: &str| format!("{verb} {}", target.display());
            self.file.sync_all().map_err(|e| StoreError::io(what("syncing"), e))?;
            let root = Root::open(&self.root).map_err(|e| StoreError::io(what("writing"), e))?;
            match self.dir.move_into(&self.file_name, &root, self.name.as_str(), overwrite) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::Exists(self.name.clone()));
                }
                Err(e) => return Err(StoreError::io(what("writing"), e)),
            }
            self.committed = true;
            if let Some(record) = &self.record {
                let _ = self.dir.remove(record);
                // Whatever is left of an older content of the same name is
                // stale now.
                if let Some(of_name) = record.get(..NAME_KEY) {
                    for other in self.dir.names().unwrap_or_default() {
                        if other.starts_with(of_name) && other != self.file_name {
                            let _ = self.dir.remove(&other);
                        }
                    }
                }
            }
            root.sync();
            let m = fs::metadata(&target).map_err(|e| StoreError::io(what("reading"), e))?;
            Ok(meta_of(self.name.clone(), &m))
        })
        .await
    }
}

impl ReadAt for FsWriter {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        FsFile { file: self.file.clone() }.read_at(offset, len, buf).await
    }
}

impl WriteAt for FsWriter {
    async fn write_at(&self, offset: u64, data: Vec<u8>) -> io::Result<Vec<u8>> {
        let file = self.file.clone();
        let data = blocking::unblock(move || {
            write_all_at(&file, &data, offset)?;
            Ok::<_, io::Error>(data)
        })
        .await?;
        let written = self.flush.unsynced.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
        if written >= WRITEBACK_EVERY && !self.flush.running.swap(true, Ordering::AcqRel) {
            self.flush.unsynced.store(0, Ordering::Relaxed);
            let (file, flush) = (self.file.clone(), self.flush.clone());
            blocking::unblock(move || {
                // Errors surface at commit, whose sync covers everything.
                let _ = file.sync_data();
                flush.running.store(false, Ordering::Release);
            })
            .detach();
        }
        Ok(data)
    }
}

impl Drop for FsPartial {
    fn drop(&mut self) {
        if !self.committed && self.record.is_none() {
            // Nothing partial is left behind, even on cancellation; only a
            // resumable download keeps its content for the next try.
            let _ = self.dir.remove(&self.file_name);
        }
    }
}

fn open_regular(path: &Path, name: &FileName) -> Result<(File, fs::Metadata), StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound(name.clone())),
        Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
    };
    let m = file.metadata().map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    if !m.is_file() {
        return Err(StoreError::NotFound(name.clone()));
    }
    Ok((file, m))
}

/// Hashes an open file of `size` bytes from its start.
fn hash_open_file(mut file: &File, size: u64) -> io::Result<Manifest> {
    let mut builder = ManifestBuilder::new(size);
    let mut buf = vec![0u8; HASH_READ];
    let mut left = size;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        builder.update(&buf[..n]);
        left -= n as u64;
    }
    builder.finish().map_err(io::Error::other)
}

fn meta_of(name: FileName, m: &fs::Metadata) -> FileMeta {
    FileMeta { name, size: m.len(), modified: stamp(m) }
}

/// A stamp that changes when the content may have: the modification time,
/// and on Unix also the change time and inode (a file replaced by rename
/// keeps neither).
fn stamp(m: &fs::Metadata) -> u64 {
    let mtime = m.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as u64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ctime = (m.ctime() as u64).wrapping_mul(1_000_000_000).wrapping_add(m.ctime_nsec() as u64);
        mix(mtime) ^ mix(ctime ^ m.ino().rotate_left(29)).rotate_left(17)
    }
    #[cfg(not(unix))]
    {
        mtime
    }
}

#[cfg(unix)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_core::hash::Hash;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn lists_hashes_and_hides_partials() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        fs::write(dir.path().join("bad:name"), b"x").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let store = FsStore::new(dir.path());
        futures_lite::future::block_on(async {
            let p = store.create_partial(&name("b.txt"), 3).await.unwrap();
            p.writer().write_at(0, b"abc".to_vec()).await.unwrap();
            let listed: Vec<_> = store.list().await.unwrap().into_iter().map(|m| m.name.to_string()).collect();
            assert_eq!(listed, vec!["a.txt"]);
            let (meta, m) = store.hash(&name("a.txt")).await.unwrap();
            assert_eq!(meta.size, 5);
            assert_eq!(m.root(), Hash::of(b"hello"));
            let meta = p.commit(false).await.unwrap();
            assert_eq!(meta.size, 3);
            assert_eq!(fs::read(dir.path().join("b.txt")).unwrap(), b"abc");
            assert_eq!(fs::read_dir(dir.path().join(".p2p/partial")).unwrap().count(), 0);
        });
    }

    #[test]
    fn commit_refuses_to_replace_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), b"old").unwrap();
        let store = FsStore::new(dir.path());
        futures_lite::future::block_on(async {
            let p = store.create_partial(&name("a.txt"), 3).await.unwrap();
            p.writer().write_at(0, b"new".to_vec()).await.unwrap();
            assert!(matches!(p.commit(false).await, Err(StoreError::Exists(_))));
            assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"old");
            assert_eq!(fs::read_dir(dir.path().join(".p2p/partial")).unwrap().count(), 0);

            let p = store.create_partial(&name("a.txt"), 3).await.unwrap();
            p.writer().write_at(0, b"new".to_vec()).await.unwrap();
            p.commit(true).await.unwrap();
            assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"new");

            // Dropped without commit: gone.
            let p = store.create_partial(&name("c.txt"), 10).await.unwrap();
            drop(p);
            assert_eq!(fs::read_dir(dir.path().join(".p2p/partial")).unwrap().count(), 0);
            assert!(!dir.path().join("c.txt").exists());
        });
    }

    #[test]
    fn sweeps_partials_of_dead_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let partial_dir = dir.path().join(".p2p/partial");
        fs::create_dir_all(&partial_dir).unwrap();
        // No process has pid 0x7ffffffe on Linux (pid_max is at most 2^22).
        fs::write(partial_dir.join("7ffffffe0000000000000000.part"), b"x").unwrap();
        futures_lite::future::block_on(async {
            let live = store.create_partial(&name("live.txt"), 1).await.unwrap();
            assert_eq!(store.sweep_partials(), 1);
            assert_eq!(fs::read_dir(&partial_dir).unwrap().count(), 1, "ours stays");
            drop(live);
        });
    }

    #[test]
    fn a_finished_download_drops_what_was_kept_of_an_older_content_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        let resume = dir.path().join(".p2p/resume");
        let count = || fs::read_dir(&resume).unwrap().count();
        futures_lite::future::block_on(async {
            // Interrupted: an older content of a.bin, and another file's.
            let old = store.resume_partial(&name("a.bin"), "aaaaaaaaaaaaaaaaOLD", 4).await.unwrap();
            old.save_record(b"r".to_vec()).await.unwrap();
            drop(old);
            let other = store.resume_partial(&name("b.bin"), "bbbbbbbbbbbbbbbbX", 4).await.unwrap();
            drop(other);
            assert_eq!(count(), 3);
            // The new content of a.bin arrives whole.
            let new = store.resume_partial(&name("a.bin"), "aaaaaaaaaaaaaaaaNEW", 3).await.unwrap();
            new.writer().write_at(0, b"new".to_vec()).await.unwrap();
            new.commit(false).await.unwrap();
            let left: Vec<String> =
                fs::read_dir(&resume).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            assert_eq!(left.len(), 1, "{left:?}");
            assert!(left[0].starts_with("bbbbbbbbbbbbbbbbX."), "{left:?}");
        });
    }

    #[test]
    fn state_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path());
        futures_lite::future::block_on(async {
            store.save_state("manifests/abc", b"x".to_vec()).await.unwrap();
            assert_eq!(store.load_state("manifests/abc").await.unwrap(), Some(b"x".to_vec()));
            assert_eq!(store.load_state("manifests/none").await.unwrap(), None);
            for bad in ["../x", "a//b", "", "A", "a/../b"] {
                assert!(store.save_state(bad, vec![]).await.is_err(), "{bad}");
            }
        });
    }
}

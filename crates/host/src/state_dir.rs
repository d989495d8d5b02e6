//! p2p's own state in a served folder (`.p2p/partial`, `.p2p/resume`,
//! `.p2p/manifests`), reached through directory handles that follow no
//! link.
//!
//! Someone else who can write the served folder must not be able to make
//! p2p write anywhere else. So each state folder is opened one component
//! at a time without following links, and must be a real folder owned by
//! this user that others cannot write; files are created new (`O_EXCL`)
//! under unpredictable names, and a file opened again must be a regular
//! file of this user with no other name. Anything else found there is
//! refused, with the path in the error.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use p2p_core::name::STATE_DIR;

/// A random name part no one else can guess: unique per call.
pub(crate) fn random_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is keyed from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} {why}; p2p did not make it, and will not use it (remove it)", path.display()),
    )
}

/// One folder of p2p's state, opened safely.
#[derive(Debug)]
pub(crate) struct StateDir {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

/// A served folder itself, opened to move finished files into it.
#[derive(Debug)]
pub(crate) struct Root {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl Root {
    /// The folder at `path` (which may itself be a link the owner made).
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        #[cfg(unix)]
        {
            use rustix::fs::{CWD, Mode, OFlags, openat};
            let fd = openat(CWD, path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            Ok(Root { fd, path: path.to_owned() })
        }
        #[cfg(not(unix))]
        Ok(Root { path: path.to_owned() })
    }

    /// Makes renames into the folder durable (Unix; elsewhere they are).
    pub(crate) fn sync(&self) {
        #[cfg(unix)]
        let _ = rustix::fs::fsync(&self.fd);
    }
}

impl StateDir {
    /// `root/.p2p/sub`, each created (mode 0700) where missing.
    pub(crate) fn open(root: &Path, sub: &str) -> io::Result<StateDir> {
        let path = root.join(STATE_DIR).join(sub);
        #[cfg(unix)]
        {
            let root = Root::open(root)?;
            let state = subdir(&root.fd, STATE_DIR, &root.path.join(STATE_DIR))?;
            let fd = subdir(&state, sub, &path)?;
            Ok(StateDir { fd, path })
        }
        #[cfg(not(unix))]
        {
            for dir in [root.join(STATE_DIR), path.clone()] {
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(refused(&dir, "is not a folder")),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&dir)?,
                    Err(e) => return Err(e),
                }
            }
            Ok(StateDir { path })
        }
    }

    /// The folder's path, for messages.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new file `name`, for reading and writing; fails if anything has
    /// that name already.
    pub(crate) fn create_new(&self, name: &str) -> io::Result<File> {
        #[cfg(unix)]
        {
            use rustix::fs::{Mode, OFlags, openat};
            let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC;
            Ok(File::from(openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600))?))
        }
        #[cfg(not(unix))]
        std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(self.path.join(name))
    }

    /// The file `name`, for reading and writing, if there is one; anything
    /// but a regular file of this user with one name is refused.
    pub(crate) fn open_existing(&self, name: &str) -> io::Result<Option<File>> {
        #[cfg(unix)]
        {
            use rustix::fs::{FileType, Mode, OFlags, fstat, openat};
            let fd = match openat(&self.fd, name, OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(rustix::io::Errno::LOOP) => return Err(refused(&self.path.join(name), "is a link")),
                Err(e) => return Err(e.into()),
            };
            let st = fstat(&fd)?;
            let path = self.path.join(name);
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Err(refused(&path, "is not a regular file"));
            }
            if st.st_nlink != 1 {
                return Err(refused(&path, "has another name (a hard link)"));
            }
            if st.st_uid != me() {
                return Err(refused(&path, "belongs to another user"));
            }
            Ok(Some(File::from(fd)))
        }
        #[cfg(not(unix))]
        {
            let path = self.path.join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => Ok(Some(std::fs::OpenOptions::new().read(true).write(true).open(path)?)),
                Ok(_) => Err(refused(&path, "is not a regular file")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
    }

    /// The contents of file `name`, if there is one (checked as
    /// [`open_existing`](Self::open_existing) does).
    pub(crate) fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(mut f) = self.open_existing(name)? else { return Ok(None) };
        let mut out = Vec::new();
        io::Read::read_to_end(&mut f, &mut out)?;
        Ok(Some(out))
    }

    /// Replaces file `name` with `data` at once: written to a new file of
    /// an unpredictable name, synced if `durable`, then renamed over. The
    /// new file is removed if anything fails.
    pub(crate) fn write_atomic(&self, name: &str, data: &[u8], durable: bool) -> io::Result<()> {
        let tmp = format!("{name}.{}.tmp", random_tag());
        let written = (|| {
            let mut f = self.create_new(&tmp)?;
            io::Write::write_all(&mut f, data)?;
            if durable {
                f.sync_all()?;
            }
            self.rename(&tmp, name)
        })();
        if written.is_err() {
            let _ = self.remove(&tmp);
        } else if durable {
            self.sync();
        }
        written
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        #[cfg(unix)]
        {
            Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
        }
        #[cfg(not(unix))]
        std::fs::rename(self.path.join(from), self.path.join(to))
    }

    /// Removes file `name` (never a folder; a link itself, not its target).
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        #[cfg(unix)]
        {
            Ok(rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty())?)
        }
        #[cfg(not(unix))]
        std::fs::remove_file(self.path.join(name))
    }

    /// The names in the folder.
    pub(crate) fn names(&self) -> io::Result<Vec<String>> {
        #[cfg(unix)]
        {
            let mut out = Vec::new();
            for entry in rustix::fs::Dir::read_from(&self.fd)? {
                let entry = entry?;
                if let Ok(name) = entry.file_name().to_str()
                    && name != "."
                    && name != ".."
                {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        }
        #[cfg(not(unix))]
        {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&self.path)? {
                if let Some(name) = entry?.file_name().to_str() {
                    out.push(name.to_owned());
                }
            }
            Ok(out)
        }
    }

    /// How long ago file `name` was last changed, without following a link.
    pub(crate) fn age(&self, name: &str) -> Option<std::time::Duration> {
        #[cfg(unix)]
        {
            let st = rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
            let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(st.st_mtime.max(0) as u64);
            modified.elapsed().ok()
        }
        #[cfg(not(unix))]
        std::fs::symlink_metadata(self.path.join(name)).ok()?.modified().ok()?.elapsed().ok()
    }

    /// Puts file `name` into the served folder as `target`: a new name
    /// (failing with `AlreadyExists` if `target` is taken, atomically), or
    /// replacing whatever `target` is when `replace`.
    pub(crate) fn move_into(&self, name: &str, root: &Root, target: &str, replace: bool) -> io::Result<()> {
        #[cfg(unix)]
        {
            use rustix::fs::{AtFlags, linkat, renameat};
            if replace {
                return Ok(renameat(&self.fd, name, &root.fd, target)?);
            }
            // A hard link fails if the name is taken; a rename would
            // silently replace.
            match linkat(&self.fd, name, &root.fd, target, AtFlags::empty()) {
                Ok(()) => {
                    if let Err(e) = self.remove(name) {
                        // The file is in place; only a second name for it is
                        // left in p2p's folder.
                        tracing::warn!("cannot remove {}: {e}", self.path.join(name).display());
                    }
                    Ok(())
                }
                Err(rustix::io::Errno::EXIST) => Err(io::ErrorKind::AlreadyExists.into()),
                // File systems without hard links (FAT, some network
                // mounts): check, then rename. Not atomic, but the best
                // such a file system allows.
                Err(rustix::io::Errno::PERM | rustix::io::Errno::NOTSUP) => {
                    let taken = rustix::fs::statat(&root.fd, target, AtFlags::SYMLINK_NOFOLLOW).is_ok();
                    if taken {
                        return Err(io::ErrorKind::AlreadyExists.into());
                    }
                    Ok(renameat(&self.fd, name, &root.fd, target)?)
                }
                Err(e) => Err(e.into()),
            }
        }
        #[cfg(not(unix))]
        {
            let to = root.path.join(target);
            if !replace && std::fs::symlink_metadata(&to).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(self.path.join(name), to)
        }
    }

    /// Makes renames in the folder durable (Unix; elsewhere they are).
    pub(crate) fn sync(&self) {
        #[cfg(unix)]
        let _ = rustix::fs::fsync(&self.fd);
    }
}

/// Opens (creating, mode 0700) the folder `name` under `parent`, following
/// no link: it must be a real folder of this user that others cannot
/// write.
#[cfg(unix)]
fn subdir(parent: &std::os::fd::OwnedFd, name: &str, path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{FileType, Mode, OFlags, fstat, mkdirat, openat};
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let open = || openat(parent, name, flags, Mode::empty());
    let opened = match open() {
        Err(rustix::io::Errno::NOENT) => match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => open(),
            Err(e) => Err(e),
        },
        other => other,
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            return Err(refused(path, "is a link or not a folder"));
        }
        Err(e) => return Err(e.into()),
    };
    let st = fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(refused(path, "is not a folder"));
    }
    if st.st_uid != me() {
        return Err(refused(path, "belongs to another user"));
    }
    if st.st_mode & 0o002 != 0 {
        return Err(refused(path, "may be written by anyone"));
    }
    Ok(fd)
}

/// This process's user.
#[cfg(unix)]
fn me() -> u32 {
    static ME: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ME.get_or_init(|| rustix::process::geteuid().as_raw())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn links_and_strangers_files_in_the_state_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let state = StateDir::open(dir.path(), "resume").unwrap();
        // A link planted where a state file goes is never followed.
        std::os::unix::fs::symlink(&victim, state.path().join("k.part")).unwrap();
        let e = state.open_existing("k.part").unwrap_err();
        assert!(e.to_string().contains("is a link"), "{e}");
        assert!(state.create_new("k.part").is_err(), "not created over it either");
        // A second name for a file outside is refused too.
        std::fs::hard_link(&victim, state.path().join("h.part")).unwrap();
        let e = state.open_existing("h.part").unwrap_err();
        assert!(e.to_string().contains("another name"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A state folder that is a link is refused.
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir2.path().join(".p2p")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir2.path().join(".p2p/resume")).unwrap();
        let e = StateDir::open(dir2.path(), "resume").unwrap_err();
        assert!(e.to_string().contains("is a link or not a folder"), "{e}");
        // Writes are atomic and leave nothing behind, even when they fail.
        std::fs::create_dir(state.path().join("d.resume")).unwrap();
        assert!(state.write_atomic("d.resume", b"record", true).is_err());
        std::fs::remove_dir(state.path().join("d.resume")).unwrap();
        state.write_atomic("r.resume", b"record", true).unwrap();
        assert_eq!(state.read("r.resume").unwrap().unwrap(), b"record");
        let mut names = state.names().unwrap();
        names.sort();
        assert_eq!(names, ["h.part", "k.part", "r.resume"]);
        assert_ne!(random_tag(), random_tag());
    }
}

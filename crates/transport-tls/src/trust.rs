//! Whom to trust: pinned fingerprints, fingerprints remembered on first
//! use (as ssh does), or a certificate authority.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use p2p_core::transport::Fingerprint;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::identity::IdentityError;

/// What a client trusts when it connects: pins per address, a file of
/// fingerprints seen before, and optionally a certificate authority.
#[derive(Debug, Default, Clone)]
pub struct Trust {
    pub(crate) pins: HashMap<String, Vec<Fingerprint>>,
    pub(crate) known: Option<Arc<KnownPeers>>,
    pub(crate) roots: Option<Arc<RootCertStore>>,
}

impl Trust {
    /// Nothing trusted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The peer at `addr` must present this fingerprint, or another one
    /// pinned for the same address. (Every pin is kept: where two peers
    /// claim one address, as an index may say, the one really there is
    /// accepted, and no later claim displaces an earlier one.)
    pub fn pin(&mut self, addr: &str, fingerprint: Fingerprint) {
        let pins = self.pins.entry(addr.to_owned()).or_default();
        if !pins.contains(&fingerprint) {
            pins.push(fingerprint);
        }
    }

    /// Peers without a pin are trusted on first use and remembered here;
    /// a later change is refused.
    pub fn remember_in(&mut self, known: Arc<KnownPeers>) {
        self.known = Some(known);
    }

    /// Trusts certificates issued by the CA(s) in `pem` instead of first use
    /// (the certificate must then name the host it is reached at).
    pub fn with_ca(&mut self, pem: &Path) -> Result<(), IdentityError> {
        let bytes = std::fs::read(pem).map_err(|source| IdentityError::Io { path: pem.to_owned(), source })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| IdentityError::BadPem { path: pem.to_owned(), why: e.to_string() })?;
            roots
                .add(cert)
                .map_err(|e| IdentityError::BadPem { path: pem.to_owned(), why: format!("not a usable CA: {e}") })?;
        }
        if roots.is_empty() {
            return Err(IdentityError::NoCertificate(pem.to_owned()));
        }
        self.roots = Some(Arc::new(roots));
        Ok(())
    }

    /// The pins for `addr` (none: not pinned).
    pub fn pinned(&self, addr: &str) -> &[Fingerprint] {
        self.pins.get(addr).map_or(&[], Vec::as_slice)
    }
}

/// A fingerprint that does not match what was pinned or seen before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The presented fingerprint is not a pinned one.
    #[error("certificate fingerprint {presented} does not match the pinned {}", one_of(expected))]
    PinMismatch {
        /// The pins.
        expected: Vec<Fingerprint>,
        /// What the peer showed.
        presented: Fingerprint,
    },
    /// The fingerprint changed since it was first seen.
    #[error(
        "THE CERTIFICATE OF {} HAS CHANGED: it was {expected}, it is now {presented}. Someone may be \
         impersonating the peer. If the peer really has a new identity, delete the line \"{key}\" from {file}",
        who(key)
    )]
    Changed {
        /// What changed ("server 10.0.0.5:5000", "client peer2").
        key: String,
        /// The fingerprint remembered.
        expected: Fingerprint,
        /// What the peer showed.
        presented: Fingerprint,
        /// The known-peers file.
        file: String,
    },
    /// Neither a pin nor a place to remember the peer.
    #[error(
        "no fingerprint pinned for {0} and no known-peers file to remember it in: pin it in the peer list, \
         or run `p2p init` to have an identity and a known-peers file"
    )]
    Unpinned(String),
    /// The known-peers file could not be updated.
    #[error("cannot record {key} in {file}: {why}")]
    Record {
        /// What was being recorded.
        key: String,
        /// The file.
        file: String,
        /// Why.
        why: String,
    },
}

/// "A" or "A or B".
fn one_of(pins: &[Fingerprint]) -> String {
    pins.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

/// "the peer at 10.0.0.5:5000" for "server 10.0.0.5:5000", "peer2" for
/// "client peer2".
fn who(key: &str) -> String {
    match key.split_once(' ') {
        Some(("server", addr)) => format!("THE PEER AT {addr}"),
        Some(("client", id)) => format!("{id:?}"),
        _ => key.to_string(),
    }
}

/// Fingerprints trusted on first use, kept in a text file, one per line:
/// `server HOST:PORT FINGERPRINT` or `client PEER_ID FINGERPRINT`. The
/// file is read again whenever it changes, so deleting a line (to trust a
/// peer's new identity) takes effect at once, even in a running server.
#[derive(Debug)]
pub struct KnownPeers {
    path: PathBuf,
    state: Mutex<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    entries: BTreeMap<String, Fingerprint>,
    /// The file's modification time when it was read.
    modified: Option<std::time::SystemTime>,
}

/// Whether a fingerprint was known already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Remembered from before.
    Known,
    /// Not seen before: trusted now, and recorded.
    New,
}

impl KnownPeers {
    /// Opens (or starts) the known-peers file at `path`.
    pub fn open(path: &Path) -> Result<KnownPeers, IdentityError> {
        let loaded = Self::load(path)?;
        Ok(KnownPeers { path: path.to_owned(), state: Mutex::new(loaded) })
    }

    fn load(path: &Path) -> Result<Loaded, IdentityError> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(IdentityError::Io { path: path.to_owned(), source }),
        };
        // Another process may be appending a line this moment: a last line
        // without its newline that does not read yet is not there yet.
        let unfinished = text.lines().count().saturating_sub(usize::from(!text.ends_with('\n')));
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let last_unfinished = i >= unfinished;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| IdentityError::KnownPeers { path: path.to_owned(), line: i + 1, why: why.into() };
            let fields: Vec<&str> = line.split_whitespace().collect();
            if last_unfinished && (fields.len() != 3 || fields[2].parse::<Fingerprint>().is_err()) {
                break;
            }
            let [kind, who, fp] = fields[..] else {
                return Err(bad("expected \"server HOST:PORT FINGERPRINT\" or \"client ID FINGERPRINT\""));
            };
            if kind != "server" && kind != "client" {
                return Err(bad("the first field is \"server\" or \"client\""));
            }
            let fp = fp.parse().map_err(|_| bad("not a fingerprint (64 hex digits)"))?;
            entries.insert(format!("{kind} {who}"), fp);
        }
        Ok(Loaded { entries, modified })
    }

    /// The entries, read again if the file changed since. A file that
    /// became unreadable keeps the last good entries (and says so).
    fn current(&self) -> std::sync::MutexGuard<'_, Loaded> {
        // Plain values: a panic elsewhere cannot leave them torn.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified != state.modified {
            match Self::load(&self.path) {
                Ok(fresh) => *state = fresh,
                Err(e) => {
                    tracing::warn!("{e}; keeping the fingerprints read before");
                    state.modified = modified;
                }
            }
        }
        state
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `fingerprint` for `key` without recording anything.
    pub fn check(&self, key: &str, fingerprint: Fingerprint) -> Result<Seen, TrustError> {
        match self.current().entries.get(key) {
            Some(&known) if known == fingerprint => Ok(Seen::Known),
            Some(&known) => Err(TrustError::Changed {
                key: key.to_owned(),
                expected: known,
                presented: fingerprint,
                file: self.path.display().to_string(),
            }),
            None => Ok(Seen::New),
        }
    }

    /// Records `fingerprint` for `key` if `key` is new; refuses a change.
    pub fn remember(&self, key: &str, fingerprint: Fingerprint) -> Result<Seen, TrustError> {
        let mut state = self.current();
        match state.entries.get(key) {
            Some(&known) if known == fingerprint => return Ok(Seen::Known),
            Some(&known) => {
                return Err(TrustError::Changed {
                    key: key.to_owned(),
                    expected: known,
                    presented: fingerprint,
                    file: self.path.display().to_string(),
                });
            }
            None => {}
        }
        let record =
            |why: String| TrustError::Record { key: key.to_owned(), file: self.path.display().to_string(), why };
        let before = std::fs::read(&self.path).ok();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| record(e.to_string()))?;
        let header = match before.as_deref() {
            None | Some([]) => "# p2p: fingerprints trusted on first use. Delete a line to trust anew.\n",
            // A line the user left without its newline stays whole.
            Some(text) if !text.ends_with(b"\n") => "\n",
            Some(_) => "",
        };
        // One write of the whole line: appends from other processes (every
        // command may meet a new peer) land between lines, never inside one.
        let line = format!("{header}{key} {fingerprint}\n");
        f.write_all(line.as_bytes()).map_err(|e| record(e.to_string()))?;
        drop(f);
        state.entries.insert(key.to_owned(), fingerprint);
        state.modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        Ok(Seen::New)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_on_first_use_then_refuse_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.txt");
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        let known = KnownPeers::open(&path).unwrap();
        assert_eq!(known.check("server 127.0.0.1:5000", a), Ok(Seen::New));
        assert_eq!(known.remember("server 127.0.0.1:5000", a), Ok(Seen::New));
        assert_eq!(known.remember("server 127.0.0.1:5000", a), Ok(Seen::Known));
        assert!(matches!(known.remember("server 127.0.0.1:5000", b), Err(TrustError::Changed { .. })));
        assert_eq!(known.remember("client peer2", b), Ok(Seen::New));
        // Remembered across restarts.
        let again = KnownPeers::open(&path).unwrap();
        assert_eq!(again.check("server 127.0.0.1:5000", a), Ok(Seen::Known));
        assert_eq!(again.check("client peer2", b), Ok(Seen::Known));
        let e = again.check("client peer2", a).unwrap_err().to_string();
        assert!(e.contains("HAS CHANGED") && e.contains("known_peers.txt"), "{e}");
    }

    #[test]
    fn malformed_lines_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.txt");
        std::fs::write(&path, "# ok\nserver a:1 zz\n").unwrap();
        let e = KnownPeers::open(&path).unwrap_err().to_string();
        assert!(e.contains("k.txt:2: not a fingerprint"), "{e}");
    }

    #[test]
    fn a_line_being_appended_is_not_read_yet_and_a_last_line_without_newline_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.txt");
        let a = Fingerprint([1; 32]);
        // Another process is halfway through its line.
        std::fs::write(&path, format!("server a:1 {a}\nserver b:2 0101")).unwrap();
        let known = KnownPeers::open(&path).unwrap();
        assert_eq!(known.check("server a:1", a), Ok(Seen::Known));
        assert_eq!(known.check("server b:2", a), Ok(Seen::New));
        // A whole line the user saved without its newline counts, and the
        // next line recorded does not run into it.
        std::fs::write(&path, format!("server a:1 {a}")).unwrap();
        let known = KnownPeers::open(&path).unwrap();
        assert_eq!(known.check("server a:1", a), Ok(Seen::Known));
        assert_eq!(known.remember("client c", a), Ok(Seen::New));
        let again = KnownPeers::open(&path).unwrap();
        assert_eq!(again.check("server a:1", a), Ok(Seen::Known));
        assert_eq!(again.check("client c", a), Ok(Seen::Known));
        // A malformed line in the middle is still an error.
        std::fs::write(&path, format!("server b:2 0101\nserver a:1 {a}\n")).unwrap();
        assert!(KnownPeers::open(&path).is_err());
    }

    #[test]
    fn many_writers_at_once_leave_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.txt");
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                let path = &path;
                scope.spawn(move || {
                    for i in 0..50u8 {
                        // Separate handles, as separate processes would have.
                        let known = KnownPeers::open(path).unwrap();
                        known.remember(&format!("server h{t}:{i}"), Fingerprint([t ^ i; 32])).unwrap();
                    }
                });
            }
        });
        let known = KnownPeers::open(&path).unwrap();
        for t in 0..8u8 {
            for i in 0..50u8 {
                assert_eq!(known.check(&format!("server h{t}:{i}"), Fingerprint([t ^ i; 32])), Ok(Seen::Known));
            }
        }
    }

    #[test]
    fn a_deleted_line_is_forgotten_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers.txt");
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        let known = KnownPeers::open(&path).unwrap();
        assert_eq!(known.remember("client peer2", a), Ok(Seen::New));
        assert!(known.remember("client peer2", b).is_err());
        // The user deletes the line (the clock may not tick between two
        // writes: set a different time, as any later edit would have).
        std::fs::write(&path, "# emptied\n").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
        assert_eq!(known.remember("client peer2", b), Ok(Seen::New));
        assert_eq!(KnownPeers::open(&path).unwrap().check("client peer2", b), Ok(Seen::Known));
    }
}

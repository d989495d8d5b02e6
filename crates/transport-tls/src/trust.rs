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

/// What a client trusts when it connects: a pin per address, a file of
/// fingerprints seen before, and optionally a certificate authority.
#[derive(Debug, Default, Clone)]
pub struct Trust {
    pub(crate) pins: HashMap<String, Fingerprint>,
    pub(crate) known: Option<Arc<KnownPeers>>,
    pub(crate) roots: Option<Arc<RootCertStore>>,
}

impl Trust {
    /// Nothing trusted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The peer at `addr` must present exactly this fingerprint.
    pub fn pin(&mut self, addr: &str, fingerprint: Fingerprint) {
        self.pins.insert(addr.to_owned(), fingerprint);
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

    /// The pin for `addr`, if any.
    pub fn pinned(&self, addr: &str) -> Option<Fingerprint> {
        self.pins.get(addr).copied()
    }
}

/// A fingerprint that does not match what was pinned or seen before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The presented fingerprint is not the pinned one.
    #[error("certificate fingerprint {presented} does not match the pinned {expected}")]
    PinMismatch {
        /// The pin.
        expected: Fingerprint,
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
/// `server HOST:PORT FINGERPRINT` or `client PEER_ID FINGERPRINT`.
#[derive(Debug)]
pub struct KnownPeers {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Fingerprint>>,
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
        let mut entries = BTreeMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() {
                        continue;
                    }
                    let bad = |why: &str| IdentityError::BadPem {
                        path: path.to_owned(),
                        why: format!("line {}: {why}", i + 1),
                    };
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let [kind, who, fp] = fields[..] else {
                        return Err(bad("expected \"server HOST:PORT FINGERPRINT\" or \"client ID FINGERPRINT\""));
                    };
                    if kind != "server" && kind != "client" {
                        return Err(bad("the first field is \"server\" or \"client\""));
                    }
                    let fp = fp.parse().map_err(|_| bad("not a fingerprint"))?;
                    entries.insert(format!("{kind} {who}"), fp);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(IdentityError::Io { path: path.to_owned(), source }),
        }
        Ok(KnownPeers { path: path.to_owned(), entries: Mutex::new(entries) })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `fingerprint` for `key` without recording anything.
    pub fn check(&self, key: &str, fingerprint: Fingerprint) -> Result<Seen, TrustError> {
        match self.lock().get(key) {
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
        let mut entries = self.lock();
        match entries.get(key) {
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
        let fresh = !self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| record(e.to_string()))?;
        let header =
            if fresh { "# p2p: fingerprints trusted on first use. Delete a line to trust anew.\n" } else { "" };
        writeln!(f, "{header}{key} {fingerprint}").map_err(|e| record(e.to_string()))?;
        entries.insert(key.to_owned(), fingerprint);
        Ok(Seen::New)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Fingerprint>> {
        // A map of plain values: a panic elsewhere cannot leave it torn.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
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
        assert!(e.contains("line 2"), "{e}");
    }
}

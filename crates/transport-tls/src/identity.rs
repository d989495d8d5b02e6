//! A peer's identity: its certificate chain and private key.

use std::fmt;
use std::path::{Path, PathBuf};

use p2p_core::transport::Fingerprint;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain (the peer's own certificate first) and its key.
pub struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// Why an identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No certificate in the certificate file.
    #[error("{0}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// No usable key in the key file.
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")")]
    NoKey(PathBuf),
    /// The key is protected by a passphrase.
    #[error(
        "{0}: the private key is encrypted; p2p needs it unencrypted: \
         openssl pkey -in {0} -out key-plain.pem (then keep key-plain.pem private)"
    )]
    Encrypted(PathBuf),
    /// The file is not valid PEM.
    #[error("{path}: not a valid PEM file: {why}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key does not belong to the certificate, or is of a kind rustls
    /// cannot sign with.
    #[error("{cert} and {key} do not go together: {why}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        why: String,
    },
    /// Making a new certificate failed.
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    /// A line of the known-peers file cannot be read.
    #[error("{path}:{line}: {why} (fix the line or delete it)")]
    KnownPeers {
        /// The file.
        path: PathBuf,
        /// The line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

impl Identity {
    /// Loads a PEM certificate chain and key, as made by `p2p init` or by
    /// openssl (RSA, ECDSA P-256/P-384 or Ed25519; PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, IdentityError> {
        let read = |p: &Path| std::fs::read(p).map_err(|source| IdentityError::Io { path: p.to_owned(), source });
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::BadPem { path: cert.to_owned(), why: e.to_string() })?;
        if chain.is_empty() {
            return Err(IdentityError::NoCertificate(cert.to_owned()));
        }
        let text = String::from_utf8_lossy(&key_pem);
        if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(IdentityError::Encrypted(key.to_owned()));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => IdentityError::NoKey(key.to_owned()),
            e => IdentityError::BadPem { path: key.to_owned(), why: e.to_string() },
        })?;
        let identity = Identity { chain, key: key_der };
        identity.check(cert, key)?;
        Ok(identity)
    }

    /// A new self-signed identity (ECDSA P-256) for peer `id`, in memory.
    pub fn generate(id: &str) -> Result<Identity, IdentityError> {
        let made = self_signed(id)?;
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        Ok(Identity { chain: vec![made.cert.der().clone()], key })
    }

    /// An identity that depends only on `id` and `secret`: an Ed25519 key
    /// made from the secret and a certificate with fixed dates and serial,
    /// so its fingerprint is the same on every run. For simulations and
    /// tests, where identities must replay; a real peer uses [`create`].
    ///
    /// [`create`]: Identity::create
    pub fn derived(id: &str, secret: [u8; 32]) -> Result<Identity, IdentityError> {
        let err = |e: rcgen::Error| IdentityError::Generate(e.to_string());
        // PKCS#8 v1 of an Ed25519 key (RFC 8410): a fixed prefix, then the
        // 32-byte seed.
        let mut pkcs8 =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        pkcs8.extend_from_slice(&secret);
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, id);
        params.serial_number = Some(rcgen::SerialNumber::from(vec![1]));
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2999, 1, 1);
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Identity { chain: vec![cert.der().clone()], key: PrivateKeyDer::Pkcs8(pkcs8.into()) })
    }

    /// Makes a new self-signed identity for peer `id` and writes it as PEM:
    /// the key readable by its owner only.
    pub fn create(id: &str, cert: &Path, key: &Path) -> Result<Identity, IdentityError> {
        let made = self_signed(id)?;
        write_private(key, made.signing_key.serialize_pem().as_bytes())
            .map_err(|source| IdentityError::Io { path: key.to_owned(), source })?;
        std::fs::write(cert, made.cert.pem()).map_err(|source| IdentityError::Io { path: cert.to_owned(), source })?;
        Identity::load(cert, key)
    }

    /// The fingerprint others see: SHA-256 of the certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.chain[0])
    }

    /// Why peers would refuse the certificate at `now` (seconds since
    /// 1970): expired, or not valid yet. `None` while it is valid.
    pub fn dates_problem(&self, now: u64) -> Option<String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(self.chain[0].as_ref()).ok()?;
        let validity = parsed.validity();
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let day = |t: &x509_parser::time::ASN1Time| t.to_datetime().date().to_string();
        if now < validity.not_before.timestamp() {
            Some(format!(
                "this peer's certificate is not valid until {} (is this machine's clock wrong?): peers will refuse it",
                day(&validity.not_before)
            ))
        } else if now > validity.not_after.timestamp() {
            Some(format!(
                "this peer's certificate expired on {}: peers will refuse it (`p2p init --force` makes a new one, \
                 which peers must pin again)",
                day(&validity.not_after)
            ))
        } else {
            None
        }
    }

    /// Checks that rustls can sign with the key and that it matches the
    /// certificate.
    fn check(&self, cert: &Path, key: &Path) -> Result<(), IdentityError> {
        let provider = rustls::crypto::ring::default_provider();
        let mismatch = |why: String| IdentityError::Mismatch { cert: cert.to_owned(), key: key.to_owned(), why };
        let signing =
            provider.key_provider.load_private_key(self.key.clone_key()).map_err(|e| mismatch(e.to_string()))?;
        let certified = rustls::sign::CertifiedKey::new(self.chain.clone(), signing);
        certified.keys_match().map_err(|e| mismatch(e.to_string()))
    }
}

#[cfg(test)]
impl Identity {
    /// A self-signed identity valid only between two dates, for tests of
    /// expired and not-yet-valid certificates.
    pub(crate) fn with_dates(id: &str, from: (i32, u8, u8), until: (i32, u8, u8)) -> Identity {
        let mut params = rcgen::CertificateParams::new(vec![id.to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Identity { chain: vec![cert.der().clone()], key: PrivateKeyDer::Pkcs8(key.serialize_der().into()) }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

/// The fingerprint of the first certificate of a PEM file: what a peer
/// that uses it presents, for pinning it.
pub fn fingerprint_of_pem(cert: &Path) -> Result<Fingerprint, IdentityError> {
    let pem = std::fs::read(cert).map_err(|source| IdentityError::Io { path: cert.to_owned(), source })?;
    match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(der)) => Ok(fingerprint(&der)),
        Some(Err(e)) => Err(IdentityError::BadPem { path: cert.to_owned(), why: e.to_string() }),
        None => Err(IdentityError::NoCertificate(cert.to_owned())),
    }
}

/// SHA-256 of a certificate's DER.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Fingerprint(out)
}

/// A self-signed certificate naming the peer (and localhost), valid for a
/// century: identities are pinned by fingerprint, not by expiry.
/// A certificate naming the peer (common name `id`), with a new P-256 key.
/// Peers are known by fingerprint, so the names are for people reading it.
fn self_signed(id: &str) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, IdentityError> {
    let err = |e: rcgen::Error| IdentityError::Generate(e.to_string());
    let mut names = vec!["localhost".to_string()];
    if id.is_ascii() {
        names.insert(0, id.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, id);
    let signing_key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&signing_key).map_err(err)?;
    Ok(rcgen::CertifiedKey { cert, signing_key })
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // The mode applies only to a new file: tighten one being replaced,
    // before the key is in it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let id = Identity::create("peer1", &cert, &key).unwrap();
        let back = Identity::load(&cert, &key).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert_ne!(Identity::generate("peer1").unwrap().fingerprint(), id.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Another identity's key does not fit this certificate.
        let key2 = dir.path().join("key2.pem");
        Identity::create("peer2", &dir.path().join("cert2.pem"), &key2).unwrap();
        assert!(matches!(Identity::load(&cert, &key2), Err(IdentityError::Mismatch { .. })));
    }

    #[test]
    fn clear_errors_for_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let enc = dir.path().join("enc.pem");
        std::fs::write(&enc, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n")
            .unwrap();
        let cert = dir.path().join("cert.pem");
        Identity::create("p", &cert, &dir.path().join("key.pem")).unwrap();
        assert!(matches!(Identity::load(&junk, &junk), Err(IdentityError::NoCertificate(_))));
        assert!(matches!(Identity::load(&cert, &junk), Err(IdentityError::NoKey(_))));
        let e = Identity::load(&cert, &enc).unwrap_err();
        assert!(e.to_string().contains("openssl pkey -in"), "{e}");
        assert!(matches!(Identity::load(&dir.path().join("none"), &junk), Err(IdentityError::Io { .. })));
    }
}

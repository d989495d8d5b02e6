//! A peer's own configuration: `p2p.ron`, written by `p2p init` beside
//! the peer's certificate and key.
//!
//! ```ron
//! (
//!     id: "peer1",
//!     cert: "p2p-cert.pem",
//!     key: "p2p-key.pem",
//!     listen: Some("0.0.0.0:5000"),
//!     uploads: KnownPeers,
//!     pins: { "peer2": "ab12…" },
//! )
//! ```
//!
//! Paths are relative to the file's folder. The fingerprints remembered on
//! first use go to `known_peers.txt` in the same folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use p2p_core::transport::Fingerprint;
use p2p_transport_tls::Identity;
use serde::{Deserialize, Serialize};

/// The file looked up in the current folder when no `--config` is given.
pub(crate) const FILE_NAME: &str = "p2p.ron";
/// Where fingerprints trusted on first use are kept, beside the config.
pub(crate) const KNOWN_PEERS: &str = "known_peers.txt";

/// Who may push files, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Uploads {
    Nobody,
    KnownPeers,
    Anyone,
}

/// The contents of `p2p.ron`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// This peer's id.
    pub(crate) id: String,
    /// The certificate (PEM).
    pub(crate) cert: PathBuf,
    /// The private key (PEM, unencrypted).
    pub(crate) key: PathBuf,
    /// Where `serve` listens, unless the peer list or `--listen` says.
    #[serde(default)]
    pub(crate) listen: Option<String>,
    /// The served folder (default `served_files`).
    #[serde(default)]
    pub(crate) served: Option<PathBuf>,
    /// Where downloads land (default: the served folder).
    #[serde(default)]
    pub(crate) downloads: Option<PathBuf>,
    /// A CA to trust instead of pins and first use.
    #[serde(default)]
    pub(crate) ca: Option<PathBuf>,
    /// Who may push files (default: known peers).
    #[serde(default)]
    pub(crate) uploads: Option<Uploads>,
    /// Serve known peers only.
    #[serde(default)]
    pub(crate) private: bool,
    /// Fingerprints of peers by id, as the peer list's fourth column.
    #[serde(default)]
    pub(crate) pins: BTreeMap<String, String>,
    /// The index: `serve` announces to it, and `filelist`, `download` and
    /// `peers` without peers ask it (an id from the peer list, or host:port).
    #[serde(default)]
    pub(crate) tracker: Option<String>,
}

/// A config and where it was found.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) config: Config,
    pub(crate) path: PathBuf,
    /// The index's side, where the file also describes one (the hybrid
    /// design's config.json).
    pub(crate) server: Option<Box<Loaded>>,
}

impl Loaded {
    /// Loads `explicit` (a `p2p.ron`, or the hybrid design's
    /// `config.json`), or `./p2p.ron` if there is one.
    pub(crate) fn find(explicit: Option<&Path>) -> anyhow::Result<Option<Loaded>> {
        let path = match explicit {
            Some(p) if crate::hybrid::is_hybrid(p) => return crate::hybrid::load(p).map(Some),
            Some(p) => p.to_owned(),
            None if Path::new(FILE_NAME).is_file() => PathBuf::from(FILE_NAME),
            None => return Ok(None),
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        // ron's errors carry the line and column, and what was expected.
        let config: Config = ron::from_str(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
        for (id, fp) in &config.pins {
            fp.parse::<Fingerprint>().map_err(|e| anyhow::anyhow!("{}: the pin for {id:?}: {e}", path.display()))?;
        }
        Ok(Some(Loaded { config, path, server: None }))
    }

    /// A path from the config, made relative to the config's folder.
    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            _ if p.is_absolute() => p.to_owned(),
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_owned(),
        }
    }

    /// The peer's identity.
    pub(crate) fn identity(&self) -> anyhow::Result<Identity> {
        let (cert, key) = (self.resolve(&self.config.cert), self.resolve(&self.config.key));
        let identity = Identity::load(&cert, &key)
            .with_context(|| format!("cannot load the identity of {}", self.path.display()))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some(problem) = identity.dates_problem(now) {
            tracing::warn!("{}: {problem}", cert.display());
        }
        Ok(identity)
    }

    /// The known-peers file.
    pub(crate) fn known_peers(&self) -> PathBuf {
        self.resolve(Path::new(KNOWN_PEERS))
    }

    /// The pins of the config, parsed (checked on load).
    pub(crate) fn pins(&self) -> BTreeMap<String, Fingerprint> {
        self.config.pins.iter().filter_map(|(id, fp)| Some((id.clone(), fp.parse().ok()?))).collect()
    }
}

/// The text `p2p init` writes: the settings it chose, and the others
/// commented out with their defaults.
pub(crate) fn template(id: &str, listen: Option<&str>, cert: &str, key: &str) -> String {
    let listen = match listen {
        Some(l) => format!("    listen: Some({l:?}),\n"),
        None => "    // listen: Some(\"0.0.0.0:5000\"),  // else the peer list's address for this id\n".to_string(),
    };
    format!(
        "// p2p peer configuration, written by `p2p init`. Paths are relative to this file.\n\
         (\n    id: {id:?},\n    cert: {cert:?},\n    key: {key:?},\n{listen}\
         \x20   // served: Some(\"served_files\"),\n\
         \x20   // downloads: Some(\"downloads\"),  // else the served folder\n\
         \x20   // uploads: Some(KnownPeers),   // Nobody | KnownPeers | Anyone\n\
         \x20   // private: false,               // true: only known peers may list and download\n\
         \x20   // ca: Some(\"ca.pem\"),           // trust certificates issued by this CA\n\
         \x20   // pins: {{ \"peer2\": \"<fingerprint>\" }},\n\
         \x20   // tracker: Some(\"index.lan:6969\"), // the index to announce to and ask\n\
         )\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_and_errors_name_their_place() {
        let text = template("peer1", Some("127.0.0.1:5000"), "p2p-cert.pem", "p2p-key.pem");
        let c: Config = ron::from_str(&text).unwrap();
        assert_eq!(c.id, "peer1");
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(c.uploads, None);
        let c: Config = ron::from_str(&template("p", None, "c", "k")).unwrap();
        assert_eq!(c.listen, None);
        let bad = "(\n    id: \"x\",\n    cert: \"c\",\n    key: \"k\",\n    colour: 3,\n)";
        let e = ron::from_str::<Config>(bad).unwrap_err().to_string();
        assert!(e.starts_with("5:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }
}

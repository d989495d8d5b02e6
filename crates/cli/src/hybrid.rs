//! The hybrid design's `config.json`, exactly as its README shows it:
//!
//! ```json
//! {
//!   "server": { "host": "…", "port": 6969, "certificate_path": "cert.pem", "key_path": "key.pem" },
//!   "client": { "server_host": "…", "server_port": 6969,
//!               "shared_files_directory": "shared", "downloads_directory": "downloads" }
//! }
//! ```
//!
//! It means what it meant there. The server section runs the index
//! (`p2p tracker --config config.json`): it listens on host:port with that
//! certificate (TLS). The client section makes a peer of this folder: it
//! serves and announces `shared_files_directory` to the index at
//! server_host:server_port (`p2p serve --config config.json`), downloads
//! land in `downloads_directory`, and the index's certificate (read from
//! `certificate_path`, where this machine has it) is pinned. A peer needs
//! an identity of its own for TLS between peers: the first use of the
//! client section makes one beside config.json (`p2p.ron`, as `p2p init`
//! would). Paths are relative to config.json's folder.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use p2p_transport_tls::{Identity, fingerprint_of_pem};
use serde::Deserialize;

use crate::config::{self, Config, Loaded};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hybrid {
    server: Option<Server>,
    client: Option<Client>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    host: String,
    port: u16,
    certificate_path: PathBuf,
    key_path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Client {
    server_host: String,
    server_port: u16,
    shared_files_directory: PathBuf,
    downloads_directory: PathBuf,
}

/// Whether `path` is a hybrid config (rather than a `p2p.ron`).
pub(crate) fn is_hybrid(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Loads `config.json`: the peer its client section describes (with the
/// index's side in `server`), or the index alone if it has no client
/// section.
pub(crate) fn load(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let hybrid: Hybrid = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let server = hybrid.server.map(|s| index_side(path, s));
    let Some(client) = hybrid.client else {
        return server.ok_or_else(|| anyhow::anyhow!("{}: neither a server nor a client section", path.display()));
    };
    let mut peer = own_identity(dir)?;
    let index = address(&client.server_host, client.server_port);
    peer.config.served = Some(absolute(dir, &client.shared_files_directory));
    peer.config.downloads = Some(absolute(dir, &client.downloads_directory));
    peer.config.tracker = Some(index.clone());
    // The index's certificate, where this machine has it: pinned.
    if let Some(s) = &server
        && s.config.listen.as_deref() == Some(index.as_str())
        && let Ok(fp) = fingerprint_of_pem(&s.resolve(&s.config.cert))
    {
        peer.config.pins.insert(index, fp.to_string());
    }
    peer.server = server.map(Box::new);
    Ok(peer)
}

/// The index as the server section describes it.
fn index_side(path: &Path, s: Server) -> Loaded {
    let config = Config {
        id: "index".into(),
        cert: s.certificate_path,
        key: s.key_path,
        listen: Some(address(&s.host, s.port)),
        served: None,
        downloads: None,
        ca: None,
        uploads: None,
        private: false,
        pins: Default::default(),
        tracker: None,
    };
    Loaded { config, path: path.to_owned(), server: None }
}

/// This peer's own identity beside config.json, made the first time.
fn own_identity(dir: &Path) -> anyhow::Result<Loaded> {
    let ron = dir.join(config::FILE_NAME);
    // One there already is this peer's identity: used as it is, and a
    // mistake in it is an error, never a reason to replace it.
    if ron.exists() {
        return Loaded::find(Some(&ron))?.ok_or_else(|| anyhow::anyhow!("cannot read {}", ron.display()));
    }
    let id = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "peer".into());
    let (cert, key) = ("p2p-cert.pem", "p2p-key.pem");
    for f in [cert, key] {
        if dir.join(f).exists() {
            anyhow::bail!(
                "{} exists without {}: move it away or write a p2p.ron for it (p2p init would replace it)",
                dir.join(f).display(),
                ron.display()
            );
        }
    }
    Identity::create(&id, &dir.join(cert), &dir.join(key))
        .with_context(|| format!("cannot make this peer's identity in {}", dir.display()))?;
    std::fs::write(&ron, config::template(&id, None, cert, key))
        .with_context(|| format!("cannot write {}", ron.display()))?;
    tracing::info!("made this peer's identity in {} (id {id})", ron.display());
    Loaded::find(Some(&ron))?.ok_or_else(|| anyhow::anyhow!("cannot read {}", ron.display()))
}

/// `host:port`, with brackets for an IPv6 address.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

fn absolute(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_owned() } else { dir.join(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_s_config_loads_and_mistakes_name_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let text = r#"{
  "server": {
    "host": "127.0.0.1",
    "port": 6000,
    "certificate_path": "cert.pem",
    "key_path": "key.pem"
  },
  "client": {
    "server_host": "127.0.0.1",
    "server_port": 6000,
    "shared_files_directory": "shared",
    "downloads_directory": "downloads"
  }
}"#;
        std::fs::write(&path, text).unwrap();
        let peer = load(&path).unwrap();
        assert_eq!(peer.config.tracker.as_deref(), Some("127.0.0.1:6000"));
        assert_eq!(peer.config.served, Some(dir.path().join("shared")));
        assert_eq!(peer.config.downloads, Some(dir.path().join("downloads")));
        assert!(dir.path().join("p2p.ron").is_file(), "an identity of its own");
        let index = peer.server.as_deref().unwrap();
        assert_eq!(index.config.listen.as_deref(), Some("127.0.0.1:6000"));
        assert_eq!(index.resolve(&index.config.cert), dir.path().join("cert.pem"));
        // The same identity the next time.
        let again = load(&path).unwrap();
        assert_eq!(again.config.id, peer.config.id);
        // A p2p.ron with a mistake is an error, and is not replaced.
        let ron = dir.path().join("p2p.ron");
        let key = std::fs::read(dir.path().join("p2p-key.pem")).unwrap();
        std::fs::write(&ron, "(id: \"x\", colour: 3)").unwrap();
        assert!(load(&path).is_err());
        assert_eq!(std::fs::read(dir.path().join("p2p-key.pem")).unwrap(), key, "the key is kept");
        assert_eq!(std::fs::read_to_string(&ron).unwrap(), "(id: \"x\", colour: 3)");

        std::fs::write(&path, "{\n  \"server\": {\n    \"hots\": \"x\"\n  }\n}").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("config.json:3:"), "{e}");
        assert!(e.contains("hots"), "{e}");
        assert_eq!(address("::1", 5), "[::1]:5");
    }
}

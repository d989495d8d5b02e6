//! The peer list: `peer_settings.txt`, the original tool's format.
//!
//! ```text
//! # comments and blank lines are fine
//! peer1 127.0.0.1 5000
//! peer2 ::1 5001
//! peer3 build-box.lan 5000 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! The optional fourth column pins the peer's certificate fingerprint (what
//! `p2p id` prints on that peer): a peer presenting another certificate is
//! refused.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use p2p_core::transport::Fingerprint;

/// The file name looked up when no `--settings` is given.
pub(crate) const FILE_NAME: &str = "peer_settings.txt";

/// A parsed peer list.
#[derive(Debug, Clone)]
pub(crate) struct PeerList {
    pub(crate) path: PathBuf,
    pub(crate) peers: Vec<PeerEntry>,
}

/// One line of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerEntry {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The pinned certificate fingerprint, if any.
    pub(crate) pin: Option<Fingerprint>,
}

impl PeerEntry {
    /// `host:port`, with brackets around IPv6 addresses.
    pub(crate) fn addr(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// A peer list that cannot be used.
#[derive(Debug)]
pub(crate) enum SettingsError {
    Read { path: PathBuf, error: std::io::Error },
    Line { path: PathBuf, line: usize, problem: String },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Self::Line { path, line, problem } => write!(f, "{}:{line}: {problem}", path.display()),
        }
    }
}

impl std::error::Error for SettingsError {}

impl PeerList {
    /// Loads `explicit`, or else the first `peer_settings.txt` in the
    /// current folder or its parent. `Ok(None)` if there is none.
    pub(crate) fn find(explicit: Option<&Path>) -> Result<Option<PeerList>, SettingsError> {
        if let Some(path) = explicit {
            return Self::load(path).map(Some);
        }
        for dir in [Path::new("."), Path::new("..")] {
            let path = dir.join(FILE_NAME);
            if path.is_file() {
                return Self::load(&path).map(Some);
            }
        }
        Ok(None)
    }

    fn load(path: &Path) -> Result<PeerList, SettingsError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| SettingsError::Read { path: path.to_owned(), error })?;
        Self::parse(&text, path)
    }

    pub(crate) fn parse(text: &str, path: &Path) -> Result<PeerList, SettingsError> {
        let mut peers: Vec<(usize, PeerEntry)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |problem: String| SettingsError::Line { path: path.to_owned(), line, problem };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (id, host, port, pin) = match fields[..] {
                [id, host, port] => (id, host, port, None),
                [id, host, port, pin] => (id, host, port, Some(pin)),
                _ => {
                    return Err(err(format!(
                        "expected \"peerID ip port [fingerprint]\", found {} field{}",
                        fields.len(),
                        if fields.len() == 1 { "" } else { "s" }
                    )));
                }
            };
            let pin = match pin {
                Some(p) => Some(p.parse::<Fingerprint>().map_err(|e| err(format!("{p:?}: {e}")))?),
                None => None,
            };
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(err(format!("port {port:?} is not a number from 1 to 65535"))),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
                return Err(err(format!("{host:?} is not an IP address or a host name")));
            }
            if id.parse::<std::net::SocketAddr>().is_ok() {
                return Err(err(format!("peer id {id:?} looks like an address; ids are names such as peer1")));
            }
            if let Some((first, _)) = peers.iter().find(|(_, p)| p.id == id) {
                return Err(err(format!("peer id {id:?} is already defined on line {first}")));
            }
            peers.push((line, PeerEntry { id: id.to_owned(), host: host.to_owned(), port, pin }));
        }
        Ok(PeerList { path: path.to_owned(), peers: peers.into_iter().map(|(_, p)| p).collect() })
    }

    pub(crate) fn get(&self, id: &str) -> Option<&PeerEntry> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// "peer1, peer2, peer3" for error messages.
    pub(crate) fn ids(&self) -> String {
        if self.peers.is_empty() {
            return "none".into();
        }
        self.peers.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PeerList, String> {
        PeerList::parse(text, Path::new("peer_settings.txt")).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_original_format() {
        let list = parse(
            "# the lab\n\npeer1 127.0.0.1 5000\npeer2 ::1 5001   # ipv6\n  peer3\tbuild-box.lan\t5002\npeer4 [::1] 5003\n",
        )
        .unwrap();
        let addrs: Vec<_> = list.peers.iter().map(|p| (p.id.as_str(), p.addr())).collect();
        assert_eq!(
            addrs,
            [
                ("peer1", "127.0.0.1:5000".to_string()),
                ("peer2", "[::1]:5001".to_string()),
                ("peer3", "build-box.lan:5002".to_string()),
                ("peer4", "[::1]:5003".to_string()),
            ]
        );
        assert_eq!(list.ids(), "peer1, peer2, peer3, peer4");
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases = [
            ("peer1 127.0.0.1\n", "peer_settings.txt:1: expected \"peerID ip port [fingerprint]\", found 2 fields"),
            (
                "\n\npeer1 127.0.0.1 5000 extra more\n",
                "peer_settings.txt:3: expected \"peerID ip port [fingerprint]\", found 5 fields",
            ),
            ("peer1 127.0.0.1 port\n", "peer_settings.txt:1: port \"port\" is not a number from 1 to 65535"),
            ("peer1 127.0.0.1 0\n", "peer_settings.txt:1: port \"0\" is not a number from 1 to 65535"),
            ("peer1 127.0.0.1 70000\n", "peer_settings.txt:1: port \"70000\" is not a number from 1 to 65535"),
            ("peer1 not_a_host! 5000\n", "peer_settings.txt:1: \"not_a_host!\" is not an IP address or a host name"),
            (
                "peer1 127.0.0.1 5000 abcd\n",
                "peer_settings.txt:1: \"abcd\": a fingerprint is 64 hex digits (colons between pairs are fine)",
            ),
            (
                "peer1 127.0.0.1 5000\n#\npeer1 127.0.0.1 5001\n",
                "peer_settings.txt:3: peer id \"peer1\" is already defined on line 1",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text:?}");
        }
        let fp = "ab".repeat(32);
        let list = parse(&format!("peer1 127.0.0.1 5000 {fp}\npeer2 127.0.0.1 5001\n")).unwrap();
        assert_eq!(list.peers[0].pin.map(|p| p.to_string()), Some(fp));
        assert_eq!(list.peers[1].pin, None);
    }
}

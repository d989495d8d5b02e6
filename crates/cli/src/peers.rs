//! Turning PEER arguments into addresses.

use std::net::SocketAddr;

use p2p_core::transport::Fingerprint;

use crate::settings::{FILE_NAME, PeerEntry, PeerList};

/// A peer to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// How output names it: the id, or the address as given.
    pub(crate) label: String,
    /// `host:port`.
    pub(crate) addr: String,
    /// The certificate fingerprint pinned for it.
    pub(crate) pin: Option<Fingerprint>,
}

impl Target {
    /// "peer1 (127.0.0.1:5000)", or just the address.
    pub(crate) fn display(&self) -> String {
        if self.label == self.addr { self.label.clone() } else { format!("{} ({})", self.label, self.addr) }
    }

    /// "peer1 (127.0.0.1:5000, tls 1a2b3c4d5e6f)": with how it was reached.
    pub(crate) fn display_via(&self, via: &str) -> String {
        if self.label == self.addr {
            format!("{} ({via})", self.label)
        } else {
            format!("{} ({}, {via})", self.label, self.addr)
        }
    }
}

/// Resolves `arg`: an id from the list first, else `host:port`.
pub(crate) fn resolve(arg: &str, list: Option<&PeerList>) -> Result<Target, String> {
    if let Some(p) = list.and_then(|l| l.get(arg)) {
        return Ok(Target { label: p.id.clone(), addr: p.addr(), pin: p.pin });
    }
    if looks_like_address(arg) {
        // A listed peer reached by its address keeps its pin.
        let same = |e: &&PeerEntry| match (e.addr().parse::<SocketAddr>(), arg.parse::<SocketAddr>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => e.addr().eq_ignore_ascii_case(arg),
        };
        let pins: Vec<Fingerprint> =
            list.iter().flat_map(|l| l.peers.iter().filter(same)).filter_map(|e| e.pin).collect();
        let pin = match pins.split_first() {
            Some((first, rest)) if rest.iter().any(|p| p != first) => {
                return Err(format!("{arg}: the peer list pins different fingerprints for this address"));
            }
            Some((first, _)) => Some(*first),
            None => None,
        };
        return Ok(Target { label: arg.to_owned(), addr: arg.to_owned(), pin });
    }
    Err(match list {
        Some(l) => format!("unknown peer {arg:?}: not in {} (known: {})", l.path.display(), l.ids()),
        None => format!(
            "unknown peer {arg:?}: no {FILE_NAME} in this folder or its parent; create one (lines \"peerID ip port\"), \
             pass --settings FILE, or give the peer as host:port"
        ),
    })
}

/// `1.2.3.4:5`, `[::1]:5`, `name:5`.
fn looks_like_address(arg: &str) -> bool {
    if arg.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    match arg.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ids_then_addresses() {
        let list = PeerList::parse("peer1 127.0.0.1 5000\n", Path::new("peer_settings.txt")).unwrap();
        let t = resolve("peer1", Some(&list)).unwrap();
        assert_eq!(t, Target { label: "peer1".into(), addr: "127.0.0.1:5000".into(), pin: None });
        assert_eq!(t.display(), "peer1 (127.0.0.1:5000)");
        for a in ["127.0.0.1:6000", "[::1]:6000", "localhost:6000"] {
            assert_eq!(resolve(a, Some(&list)).unwrap().addr, a);
            assert_eq!(resolve(a, None).unwrap().display(), a);
        }
        let e = resolve("peer9", Some(&list)).unwrap_err();
        assert_eq!(e, "unknown peer \"peer9\": not in peer_settings.txt (known: peer1)");
        assert!(resolve("peer9", None).unwrap_err().contains("no peer_settings.txt"));
        assert!(resolve("host:0", None).is_err());
        assert!(resolve("::1", None).is_err());
    }

    #[test]
    fn a_listed_peer_reached_by_address_keeps_its_pin() {
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        let text = format!("peer1 127.0.0.1 5000 {a}\npeer2 ::1 5001 {a}\npeer3 ::1 5001 {b}\n");
        let list = PeerList::parse(&text, Path::new("peer_settings.txt")).unwrap();
        let pin = resolve("127.0.0.1:5000", Some(&list)).unwrap().pin;
        assert_eq!(pin.map(|p| p.to_string()), Some(a));
        assert_eq!(resolve("127.0.0.1:5999", Some(&list)).unwrap().pin, None);
        let e = resolve("[::1]:5001", Some(&list)).unwrap_err();
        assert!(e.contains("different fingerprints"), "{e}");
    }
}

//! The `Transport` handle: how bytes get to another peer.
//!
//! TCP, TLS over any transport, and simnet's in-memory links implement it.
//! The engine only sees byte streams.

use std::fmt;
use std::future::Future;
use std::io;
use std::str::FromStr;

use futures_io::{AsyncRead, AsyncWrite};

/// A byte stream to one peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Opens connections and listens for them.
///
/// Addresses are text (`host:port` for TCP); each transport says what it
/// accepts. Implementations are cheap handles: clone them freely.
pub trait Transport: Clone + Send + Sync + 'static {
    /// A connection.
    type Stream: Stream;
    /// A bound listening endpoint.
    type Listener: Listener<Stream = Self::Stream>;

    /// A short name for output and logs ("tcp", "tls").
    fn name(&self) -> &'static str;

    /// Connects to `addr`, including any handshake the transport does.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Connected<Self::Stream>>> + Send;

    /// Listens on `addr`.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
}

/// A listening endpoint.
pub trait Listener: Send + Sync + 'static {
    /// An established connection.
    type Stream: Stream;
    /// An accepted connection still to be set up.
    type Incoming: Incoming<Stream = Self::Stream>;

    /// Waits for the next connection. Returns before any handshake, so a
    /// client that stalls its handshake cannot hold up the listener.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Incoming>> + Send;

    /// The address actually bound (with the port filled in when 0 was asked).
    fn local_addr(&self) -> io::Result<String>;
}

/// A connection accepted but not yet set up (a TLS handshake may be due).
/// The server sets it up in the connection's own task, under a timeout.
pub trait Incoming: Send + 'static {
    /// The established connection.
    type Stream: Stream;

    /// Where it comes from, for logs.
    fn remote(&self) -> String;

    /// Does the transport's handshake.
    fn establish(self) -> impl Future<Output = io::Result<Connected<Self::Stream>>> + Send;
}

/// An established connection.
#[derive(Debug)]
pub struct Connected<S> {
    /// The byte stream.
    pub stream: S,
    /// Who is at the other end, where the transport authenticates it.
    pub peer: Option<Fingerprint>,
}

impl<S> Connected<S> {
    /// A connection whose transport does not authenticate the peer.
    pub fn anonymous(stream: S) -> Self {
        Self { stream, peer: None }
    }
}

/// A peer's identity as a transport authenticated it: the SHA-256 of its
/// certificate (in DER), as Syncthing's device ids are. Displayed as 64
/// lowercase hex digits, what `openssl x509 -fingerprint -sha256` prints
/// without the colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

/// Text that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hex digits (colons between pairs are fine)")]
pub struct ParseFingerprintError;

impl Fingerprint {
    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    /// Accepts `ab12…` and `AB:12:…`, as openssl prints it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|&c| c != ':').collect();
        let h: crate::hash::Hash = digits.parse().map_err(|_| ParseFingerprintError)?;
        Ok(Fingerprint(h.0))
    }
}

/// The host of `addr` (`host:port`), for telling machines apart (votes on
/// a content, connections per host): the IP address (IPv4), or its /64
/// (IPv6: one network has more addresses than anyone could list), else the
/// host name as written, in lower case.
pub fn host_of(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => match a.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = ip.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        },
        Err(_) => addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_matches(['[', ']']).to_ascii_lowercase(),
    }
}

/// `remote` (an address as the transport reports it) with `port`: where a
/// peer whose connection comes from `remote` serves, on `port`.
pub fn with_port(remote: &str, port: u16) -> String {
    match remote.parse::<std::net::SocketAddr>() {
        Ok(mut a) => {
            a.set_port(port);
            a.to_string()
        }
        // Not an IP address (simnet's hosts): keep the host part.
        Err(_) => match remote.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{port}"),
            None => format!("{remote}:{port}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_openssl_prints_them() {
        let plain = "ab".repeat(32);
        let openssl = vec!["AB"; 32].join(":");
        let a: Fingerprint = plain.parse().unwrap();
        assert_eq!(openssl.parse::<Fingerprint>(), Ok(a));
        assert_eq!(a.to_string(), plain);
        assert!("abc".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn hosts_are_addresses_without_ports_and_ipv6_networks() {
        for (addr, host) in [
            ("10.0.0.1:5000", "10.0.0.1"),
            ("10.0.0.1:5001", "10.0.0.1"),
            ("[::ffff:10.0.0.1]:5000", "10.0.0.1"),
            ("[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"),
            ("[2001:db8:1:2:ffff::1]:6000", "2001:db8:1:2::/64"),
            ("Build-Box.lan:5000", "build-box.lan"),
            ("peer7:1", "peer7"),
        ] {
            assert_eq!(host_of(addr), host, "{addr}");
        }
    }
}

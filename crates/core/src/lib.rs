//! p2p-core: the transfer engine of p2p.
//!
//! Everything that decides lives here: the [wire protocol](protocol), the
//! [manifests](manifest) that make every byte verifiable, the
//! [server](server::Server), the [client session](client::Session) and the
//! multi-source [download](download::download). Nothing here opens a socket,
//! reads a clock or touches a disk directly: that comes in through three
//! handles, so the same engine runs over TCP or TLS on a real machine and
//! over simnet's in-memory network on a virtual clock.
//!
//! * [`Transport`](transport::Transport): connect and listen.
//! * [`Runtime`](runtime::Runtime): time, tasks, randomness.
//! * [`Store`](store::Store): a folder of files with partial files that
//!   become visible only when whole.
//!
//! ```no_run
//! # async fn demo<T: p2p_core::transport::Transport, R: p2p_core::runtime::Runtime, S: p2p_core::store::Store>(
//! #     transport: T, rt: R, store: S) -> Result<(), Box<dyn std::error::Error>> {
//! use p2p_core::server::{Server, ServerConfig};
//! use p2p_core::transport::Transport;
//!
//! let listener = transport.bind("127.0.0.1:0").await?;
//! let server = Server::new(store, rt, ServerConfig::default());
//! let stop = std::future::pending::<()>(); // e.g. Ctrl-C
//! server.run(listener, stop).await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod bitfield;
pub mod catalog;
pub mod client;
mod conn;
pub mod download;
pub mod hash;
pub mod index;
pub mod live;
pub mod manifest;
pub mod name;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod store;
pub mod transport;
pub mod units;
pub mod verify;

pub use conn::ConnError;

/// This software, as announced in handshakes.
pub const AGENT: &str = concat!("p2p/", env!("CARGO_PKG_VERSION"));

/// Text from a peer, made safe to print: control characters (which could
/// drive a terminal) and invisible or direction-changing ones (which could
/// make it read as something else) become `?`, and the length is bounded.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let safe = |c: char| if c.is_control() || name::is_invisible(c) { '?' } else { c };
    let mut out: String = text.chars().take(max_chars).map(safe).collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_text_cannot_drive_or_reorder_a_terminal() {
        assert_eq!(super::sanitize("ok \u{1b}[2Jwiped", 100), "ok ?[2Jwiped");
        assert_eq!(super::sanitize("evil\u{202E}gpj.exe", 100), "evil?gpj.exe");
        assert_eq!(super::sanitize("\u{2066}x\u{2069}", 100), "?x?");
        assert_eq!(super::sanitize("long", 2), "lo…");
    }
}

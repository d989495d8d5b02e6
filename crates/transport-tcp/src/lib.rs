//! p2p-transport-tcp: [`Transport`] over plain TCP.
//!
//! Addresses are `host:port` (`127.0.0.1:5000`, `[::1]:5000`,
//! `localhost:5000`); names are resolved on connect. Nagle's algorithm is
//! off: requests are small and latency matters more than packet count.
//!
//! ```no_run
//! # smol::block_on(async {
//! use p2p_core::transport::{Listener, Transport};
//! use p2p_transport_tcp::TcpTransport;
//!
//! let listener = TcpTransport.bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let stream = TcpTransport.connect(&addr).await?;
//! # std::io::Result::Ok(()) });
//! ```
#![warn(missing_docs)]

use std::io;

use async_net::{TcpListener, TcpStream};
use p2p_core::transport::{Accepted, Listener, Transport};

/// Plain TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpAcceptor(TcpListener);

impl Transport for TcpTransport {
    type Stream = TcpStream;
    type Listener = TcpAcceptor;

    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn bind(&self, addr: &str) -> io::Result<TcpAcceptor> {
        Ok(TcpAcceptor(TcpListener::bind(addr).await?))
    }
}

impl Listener for TcpAcceptor {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<Accepted<TcpStream>> {
        let (stream, remote) = self.0.accept().await?;
        // Only a latency tweak: a socket the peer already reset may refuse
        // it, and that must not look like a failed listener.
        let _ = stream.set_nodelay(true);
        Ok(Accepted::new(stream, remote.to_string()))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn connects_over_ipv4_and_ipv6_loopback() {
        smol::block_on(async {
            for bind in ["127.0.0.1:0", "[::1]:0"] {
                let Ok(listener) = TcpTransport.bind(bind).await else {
                    // A machine without IPv6 loopback.
                    continue;
                };
                let addr = listener.local_addr().unwrap();
                let (client, server) = futures_lite::future::zip(TcpTransport.connect(&addr), listener.accept()).await;
                let mut client = client.unwrap();
                let mut server = server.unwrap();
                assert!(server.remote.contains(if bind.starts_with('[') { "::1" } else { "127.0.0.1" }));
                client.write_all(b"ping").await.unwrap();
                let mut buf = [0; 4];
                server.stream.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"ping");
            }
        });
    }

    #[test]
    fn refused_connection_is_an_error() {
        smol::block_on(async {
            let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let err = TcpTransport.connect(&addr).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}

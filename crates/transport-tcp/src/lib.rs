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
//! let connection = TcpTransport.connect(&addr).await?;
//! # std::io::Result::Ok(()) });
//! ```
#![warn(missing_docs)]

use std::io;

use async_net::{TcpListener, TcpStream};
use p2p_core::transport::{Connected, Incoming, Listener, Transport};

/// Plain TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

/// A listening TCP socket.
#[derive(Debug)]
pub struct TcpAcceptor(TcpListener);

/// An accepted TCP connection: nothing left to set up.
#[derive(Debug)]
pub struct TcpIncoming {
    stream: TcpStream,
    remote: String,
}

impl Transport for TcpTransport {
    type Stream = TcpStream;
    type Listener = TcpAcceptor;

    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn connect(&self, addr: &str) -> io::Result<Connected<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connected::anonymous(stream))
    }

    async fn bind(&self, addr: &str) -> io::Result<TcpAcceptor> {
        Ok(TcpAcceptor(TcpListener::bind(addr).await?))
    }
}

impl Listener for TcpAcceptor {
    type Stream = TcpStream;
    type Incoming = TcpIncoming;

    async fn accept(&self) -> io::Result<TcpIncoming> {
        let (stream, remote) = self.0.accept().await?;
        // Only a latency tweak: a socket the peer already reset may refuse
        // it, and that must not look like a failed listener.
        let _ = stream.set_nodelay(true);
        Ok(TcpIncoming { stream, remote: remote.to_string() })
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }
}

impl Incoming for TcpIncoming {
    type Stream = TcpStream;

    fn remote(&self) -> String {
        self.remote.clone()
    }

    async fn establish(self) -> io::Result<Connected<TcpStream>> {
        Ok(Connected::anonymous(self.stream))
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
                let mut client = client.unwrap().stream;
                let server = server.unwrap();
                assert!(server.remote().contains(if bind.starts_with('[') { "::1" } else { "127.0.0.1" }));
                let mut server = server.establish().await.unwrap();
                assert!(server.peer.is_none());
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

//! Clients from other hosts, on loopback: all of 127.0.0.0/8 reaches this
//! machine, so a socket bound to 127.0.0.2 before it connects is, to the
//! server, a client on another host. That is how the tests show what the
//! index and the servers do per host.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use p2p_core::transport::{Connected, Transport};
use p2p_transport_tcp::TcpTransport;

/// TCP from the loopback address `127.0.0.N`.
#[derive(Debug, Clone, Copy)]
pub struct FromHost(pub u8);

impl FromHost {
    pub fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, self.0)
    }
}

impl Transport for FromHost {
    type Stream = p2p_transport_tcp::TcpStream;
    type Listener = <TcpTransport as Transport>::Listener;

    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn connect(&self, addr: &str) -> io::Result<Connected<Self::Stream>> {
        use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
        let to: SocketAddrV4 =
            addr.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an IPv4 address"))?;
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
        bind(&fd, &SocketAddrV4::new(self.ip(), 0))?;
        // On loopback the connection is made at once: no need to wait.
        connect(&fd, &to)?;
        let stream = async_net::TcpStream::try_from(std::net::TcpStream::from(fd))?;
        Ok(Connected::anonymous(stream.into()))
    }

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        TcpTransport.bind(addr).await
    }
}

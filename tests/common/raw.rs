//! A blocking client that speaks the protocol by hand, to do what the real
//! client never would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use p2p_core::protocol::codec::{self, Frame};
use p2p_core::protocol::{Hello, Message, VERSION};

use super::tls::{self, Duplex};
use super::{Mode, Net};

pub struct Raw {
    pub stream: Box<dyn Duplex>,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `addr` the way the net's peers talk and does the
    /// handshake. Over TLS it shows the client folder's certificate and
    /// claims its id, so the peer knows it.
    pub fn connect(net: &Net, addr: &str) -> Raw {
        Self::connect_as(net, addr, true)
    }

    /// Like [`connect`](Self::connect); over TLS without a certificate
    /// unless `identified`: a stranger to the peer.
    pub fn connect_as(net: &Net, addr: &str, identified: bool) -> Raw {
        let tcp = Self::bare(addr);
        let (mut stream, id): (Box<dyn Duplex>, _) = match net.mode {
            Mode::Tcp => (Box::new(tcp), "raw"),
            Mode::Tls if identified => {
                let (cert, key) = net.client_identity().unwrap();
                (tls::client(tcp, tls::client_config(Some((&cert, &key)))), "client")
            }
            Mode::Tls => (tls::client(tcp, tls::client_config(None)), "stranger"),
        };
        stream.write_all(&codec::encode_preamble(VERSION)).unwrap();
        let mut pre = [0u8; 8];
        stream.read_exact(&mut pre).unwrap();
        let mut raw = Raw { stream, buf: Vec::new() };
        raw.send(&Message::Hello(Hello { peer_id: id.into(), agent: "test".into(), capabilities: 0 }));
        assert!(matches!(raw.recv(), Some(Message::Hello(_))));
        raw
    }

    /// Connects without a handshake.
    pub fn bare(addr: &str) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    pub fn send(&mut self, m: &Message) {
        let mut out = Vec::new();
        codec::encode_control(m, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_data(&mut self, id: u32, offset: u64, bytes: &[u8]) {
        let mut out = Vec::new();
        for (i, chunk) in bytes.chunks(p2p_core::protocol::MAX_DATA).enumerate() {
            codec::encode_data(id, offset + (i * p2p_core::protocol::MAX_DATA) as u64, chunk, &mut out);
        }
        self.stream.write_all(&out).unwrap();
    }

    /// The next control message; None once the server closes.
    pub fn recv(&mut self) -> Option<Message> {
        loop {
            match codec::decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    let m = match frame {
                        Frame::Control(m) => Some(m),
                        Frame::Data(_) => None,
                    };
                    self.buf.drain(..used);
                    if m.is_some() {
                        return m;
                    }
                }
                Ok(None) => {
                    let mut chunk = vec![0u8; 65536];
                    match self.stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    }
                }
                Err(e) => panic!("bad frame from the server: {e}"),
            }
        }
    }
}

/// Whether the server closes `s` (reading and dropping anything it sends
/// first). Bounded by the stream's read timeout.
pub fn closed<S: Read + ?Sized>(s: &mut S) -> bool {
    let mut sink = vec![0u8; 65536];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            // Over TLS, a close without close_notify is an unexpected end.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof) => {
                return true;
            }
            Err(_) => return false,
        }
    }
}

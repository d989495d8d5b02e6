//! A blocking client that speaks the protocol by hand, to do what the real
//! client never would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use p2p_core::protocol::codec::{self, Frame};
use p2p_core::protocol::{Hello, Message, VERSION};

pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and does the handshake.
    pub fn connect(addr: &str) -> Raw {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(&codec::encode_preamble(VERSION)).unwrap();
        let mut pre = [0u8; 8];
        stream.read_exact(&mut pre).unwrap();
        let mut raw = Raw { stream, buf: Vec::new() };
        raw.send(&Message::Hello(Hello { peer_id: "raw".into(), agent: "test".into(), capabilities: 0 }));
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
pub fn closed(s: &mut TcpStream) -> bool {
    let mut sink = vec![0u8; 65536];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

//! A peer that speaks the protocol by hand and then misbehaves on cue: it
//! dies or goes silent partway through the data, sends corrupt data,
//! offers other content than it is asked for, or keeps a request open
//! forever. It can pose as an index too. Built on p2p-core's pure codec,
//! with plain blocking sockets (wrapped in TLS in TLS mode).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use p2p_core::manifest::manifest_of;
use p2p_core::protocol::codec::{self, Frame};
use p2p_core::protocol::{CAP_INDEX, CAP_SERVE, ErrorCode, FileInfo, FileRef, Hello, MAX_DATA, Message, VERSION};

use super::Mode;
use super::tls::{self, Duplex};

/// What the fake peer does once it has sent `after` bytes of file data.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Closes the connection.
    Die { after: u64 },
    /// Stops sending and never answers again.
    Stall { after: u64 },
    /// Serves every run of data with a bit flipped.
    Corrupt,
    /// Answers reads with empty data frames, a few a second, forever.
    Empty,
    /// Answers every manifest request, whatever name or hash it asks for,
    /// with the manifest of its own content under its own name: a valid
    /// manifest, of the wrong file.
    Impostor,
    /// Answers every request with `Working`, ten times a second, forever.
    Keepalive,
    /// Answers listings and manifests with empty pages marked "not last",
    /// forever.
    EmptyPages,
    /// Serves its manifest, then answers reads with `Working`, ten times a
    /// second, forever.
    KeepaliveOnRead,
    /// Answers a listing with `count` files of 255-byte names.
    HugeListing { count: usize },
    /// Refuses every manifest request with this text.
    Says(&'static str),
}

pub struct FakePeer {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

impl FakePeer {
    /// Serves `content` as `name` on an ephemeral loopback port, over TLS
    /// (with a throwaway certificate) in TLS mode.
    pub fn start(mode: Mode, name: &str, content: Vec<u8>, fault: Fault) -> FakePeer {
        Self::start_as(mode, name, content, fault, CAP_SERVE)
    }

    /// A fake index: it answers the index's questions, misbehaving by
    /// `fault` (`Keepalive` or `EmptyPages`).
    pub fn start_index(mode: Mode, fault: Fault) -> FakePeer {
        Self::start_as(mode, "none", Vec::new(), fault, CAP_INDEX)
    }

    fn start_as(mode: Mode, name: &str, content: Vec<u8>, fault: Fault, caps: u32) -> FakePeer {
        let tls = (mode == Mode::Tls).then(tls::server_config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let content = Arc::new(content);
        let name = name.to_string();
        let flag = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (content, name, flag, tls) = (content.clone(), name.clone(), flag.clone(), tls.clone());
                std::thread::spawn(move || {
                    let Ok(tcp) = conn.try_clone() else { return };
                    let stream: Box<dyn Duplex> = match tls {
                        Some(config) => tls::server(conn, config),
                        None => Box::new(conn),
                    };
                    let _ = serve(stream, tcp, &name, &content, fault, caps, &flag);
                });
            }
        });
        FakePeer { addr, stop }
    }
}

fn serve(
    mut s: Box<dyn Duplex>,
    tcp: TcpStream,
    name: &str,
    content: &[u8],
    fault: Fault,
    caps: u32,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut pre = [0u8; 8];
    s.read_exact(&mut pre)?;
    s.write_all(&codec::encode_preamble(VERSION))?;
    let manifest = manifest_of(content);
    let info = FileInfo {
        name: p2p_core::name::FileName::new(name).unwrap(),
        size: content.len() as u64,
        hash: manifest.root(),
    };
    let mut buf = Vec::new();
    let mut sent = 0u64;
    let limit = match fault {
        Fault::Die { after } | Fault::Stall { after } => after,
        _ => u64::MAX,
    };
    loop {
        let msg = loop {
            match codec::decode(&buf) {
                Ok(Some((Frame::Control(m), used))) => {
                    buf.drain(..used);
                    break m;
                }
                Ok(Some((Frame::Data(_), used))) => {
                    buf.drain(..used);
                }
                Ok(None) => {
                    let mut chunk = vec![0u8; 65536];
                    let n = s.read(&mut chunk)?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(_) => return Ok(()),
            }
        };
        let mut out = Vec::new();
        match msg {
            Message::Hello(_) => {
                let hello = Hello { peer_id: "fake".into(), agent: "fake".into(), capabilities: caps };
                codec::encode_control(&Message::Hello(hello), &mut out).unwrap();
            }
            m if (matches!(fault, Fault::Keepalive) && request_id(&m).is_some())
                || (matches!(fault, Fault::KeepaliveOnRead) && matches!(m, Message::Read { .. })) =>
            {
                let id = request_id(&m).unwrap_or(0);
                while !stop.load(Ordering::Relaxed) {
                    let mut frame = Vec::new();
                    codec::encode_control(&Message::Working { id }, &mut frame).unwrap();
                    s.write_all(&frame)?;
                    std::thread::sleep(Duration::from_millis(100));
                }
                return Ok(());
            }
            Message::List { id } if let Fault::HugeListing { count } = fault => {
                let mut i = 0;
                while i < count {
                    let n = (count - i).min(p2p_core::protocol::LIST_PAGE);
                    let files = (i..i + n)
                        .map(|k| FileInfo {
                            name: p2p_core::name::FileName::new(&format!("{k:09}{}", "x".repeat(246))).unwrap(),
                            size: 1,
                            hash: info.hash,
                        })
                        .collect();
                    i += n;
                    let mut frame = Vec::new();
                    codec::encode_control(&Message::Files { id, files, last: i == count }, &mut frame).unwrap();
                    if s.write_all(&frame).is_err() {
                        return Ok(());
                    }
                }
            }
            m if matches!(fault, Fault::EmptyPages) && request_id(&m).is_some() => {
                let id = request_id(&m).unwrap_or(0);
                let page = match m {
                    Message::List { .. } => Message::Files { id, files: vec![], last: false },
                    Message::IndexList { .. } => Message::IndexFiles { id, files: vec![], last: false },
                    Message::ListPeers { .. } => Message::PeerPage { id, peers: vec![], last: false },
                    _ => Message::ManifestPage {
                        id,
                        info: info.clone(),
                        block_size: manifest.block_size(),
                        first_block: 0,
                        cvs: vec![],
                        last: false,
                    },
                };
                while !stop.load(Ordering::Relaxed) {
                    let mut frame = Vec::new();
                    codec::encode_control(&page, &mut frame).unwrap();
                    s.write_all(&frame)?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            Message::GetManifest { id, file }
                if matches!(fault, Fault::Impostor)
                    || file == FileRef::Name(name.into())
                    || file == FileRef::Hash(info.hash) =>
            {
                let page = Message::ManifestPage {
                    id,
                    info: info.clone(),
                    block_size: manifest.block_size(),
                    first_block: 0,
                    cvs: manifest.cvs().to_vec(),
                    last: true,
                };
                codec::encode_control(&page, &mut out).unwrap();
            }
            Message::GetManifest { id, .. } if let Fault::Says(text) = fault => {
                let e = Message::Error { id, code: ErrorCode::Forbidden, message: text.into() };
                codec::encode_control(&e, &mut out).unwrap();
            }
            Message::GetManifest { id, .. } => {
                let e = Message::Error { id, code: ErrorCode::NotFound, message: "not found".into() };
                codec::encode_control(&e, &mut out).unwrap();
            }
            Message::Read { id, offset, .. } if matches!(fault, Fault::Empty) => {
                while !stop.load(Ordering::Relaxed) {
                    let mut frame = Vec::new();
                    codec::encode_data(id, offset, &[], &mut frame);
                    s.write_all(&frame)?;
                    std::thread::sleep(Duration::from_millis(200));
                }
                return Ok(());
            }
            Message::Read { id, offset, len, .. } => {
                let mut pos = offset;
                let end = offset + len;
                while pos < end {
                    if sent >= limit {
                        s.write_all(&out)?;
                        return misbehave(&tcp, fault, stop);
                    }
                    let n = (end - pos).min(MAX_DATA as u64).min(limit - sent).max(1);
                    let mut bytes = content[pos as usize..(pos + n) as usize].to_vec();
                    if let Fault::Corrupt = fault {
                        bytes[0] ^= 0x01;
                    }
                    codec::encode_data(id, pos, &bytes, &mut out);
                    pos += n;
                    sent += n;
                }
            }
            _ => {}
        }
        s.write_all(&out)?;
    }
}

fn misbehave(s: &TcpStream, fault: Fault, stop: &AtomicBool) -> std::io::Result<()> {
    match fault {
        Fault::Die { .. } => s.shutdown(Shutdown::Both),
        _ => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
    }
}

/// The id of a request a peer or an index answers.
fn request_id(m: &Message) -> Option<u32> {
    match m {
        Message::List { id }
        | Message::GetManifest { id, .. }
        | Message::Read { id, .. }
        | Message::IndexList { id }
        | Message::ListPeers { id }
        | Message::Locate { id, .. }
        | Message::Offer { id, .. } => Some(*id),
        _ => None,
    }
}

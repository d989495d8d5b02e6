//! The engine over real TCP on 127.0.0.1, in one process: servers, sessions,
//! multi-source downloads, uploads, and misbehaving peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use p2p_core::catalog::Catalog;
use p2p_core::client::{ClientConfig, ClientError, Session};
use p2p_core::download::{DownloadConfig, DownloadError, Downloader, Outcome, SourceSpec, download};
use p2p_core::hash::Hash;
use p2p_core::manifest::Manifest;
use p2p_core::name::FileName;
use p2p_core::protocol::{ErrorCode, FileRef, StoreOutcome, codec};
use p2p_core::runtime::{Runtime, Task};
use p2p_core::server::{Server, ServerConfig};
use p2p_core::store::{FileMeta, ReadAt, Store, StoreError};
use p2p_core::transport::{Listener, Transport};
use p2p_host::{FsFile, FsStore, SmolRuntime};
use p2p_transport_tcp::TcpTransport;

type Tcp = <TcpTransport as Transport>::Stream;

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Peer<S: Store> {
    addr: String,
    _server: Server<S, SmolRuntime>,
    _task: Task<()>,
}

async fn start<S: Store>(rt: &SmolRuntime, store: S, config: ServerConfig) -> Peer<S> {
    // Plain TCP authenticates nobody: these tests push as strangers.
    let config = ServerConfig { uploads: p2p_core::server::UploadPolicy::Anyone, ..config };
    let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(store, rt.clone(), config);
    let s = server.clone();
    let task = rt.spawn(async move { s.run(listener, std::future::pending()).await });
    Peer { addr, _server: server, _task: task }
}

fn fast() -> ClientConfig {
    ClientConfig::with_timeout("tester", Duration::from_secs(5))
}

async fn session(rt: &SmolRuntime, addr: &str) -> Session<Tcp, SmolRuntime> {
    Session::connect(&TcpTransport, rt, addr, &fast()).await.unwrap()
}

fn folder_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn leftover_partials(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".p2p/partial")).map_or(0, |d| d.count())
}

#[test]
fn list_manifest_and_download_from_two_peers() {
    let rt = SmolRuntime::new(2);
    let big = data(3_000_000, 1);
    let a = folder_with(&[("big.bin", &big), ("small.txt", b"hi")]);
    let b = folder_with(&[("big.bin", &big)]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let pa = start(&rt, FsStore::new(a.path()), ServerConfig::default()).await;
        let pb = start(&rt, FsStore::new(b.path()), ServerConfig::default()).await;

        let mut s = session(&rt, &pa.addr).await;
        let files = s.list().await.unwrap();
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["big.bin", "small.txt"]);
        assert_eq!(files[0].hash, Hash::of(&big));
        assert_eq!(files[1].size, 2);
        let entry = s.manifest(FileRef::Name("big.bin".into())).await.unwrap();
        assert_eq!(entry.manifest.root(), Hash::of(&big));

        let catalog = Catalog::new(FsStore::new(out.path()));
        let sources = vec![
            SourceSpec { label: "a".into(), addr: pa.addr.clone() },
            SourceSpec { label: "b".into(), addr: pb.addr.clone() },
        ];
        let name = FileName::new("big.bin").unwrap();
        let config = DownloadConfig { client: fast(), overwrite: false, ..Default::default() };
        let report = download(&TcpTransport, &rt, &catalog, &name, &sources, &config, |_| {}).await.unwrap();
        assert_eq!(report.outcome, Outcome::Downloaded);
        assert_eq!(std::fs::read(out.path().join("big.bin")).unwrap(), big);
        let (ra, rb) = (report.sources[0].bytes, report.sources[1].bytes);
        assert_eq!(ra + rb, big.len() as u64);
        assert!(ra > 0 && rb > 0, "both sources delivered: {ra} {rb}");

        // Again: nothing to fetch.
        let again = download(&TcpTransport, &rt, &catalog, &name, &sources, &config, |_| {}).await.unwrap();
        assert_eq!(again.outcome, Outcome::AlreadyPresent);
        assert_eq!(again.sources.iter().map(|s| s.bytes).sum::<u64>(), 0);
        assert_eq!(leftover_partials(out.path()), 0);
    });
}

#[test]
fn download_skips_sources_without_the_file_and_fails_cleanly_without_any() {
    let rt = SmolRuntime::new(1);
    let a = folder_with(&[("x.txt", b"the content")]);
    let b = folder_with(&[]);
    let c = folder_with(&[("x.txt", b"other content")]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let pa = start(&rt, FsStore::new(a.path()), ServerConfig::default()).await;
        let pb = start(&rt, FsStore::new(b.path()), ServerConfig::default()).await;
        let pc = start(&rt, FsStore::new(c.path()), ServerConfig::default()).await;
        let catalog = Catalog::new(FsStore::new(out.path()));
        let config = DownloadConfig { client: fast(), overwrite: false, ..Default::default() };
        let src = |l: &str, addr: &str| SourceSpec { label: l.into(), addr: addr.into() };

        let name = FileName::new("x.txt").unwrap();
        let sources = [src("b", &pb.addr), src("a", &pa.addr), src("c", &pc.addr)];
        let report = download(&TcpTransport, &rt, &catalog, &name, &sources, &config, |_| {}).await.unwrap();
        assert_eq!(std::fs::read(out.path().join("x.txt")).unwrap(), b"the content");
        assert_eq!(report.sources[0].problem.as_ref().map(|p| p.detail.as_str()), Some("does not have x.txt"));
        assert!(report.sources[2].problem.as_ref().map(|p| p.detail.as_str()).unwrap().contains("different content"));
        assert_eq!(report.sources[1].bytes, 11);

        let missing = FileName::new("missing.txt").unwrap();
        let err = download(&TcpTransport, &rt, &catalog, &missing, &sources[..2], &config, |_| {}).await.unwrap_err();
        assert!(matches!(err, DownloadError::NoSource { .. }), "{err:?}");
        assert_eq!(err.reasons().len(), 2);
        assert!(!out.path().join("missing.txt").exists());

        // A local file with other content is not replaced unless asked.
        std::fs::write(out.path().join("y.txt"), b"local").unwrap();
        std::fs::write(a.path().join("y.txt"), b"remote").unwrap();
        let y = FileName::new("y.txt").unwrap();
        let err = download(&TcpTransport, &rt, &catalog, &y, &sources[1..2], &config, |_| {}).await.unwrap_err();
        assert!(matches!(err, DownloadError::Exists { .. }), "{err:?}");
        assert_eq!(std::fs::read(out.path().join("y.txt")).unwrap(), b"local");
        let overwrite = DownloadConfig { overwrite: true, ..config };
        download(&TcpTransport, &rt, &catalog, &y, &sources[1..2], &overwrite, |_| {}).await.unwrap();
        assert_eq!(std::fs::read(out.path().join("y.txt")).unwrap(), b"remote");
    });
}

/// A store that serves corrupted bytes: one byte in each read is flipped.
#[derive(Clone)]
struct Corrupting(FsStore);

struct CorruptFile(FsFile);

impl ReadAt for CorruptFile {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut v = self.0.read_at(offset, len, buf).await?;
        if let Some(b) = v.get_mut(len / 2) {
            *b ^= 0x5a;
        }
        Ok(v)
    }
}

impl Store for Corrupting {
    type File = CorruptFile;
    type Partial = <FsStore as Store>::Partial;

    fn location(&self) -> String {
        self.0.location()
    }
    async fn list(&self) -> Result<Vec<FileMeta>, StoreError> {
        self.0.list().await
    }
    async fn stat(&self, name: &FileName) -> Result<Option<FileMeta>, StoreError> {
        self.0.stat(name).await
    }
    async fn open(&self, name: &FileName) -> Result<(CorruptFile, FileMeta), StoreError> {
        let (f, m) = self.0.open(name).await?;
        Ok((CorruptFile(f), m))
    }
    async fn hash(&self, name: &FileName) -> Result<(FileMeta, Manifest), StoreError> {
        self.0.hash(name).await
    }
    async fn create_partial(&self, name: &FileName, size: u64) -> Result<Self::Partial, StoreError> {
        self.0.create_partial(name, size).await
    }
    async fn resume_partial(&self, name: &FileName, key: &str, size: u64) -> Result<Self::Partial, StoreError> {
        self.0.resume_partial(name, key, size).await
    }
    async fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.load_state(key).await
    }
    async fn save_state(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.0.save_state(key, data).await
    }
}

#[test]
fn corrupt_source_is_dropped_and_named_and_the_file_still_arrives() {
    let rt = SmolRuntime::new(2);
    let content = data(2_500_000, 7);
    let good = folder_with(&[("f.bin", &content)]);
    let bad = folder_with(&[("f.bin", &content)]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let pg = start(&rt, FsStore::new(good.path()), ServerConfig::default()).await;
        let pb = start(&rt, Corrupting(FsStore::new(bad.path())), ServerConfig::default()).await;
        let catalog = Catalog::new(FsStore::new(out.path()));
        let sources = [
            SourceSpec { label: "bad".into(), addr: pb.addr.clone() },
            SourceSpec { label: "good".into(), addr: pg.addr.clone() },
        ];
        let name = FileName::new("f.bin").unwrap();
        let config = DownloadConfig { client: fast(), overwrite: false, ..Default::default() };
        let report = download(&TcpTransport, &rt, &catalog, &name, &sources, &config, |_| {}).await.unwrap();
        assert_eq!(Hash::of(&std::fs::read(out.path().join("f.bin")).unwrap()), Hash::of(&content));
        let problem = report.sources[0].problem.as_ref().map(|p| p.detail.as_str()).unwrap();
        assert!(problem.contains("corrupt"), "{problem}");
        assert_eq!(report.sources[0].bytes, 0);
        assert_eq!(report.sources[1].bytes, content.len() as u64);

        // Alone, the corrupt source cannot complete the download, and
        // nothing is left behind.
        std::fs::remove_file(out.path().join("f.bin")).unwrap();
        let err = download(&TcpTransport, &rt, &catalog, &name, &sources[..1], &config, |_| {}).await.unwrap_err();
        assert!(matches!(err, DownloadError::SourcesFailed { .. }), "{err:?}");
        assert!(!out.path().join("f.bin").exists());
        assert_eq!(leftover_partials(out.path()), 0);
    });
}

#[test]
fn upload_stores_verifies_and_refuses_what_it_should() {
    let rt = SmolRuntime::new(2);
    let content = data(1_200_000, 3);
    let local = folder_with(&[("up.bin", &content)]);
    let remote = folder_with(&[("taken.txt", b"theirs")]);
    rt.block_on(async {
        let peer = start(&rt, FsStore::new(remote.path()), ServerConfig::default()).await;
        let (file, manifest) = FsStore::open_path(local.path().join("up.bin")).await.unwrap();
        let file = Arc::new(file);
        let entry = |name: &str, m: &Manifest| p2p_core::catalog::Entry {
            info: p2p_core::protocol::FileInfo { name: FileName::new(name).unwrap(), size: m.size(), hash: m.root() },
            manifest: Arc::new(m.clone()),
        };
        let mut s = session(&rt, &peer.addr).await;
        assert_eq!(s.upload(&rt, file.clone(), &entry("up.bin", &manifest)).await.unwrap(), StoreOutcome::Stored);
        assert_eq!(std::fs::read(remote.path().join("up.bin")).unwrap(), content);
        assert_eq!(s.upload(&rt, file.clone(), &entry("up.bin", &manifest)).await.unwrap(), StoreOutcome::Unchanged);
        // The listing sees it at once, without hashing it again.
        let listed = s.list().await.unwrap();
        assert!(listed.iter().any(|f| f.name.as_str() == "up.bin" && f.hash == manifest.root()));
        let err = s.upload(&rt, file.clone(), &entry("taken.txt", &manifest)).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Exists), "{err}");
        assert_eq!(std::fs::read(remote.path().join("taken.txt")).unwrap(), b"theirs");
        assert_eq!(leftover_partials(remote.path()), 0);
        // The session survives refusals.
        assert_eq!(s.list().await.unwrap().len(), 2);
    });
}

/// Speaks the protocol by hand, to do what a well-behaved client won't.
struct RawClient {
    stream: Tcp,
    buf: Vec<u8>,
}

impl RawClient {
    async fn connect(addr: &str) -> Self {
        let mut stream = TcpTransport.connect(addr).await.unwrap().stream;
        stream.write_all(&codec::encode_preamble(p2p_core::protocol::VERSION)).await.unwrap();
        let mut c = RawClient { stream, buf: Vec::new() };
        let hello = p2p_core::protocol::Hello { peer_id: "raw".into(), agent: "test".into(), capabilities: 0 };
        c.send(&p2p_core::protocol::Message::Hello(hello)).await;
        let mut pre = [0u8; 8];
        c.stream.read_exact(&mut pre).await.unwrap();
        assert!(matches!(c.recv().await, Some(p2p_core::protocol::Message::Hello(_))));
        c
    }

    async fn send(&mut self, m: &p2p_core::protocol::Message) {
        let mut out = Vec::new();
        codec::encode_control(m, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next control message, or None when the server closes.
    async fn recv(&mut self) -> Option<p2p_core::protocol::Message> {
        loop {
            if let Some((frame, used)) = codec::decode(&self.buf).unwrap() {
                let m = match frame {
                    codec::Frame::Control(m) => Some(m),
                    codec::Frame::Data(_) => None,
                };
                self.buf.drain(..used);
                if m.is_some() {
                    return m;
                }
                continue;
            }
            let mut chunk = vec![0u8; 65536];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[test]
fn second_upload_of_a_name_in_progress_is_refused_and_the_first_completes() {
    use p2p_core::protocol::Message;
    let rt = SmolRuntime::new(2);
    let content = data(100_000, 9);
    let manifest = p2p_core::manifest::manifest_of(&content);
    let local = folder_with(&[("same.bin", &content)]);
    let remote = folder_with(&[]);
    rt.block_on(async {
        let peer = start(&rt, FsStore::new(remote.path()), ServerConfig::default()).await;
        // The first uploader starts and then pauses halfway.
        let mut first = RawClient::connect(&peer.addr).await;
        let hash = manifest.root();
        first.send(&Message::Offer { id: 1, name: "same.bin".into(), size: content.len() as u64, hash }).await;
        assert_eq!(first.recv().await, Some(Message::Accept { id: 1 }));
        let info =
            p2p_core::protocol::FileInfo { name: FileName::new("same.bin").unwrap(), size: content.len() as u64, hash };
        first
            .send(&Message::ManifestPage {
                id: 1,
                info,
                block_size: manifest.block_size(),
                first_block: 0,
                cvs: manifest.cvs().to_vec(),
                last: true,
            })
            .await;
        let mut out = Vec::new();
        codec::encode_data(1, 0, &content[..50_000], &mut out);
        first.stream.write_all(&out).await.unwrap();

        // The second is refused while the first is in progress.
        let (file, m) = FsStore::open_path(local.path().join("same.bin")).await.unwrap();
        let entry = p2p_core::catalog::Entry {
            info: p2p_core::protocol::FileInfo {
                name: FileName::new("same.bin").unwrap(),
                size: m.size(),
                hash: m.root(),
            },
            manifest: Arc::new(m),
        };
        let mut second = session(&rt, &peer.addr).await;
        let err = second.upload(&rt, Arc::new(file), &entry).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::AlreadyUploading));
        assert!(err.to_string().contains("already being uploaded"), "{err}");

        // The first completes, intact.
        out.clear();
        codec::encode_data(1, 50_000, &content[50_000..], &mut out);
        first.stream.write_all(&out).await.unwrap();
        assert_eq!(first.recv().await, Some(Message::Stored { id: 1, outcome: StoreOutcome::Stored }));
        assert_eq!(std::fs::read(remote.path().join("same.bin")).unwrap(), content);
        assert_eq!(leftover_partials(remote.path()), 0);
    });
}

#[test]
fn corrupt_upload_is_refused_and_leaves_nothing() {
    use p2p_core::protocol::Message;
    let rt = SmolRuntime::new(1);
    let content = data(40_000, 4);
    let manifest = p2p_core::manifest::manifest_of(&content);
    let remote = folder_with(&[]);
    rt.block_on(async {
        let peer = start(&rt, FsStore::new(remote.path()), ServerConfig::default()).await;
        let mut c = RawClient::connect(&peer.addr).await;
        let hash = manifest.root();
        let size = content.len() as u64;
        c.send(&Message::Offer { id: 1, name: "c.bin".into(), size, hash }).await;
        assert_eq!(c.recv().await, Some(Message::Accept { id: 1 }));
        let info = p2p_core::protocol::FileInfo { name: FileName::new("c.bin").unwrap(), size, hash };
        c.send(&Message::ManifestPage {
            id: 1,
            info,
            block_size: manifest.block_size(),
            first_block: 0,
            cvs: manifest.cvs().to_vec(),
            last: true,
        })
        .await;
        let mut bad = content.clone();
        bad[20_000] ^= 1;
        let mut out = Vec::new();
        codec::encode_data(1, 0, &bad, &mut out);
        c.stream.write_all(&out).await.unwrap();
        match c.recv().await {
            Some(Message::Error { id: 1, code: ErrorCode::Corrupt, message }) => {
                assert!(message.contains("block 1"), "{message}")
            }
            other => panic!("expected a corrupt-data error, got {other:?}"),
        }
        assert!(!remote.path().join("c.bin").exists());
        assert_eq!(leftover_partials(remote.path()), 0);

        // Names that must never be written.
        for name in ["../escape.txt", "/etc/passwd", "CON", "a\0b", "trailing."] {
            c.send(&Message::Offer { id: 2, name: name.into(), size, hash }).await;
            match c.recv().await {
                Some(Message::Error { id: 2, code: ErrorCode::InvalidName, .. }) => {}
                other => panic!("{name:?}: expected an invalid-name error, got {other:?}"),
            }
        }
        let outside: Vec<_> = std::fs::read_dir(remote.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(outside, [".p2p"], "nothing but p2p's own state in the served folder");
    });
}

#[test]
fn garbage_oversized_and_stalled_connections_are_dropped_and_others_served() {
    let rt = SmolRuntime::new(2);
    let dir = folder_with(&[("a.txt", b"a")]);
    rt.block_on(async {
        let config = ServerConfig { io_timeout: Duration::from_millis(300), ..ServerConfig::default() };
        let peer = start(&rt, FsStore::new(dir.path()), config).await;

        // Not our protocol at all.
        let mut junk = TcpTransport.connect(&peer.addr).await.unwrap().stream;
        junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(closed_within(&rt, &mut junk, Duration::from_secs(5)).await);

        // A frame header announcing 2 GiB: dropped without waiting for it.
        let mut big = RawClient::connect(&peer.addr).await;
        big.stream.write_all(&[0, 0, 0, 0x80, 1]).await.unwrap();
        assert!(closed_within(&rt, &mut big.stream, Duration::from_secs(5)).await);

        // Half a frame, then silence: dropped after the IO timeout.
        let mut stall = RawClient::connect(&peer.addr).await;
        stall.stream.write_all(&[20, 0, 0, 0, 1, 5]).await.unwrap();
        // A garbage body inside a valid frame.
        let mut bad = RawClient::connect(&peer.addr).await;
        bad.stream.write_all(&[3, 0, 0, 0, 1, 0xff, 0xff]).await.unwrap();

        // Meanwhile others are served.
        let mut s = session(&rt, &peer.addr).await;
        assert_eq!(s.list().await.unwrap().len(), 1);
        assert!(closed_within(&rt, &mut stall.stream, Duration::from_secs(5)).await);
        assert!(closed_within(&rt, &mut bad.stream, Duration::from_secs(5)).await);
        assert_eq!(s.list().await.unwrap().len(), 1);
    });
}

/// Whether the server closes the connection within `limit` (reading and
/// discarding whatever it sends first, such as an error message).
async fn closed_within(rt: &SmolRuntime, stream: &mut Tcp, limit: Duration) -> bool {
    let read_to_end = async {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        true
    };
    futures_lite::future::or(read_to_end, async {
        rt.sleep(limit).await;
        false
    })
    .await
}

#[test]
fn wrong_version_is_refused_with_a_clear_error() {
    let rt = SmolRuntime::new(1);
    let dir = folder_with(&[]);
    rt.block_on(async {
        let peer = start(&rt, FsStore::new(dir.path()), ServerConfig::default()).await;
        let mut raw = TcpTransport.connect(&peer.addr).await.unwrap().stream;
        raw.write_all(&codec::encode_preamble(99)).await.unwrap();
        let mut reply = Vec::new();
        let _ = raw.read_to_end(&mut reply).await;
        assert_eq!(codec::decode_preamble(reply[..8].try_into().unwrap()), Ok(p2p_core::protocol::VERSION));
        let (frame, _) = codec::decode(&reply[8..]).unwrap().unwrap();
        match frame {
            codec::Frame::Control(p2p_core::protocol::Message::Error { code, message, .. }) => {
                assert_eq!(code, ErrorCode::UnsupportedVersion);
                assert!(message.contains("version 1"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn many_concurrent_downloaders_all_get_the_file() {
    let rt = SmolRuntime::new(2);
    let content = data(2_000_000, 11);
    let dir = folder_with(&[("shared.bin", &content)]);
    let outs: Vec<_> = (0..24).map(|_| tempfile::tempdir().unwrap()).collect();
    let done = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let config = ServerConfig { read_budget: 4 << 20, ..ServerConfig::default() };
        let peer = start(&rt, FsStore::new(dir.path()), config).await;
        let mut tasks = Vec::new();
        for out in &outs {
            let rt2 = rt.clone();
            let addr = peer.addr.clone();
            let path = out.path().to_owned();
            let done = done.clone();
            tasks.push(rt.spawn(async move {
                let catalog = Catalog::new(FsStore::new(&path));
                let name = FileName::new("shared.bin").unwrap();
                let sources = [SourceSpec { label: "p".into(), addr }];
                let config = DownloadConfig { client: fast(), overwrite: false, ..Default::default() };
                download(&TcpTransport, &rt2, &catalog, &name, &sources, &config, |_| {}).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }));
        }
        for t in tasks {
            t.await;
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), outs.len() as u64);
    for out in &outs {
        assert_eq!(Hash::of(&std::fs::read(out.path().join("shared.bin")).unwrap()), Hash::of(&content));
    }
}

#[test]
fn connecting_to_nothing_fails_fast_with_the_address() {
    let rt = SmolRuntime::new(1);
    rt.block_on(async {
        let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = Session::connect(&TcpTransport, &rt, &addr, &fast()).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }));
        assert!(err.to_string().contains(&addr), "{err}");
    });
}

#[test]
fn a_silent_source_does_not_hold_up_the_download() {
    let rt = SmolRuntime::new(2);
    let content = data(300_000, 12);
    let dir = folder_with(&[("f.bin", &content)]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let good = start(&rt, FsStore::new(dir.path()), ServerConfig::default()).await;
        // Accepts connections and never says a word.
        let silent = TcpTransport.bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let _keep = rt.spawn(async move {
            let mut held = Vec::new();
            while let Ok(a) = silent.accept().await {
                held.push(a);
            }
        });
        let catalog = Catalog::new(FsStore::new(out.path()));
        let sources = [
            SourceSpec { label: "silent".into(), addr: silent_addr },
            SourceSpec { label: "good".into(), addr: good.addr.clone() },
        ];
        let name = FileName::new("f.bin").unwrap();
        // The silent source would hold the download for an hour if it were
        // waited for.
        let patient = ClientConfig { connect_timeout: Duration::from_secs(3600), ..fast() };
        let config = DownloadConfig { client: patient, overwrite: false, ..Default::default() };
        let run = download(&TcpTransport, &rt, &catalog, &name, &sources, &config, |_| {});
        let report = p2p_core::runtime::timeout(&rt, Duration::from_secs(60), run)
            .await
            .expect("finished without the silent source")
            .unwrap();
        assert_eq!(report.sources[1].bytes, content.len() as u64);
        assert_eq!(
            report.sources[0].problem.as_ref().map(|p| p.detail.as_str()),
            Some("did not answer before the download finished")
        );
        assert_eq!(std::fs::read(out.path().join("f.bin")).unwrap(), content);
    });
}

/// A store whose hashing takes a while, as a large file on a slow disk does.
#[derive(Clone)]
struct SlowHash(FsStore, SmolRuntime);

impl Store for SlowHash {
    type File = FsFile;
    type Partial = <FsStore as Store>::Partial;

    fn location(&self) -> String {
        self.0.location()
    }
    async fn list(&self) -> Result<Vec<FileMeta>, StoreError> {
        self.0.list().await
    }
    async fn stat(&self, name: &FileName) -> Result<Option<FileMeta>, StoreError> {
        self.0.stat(name).await
    }
    async fn open(&self, name: &FileName) -> Result<(FsFile, FileMeta), StoreError> {
        self.0.open(name).await
    }
    async fn hash(&self, name: &FileName) -> Result<(FileMeta, Manifest), StoreError> {
        self.1.sleep(Duration::from_secs(3)).await;
        self.0.hash(name).await
    }
    async fn create_partial(&self, name: &FileName, size: u64) -> Result<Self::Partial, StoreError> {
        self.0.create_partial(name, size).await
    }
    async fn resume_partial(&self, name: &FileName, key: &str, size: u64) -> Result<Self::Partial, StoreError> {
        self.0.resume_partial(name, key, size).await
    }
    async fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.load_state(key).await
    }
    async fn save_state(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.0.save_state(key, data).await
    }
}

#[test]
fn slow_hashing_keeps_the_client_waiting_not_failing() {
    let rt = SmolRuntime::new(2);
    let dir = folder_with(&[("big.bin", b"pretend this is 20 GB")]);
    rt.block_on(async {
        let peer = start(&rt, SlowHash(FsStore::new(dir.path()), rt.clone()), ServerConfig::default()).await;
        // The client gives up after one second of silence; hashing takes three.
        let impatient = ClientConfig { io_timeout: Duration::from_secs(1), ..fast() };
        let mut s = Session::connect(&TcpTransport, &rt, &peer.addr, &impatient).await.unwrap();
        let files = s.list().await.unwrap();
        assert_eq!(files.len(), 1);
    });
}

#[test]
fn a_full_server_closes_its_idle_connection_and_says_busy_in_words_when_all_are_busy() {
    let rt = SmolRuntime::new(1);
    let dir = folder_with(&[("big.bin", b"pretend this is 20 GB")]);
    rt.block_on(async {
        let config = ServerConfig { max_connections: 1, ..ServerConfig::default() };
        let peer = start(&rt, SlowHash(FsStore::new(dir.path()), rt.clone()), config).await;
        // An idle connection makes room for a new one.
        let mut idle = RawClient::connect(&peer.addr).await;
        let s = Session::connect(&TcpTransport, &rt, &peer.addr, &fast()).await.unwrap();
        assert!(idle.recv().await.is_none(), "the idle connection was closed");
        drop(s);
        // A busy one keeps its place: its listing hashes for three seconds,
        // and says so.
        let mut busy = RawClient::connect(&peer.addr).await;
        busy.send(&p2p_core::protocol::Message::List { id: 1 }).await;
        assert!(matches!(busy.recv().await, Some(p2p_core::protocol::Message::Working { id: 1 })));
        let err = Session::connect(&TcpTransport, &rt, &peer.addr, &fast()).await.unwrap_err();
        assert_eq!(err.to_string(), "serving 1 connections already; try again later");
        let served = loop {
            match busy.recv().await {
                Some(p2p_core::protocol::Message::Working { .. }) => {}
                other => break other,
            }
        };
        assert!(matches!(served, Some(p2p_core::protocol::Message::Files { .. })), "served to the end: {served:?}");
    });
}

#[test]
fn a_trickling_frame_is_a_stall() {
    let rt = SmolRuntime::new(1);
    let dir = folder_with(&[]);
    rt.block_on(async {
        let config = ServerConfig { io_timeout: Duration::from_millis(500), ..ServerConfig::default() };
        let peer = start(&rt, FsStore::new(dir.path()), config).await;
        let mut c = RawClient::connect(&peer.addr).await;
        // A 100-byte frame, one byte every 200 ms: each read is quick, the
        // frame never is.
        c.stream.write_all(&[100, 0, 0, 0, 1]).await.unwrap();
        let mut dropped = false;
        for _ in 0..100 {
            rt.sleep(Duration::from_millis(200)).await;
            if c.stream.write_all(&[0]).await.is_err() {
                dropped = true;
                break;
            }
            let mut probe = [0u8; 256];
            let read = futures_lite::future::or(async { Some(c.stream.read(&mut probe).await) }, async { None }).await;
            if let Some(Ok(0) | Err(_)) = read {
                dropped = true;
                break;
            }
        }
        assert!(dropped, "the server dropped the trickling client");
    });
}

#[test]
fn only_requests_are_queued_behind_a_transfer() {
    use p2p_core::protocol::Message;
    let rt = SmolRuntime::new(2);
    let content = data(8_000_000, 13);
    let dir = folder_with(&[("big.bin", &content)]);
    rt.block_on(async {
        let peer = start(&rt, FsStore::new(dir.path()), ServerConfig::default()).await;
        let mut c = RawClient::connect(&peer.addr).await;
        let hash = Hash::of(&content);
        c.send(&Message::GetManifest { id: 1, file: FileRef::Name("big.bin".into()) }).await;
        assert!(matches!(c.recv().await, Some(Message::ManifestPage { .. })));
        c.send(&Message::Read { id: 2, hash, offset: 0, len: 8_000_000 }).await;
        // Not a request: a listing page, as if the client were a server.
        c.send(&Message::Files { id: 3, files: Vec::new(), last: true }).await;
        match c.recv().await {
            Some(Message::Error { id: 0, code: ErrorCode::BadRequest, message }) => {
                assert!(message.contains("Files is not a request"), "{message}");
            }
            other => panic!("expected the connection to be refused, got {other:?}"),
        }
        assert_eq!(c.recv().await, None);
    });
}

/// Knows "friend", refuses "enemy", and takes everyone else as a stranger.
#[derive(Debug)]
struct ByName;

impl p2p_core::server::Gate for ByName {
    fn admit(&self, client: &p2p_core::server::ClientInfo) -> Result<p2p_core::server::Standing, String> {
        match client.claimed_id.as_str() {
            "friend" => Ok(p2p_core::server::Standing::Known),
            "enemy" => Err("enemy is not welcome".into()),
            _ => Ok(p2p_core::server::Standing::Stranger),
        }
    }
}

#[test]
fn policies_decide_who_may_list_and_push() {
    use p2p_core::server::UploadPolicy;
    let rt = SmolRuntime::new(1);
    let content = data(10_000, 14);
    let local = folder_with(&[("f.bin", &content)]);
    rt.block_on(async {
        let (file, manifest) = FsStore::open_path(local.path().join("f.bin")).await.unwrap();
        let file = Arc::new(file);
        let entry = p2p_core::catalog::Entry {
            info: p2p_core::protocol::FileInfo {
                name: FileName::new("f.bin").unwrap(),
                size: manifest.size(),
                hash: manifest.root(),
            },
            manifest: Arc::new(manifest),
        };
        let as_who = |id: &str| ClientConfig { peer_id: id.into(), ..fast() };
        let gate: Arc<dyn p2p_core::server::Gate> = Arc::new(ByName);
        for (uploads, private) in [(UploadPolicy::KnownPeers, false), (UploadPolicy::Nobody, true)] {
            let dir = folder_with(&[]);
            let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let config = ServerConfig { uploads, private, gate: Some(gate.clone()), ..ServerConfig::default() };
            let server = Server::new(FsStore::new(dir.path()), rt.clone(), config);
            let _task = rt.spawn(async move { server.run(listener, std::future::pending()).await });

            let err = Session::connect(&TcpTransport, &rt, &addr, &as_who("enemy")).await.unwrap_err();
            assert_eq!(err.to_string(), "enemy is not welcome");

            let mut stranger = Session::connect(&TcpTransport, &rt, &addr, &as_who("")).await.unwrap();
            let mut friend = Session::connect(&TcpTransport, &rt, &addr, &as_who("friend")).await.unwrap();
            assert_eq!(
                stranger.list().await.map(|_| ()).map_err(|e| e.code()),
                if private { Err(Some(ErrorCode::Forbidden)) } else { Ok(()) }
            );
            assert!(friend.list().await.is_ok());
            let e = stranger.upload(&rt, file.clone(), &entry).await.unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
            let r = friend.upload(&rt, file.clone(), &entry).await;
            match uploads {
                UploadPolicy::Nobody => assert_eq!(r.unwrap_err().code(), Some(ErrorCode::Forbidden)),
                _ => assert_eq!(r.unwrap(), StoreOutcome::Stored),
            }
        }
    });
}

#[test]
fn a_file_added_after_indexing_is_found_by_hash() {
    let rt = SmolRuntime::new(1);
    let a = folder_with(&[("old.txt", b"indexed at start")]);
    rt.block_on(async {
        let pa = start(&rt, FsStore::new(a.path()), ServerConfig::default()).await;
        let mut s = session(&rt, &pa.addr).await;
        assert_eq!(s.list().await.unwrap().len(), 1);
        // Not hashed yet when the client asks for it by content.
        let late = data(50_000, 7);
        std::fs::write(a.path().join("late.bin"), &late).unwrap();
        let entry = s.manifest(FileRef::Hash(Hash::of(&late))).await.unwrap();
        assert_eq!(entry.info.name.as_str(), "late.bin");
        let none = s.manifest(FileRef::Hash(Hash::of(b"nobody has this"))).await.unwrap_err();
        assert_eq!(none.code(), Some(ErrorCode::NotFound));
        // The folder is looked at again at most once a second, so asking
        // for random hashes cannot keep the disk busy; a file added later
        // is still found after that second.
        let later = data(20_000, 9);
        std::fs::write(a.path().join("later.bin"), &later).unwrap();
        rt.sleep(Duration::from_millis(1100)).await;
        let entry = s.manifest(FileRef::Hash(Hash::of(&later))).await.unwrap();
        assert_eq!(entry.info.name.as_str(), "later.bin");
    });
}

/// TCP that counts the connections it makes.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Transport for Counting {
    type Stream = Tcp;
    type Listener = <TcpTransport as Transport>::Listener;

    fn name(&self) -> &'static str {
        "tcp"
    }

    async fn connect(&self, addr: &str) -> io::Result<p2p_core::transport::Connected<Tcp>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        TcpTransport.connect(addr).await
    }

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        TcpTransport.bind(addr).await
    }
}

#[test]
fn one_downloader_connects_to_each_peer_once_for_many_files() {
    let rt = SmolRuntime::new(2);
    let files: Vec<(String, Vec<u8>)> =
        (0..40).map(|i| (format!("f{i:02}.bin"), data(1000 + i * 37, i as u64))).collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let a = folder_with(&refs);
    let b = folder_with(&refs[..20]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let pa = start(&rt, FsStore::new(a.path()), ServerConfig::default()).await;
        let pb = start(&rt, FsStore::new(b.path()), ServerConfig::default()).await;
        let transport = Counting::default();
        let config = DownloadConfig { client: fast(), ..Default::default() };
        let downloader = Downloader::new(transport.clone(), rt.clone(), Catalog::new(FsStore::new(out.path())), config);
        let sources = [
            SourceSpec { label: "a".into(), addr: pa.addr.clone() },
            SourceSpec { label: "b".into(), addr: pb.addr.clone() },
        ];
        let (listed, _) = downloader.list(&sources[0]).await.unwrap();
        assert_eq!(listed.len(), 40);
        for f in &listed {
            let report = downloader.download(&f.name, &sources, |_| {}).await.unwrap();
            assert_eq!(report.outcome, Outcome::Downloaded);
            // b lacks the second half: it says so and stays usable.
            let has_b = report.sources[1].problem.is_none();
            assert_eq!(has_b, f.name.as_str() < "f20", "{}: {:?}", f.name, report.sources[1].problem);
        }
        downloader.close().await;
        for (name, content) in &files {
            assert_eq!(&std::fs::read(out.path().join(name)).unwrap(), content);
        }
        // A session each (the listing's included), kept between files.
        assert_eq!(transport.0.load(Ordering::Relaxed), 2);
        assert_eq!(leftover_partials(out.path()), 0);
    });
}

/// A store whose disk fills up: writes past `room` bytes fail as a full
/// disk does.
#[derive(Clone)]
struct FillsUp(FsStore, Arc<AtomicU64>);

struct FillingPartial(<FsStore as Store>::Partial, Arc<AtomicU64>);

#[derive(Clone)]
struct FillingWriter(p2p_host::FsWriter, Arc<AtomicU64>);

impl p2p_core::store::WriteAt for FillingWriter {
    async fn write_at(&self, offset: u64, data: Vec<u8>) -> io::Result<Vec<u8>> {
        let len = data.len() as u64;
        if self.1.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(len)).is_err() {
            return Err(io::ErrorKind::StorageFull.into());
        }
        p2p_core::store::WriteAt::write_at(&self.0, offset, data).await
    }
}

impl ReadAt for FillingWriter {
    async fn read_at(&self, offset: u64, len: usize, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        self.0.read_at(offset, len, buf).await
    }
}

impl p2p_core::store::PartialFile for FillingPartial {
    type Writer = FillingWriter;
    fn writer(&self) -> FillingWriter {
        FillingWriter(self.0.writer(), self.1.clone())
    }
    async fn sync(&self) -> io::Result<()> {
        self.0.sync().await
    }
    async fn record(&self) -> io::Result<Option<Vec<u8>>> {
        self.0.record().await
    }
    async fn save_record(&self, data: Vec<u8>) -> io::Result<()> {
        self.0.save_record(data).await
    }
    async fn discard(self) {
        self.0.discard().await
    }
    async fn commit(self, overwrite: bool) -> Result<FileMeta, StoreError> {
        self.0.commit(overwrite).await
    }
}

impl Store for FillsUp {
    type File = FsFile;
    type Partial = FillingPartial;

    fn location(&self) -> String {
        self.0.location()
    }
    async fn list(&self) -> Result<Vec<FileMeta>, StoreError> {
        self.0.list().await
    }
    async fn stat(&self, name: &FileName) -> Result<Option<FileMeta>, StoreError> {
        self.0.stat(name).await
    }
    async fn open(&self, name: &FileName) -> Result<(FsFile, FileMeta), StoreError> {
        self.0.open(name).await
    }
    async fn hash(&self, name: &FileName) -> Result<(FileMeta, Manifest), StoreError> {
        self.0.hash(name).await
    }
    async fn create_partial(&self, name: &FileName, size: u64) -> Result<FillingPartial, StoreError> {
        Ok(FillingPartial(self.0.create_partial(name, size).await?, self.1.clone()))
    }
    async fn resume_partial(&self, name: &FileName, key: &str, size: u64) -> Result<FillingPartial, StoreError> {
        Ok(FillingPartial(self.0.resume_partial(name, key, size).await?, self.1.clone()))
    }
    async fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.load_state(key).await
    }
    async fn save_state(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        self.0.save_state(key, data).await
    }
}

/// A disk that fills up half way: the download fails saying so, on which
/// side, and what it kept for the next try; nothing half-written is left
/// beside the kept state. (Before, the error did not say that bytes were
/// kept, and the resume record's temporary file was left behind.)
#[test]
fn a_full_disk_says_what_was_kept() {
    let rt = SmolRuntime::new(2);
    let content = data(6 << 20, 17);
    let remote = folder_with(&[("big.bin", &content)]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let peer = start(&rt, FsStore::new(remote.path()), ServerConfig::default()).await;
        let room = Arc::new(AtomicU64::new(3 << 20));
        let catalog = Catalog::new(FillsUp(FsStore::new(out.path()), room));
        let sources = [SourceSpec { label: "peer".into(), addr: peer.addr.clone() }];
        let config = DownloadConfig { client: fast(), ..Default::default() };
        let name = FileName::new("big.bin").unwrap();
        let err = download(&TcpTransport, &rt, &catalog, &name, &sources, &config, |_| {}).await.unwrap_err();
        let DownloadError::Write { kept, .. } = &err else { panic!("{err:?}") };
        let text = err.to_string();
        assert!(text.contains("writing big.bin") && text.contains("verified so far are kept in"), "{text}");
        assert!(*kept > 0 && *kept <= 3 << 20, "{kept}");
        let state: Vec<String> = std::fs::read_dir(out.path().join(".p2p/resume"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(state.len(), 2, "the partial file and its record, nothing else: {state:?}");
        assert!(!out.path().join("big.bin").exists());
    });
}

#[test]
fn a_seed_points_a_crowd_to_peers_that_have_the_manifest_and_downloads_still_arrive() {
    use p2p_core::client::ManifestAnswer;
    use p2p_core::protocol::Message;
    let rt = SmolRuntime::new(2);
    let content = data(2_000_000, 12);
    let hash = Hash::of(&content);
    let seed_dir = folder_with(&[("crowd.bin", &content)]);
    let holder_dir = folder_with(&[("crowd.bin", &content)]);
    let out = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let seed = start(&rt, FsStore::new(seed_dir.path()), ServerConfig::default()).await;
        let holder = start(&rt, FsStore::new(holder_dir.path()), ServerConfig::default()).await;
        let holder_port: u16 = holder.addr.rsplit_once(':').unwrap().1.parse().unwrap();
        let file = FileRef::Name("crowd.bin".into());
        // A peer that fetches the content from the seed and serves it.
        let mut member = RawClient::connect(&seed.addr).await;
        member.send(&Message::Subscribe { id: 1, hash, port: holder_port }).await;
        assert!(matches!(member.recv().await, Some(Message::Holding { .. })));
        // The first askers of a second are sent the manifest even so; the
        // next is pointed to that peer, and asking again, is sent the
        // manifest itself. (A machine so loaded that the askers span more
        // than the second tries again, a few times.)
        // Askers that serve what they download (the others are sent it at
        // once, below).
        let serving = ClientConfig { serves_downloads: true, ..fast() };
        let asker = || Session::connect(&TcpTransport, &rt, &seed.addr, &serving);
        let mut pointed = None;
        for _ in 0..3 {
            for _ in 0..8 {
                let mut s = asker().await.unwrap();
                assert!(matches!(s.manifest_or_elsewhere(file.clone()).await.unwrap(), ManifestAnswer::Here(_)));
            }
            let mut late = asker().await.unwrap();
            if let ManifestAnswer::Elsewhere { info, peers } = late.manifest_or_elsewhere(file.clone()).await.unwrap() {
                assert_eq!(late.manifest(file.clone()).await.unwrap().info.hash, hash);
                pointed = Some((info, peers));
                break;
            }
        }
        let (info, peers) = pointed.expect("a crowd is pointed elsewhere");
        assert_eq!((info.hash, info.size), (hash, content.len() as u64));
        assert_eq!(peers, vec![format!("127.0.0.1:{holder_port}")]);
        // A client that serves nothing is sent it at once.
        let mut plain = session(&rt, &seed.addr).await;
        assert!(matches!(plain.manifest_or_elsewhere(file.clone()).await.unwrap(), ManifestAnswer::Here(_)));
        // A download pointed elsewhere takes the manifest from the holder
        // and the file from wherever: it arrives whole.
        let catalog = Catalog::new(FsStore::new(out.path()));
        // It says it serves on port 1; nobody asks it for anything here.
        let config = DownloadConfig { client: fast(), swarm: Some(1), ..Default::default() };
        let downloader = Downloader::new(TcpTransport, rt.clone(), catalog, config);
        let sources = [SourceSpec { label: "seed".into(), addr: seed.addr.clone() }];
        let report = downloader.download(&FileName::new("crowd.bin").unwrap(), &sources, |_| {}).await.unwrap();
        assert_eq!(report.info.hash, hash);
        downloader.close().await;
    });
    assert_eq!(std::fs::read(out.path().join("crowd.bin")).unwrap(), content);
}

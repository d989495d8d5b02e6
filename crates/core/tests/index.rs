//! The index over real TCP on 127.0.0.1: peers join and publish, files
//! come and go, clients list and locate, a peer that goes away is
//! forgotten, bad input is refused and the index keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use p2p_core::client::{ClientConfig, ClientError, Session};
use p2p_core::download::Wanted;
use p2p_core::hash::Hash;
use p2p_core::index::{AnnounceConfig, Announcer, IndexClient, Limits, LookupError, Tracker, TrackerConfig};
use p2p_core::name::FileName;
use p2p_core::protocol::{ErrorCode, FileInfo, FileRef};
use p2p_core::runtime::{Runtime, Task};
use p2p_core::server::{Server, ServerConfig};
use p2p_core::transport::{Listener, Transport};
use p2p_host::{FsStore, SmolRuntime};
use p2p_transport_tcp::TcpTransport;

type Tcp = <TcpTransport as Transport>::Stream;

fn client(id: &str) -> ClientConfig {
    ClientConfig::with_timeout(id, Duration::from_secs(5))
}

async fn start_index(rt: &SmolRuntime, config: TrackerConfig) -> (String, Tracker<SmolRuntime>, Task<()>) {
    let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tracker = Tracker::new(rt.clone(), config);
    let t = tracker.clone();
    let task = rt.spawn(async move { t.run(listener, std::future::pending()).await });
    (addr, tracker, task)
}

/// A serving peer announcing to `index`; returns its address, the signal
/// sender of its announcer and the tasks that keep it running.
async fn start_peer(
    rt: &SmolRuntime,
    dir: &Path,
    id: &str,
    index: &str,
) -> (String, async_channel::Sender<()>, Vec<Task<()>>) {
    let listener = TcpTransport.bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let config = ServerConfig { peer_id: id.into(), ..ServerConfig::default() };
    let server = Server::new(FsStore::new(dir), rt.clone(), config);
    let catalog = server.catalog().clone();
    let serve = rt.spawn(async move { server.run(listener, std::future::pending()).await });
    let announce = AnnounceConfig {
        client: client(id),
        port,
        debounce: Duration::from_millis(50),
        settle: Duration::from_millis(100),
        ..AnnounceConfig::default()
    };
    let (tx, rx) = async_channel::unbounded();
    let announcer = Announcer::new(TcpTransport, rt.clone(), catalog, index, announce);
    let announce = rt.spawn(announcer.run(rx));
    (addr, tx, vec![serve, announce])
}

async fn ask(rt: &SmolRuntime, index: &str) -> Session<Tcp, SmolRuntime> {
    Session::connect(&TcpTransport, rt, index, &client("asker")).await.unwrap()
}

/// Polls `cond` (async) until it holds or 20 s pass.
async fn eventually<F, Fut>(rt: &SmolRuntime, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = rt.now() + Duration::from_secs(20);
    while rt.now() < deadline {
        if cond().await {
            return true;
        }
        rt.sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn names_on(rt: &SmolRuntime, index: &str) -> Vec<(String, u32)> {
    let mut s = ask(rt, index).await;
    s.index_files().await.unwrap().into_iter().map(|f| (f.info.name.to_string(), f.sources)).collect()
}

#[test]
fn peers_publish_their_files_and_changes_and_leave() {
    let rt = SmolRuntime::new(2);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("shared.txt"), b"same").unwrap();
    std::fs::write(b.path().join("shared.txt"), b"same").unwrap();
    std::fs::write(a.path().join("only-a.txt"), b"a").unwrap();
    rt.block_on(async {
        let (index, tracker, _t) = start_index(&rt, TrackerConfig::default()).await;
        let (addr_a, signal_a, tasks_a) = start_peer(&rt, a.path(), "a", &index).await;
        let (addr_b, _signal_b, _tasks_b) = start_peer(&rt, b.path(), "b", &index).await;
        let want = vec![("only-a.txt".to_string(), 1), ("shared.txt".to_string(), 2)];
        assert!(eventually(&rt, || async { names_on(&rt, &index).await == want }).await, "{:?}", tracker.files());

        let mut s = ask(&rt, &index).await;
        assert!(s.is_index());
        let found = s.locate(FileRef::Name("shared.txt".into())).await.unwrap();
        assert_eq!(found.len(), 1);
        let mut addrs: Vec<&str> = found[0].peers.iter().map(|p| p.addr.as_str()).collect();
        addrs.sort();
        let mut expected = vec![addr_a.as_str(), addr_b.as_str()];
        expected.sort();
        assert_eq!(addrs, expected, "the index gives each peer's serving address");
        let peers = s.peers().await.unwrap();
        assert_eq!(peers.iter().map(|p| (p.id.as_str(), p.files)).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);

        // A file added, one removed: told by a signal, as a folder watcher would.
        std::fs::write(a.path().join("new.bin"), vec![7u8; 100_000]).unwrap();
        std::fs::remove_file(a.path().join("only-a.txt")).unwrap();
        signal_a.send(()).await.unwrap();
        let want = vec![("new.bin".to_string(), 1), ("shared.txt".to_string(), 2)];
        assert!(eventually(&rt, || async { names_on(&rt, &index).await == want }).await, "{:?}", tracker.files());
        let by_hash = s.locate(FileRef::Hash(Hash::of(&vec![7u8; 100_000]))).await.unwrap();
        assert_eq!(by_hash[0].info.name.as_str(), "new.bin");

        // Peer a goes away: its session ends and the index forgets it.
        drop(tasks_a);
        let want = vec![("shared.txt".to_string(), 1)];
        assert!(eventually(&rt, || async { names_on(&rt, &index).await == want }).await, "{:?}", tracker.files());
        assert_eq!(s.peers().await.unwrap().len(), 1);
    });
}

#[test]
fn a_peer_that_goes_silent_is_forgotten_after_its_ttl() {
    let rt = SmolRuntime::new(2);
    rt.block_on(async {
        let config = TrackerConfig { ttl: Duration::from_millis(500), ..TrackerConfig::default() };
        let (index, tracker, _t) = start_index(&rt, config).await;
        // Joins, publishes, then says nothing more.
        let mut silent = Session::connect(&TcpTransport, &rt, &index, &client("silent")).await.unwrap();
        let ttl = silent.join(4000).await.unwrap();
        assert_eq!(ttl, Duration::from_secs(1), "the TTL is told in whole seconds, at least one");
        let info = FileInfo { name: FileName::new("x").unwrap(), size: 1, hash: Hash::of(b"x") };
        assert_eq!(silent.publish(vec![info], vec![], true).await.unwrap(), 1);
        assert_eq!(tracker.peers().len(), 1);
        assert!(eventually(&rt, || async { tracker.peers().is_empty() }).await, "forgotten after the TTL");
        assert!(tracker.files().is_empty());
    });
}

#[test]
fn bad_input_is_refused_clearly_and_the_index_keeps_serving() {
    let rt = SmolRuntime::new(2);
    rt.block_on(async {
        let config = TrackerConfig {
            limits: Limits { max_files_per_peer: 3, max_peers: 1, ..Limits::default() },
            publish_burst: 4,
            publish_per_sec: 1,
            ..TrackerConfig::default()
        };
        let (index, tracker, _t) = start_index(&rt, config).await;
        let mut s = Session::connect(&TcpTransport, &rt, &index, &client("p")).await.unwrap();
        // Publishing before joining.
        let err = s.publish(vec![], vec![], true).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
        s.join(4000).await.unwrap();
        // A huge list: what fits is listed, the rest refused in words.
        let many: Vec<FileInfo> = (0..10)
            .map(|i| FileInfo { name: FileName::new(&format!("f{i}")).unwrap(), size: 1, hash: Hash::of(&[i]) })
            .collect();
        let err = s.publish(many, vec![], true).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
        assert!(err.to_string().contains("more than 3 files"), "{err}");
        assert_eq!(tracker.files().len(), 3);
        // A flood of publishes: refused once the burst is spent.
        let mut refused = None;
        for _ in 0..10 {
            if let Err(e) = s.publish(vec![], vec![], false).await {
                refused = Some(e);
                break;
            }
        }
        let refused = refused.expect("the flood was stopped");
        assert_eq!(refused.code(), Some(ErrorCode::Busy));
        assert!(refused.to_string().contains("too often"), "{refused}");
        // The index is full (one peer): another peer is told so.
        let mut other = Session::connect(&TcpTransport, &rt, &index, &client("q")).await.unwrap();
        let err = other.join(4001).await.unwrap_err();
        assert!(matches!(err, ClientError::Refused { code: ErrorCode::Busy, .. }), "{err}");
        // Garbage bytes get a connection dropped, nothing more.
        let mut raw = TcpTransport.connect(&index).await.unwrap().stream;
        futures_lite::AsyncWriteExt::write_all(&mut raw, b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // The index hangs up (a reset counts too) rather than waiting for more.
        let mut rest = Vec::new();
        let closed = p2p_core::runtime::timeout(
            &rt,
            Duration::from_secs(10),
            futures_lite::AsyncReadExt::read_to_end(&mut raw, &mut rest),
        )
        .await;
        assert!(closed.is_ok(), "the index kept a garbage connection open");
        // And everyone else is still served.
        assert_eq!(other.index_files().await.unwrap().len(), 3);
        assert_eq!(s.peers().await.unwrap().len(), 1);
        s.ping().await.unwrap();
    });
}

#[test]
fn a_downloader_keeps_one_session_waits_when_asked_to_and_reconnects() {
    let rt = SmolRuntime::new(2);
    let a = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("x.bin"), b"x").unwrap();
    rt.block_on(async {
        let config = TrackerConfig {
            query_burst: 2,
            query_per_sec: 8,
            idle_timeout: Duration::from_millis(300),
            ..TrackerConfig::default()
        };
        let (index, tracker, _t) = start_index(&rt, config).await;
        let (_addr, _signal, _tasks) = start_peer(&rt, a.path(), "a", &index).await;
        assert!(eventually(&rt, || async { tracker.file_count() == 1 }).await);
        let before = tracker.connections_taken();
        let ix = IndexClient::new(TcpTransport, rt.clone(), &index, client("d"));
        let x = Wanted::Name(FileName::new("x.bin").unwrap());
        // More questions than the burst allows: the client waits, on one session.
        for _ in 0..6 {
            let found = ix.lookup(&x).await.unwrap();
            assert_eq!(found.sources.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["a"]);
        }
        assert_eq!(tracker.connections_taken() - before, 1);
        // The index drops the idle session; the next question opens another.
        assert_eq!(tracker.connections_open(), 2, "the announcer's and ours");
        assert!(eventually(&rt, || async { tracker.connections_open() == 1 }).await);
        assert_eq!(ix.lookup(&x).await.unwrap().info.size, 1);
        assert_eq!(tracker.connections_taken() - before, 2);
        let none = ix.lookup(&Wanted::Name(FileName::new("nope").unwrap())).await.unwrap_err();
        assert!(matches!(none, LookupError::NotFound(_)), "{none}");
        ix.close().await;
    });
}

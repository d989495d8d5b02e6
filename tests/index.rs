//! The hybrid network: an index (`p2p tracker`), peers announcing to it
//! (`serve --tracker`), and clients that name no peers.

use std::time::{Duration, Instant};

use crate::common::fake::{FakePeer, Fault};
use crate::common::{Mode, Net, announce, b3, content, eventually};

/// Longest wait for a change to reach the index. The folder watcher and
/// the announcer take well under 2 s; this only bounds a broken run.
const DEADLINE: Duration = Duration::from_secs(20);

/// The network's files as the index lists them: (name, peers serving it).
fn network(net: &Net) -> Vec<(String, u64)> {
    let run = net.p2p(&["--json", "filelist", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["sources"].as_u64().unwrap()))
        .collect()
}

fn lists(net: &Net, want: &[(&str, u64)]) -> bool {
    let want: Vec<(String, u64)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    network(net) == want
}

fn online(net: &Net) -> Vec<String> {
    let run = net.p2p(&["--json", "peers", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    net.json(&run.stdout).as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
}

fn files_come_and_go_and_downloads_need_no_peer_names(mode: Mode) {
    let net = Net::start_indexed(mode, &["peer1", "peer2", "peer3"], 30);
    let data = content(2_000_000, 40);
    net.put("peer1", "big.bin", &data);
    net.put("peer3", "big.bin", &data);
    assert!(eventually(DEADLINE, || lists(&net, &[("big.bin", 2)])), "{:?}", network(&net));

    // A file dropped into peer2's folder shows up; deleted, it goes.
    let dropped = Instant::now();
    net.put("peer2", "new.txt", b"fresh\n");
    assert!(eventually(DEADLINE, || lists(&net, &[("big.bin", 2), ("new.txt", 1)])), "{:?}", network(&net));
    eprintln!("a new file reached the index after {:?}", dropped.elapsed());
    // Renamed: the new name replaces the old. Rewritten: the new content
    // replaces the old.
    std::fs::rename(net.served("peer2").join("new.txt"), net.served("peer2").join("renamed.txt")).unwrap();
    assert!(eventually(DEADLINE, || lists(&net, &[("big.bin", 2), ("renamed.txt", 1)])), "{:?}", network(&net));
    net.put("peer2", "renamed.txt", b"changed\n");
    let changed = || {
        let run = net.p2p(&["--json", "filelist", "--tracker", "tracker"]);
        run.stdout.contains(&b3(b"changed\n")) && !run.stdout.contains(&b3(b"fresh\n"))
    };
    assert!(eventually(DEADLINE, changed), "{:?}", network(&net));
    std::fs::remove_file(net.served("peer2").join("renamed.txt")).unwrap();
    assert!(eventually(DEADLINE, || lists(&net, &[("big.bin", 2)])), "{:?}", network(&net));

    let run = net.p2p(&["filelist", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("network_human", net.redact(&run.stdout));
    let run = net.p2p(&["peers", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("peers_human", net.redact(&run.stdout));

    // No peer named: every peer that has the file is a source.
    let run = net.p2p(&["--json", "download", "big.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    let mut from: Vec<(&str, u64)> = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["peer"].as_str().unwrap(), s["bytes"].as_u64().unwrap()))
        .collect();
    from.sort();
    assert_eq!(from.iter().map(|(p, _)| *p).collect::<Vec<_>>(), ["peer1", "peer3"]);
    assert!(from.iter().all(|(_, bytes)| *bytes > 0), "both sources delivered: {from:?}");
    assert_eq!(from.iter().map(|(_, b)| b).sum::<u64>(), data.len() as u64);
    assert_eq!(net.read("client", "big.bin"), data);

    // Everything on the network, again without naming anyone.
    net.put("peer2", "other.txt", b"more\n");
    assert!(eventually(DEADLINE, || lists(&net, &[("big.bin", 2), ("other.txt", 1)])), "{:?}", network(&net));
    let run = net.p2p(&["download", "--all", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("downloaded other.txt"), "{}", run.stdout);
    assert!(run.stdout.contains("big.bin: already in"), "{}", run.stdout);
}

/// 10,000 files dropped into a folder at once reach the index in a few
/// publishes, not one by one.
fn a_burst_of_files_is_published_in_batches(mode: Mode) {
    let net = Net::start_indexed(mode, &["peer1"], 30);
    assert!(eventually(DEADLINE, || online(&net) == ["peer1"]));
    let dir = net.served("peer1");
    // Made aside (in p2p's own folder, which is not watched), then renamed
    // into place: creating 10,000 files takes 3 to 20 s depending on the
    // machine's load, renaming them well under one.
    let staging = dir.join(".p2p/staging");
    std::fs::create_dir_all(&staging).unwrap();
    for i in 0..10_000 {
        std::fs::write(staging.join(format!("f{i:05}.txt")), i.to_string()).unwrap();
    }
    for i in 0..10_000 {
        let name = format!("f{i:05}.txt");
        std::fs::rename(staging.join(&name), dir.join(&name)).unwrap();
    }
    // Asked through `peers`, which counts a peer's files: cheap to poll.
    let listed = || {
        let run = net.p2p(&["--json", "peers", "--tracker", "tracker"]);
        net.json(&run.stdout)[0]["files"].as_u64().unwrap_or(0)
    };
    assert!(eventually(Duration::from_secs(60), || listed() == 10_000), "{} files listed", listed());
    // The index lists the last page before the peer hears its answer and
    // logs the publish: on a loaded machine the log line comes a moment later.
    let logged = || net.log("peer1").contains("published to the index:");
    assert!(eventually(DEADLINE, logged), "no publish logged:\n{}", net.log("peer1"));
    let publishes = net.log("peer1").matches("published to the index:").count();
    eprintln!("10,000 new files reached the index in {publishes} publishes");
    assert!((1..=6).contains(&publishes), "{publishes} publishes:\n{}", net.log("peer1"));
}

fn a_killed_peer_leaves_the_index_and_downloads_go_on(mode: Mode) {
    let mut net = Net::start_indexed(mode, &["peer1", "peer2"], 2);
    let data = content(500_000, 41);
    net.put("peer1", "data.bin", &data);
    net.put("peer2", "data.bin", &data);
    assert!(eventually(DEADLINE, || lists(&net, &[("data.bin", 2)])), "{:?}", network(&net));
    let peer1 = net.peers.iter_mut().find(|p| p.id == "peer1").unwrap();
    peer1.child.kill().unwrap(); // SIGKILL: no goodbye
    peer1.child.wait().unwrap();
    assert!(eventually(DEADLINE, || online(&net) == ["peer2"]), "{:?}", online(&net));
    assert!(lists(&net, &[("data.bin", 1)]));
    let run = net.p2p(&["--json", "download", "data.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.json(&run.stdout)["sources"][0]["peer"], "peer2");
    assert_eq!(net.read("client", "data.bin"), data);
}

fn a_name_with_two_contents_asks_for_a_hash(mode: Mode) {
    let net = Net::start_indexed(mode, &["peer1", "peer2"], 30);
    net.put("peer1", "notes.txt", b"version one\n");
    net.put("peer2", "notes.txt", b"version two, longer\n");
    assert!(eventually(DEADLINE, || lists(&net, &[("notes.txt", 1), ("notes.txt", 1)])), "{:?}", network(&net));
    let run = net.p2p(&["download", "notes.txt", "--tracker", "tracker"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("notes.txt is served with 2 different contents; choose one with --hash"),
        "{}",
        run.stderr
    );
    for (content, peer) in [(&b"version one\n"[..], "peer1"), (&b"version two, longer\n"[..], "peer2")] {
        assert!(run.stderr.contains(&format!("--hash {}", b3(content))), "{}", run.stderr);
        assert!(run.stderr.contains(&format!("({peer})")), "{}", run.stderr);
    }
    assert!(!net.served("client").join("notes.txt").exists());
    let two = b3(b"version two, longer\n");
    let run = net.p2p(&["download", "--hash", &two, "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "notes.txt"), b"version two, longer\n");
}

fn peers_announce_again_when_the_index_restarts(mode: Mode) {
    let mut net = Net::start_indexed(mode, &["peer1"], 30);
    net.put("peer1", "kept.bin", &content(10_000, 42));
    assert!(eventually(DEADLINE, || lists(&net, &[("kept.bin", 1)])), "{:?}", network(&net));
    let addr = net.peer("tracker").addr.clone();
    net.spawn_tracker_on(&addr, 30);
    assert!(eventually(DEADLINE, || lists(&net, &[("kept.bin", 1)])), "{:?}", network(&net));
}

/// A peer that announces a file and serves it corrupt: downloaders drop
/// it, get the file from others, and tell the index, which stops naming
/// it for that file.
fn a_peer_serving_bad_data_is_reported_and_left_out() {
    let net = Net::start_indexed(Mode::Tcp, &["peer1"], 30);
    let data = content(300_000, 43);
    net.put("peer1", "x.bin", &data);
    let liar = FakePeer::start(Mode::Tcp, "x.bin", data.clone(), Fault::Corrupt);
    let port: u16 = liar.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let _announcing = announce(&net.peer("tracker").addr, port, "x.bin", &data);
    assert!(eventually(DEADLINE, || lists(&net, &[("x.bin", 2)])), "{:?}", network(&net));

    let run = net.p2p(&["--json", "download", "x.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("sent corrupt data"), "{}", run.stderr);
    assert_eq!(net.read("client", "x.bin"), data);
    std::fs::remove_file(net.served("client").join("x.bin")).unwrap();
    // The index no longer names the liar for it.
    let run = net.p2p(&["--json", "download", "x.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    assert_eq!(doc["sources"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["sources"][0]["peer"], "peer1");
    assert!(net.log("tracker").contains(&format!("reports {} served bad data", liar.addr)), "{}", net.log("tracker"));
}

#[test]
fn tcp_a_peer_serving_bad_data_is_reported_and_left_out() {
    a_peer_serving_bad_data_is_reported_and_left_out();
}

#[test]
fn tcp_a_burst_of_files_is_published_in_batches() {
    a_burst_of_files_is_published_in_batches(Mode::Tcp);
}

both_modes!(
    files_come_and_go_and_downloads_need_no_peer_names,
    a_killed_peer_leaves_the_index_and_downloads_go_on,
    a_name_with_two_contents_asks_for_a_hash,
    peers_announce_again_when_the_index_restarts,
);

/// The hybrid design's config.json, written as its README shows it, with
/// an openssl-made certificate: the server section runs the index, the
/// client section makes a peer that serves, lists and downloads.
#[test]
fn config_json_runs_the_index_and_points_peers_at_it() {
    use std::process::{Command, Stdio};

    let root = tempfile::tempdir().unwrap();
    let server = root.path().join("server");
    std::fs::create_dir_all(&server).unwrap();
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:4096", "-keyout", "key.pem", "-out", "cert.pem", "-days", "365"])
        .args(["-nodes", "-subj", "/CN=127.0.0.1"])
        .current_dir(&server)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl made a certificate");
    let port = crate::common::dead_port();
    let config = |dir: &str| {
        format!(
            r#"{{
  "server": {{
    "host": "127.0.0.1",
    "port": {port},
    "certificate_path": "{cert}",
    "key_path": "{key}"
  }},
  "client": {{
    "server_host": "127.0.0.1",
    "server_port": {port},
    "shared_files_directory": "{dir}/shared",
    "downloads_directory": "{dir}/downloads"
  }}
}}
"#,
            cert = server.join("cert.pem").display(),
            key = server.join("key.pem").display(),
            dir = root.path().join(dir).display(),
        )
    };
    for who in ["server", "alice", "bob"] {
        std::fs::create_dir_all(root.path().join(who).join("shared")).unwrap();
        std::fs::write(root.path().join(who).join("config.json"), config(who)).unwrap();
    }
    std::fs::write(root.path().join("alice/shared/notes.txt"), b"from alice\n").unwrap();
    let spawn = |who: &str, args: &[&str]| {
        let mut child = Command::new(crate::common::P2P)
            .args(["--config", "config.json"])
            .args(args)
            .current_dir(root.path().join(who))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(root.path().join(format!("{who}.log"))).unwrap())
            .spawn()
            .unwrap();
        let addr = crate::common::first_line_address(&mut child);
        Killed(child, addr)
    };
    let index = spawn("server", &["tracker"]);
    assert_eq!(index.1, format!("127.0.0.1:{port}"), "the server section's host and port");
    let _alice = spawn("alice", &["serve", "--listen", "127.0.0.1:0"]);

    let bob = |args: &[&str]| {
        let mut all = vec!["--config", "config.json"];
        all.extend_from_slice(args);
        crate::common::run_in(&root.path().join("bob"), &all)
    };
    let listed = || {
        let run = bob(&["--json", "filelist"]);
        run.code == 0 && run.stdout.contains("\"notes.txt\"")
    };
    assert!(eventually(DEADLINE, listed), "{}", std::fs::read_to_string(root.path().join("alice.log")).unwrap());
    let run = bob(&["--json", "filelist"]);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["transport"], "tls", "TLS to the index, pinned to the server's certificate");
    let run = bob(&["download", "notes.txt"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read(root.path().join("bob/downloads/notes.txt")).unwrap(), b"from alice\n");
    assert!(root.path().join("bob/p2p.ron").is_file(), "the peer made an identity of its own");
}

/// A child process killed when dropped, and the address it printed.
struct Killed(std::process::Child, String);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shell with an index in the peer's config: the original commands
/// need no peer names.
#[test]
fn tls_the_shell_asks_the_index() {
    let net = Net::start_indexed(Mode::Tls, &["peer1", "peer2"], 30);
    let data = content(200_000, 44);
    net.put("peer1", "data.bin", &data);
    net.put("peer2", "data.bin", &data);
    assert!(eventually(DEADLINE, || lists(&net, &[("data.bin", 2)])), "{:?}", network(&net));
    let ron = net.root.path().join("client/p2p.ron");
    let text = std::fs::read_to_string(&ron).unwrap();
    std::fs::write(&ron, text.replacen("(\n", "(\n    tracker: Some(\"tracker\"),\n", 1)).unwrap();
    let run = crate::shell::script(&net, "client", "#FILELIST\n#DOWNLOAD data.bin\npeers\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("the network: data.bin (195 KiB, 2 peers)"), "{}", run.stdout);
    assert!(lines[1].starts_with("downloaded data.bin: "), "{}", run.stdout);
    assert!(lines[2].starts_with("2 peers online: peer1 ("), "{}", run.stdout);
    assert_eq!(net.read("client", "data.bin"), data);
}

/// A private index: only peers it knows by certificate announce and ask.
#[test]
fn tls_a_private_index_serves_known_peers_only() {
    let mut net = Net::start_indexed_with(Mode::Tls, &["peer1"], 30, &["--private"]);
    net.put("peer1", "data.bin", b"known peers only\n");
    // peer1 is known once the peer list pins it (it retries until then).
    assert!(eventually(DEADLINE, || lists(&net, &[("data.bin", 1)])), "{}", net.log("tracker"));
    // A stranger with an identity the peer list does not name is turned away.
    net.init("stranger");
    std::fs::create_dir_all(net.root.path().join("stranger/served_files")).unwrap();
    let run = crate::common::run_in(&net.root.path().join("stranger"), &["filelist", "--tracker", "tracker"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("this index serves known peers only"), "{}", run.stderr);
    let run =
        crate::common::run_in(&net.root.path().join("stranger"), &["download", "data.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(!net.served("stranger").join("data.bin").exists());
}

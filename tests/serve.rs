//! `p2p serve`: the peer list, the served folder, and stopping.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{P2P, dead_port, eventually, run_in, wait_with_deadline};

/// A folder layout of the original tool: `root/peer_settings.txt` and
/// `root/peer1/`.
fn layout(settings: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("peer_settings.txt"), settings).unwrap();
    std::fs::create_dir_all(root.path().join("peer1")).unwrap();
    root
}

#[test]
fn finds_the_peer_list_in_the_parent_folder_and_stops_cleanly_on_ctrl_c() {
    let port = dead_port();
    let root = layout(&format!("# lab\npeer1 127.0.0.1 {port}\n"));
    let mut child = Command::new(P2P)
        .args(["serve", "peer1"])
        .current_dir(root.path().join("peer1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert!(line.ends_with(&format!("as peer1 on 127.0.0.1:{port} (tcp)\n")), "{line}");
    assert!(root.path().join("peer1/served_files").is_dir(), "served_files is created");

    // It answers, from a client folder that finds the same list.
    std::fs::create_dir_all(root.path().join("client")).unwrap();
    let run = run_in(&root.path().join("client"), &["filelist", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let run = wait_with_deadline(child, Duration::from_secs(20));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("stopped"), "{}", run.stderr);
}

#[test]
fn peer_list_in_the_current_folder_wins_and_settings_flag_overrides() {
    let root = layout("peer1 127.0.0.1 1\n");
    let here = dead_port();
    std::fs::write(root.path().join("peer1/peer_settings.txt"), format!("peer1 127.0.0.1 {here}\n")).unwrap();
    let other = root.path().join("other.txt");
    std::fs::write(&other, "peer1 127.0.0.1 2\n").unwrap();

    let child = Command::new(P2P)
        .args(["serve", "peer1"])
        .current_dir(root.path().join("peer1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{here}");
    let ok = eventually(Duration::from_secs(20), || std::net::TcpStream::connect(&addr).is_ok());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let run = wait_with_deadline(child, Duration::from_secs(20));
    assert!(ok, "listening on the port from ./peer_settings.txt");
    assert!(run.stdout.contains(&addr), "{}", run.stdout);

    let run = run_in(&root.path().join("peer1"), &["filelist", "peer1", "--settings", other.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("127.0.0.1:2"), "{}", run.stderr);
}

#[test]
fn malformed_peer_list_names_the_line() {
    let root = layout("peer1 127.0.0.1 5000\n\npeer2 127.0.0.1\n");
    let run = run_in(&root.path().join("peer1"), &["serve", "peer1"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: ../peer_settings.txt:3: expected \"peerID ip port [fingerprint]\", found 2 fields\n"
    );
    let run = run_in(&root.path().join("peer1"), &["filelist", "peer1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("peer_settings.txt:3"), "{}", run.stderr);
}

#[test]
fn unknown_id_and_missing_list() {
    let root = layout("peer1 127.0.0.1 5000\n");
    let run = run_in(&root.path().join("peer1"), &["serve", "peer4"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "error: peer \"peer4\" is not in ../peer_settings.txt (known: peer1)\n");
    let empty = tempfile::tempdir().unwrap();
    let run = run_in(empty.path(), &["serve", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("serve_without_peer_list", run.stderr);
}

#[test]
fn port_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &["serve", "peer1", "--listen", &addr]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!("error: cannot listen on {addr} (is another peer running there?)")),
        "{}",
        run.stderr
    );
}

fn ctrl_c_during_an_upload_leaves_no_partial_file(mode: crate::common::Mode) {
    use p2p_core::protocol::Message;
    let mut net = crate::common::Net::start(mode, &["peer1"]);
    let data = crate::common::content(300_000, 9);
    let m = p2p_core::manifest::manifest_of(&data);
    let mut raw = crate::common::raw::Raw::connect(&net, &net.peer("peer1").addr);
    raw.send(&Message::Offer { id: 1, name: "big.bin".into(), size: data.len() as u64, hash: m.root() });
    assert_eq!(raw.recv(), Some(Message::Accept { id: 1 }));
    let served = net.served("peer1");
    assert_eq!(crate::common::partials(&served), 1);

    let peer = net.peers.iter_mut().find(|p| p.id == "peer1").unwrap();
    Command::new("kill").args(["-INT", &peer.child.id().to_string()]).status().unwrap();
    let exited = eventually(Duration::from_secs(20), || peer.child.try_wait().unwrap().is_some());
    assert!(exited, "serve stops on Ctrl-C");
    assert_eq!(peer.child.try_wait().unwrap().and_then(|s| s.code()), Some(0));
    assert_eq!(crate::common::partials(&served), 0, "the abandoned upload left nothing");
    assert!(!served.join("big.bin").exists());
    assert!(net.log("peer1").contains("stopped"));
}

both_modes!(ctrl_c_during_an_upload_leaves_no_partial_file);

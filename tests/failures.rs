//! Bad input and failing peers: one clear line each, exit status 1,
//! nothing lost, nothing left behind.

use std::time::Duration;

use p2p_core::manifest::manifest_of;
use p2p_core::protocol::{ErrorCode, FileInfo, Message, StoreOutcome};

use crate::common::fake::{FakePeer, Fault};
use crate::common::proxy::Proxy;
use crate::common::raw::{Raw, closed};
use crate::common::{Mode, Net, b3, content, dead_port, eventually, partials};

fn unknown_peer_is_one_line_and_the_others_still_answer(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    net.put("peer1", "a.txt", b"a");
    let run = net.p2p(&["filelist", "peer1", "peer7"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("a.txt"));
    insta::assert_snapshot!("unknown_peer", net.redact(&run.stderr));
}

fn peer_not_running(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    net.write_settings(&[&format!("peer9 127.0.0.1 {}", dead_port())]);
    let run = net.p2p(&["filelist", "peer9"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!("not_running", net.redact(&run.stderr));
    let run = net.p2p(&["--json", "upload", "../peer_settings.txt", "peer9"]);
    assert_eq!(run.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc[0]["status"], "error");
    assert!(doc[0]["error"].as_str().unwrap().contains("connection refused"));
}

fn file_not_on_the_peer(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2"]);
    let run = net.p2p(&["download", "missing.txt", "peer1", "peer2"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("not_found", net.redact(&run.stderr));
    assert!(!net.served("client").join("missing.txt").exists());
    assert_eq!(partials(&net.served("client")), 0);
}

fn local_file_missing_or_badly_named(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let run = net.p2p(&["upload", "nope.txt", "peer1"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "error: no file \"nope.txt\" in ./served_files or the current folder\n");
    let run = net.p2p(&["download", "../escape", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("bad_download_name", run.stderr);
    let bad = net.root.path().join("CON");
    std::fs::write(&bad, b"x").unwrap();
    let run = net.p2p(&["upload", bad.to_str().unwrap(), "peer1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("reserved device name"), "{}", run.stderr);
}

fn peer_dying_midway_leaves_nothing_and_another_peer_finishes(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(4_000_000, 5);
    let dying = FakePeer::start(mode, "big.bin", data.clone(), Fault::Die { after: 1_000_000 });

    let run = net.p2p(&["download", "big.bin", &dying.addr]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains(&format!("error: {}: connection closed by the peer", dying.addr)), "{}", run.stderr);
    assert!(run.stderr.contains("every source failed"), "{}", run.stderr);
    assert!(!net.served("client").join("big.bin").exists());
    assert_eq!(partials(&net.served("client")), 0);

    net.put("peer1", "big.bin", &data);
    let run = net.p2p(&["download", "big.bin", &dying.addr, "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("warning: {}: connection closed by the peer", dying.addr)), "{}", run.stderr);
    assert_eq!(net.read("client", "big.bin"), data);
}

fn interrupted_download_keeps_what_arrived_and_resumes(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(3_000_000, 6);
    let stalling = FakePeer::start(mode, "big.bin", data.clone(), Fault::Stall { after: 1_500_000 });
    let child = std::process::Command::new(crate::common::P2P)
        .args(["download", "big.bin", &stalling.addr])
        .current_dir(net.root.path().join("client"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let served = net.served("client");
    // A record is saved once a MiB is in place and synced.
    assert!(eventually(Duration::from_secs(20), || resume_records(&served) == 1), "the download saved a record");
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let run = crate::common::wait_with_deadline(child, Duration::from_secs(20));
    assert_eq!(run.code, 130);
    // Over TLS, a warning that the fake peer's certificate is trusted on first use comes first.
    assert!(run.stderr.ends_with("\ninterrupted\n") || run.stderr == "interrupted\n", "{}", run.stderr);
    assert!(!run.stderr.contains("error"), "{}", run.stderr);
    assert_eq!(partials(&served), 0);
    assert!(!served.join("big.bin").exists(), "nothing partial under the final name");

    // The same command against a peer that has the file fetches only the rest.
    net.put("peer1", "big.bin", &data);
    let run = net.p2p(&["--json", "download", "big.bin", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    let resumed = doc["resumed"].as_u64().unwrap();
    assert!(resumed >= 1 << 20, "{doc}");
    assert_eq!(doc["sources"][0]["bytes"].as_u64().unwrap(), data.len() as u64 - resumed, "{doc}");
    assert_eq!(net.read("client", "big.bin"), data);
    assert_eq!(resume_records(&served), 0, "the record goes with the finished file");
}

fn killed_download_resumes_and_fetches_the_file_about_once(mode: Mode) {
    let mut net = Net::start(mode, &["peer1"]);
    let size = 32 << 20;
    let data = content(size, 9);
    net.put("peer1", "big.bin", &data);
    // Through a counting proxy held to 16 MiB/s, listed as "via" with
    // peer1's pin (over TLS the client checks it reaches peer1).
    let proxy = Proxy::start(&net.peer("peer1").addr, 16 << 20);
    let (host, port) = proxy.addr.rsplit_once(':').unwrap();
    let line = format!("via {host} {port} {}", net.fingerprint("peer1").unwrap_or_default());
    net.write_settings(&[line.trim_end()]);
    let mut child = std::process::Command::new(crate::common::P2P)
        .args(["download", "big.bin", "via"])
        .current_dir(net.root.path().join("client"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let half = size as u64 / 2;
    assert!(eventually(Duration::from_secs(30), || proxy.served() >= half), "half the file went through");
    child.kill().unwrap(); // SIGKILL: no chance to clean up or save anything
    child.wait().unwrap();
    let first = proxy.served();
    let served = net.served("client");
    assert!(!served.join("big.bin").exists(), "nothing partial under the final name");
    assert_eq!(resume_records(&served), 1);
    // What the killed run left is not something a peer lists.
    net.spawn_peer("client", &[]);
    net.write_settings(&[line.trim_end()]);
    let run = net.p2p(&["--json", "filelist", "client"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.json(&run.stdout)[0]["files"], serde_json::json!([]), "{}", run.stdout);

    proxy.set_pace(0);
    let run = net.p2p(&["--json", "download", "big.bin", "via"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    let resumed = doc["resumed"].as_u64().unwrap();
    assert!(resumed > 0 && resumed <= first, "resumed {resumed} of the {first} bytes sent before the kill");
    assert_eq!(net.read("client", "big.bin"), data);
    assert_eq!(resume_records(&served), 0, "the record goes with the finished file");
    // Both runs together cost little more than the file.
    let total = proxy.served();
    assert!(total * 10 <= size as u64 * 11, "{total} bytes sent for a file of {size} ({first} before the kill)");
}

fn resume_records(served: &std::path::Path) -> usize {
    std::fs::read_dir(served.join(".p2p/resume"))
        .map_or(0, |d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "resume")).count())
}

fn second_upload_while_the_first_is_in_progress_is_refused(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(200_000, 7);
    let m = manifest_of(&data);
    let size = data.len() as u64;

    // The first upload starts, then pauses halfway.
    let mut first = Raw::connect(&net, &net.peer("peer1").addr);
    first.send(&Message::Offer { id: 1, name: "same.bin".into(), size, hash: m.root() });
    assert_eq!(first.recv(), Some(Message::Accept { id: 1 }));
    let info = FileInfo { name: p2p_core::name::FileName::new("same.bin").unwrap(), size, hash: m.root() };
    let page = Message::ManifestPage {
        id: 1,
        info,
        block_size: m.block_size(),
        first_block: 0,
        cvs: m.cvs().to_vec(),
        last: true,
    };
    first.send(&page);
    first.send_data(1, 0, &data[..100_000]);

    net.put("client", "same.bin", &data);
    let run = net.p2p(&["upload", "same.bin", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("already_uploading", net.redact(&run.stderr));

    first.send_data(1, 100_000, &data[100_000..]);
    assert_eq!(first.recv(), Some(Message::Stored { id: 1, outcome: StoreOutcome::Stored }));
    assert_eq!(net.read("peer1", "same.bin"), data, "the first upload is intact");
    assert_eq!(partials(&net.served("peer1")), 0);
    assert!(eventually(Duration::from_secs(5), || net.log("peer1").contains("refused upload of same.bin")));
}

fn the_receiver_refuses_hostile_names(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = b"payload";
    let hash = p2p_core::hash::Hash::of(data);
    let mut raw = Raw::connect(&net, &net.peer("peer1").addr);
    let abs = net.root.path().join("abs.txt").display().to_string();
    let names = [
        "../escape.txt",
        "..",
        &abs,
        "a/b",
        "..\\win.txt",
        "C:\\x",
        "C:",
        "nul\0.txt",
        "bell\u{7}",
        "CON",
        "com1.txt",
        "trailing.",
        "trailing ",
        &"n".repeat(256),
        ".p2p",
    ];
    for (i, name) in names.iter().enumerate() {
        let id = i as u32 + 1;
        raw.send(&Message::Offer { id, name: (*name).into(), size: data.len() as u64, hash });
        match raw.recv() {
            Some(Message::Error { id: got, code: ErrorCode::InvalidName, .. }) if got == id => {}
            other => panic!("{name:?}: expected an invalid-name refusal, got {other:?}"),
        }
    }
    // Nothing was written anywhere: not in the served folder, not beside it.
    let served: Vec<_> = std::fs::read_dir(net.served("peer1")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(served.iter().all(|n| n == ".p2p"), "{served:?}");
    let beside: Vec<_> = std::fs::read_dir(net.root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!beside.iter().any(|n| n == "abs.txt" || n == "escape.txt"), "{beside:?}");
    assert!(!net.root.path().join("peer1/escape.txt").exists());
}

fn garbage_oversized_and_stalled_clients_are_dropped_and_others_served(mode: Mode) {
    let net = Net::start_with(mode, &["peer1"], &["--timeout", "1"]);
    net.put("peer1", "a.txt", b"a");
    let addr = net.peer("peer1").addr.clone();

    let mut http = Raw::bare(&addr);
    std::io::Write::write_all(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut oversized = Raw::connect(&net, &addr);
    std::io::Write::write_all(&mut oversized.stream, &[0, 0, 0, 0x7f, 1]).unwrap();
    let mut truncated = Raw::connect(&net, &addr);
    std::io::Write::write_all(&mut truncated.stream, &[40, 0, 0, 0, 1, 3]).unwrap();
    let mut garbage = Raw::connect(&net, &addr);
    std::io::Write::write_all(&mut garbage.stream, &[4, 0, 0, 0, 1, 0xee, 0xee, 0xee]).unwrap();

    // Others are served meanwhile.
    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    assert!(closed(&mut http), "not our protocol");
    assert!(closed(&mut oversized.stream), "oversized frame");
    assert!(closed(&mut truncated.stream), "stalled mid-frame: dropped after the timeout");
    assert!(closed(&mut garbage.stream), "undecodable message");

    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let log = net.log("peer1");
    assert!(log.contains("not a p2p peer"), "{log}");
    assert!(log.contains("over the"), "{log}");
    assert!(log.contains("no progress for 1s"), "{log}");
}

fn corrupt_data_is_never_written_and_the_peer_is_named(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(2_000_000, 8);
    let liar = FakePeer::start(mode, "doc.bin", data.clone(), Fault::Corrupt);

    let run = net.p2p(&["download", "doc.bin", &liar.addr]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let expected = format!("error: {}: sent corrupt data: block ", liar.addr);
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(!net.served("client").join("doc.bin").exists());
    assert_eq!(partials(&net.served("client")), 0);

    net.put("peer1", "doc.bin", &data);
    let run = net.p2p(&["--json", "download", "doc.bin", &liar.addr, "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(doc["sources"][0]["error"].as_str().unwrap().contains("corrupt"), "{doc}");
    assert_eq!(doc["hash"], b3(&data));
    assert_eq!(net.read("client", "doc.bin"), data);
}

fn a_peer_sending_empty_data_is_dropped(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(100_000, 10);
    let idle = FakePeer::start(mode, "e.bin", data.clone(), Fault::Empty);
    let run = net.p2p(&["download", "e.bin", &idle.addr]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("error: {}: sent corrupt data: empty data frame", idle.addr)),
        "{}",
        run.stderr
    );
    net.put("peer1", "e.bin", &data);
    let run = net.p2p(&["download", "e.bin", &idle.addr, "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "e.bin"), data);
}

both_modes!(
    unknown_peer_is_one_line_and_the_others_still_answer,
    peer_not_running,
    file_not_on_the_peer,
    local_file_missing_or_badly_named,
    peer_dying_midway_leaves_nothing_and_another_peer_finishes,
    interrupted_download_keeps_what_arrived_and_resumes,
    killed_download_resumes_and_fetches_the_file_about_once,
    second_upload_while_the_first_is_in_progress_is_refused,
    the_receiver_refuses_hostile_names,
    garbage_oversized_and_stalled_clients_are_dropped_and_others_served,
    corrupt_data_is_never_written_and_the_peer_is_named,
    a_peer_sending_empty_data_is_dropped,
);

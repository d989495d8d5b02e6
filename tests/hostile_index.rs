//! Hostile peers and clients against the index: taking over another
//! peer's entry, hiding honest peers with reports, squatting a name, and
//! exhausting the index's descriptors. Other hosts are played from
//! 127.0.0.2 and on (all of 127.0.0.0/8 is this machine).

use std::time::Duration;

use p2p_core::hash::Hash;
use p2p_core::manifest::manifest_of;
use p2p_core::name::FileName;
use p2p_core::protocol::{BadBlock, FileInfo};

use crate::common::raw::Raw;
use crate::common::{Mode, Net, announce_files, b3, content, eventually, report};

/// Longest wait for the index to see a change.
const DEADLINE: Duration = Duration::from_secs(20);

fn online(net: &Net) -> Vec<String> {
    let run = net.p2p(&["--json", "peers", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    net.json(&run.stdout).as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
}

fn info(name: &str, data: &[u8]) -> FileInfo {
    FileInfo { name: FileName::new(name).unwrap(), size: data.len() as u64, hash: Hash::of(data) }
}

/// A client on peer1's machine joins with peer1's port (over TLS, with a
/// certificate of its own). Its entry is its own: downloads still reach
/// peer1 (every pin for an address is kept, so peer1's certificate is
/// still accepted there), and when the impostor leaves, peer1 stays.
/// (Before the fix, over TCP the impostor replaced peer1's entry and took
/// it away when it left, and over TLS its certificate became the only pin
/// for peer1's address, so downloads from peer1 failed.)
fn an_impostor_at_a_peer_s_address_cannot_take_its_entry(mode: Mode) {
    let net = Net::start_indexed(mode, &["peer1"], 30);
    let data = content(200_000, 21);
    net.put("peer1", "real.bin", &data);
    let listed = || net.p2p(&["filelist", "--tracker", "tracker"]).stdout.contains("real.bin");
    assert!(eventually(DEADLINE, listed));
    let index = net.peer("tracker").addr.clone();
    let port: u16 = net.peer("peer1").addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let impostor = announce_files(&index, net.fingerprint("tracker"), 1, port, vec![info("real.bin", b"fake")]);
    assert!(eventually(DEADLINE, || online(&net).len() == 2), "{:?}", online(&net));

    let run = net.p2p(&["--json", "download", "--hash", &b3(&data), "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "real.bin"), data);

    drop(impostor);
    assert!(eventually(DEADLINE, || online(&net) == ["peer1"]), "peer1 is still listed: {:?}", online(&net));
    std::fs::remove_file(net.served("client").join("real.bin")).unwrap();
    let run = net.p2p(&["download", "real.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Reports of bad data hide a peer for everyone only once three hosts
/// made them, and only with evidence that checks out against the file's
/// hash. Three reporters on one machine (over TLS, three certificates)
/// are one host. (Before the fix, three certificates were three reporters,
/// and a report needed no evidence.)
fn reports_need_evidence_and_distinct_hosts(mode: Mode) {
    let net = Net::start_indexed(mode, &["peer1", "peer2"], 30);
    let data = content(300_000, 22);
    net.put("peer1", "x.bin", &data);
    net.put("peer2", "x.bin", &data);
    let sources = || {
        let run = net.p2p(&["--json", "download", "x.bin", "--tracker", "tracker"]);
        if run.code != 0 {
            return vec![run.stderr];
        }
        std::fs::remove_file(net.served("client").join("x.bin")).unwrap();
        let mut peers: Vec<String> = net.json(&run.stdout)["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["peer"].as_str().unwrap().to_string())
            .collect();
        peers.sort();
        peers
    };
    assert!(eventually(DEADLINE, || sources() == ["peer1", "peer2"]));
    let index = net.peer("tracker").addr.clone();
    let tls = net.fingerprint("tracker");
    let peer1 = net.peer("peer1").addr.clone();
    let m = manifest_of(&data);
    let hash = m.root();
    let evidence = BadBlock { block: 1, got: [0; 32], want: m.cvs()[1], proof: m.proof(1).unwrap() };

    // Made-up evidence is refused.
    let forged = BadBlock { want: [7; 32], ..evidence.clone() };
    let refused = report(&index, tls, 2, hash, &peer1, forged).unwrap_err();
    assert!(refused.contains("evidence does not check out"), "{refused}");
    // Three reporters on one other host: one host.
    for _ in 0..3 {
        report(&index, tls, 2, hash, &peer1, evidence.clone()).unwrap();
    }
    assert_eq!(sources(), ["peer1", "peer2"], "one host cannot hide peer1 from this one");
    // Two more hosts agree: peer1 is left out for everyone.
    report(&index, tls, 3, hash, &peer1, evidence.clone()).unwrap();
    report(&index, tls, 4, hash, &peer1, evidence).unwrap();
    assert_eq!(sources(), ["peer2"]);
}

/// 16 made-up contents of a name, each announced by two fake peers on one
/// host, do not push the real content out of the candidates the index
/// names: a host counts for its first two contents of a name only.
/// (Before the fix the 16 fakes, served by more entries, were the 16
/// candidates, and the real content was not among them.)
fn a_squatted_name_still_offers_the_real_content(mode: Mode) {
    let net = Net::start_indexed(mode, &["peer1"], 30);
    let data = content(1000, 23);
    net.put("peer1", "game.zip", &data);
    let listed = || net.p2p(&["filelist", "--tracker", "tracker"]).stdout.contains("game.zip");
    assert!(eventually(DEADLINE, listed));
    let index = net.peer("tracker").addr.clone();
    let tls = net.fingerprint("tracker");
    let _fakes: Vec<_> = (0..32u16)
        .map(|i| {
            let fake = format!("fake {}", i / 2);
            announce_files(&index, tls, 6, 7000 + i, vec![info("game.zip", fake.as_bytes())])
        })
        .collect();
    let run = net.p2p(&["--json", "download", "game.zip", "--tracker", "tracker"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let doc = net.json(&run.stdout);
    let candidates = doc["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["hash"], b3(&data), "{doc}");
    assert_eq!(candidates.len(), 3, "{doc}");
}

/// Under a limit of 256 open files, 400 idle connections cannot make the
/// index run out of descriptors: its caps fit in its limit, and a new
/// connection takes the place of the one idle the longest. (Before the
/// fix, its cap was 25,000 connections whatever the limit, and 1,100 idle
/// connections under `ulimit -n 1024` left it unable to accept anyone.)
#[test]
fn tcp_idle_connections_cannot_exhaust_the_index_s_descriptors() {
    let mut net = Net::start(Mode::Tcp, &[]);
    let dir = net.root.path().join("tracker");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!("ulimit -n 256 && exec {} tracker --listen 127.0.0.1:0 --ttl 30", crate::common::P2P);
    net.launch_with("tracker", "sh", &["-c", &script]);
    net.write_settings(&[]);
    let addr = net.peer("tracker").addr.clone();
    let idle: Vec<Raw> = (0..400).map(|_| Raw::connect(&net, &addr)).collect();
    let run = net.p2p(&["peers", "--tracker", "tracker", "--timeout", "5"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, net.log("tracker"));
    drop(idle);
}

both_modes!(
    an_impostor_at_a_peer_s_address_cannot_take_its_entry,
    reports_need_evidence_and_distinct_hosts,
    a_squatted_name_still_offers_the_real_content,
);

//! Hostile peers and indexes against the real client: a download is for
//! one content and one name, whatever a peer answers, and no peer or index
//! keeps a command waiting past its deadlines.

use std::time::Duration;

use crate::common::fake::{FakePeer, Fault};
use crate::common::{Mode, Net, announce, b3, content, eventually, partials};

/// Longest wait for the index to list what a test announced.
const DEADLINE: Duration = Duration::from_secs(20);

/// `download --hash H` takes content H only. A peer answering with a valid
/// manifest of other content is dropped and named; with no honest source,
/// nothing is saved. (Before the fix, p2p saved the impostor's content and
/// exited 0.)
fn download_by_hash_takes_only_that_content(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let real = content(300_000, 1);
    let fake = content(300_000, 2);
    let impostor = FakePeer::start(mode, "real.bin", fake.clone(), Fault::Impostor);

    let hash = b3(&real);
    let run = net.p2p(&["download", "--hash", &hash, &impostor.addr]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let said = format!("error: {}: was asked for blake3 {} and offered other content", impostor.addr, &hash[..12]);
    assert!(run.stderr.contains(&said), "{}", run.stderr);
    assert!(!net.served("client").join("real.bin").exists());
    assert_eq!(partials(&net.served("client")), 0);

    net.put("peer1", "real.bin", &real);
    let run = net.p2p(&["--json", "download", "--hash", &hash, &impostor.addr, "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    assert_eq!(doc["hash"], hash);
    assert_eq!(doc["sources"][0]["problem"], "corrupt", "{doc}");
    assert_eq!(doc["sources"][1]["bytes"], real.len() as u64, "{doc}");
    assert_eq!(net.read("client", "real.bin"), real);
}

/// The file is saved under the name asked for, never under a name the
/// peer supplies: a peer answering for notes.txt with the manifest of
/// victim.txt (or .bash_aliases) cannot replace or plant either. (Before
/// the fix, `download notes.txt --overwrite` replaced victim.txt.)
fn the_file_is_saved_under_the_requested_name(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let mine = b"my own victim.txt\n";
    net.put("client", "victim.txt", mine);
    let planted = content(1000, 3);
    for name in ["victim.txt", ".bash_aliases"] {
        let impostor = FakePeer::start(mode, name, planted.clone(), Fault::Impostor);
        let run = net.p2p(&["download", "notes.txt", &impostor.addr, "--overwrite"]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let said = format!("error: {}: was asked for notes.txt and offered the manifest of {name:?}", impostor.addr);
        assert!(run.stderr.contains(&said), "{}", run.stderr);
    }
    assert_eq!(net.read("client", "victim.txt"), mine);
    assert!(!net.served("client").join(".bash_aliases").exists());
    assert!(!net.served("client").join("notes.txt").exists());

    // By hash alone the name comes from the peer: it passes the name rules
    // and never replaces a file, even with --overwrite.
    net.put("peer1", "victim.txt", &planted);
    let run = net.p2p(&["download", "--hash", &b3(&planted), "peer1", "--overwrite"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("the name came from a peer, so it never replaces a file"), "{}", run.stderr);
    assert_eq!(net.read("client", "victim.txt"), mine);
}

/// Through the index, the download is pinned to the hash the index named.
/// Two fake peers announce the real file's hash and serve other content;
/// they outnumber the honest peer, yet the download gets the real content
/// and names them. (Before the fix, the download started by name and the
/// fakes won the vote; the warning blamed the honest peer.)
fn the_index_answer_pins_the_content() {
    let net = Net::start_indexed(Mode::Tcp, &["peer1"], 30);
    let real = content(400_000, 4);
    let fake = content(400_000, 5);
    net.put("peer1", "notes.bin", &real);
    let fakes: Vec<FakePeer> =
        (0..2).map(|_| FakePeer::start(Mode::Tcp, "notes.bin", fake.clone(), Fault::Impostor)).collect();
    let _announcing: Vec<_> = fakes
        .iter()
        .map(|f| {
            let port: u16 = f.addr.rsplit_once(':').unwrap().1.parse().unwrap();
            announce(&net.peer("tracker").addr, port, "notes.bin", &real)
        })
        .collect();
    let listed = || {
        let run = net.p2p(&["--json", "filelist", "--tracker", "tracker"]);
        run.stdout.contains("\"sources\": 3") || run.stdout.contains("\"sources\":3")
    };
    assert!(eventually(DEADLINE, listed), "the index lists three sources");

    let run = net.p2p(&["--json", "download", "notes.bin", "--tracker", "tracker"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "notes.bin"), real);
    let doc = net.json(&run.stdout);
    assert_eq!(doc["hash"], b3(&real));
    for f in &fakes {
        assert!(run.stderr.contains(&format!("{}: was asked for blake3", f.addr)), "{}", run.stderr);
    }
    assert!(!run.stderr.contains("peer1"), "the honest peer is not blamed: {}", run.stderr);
}

#[test]
fn tcp_the_index_answer_pins_the_content() {
    the_index_answer_pins_the_content();
}

both_modes!(download_by_hash_takes_only_that_content, the_file_is_saved_under_the_requested_name);

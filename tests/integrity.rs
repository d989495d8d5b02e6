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

/// Peers and indexes that keep a request open forever (keep-alives
/// without end, empty pages marked "not last" without end, keep-alives
/// instead of data) cost a command its deadline, never more: each command
/// ends with one line naming the peer. (Before the fix, every one of these
/// ran until the harness killed it.)
fn a_hostile_peer_or_index_cannot_keep_a_command_waiting(mode: Mode) {
    let net = Net::start(mode, &[]);
    net.put("client", "up.txt", b"to push\n");
    let keepalive = FakePeer::start(mode, "x.bin", content(1000, 6), Fault::Keepalive);
    let pages = FakePeer::start(mode, "x.bin", content(1000, 6), Fault::EmptyPages);
    let on_read = FakePeer::start(mode, "x.bin", content(1000, 6), Fault::KeepaliveOnRead);
    let index_keepalive = FakePeer::start_index(mode, Fault::Keepalive);
    let index_pages = FakePeer::start_index(mode, Fault::EmptyPages);
    let (k, p, r) = (keepalive.addr.as_str(), pages.addr.as_str(), on_read.addr.as_str());
    let (ik, ip) = (index_keepalive.addr.as_str(), index_pages.addr.as_str());
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["filelist", k], k, "keep-alives for one request"),
        (vec!["download", "x.bin", k], k, "keep-alives for one request"),
        (vec!["upload", "up.txt", k], k, "keep-alives for one request"),
        (vec!["download", "x.bin", r], r, "keep-alives for one request"),
        (vec!["filelist", p], p, "an empty page of an answer that was not its last"),
        (vec!["download", "x.bin", p], p, "an empty page of an answer that was not its last"),
        (vec!["filelist", "--tracker", ik], ik, "keep-alives for one request"),
        (vec!["peers", "--tracker", ik], ik, "keep-alives for one request"),
        (vec!["download", "x.bin", "--tracker", ik], ik, "keep-alives for one request"),
        (vec!["filelist", "--tracker", ip], ip, "an empty page of an answer that was not its last"),
        (vec!["peers", "--tracker", ip], ip, "an empty page of an answer that was not its last"),
    ];
    let runs: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = cases
            .iter()
            .map(|(args, _, _)| {
                let mut all = args.clone();
                all.extend(["--timeout", "1"]);
                let net = &net;
                scope.spawn(move || net.p2p(&all))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for ((args, who, why), run) in cases.iter().zip(runs) {
        assert_eq!(run.code, 1, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains(who) && run.stderr.contains(why), "{args:?}: {}", run.stderr);
    }
}

/// A listing is bounded in bytes, not only in entries: 300,000 names of
/// 255 bytes (under the 500,000-entry bound) are refused at 64 MiB, with
/// one line. (Before the fix, `filelist` took all of it in, and half a
/// million such names made it peak at 819 MiB.)
fn a_listing_is_bounded_in_bytes(mode: Mode) {
    let net = Net::start(mode, &[]);
    let huge = FakePeer::start(mode, "x.bin", Vec::new(), Fault::HugeListing { count: 300_000 });
    let run = net.p2p(&["filelist", &huge.addr]);
    assert_eq!(run.code, 1, "{}", &run.stdout[..run.stdout.len().min(300)]);
    let said = format!("{}: the peer lists more than 64 MiB of files", huge.addr);
    assert!(run.stderr.contains(&said), "{}", run.stderr);
}

#[test]
fn tcp_the_index_answer_pins_the_content() {
    the_index_answer_pins_the_content();
}

both_modes!(
    download_by_hash_takes_only_that_content,
    the_file_is_saved_under_the_requested_name,
    a_hostile_peer_or_index_cannot_keep_a_command_waiting,
    a_listing_is_bounded_in_bytes,
);

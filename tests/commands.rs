//! The three commands doing their job: the original README's workflow.

use crate::common::{Mode, Net, b3, content, partials};

fn filelist_asks_every_peer(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2", "peer3"]);
    net.put("peer1", "notes.txt", b"hello from peer1\n");
    net.put("peer1", "data.bin", &content(100_000, 1));
    net.put("peer2", "data.bin", &content(100_000, 1));

    let run = net.p2p(&["filelist", "peer1", "peer2", "peer3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    insta::assert_snapshot!("filelist_human", net.redact(&run.stdout));

    let run = net.p2p(&["--json", "filelist", "peer1", "peer2", "peer3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    assert_eq!(doc[0]["files"][0]["hash"], b3(&content(100_000, 1)));
    insta::assert_json_snapshot!("filelist_json", doc);

    // `--json` after the subcommand works too.
    let again = net.p2p(&["filelist", "peer1", "--json"]);
    assert_eq!(net.json(&again.stdout)[0], doc[0]);
}

fn download_from_one_peer(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(300_000, 2);
    net.put("peer1", "photo.jpg", &data);
    let run = net.p2p(&["download", "photo.jpg", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("download_human", net.redact(&run.stdout));
    assert_eq!(net.read("client", "photo.jpg"), data, "byte-identical");
    assert_eq!(partials(&net.served("client")), 0);

    // Already there: nothing fetched, still success.
    let run = net.p2p(&["--json", "download", "photo.jpg", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut doc = net.json(&run.stdout);
    let path = net.served("client").canonicalize().unwrap().join("photo.jpg");
    assert_eq!(doc["path"], path.display().to_string(), "an absolute path");
    doc["path"] = "[PATH]".into();
    insta::assert_json_snapshot!("download_again_json", doc);
}

fn download_takes_ranges_from_two_peers_at_once(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2"]);
    let data = content(6_000_000, 3);
    net.put("peer1", "big.bin", &data);
    net.put("peer2", "big.bin", &data);
    let out = net.root.path().join("elsewhere");
    let run = net.p2p(&["--json", "download", "big.bin", "peer1", "peer2", "--output", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = net.json(&run.stdout);
    assert_eq!(doc["status"], "downloaded");
    assert_eq!(doc["hash"], b3(&data));
    assert_eq!(doc["size"], data.len());
    assert_eq!(doc["path"], out.canonicalize().unwrap().join("big.bin").display().to_string());
    let bytes: Vec<u64> = doc["sources"].as_array().unwrap().iter().map(|s| s["bytes"].as_u64().unwrap()).collect();
    assert_eq!(bytes.iter().sum::<u64>(), data.len() as u64);
    assert!(bytes.iter().all(|&b| b > 0), "every peer sent a share: {bytes:?}");
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), data, "byte-identical");
    // Each serving peer logged its part of the transfer.
    assert!(crate::common::eventually(std::time::Duration::from_secs(5), || {
        net.log("peer1").contains("sent big.bin") && net.log("peer2").contains("sent big.bin")
    }));
}

fn upload_to_two_peers_then_again(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2", "peer3"]);
    net.put("client", "notes.txt", b"meeting at noon\n");

    let run = net.p2p(&["upload", "notes.txt", "peer2", "peer3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("upload_human", net.redact(&run.stdout));
    assert_eq!(net.read("peer2", "notes.txt"), b"meeting at noon\n");
    assert_eq!(net.read("peer3", "notes.txt"), b"meeting at noon\n");
    assert!(crate::common::eventually(std::time::Duration::from_secs(5), || net
        .log("peer2")
        .contains("stored notes.txt")));

    let run = net.p2p(&["--json", "upload", "notes.txt", "peer2", "peer3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_json_snapshot!("upload_again_json", net.json(&run.stdout));

    // A path instead of a name in served_files.
    let elsewhere = net.root.path().join("report.pdf");
    std::fs::write(&elsewhere, content(70_000, 4)).unwrap();
    let run = net.p2p(&["upload", elsewhere.to_str().unwrap(), "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("peer1", "report.pdf"), content(70_000, 4));
    for p in ["peer1", "peer2", "peer3"] {
        assert_eq!(partials(&net.served(p)), 0);
    }
}

fn upload_over_different_content_needs_allow_overwrite(mode: Mode) {
    let mut net = Net::start(mode, &["peer1"]);
    net.put("peer1", "notes.txt", b"theirs\n");
    net.put("client", "notes.txt", b"mine\n");
    let run = net.p2p(&["--json", "upload", "notes.txt", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_json_snapshot!("upload_exists_json", net.json(&run.stdout));
    assert_eq!(net.read("peer1", "notes.txt"), b"theirs\n", "nothing lost");

    net.spawn_peer("peer1", &["--allow-overwrite"]);
    net.write_settings(&[]);
    let run = net.p2p(&["upload", "notes.txt", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("peer1", "notes.txt"), b"mine\n");
}

fn peers_given_as_addresses(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    net.put("peer1", "a.txt", b"a");
    let addr = net.peer("peer1").addr.clone();
    let run = net.p2p(&["--json", "filelist", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.json(&run.stdout)[0]["peer"], addr);
    let run = net.p2p(&["download", "a.txt", &addr]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "a.txt"), b"a");
}

fn empty_file_round_trip(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2"]);
    net.put("peer1", "empty", b"");
    let run = net.p2p(&["download", "empty", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "empty"), b"");
    let run = net.p2p(&["upload", "empty", "peer2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("peer2", "empty"), b"");
}

fn download_many_files_by_name_by_hash_and_all(mode: Mode) {
    let net = Net::start(mode, &["peer1", "peer2"]);
    let a = content(70_000, 11);
    let b = content(5_000, 12);
    let c = content(123_457, 13);
    net.put("peer1", "a.bin", &a);
    net.put("peer2", "a.bin", &a);
    net.put("peer1", "b.bin", &b);
    net.put("peer2", "c.bin", &c);

    // Several names: one JSON object per line, one per file.
    let run = net.p2p(&["--json", "download", "a.bin", "--file", "b.bin", "peer1", "peer2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let docs: Vec<serde_json::Value> = run.stdout.lines().map(|l| net.json(l)).collect();
    let mut names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a.bin", "b.bin"]);
    assert_eq!(net.read("client", "b.bin"), b);

    // By content, with 100-byte requests as the original tool made them.
    let run = net.p2p(&["download", "--hash", &b3(&c), "peer1", "peer2", "--chunk-size", "100"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("downloaded c.bin: "), "{}", run.stdout);
    assert_eq!(net.read("client", "c.bin"), c);

    // Everything: what is already here is not fetched again.
    std::fs::remove_file(net.served("client").join("a.bin")).unwrap();
    let run = net.p2p(&["download", "--all", "peer1", "peer2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("downloaded a.bin"), "{}", run.stdout);
    assert!(run.stdout.contains("b.bin: already in"), "{}", run.stdout);
    let dir = net.served("client").canonicalize().unwrap();
    let last = run.stdout.lines().last().unwrap();
    assert!(last.starts_with(&format!("3 files in {}: 1 downloaded (", dir.display())), "{}", run.stdout);
    assert!(last.ends_with("), 2 already there"), "{last}");
    assert_eq!(net.read("client", "a.bin"), a);

    // Quiet: only the final line, for one file or for many.
    std::fs::remove_file(net.served("client").join("b.bin")).unwrap();
    let run = net.p2p(&["-q", "download", "b.bin", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("downloaded b.bin: ") && run.stdout.lines().count() == 1, "{}", run.stdout);
    let run = net.p2p(&["download", "-q", "--all", "peer1", "peer2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("3 files in "), "{}", run.stdout);

    // Bad input is one clear line and status 2.
    let run = net.p2p(&["download", "--hash", "xyz", "peer1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a BLAKE3 hash"), "{}", run.stderr);
    let run = net.p2p(&["download", "a.bin", "peer1", "--chunk-size", "0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("between 1 byte and"), "{}", run.stderr);
}

both_modes!(
    download_many_files_by_name_by_hash_and_all,
    filelist_asks_every_peer,
    download_from_one_peer,
    download_takes_ranges_from_two_peers_at_once,
    upload_to_two_peers_then_again,
    upload_over_different_content_needs_allow_overwrite,
    peers_given_as_addresses,
    empty_file_round_trip,
);

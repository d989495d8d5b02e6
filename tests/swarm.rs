//! Downloads serve each other: a `p2p download` serves the blocks it has
//! verified while it downloads (`--listen`), and a second downloader that
//! hears of it from the seed (peer exchange) fetches from it.

use std::time::Duration;

use crate::common::proxy::Proxy;
use crate::common::{Mode, Net, content, eventually, run_in, spawn_in, wait_with_deadline};

fn a_download_serves_what_it_has_to_the_next(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let size = 8 << 20;
    let data = content(size, 21);
    net.put("peer1", "big.bin", &data);
    // The seed is reached through a proxy that holds each connection to
    // 1 MiB/s: from it alone, each download takes 8 s.
    let proxy = Proxy::start(&net.peer("peer1").addr, 1 << 20);
    let (host, port) = proxy.addr.rsplit_once(':').unwrap();
    let line = format!("via {host} {port} {}", net.fingerprint("peer1").unwrap_or_default());
    net.write_settings(&[line.trim_end()]);
    let client = net.root.path().join("client");
    let first = spawn_in(&client, &["--json", "download", "big.bin", "via", "--listen", "127.0.0.1:0"]);
    assert!(eventually(Duration::from_secs(30), || proxy.served() >= 1 << 20), "the first download started");
    // The second, from the seed only: the seed names the first to it.
    let second_dir = net.root.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = run_in(&second_dir, &["--json", "download", "big.bin", "via", "--listen", "127.0.0.1:0"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let doc = net.json(&second.stdout);
    let from_first: u64 = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["peer"] != "via")
        .map(|s| s["bytes"].as_u64().unwrap_or(0))
        .sum();
    assert!(from_first > 0, "the second download fetched from the first: {doc}\n{}", second.stderr);
    assert_eq!(std::fs::read(second_dir.join("served_files/big.bin")).unwrap(), data);
    // The first finishes too, and stops serving once nobody fetches.
    let first = wait_with_deadline(first, Duration::from_secs(60));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(net.read("client", "big.bin"), data);
    // What went through the peers did not go through the seed twice.
    assert!(proxy.served() < 2 * size as u64, "the seed sent {} bytes for two copies of {size}", proxy.served());
}

// Over TCP only: over TLS a peer heard of by peer exchange is refused
// unless its certificate is pinned, known or issued by the CA (the seed
// does not vouch for it yet), and the test's downloaders have none of
// those for each other.
#[test]
fn tcp_a_download_serves_what_it_has_to_the_next() {
    a_download_serves_what_it_has_to_the_next(Mode::Tcp);
}

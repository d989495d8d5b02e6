//! Identities and TLS: what each bad case looks like to both sides, and
//! certificates made elsewhere (openssl, a CA) working as the hybrid README
//! tells users to make them.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::raw::{Raw, closed};
use crate::common::{Mode, Net, content, eventually, run_in};

const LOG_WAIT: Duration = Duration::from_secs(5);

/// Replaces the identity in `dir` with a certificate valid only between
/// `from` and `until` (year, month, day).
fn dated_identity(dir: &Path, id: &str, from: (i32, u8, u8), until: (i32, u8, u8)) {
    let mut params = rcgen::CertificateParams::new(vec![id.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("p2p-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("p2p-key.pem"), key.serialize_pem()).unwrap();
}

/// Runs openssl in `dir`; the test fails if it is missing (`.ci/run`
/// installs it).
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The fingerprint `p2p id` prints in `dir`.
fn id_of(dir: &Path) -> String {
    let run = run_in(dir, &["--json", "id"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    doc["fingerprint"].as_str().unwrap().to_string()
}

/// A `p2p.ron` using certificate files made elsewhere.
fn config_for(dir: &Path, id: &str, cert: &str, key: &str) {
    let text = format!("(id: {id:?}, cert: {cert:?}, key: {key:?})\n");
    std::fs::write(dir.join("p2p.ron"), text).unwrap();
}

#[test]
fn a_plain_tcp_client_on_a_tls_port_is_told_to_use_tls() {
    let net = Net::start(Mode::Tls, &["peer1"]);
    let run = net.p2p(&["--transport", "tcp", "filelist", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("plain_client_on_tls_port", net.redact(&run.stderr));
    assert!(eventually(LOG_WAIT, || net.log("peer1").contains("a plain-TCP client on this TLS port")));
}

#[test]
fn a_tls_client_on_a_plain_port_is_told_to_use_tcp() {
    let net = Net::start(Mode::Tcp, &["peer1"]);
    let run = net.p2p(&["--transport", "tls", "filelist", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("tls_client_on_plain_port", net.redact(&run.stderr));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_by_both_sides() {
    let mut net = Net::start(Mode::Tls, &["peer1", "peer2"]);
    net.put("peer1", "a.txt", b"a");
    dated_identity(&net.root.path().join("peer1"), "peer1", (2001, 1, 1), (2002, 1, 1));
    dated_identity(&net.root.path().join("peer2"), "peer2", (2200, 1, 1), (2201, 1, 1));
    net.set_fingerprint("peer1", &id_of(&net.root.path().join("peer1")));
    net.set_fingerprint("peer2", &id_of(&net.root.path().join("peer2")));
    net.spawn_peer("peer1", &[]);
    net.spawn_peer("peer2", &[]);
    net.write_settings(&[]);
    let run = net.p2p(&["filelist", "peer1", "peer2"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("server_certificate_dates", net.redact(&run.stderr));

    // A peer that starts with a certificate out of its dates says so.
    assert!(net.log("peer1").contains("this peer's certificate expired on 2002-01-01"), "{}", net.log("peer1"));
    assert!(net.log("peer2").contains("not valid until 2200-01-01"), "{}", net.log("peer2"));

    // A client whose certificate expired is turned away by the server.
    let good = Net::start(Mode::Tls, &["peer3"]);
    dated_identity(&good.root.path().join("client"), "client", (2001, 1, 1), (2002, 1, 1));
    let run = good.p2p(&["filelist", "peer3"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("the peer refused the TLS handshake"), "{}", run.stderr);
    assert!(eventually(LOG_WAIT, || good.log("peer3").contains("expired")), "{}", good.log("peer3"));
    // One that is not valid yet hears that either could be the case, not
    // only 'expired' (TLS has one alert for both), and its own warning.
    dated_identity(&good.root.path().join("client"), "client", (2200, 1, 1), (2201, 1, 1));
    let run = good.p2p(&["filelist", "peer3"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("expired or not valid yet"), "{}", run.stderr);
    assert!(run.stderr.contains("not valid until 2200-01-01"), "{}", run.stderr);
}

#[test]
fn a_stalled_handshake_is_dropped_and_others_are_served() {
    let net = Net::start_with(Mode::Tls, &["peer1"], &["--timeout", "1"]);
    let addr = net.peer("peer1").addr.clone();
    let mut silent = Raw::bare(&addr);
    let mut halfway = Raw::bare(&addr);
    // The header of a TLS record that never comes.
    halfway.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();

    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    assert!(closed(&mut silent), "silent client dropped");
    assert!(closed(&mut halfway), "half-sent handshake dropped");
    assert!(eventually(LOG_WAIT, || net.log("peer1").matches("handshake not finished").count() == 2));
}

#[test]
fn a_wrong_pin_is_refused_on_both_sides_naming_both_fingerprints() {
    let net = Net::start(Mode::Tls, &["peer1"]);
    let wrong = "ab".repeat(32);
    let client_fp = net.fingerprint("client").unwrap().to_string();

    // The client expects another certificate from peer1.
    net.write_settings_lines(&[net.settings_line("peer1", Some(&wrong)), format!("client 127.0.0.1 9 {client_fp}")]);
    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 1);
    let stderr = net.redact(&run.stderr);
    assert!(stderr.contains(&wrong) && stderr.contains("[FP:peer1]"), "{stderr}");
    insta::assert_snapshot!("wrong_server_pin", stderr);

    // peer1 expects another certificate from the client.
    let peer1_fp = net.fingerprint("peer1").unwrap().to_string();
    net.write_settings_lines(&[net.settings_line("peer1", Some(&peer1_fp)), format!("client 127.0.0.1 9 {wrong}")]);
    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 1);
    let stderr = net.redact(&run.stderr);
    assert!(stderr.contains(&wrong) && stderr.contains("[FP:client]"), "{stderr}");
    insta::assert_snapshot!("wrong_client_pin", stderr);
}

#[test]
fn strangers_may_list_but_not_push_and_private_peers_refuse_them() {
    let mut net = Net::start(Mode::Tls, &["peer1"]);
    net.put("peer1", "a.txt", b"a");
    net.put("client", "b.txt", b"b");
    // The client is not in the list: a stranger to peer1.
    let pin = net.fingerprint("peer1").map(str::to_owned);
    net.write_settings_lines(&[net.settings_line("peer1", pin.as_deref())]);
    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = net.p2p(&["upload", "b.txt", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("stranger_upload", net.redact(&run.stderr));
    assert!(!net.served("peer1").join("b.txt").exists());

    // Anyone may push when the peer says so.
    net.spawn_peer("peer1", &["--uploads", "anyone"]);
    net.write_settings_lines(&[net.settings_line("peer1", pin.as_deref())]);
    let run = net.p2p(&["upload", "b.txt", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("peer1", "b.txt"), b"b");

    // A private peer does not even list its files to strangers...
    net.spawn_peer("peer1", &["--private"]);
    net.write_settings_lines(&[net.settings_line("peer1", pin.as_deref())]);
    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("stranger_private", net.redact(&run.stderr));
    // ...but does to a known client.
    net.write_settings(&[]);
    let run = net.p2p(&["download", "a.txt", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_changed_certificate_is_refused_loudly_on_both_sides() {
    let mut net = Net::start(Mode::Tls, &["peer1"]);
    let addr = net.peer("peer1").addr.clone();
    net.put("client", "b.txt", b"b");
    // No pins: each side trusts the other on first use.
    net.write_settings_lines(&[net.settings_line("peer1", None), "client 127.0.0.1 9".to_string()]);
    let run = net.p2p(&["upload", "b.txt", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("on first use"), "{}", run.stderr);
    let known = std::fs::read_to_string(net.root.path().join("client/known_peers.txt")).unwrap();
    assert!(known.contains(&format!("server {addr} {}", net.fingerprint("peer1").unwrap())), "{known}");
    let known = std::fs::read_to_string(net.root.path().join("peer1/known_peers.txt")).unwrap();
    assert!(known.contains(&format!("client client {}", net.fingerprint("client").unwrap())), "{known}");

    // peer1 gets a new identity on the same address: the client refuses it.
    let old = net.fingerprint("peer1").unwrap().to_string();
    net.init("peer1");
    net.spawn_peer("peer1", &["--listen", &addr]);
    let run = net.p2p(&["filelist", "peer1"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("server_changed", net.redact(&run.stderr).replace(&old, "[OLD FP:peer1]"));

    // The client gets a new identity: peer1 refuses it.
    let mut fresh = Net::start(Mode::Tls, &["peer2"]);
    fresh.write_settings_lines(&[fresh.settings_line("peer2", None), "client 127.0.0.1 9".to_string()]);
    let run = fresh.p2p(&["filelist", "peer2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let old = fresh.fingerprint("client").unwrap().to_string();
    fresh.init("client");
    let run = fresh.p2p(&["filelist", "peer2"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("client_changed", fresh.redact(&run.stderr).replace(&old, "[OLD FP:client]"));
    assert!(eventually(LOG_WAIT, || fresh.log("peer2").contains("impersonating")), "{}", fresh.log("peer2"));
}

#[test]
fn openssl_s_client_completes_a_tls13_handshake_with_a_client_certificate() {
    let net = Net::start(Mode::Tls, &["peer1"]);
    let addr = net.peer("peer1").addr.clone();
    let client = net.root.path().join("client");
    let out = openssl(
        &client,
        &["s_client", "-connect", &addr, "-tls1_3", "-cert", "p2p-cert.pem", "-key", "p2p-key.pem", "-alpn", "p2p"],
    );
    assert!(out.contains("New, TLSv1.3"), "{out}");
    assert!(out.contains("ALPN protocol: p2p"), "{out}");
    assert!(out.contains("subject=CN = peer1"), "the certificate `p2p init` made names the peer: {out}");
    // The server asked for a client certificate (TLS 1.3 CertificateRequest).
    assert!(out.contains("Requested Signature Algorithms"), "{out}");
}

#[test]
fn identities_made_with_openssl_serve_and_push() {
    let mut net = Net::start(Mode::Tls, &[]);
    // peer1: RSA, the hybrid README's command; the client: ECDSA P-256
    // with a SEC1 key.
    let dir = net.root.path().join("peer1");
    std::fs::create_dir_all(dir.join("served_files")).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "365",
            "-nodes",
            "-subj",
            "/CN=peer1",
        ],
    );
    config_for(&dir, "peer1", "cert.pem", "key.pem");
    let client = net.root.path().join("client");
    openssl(&client, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec-key.pem"]);
    openssl(
        &client,
        &["req", "-x509", "-key", "ec-key.pem", "-out", "ec-cert.pem", "-days", "30", "-subj", "/CN=client"],
    );
    config_for(&client, "client", "ec-cert.pem", "ec-key.pem");
    net.set_fingerprint("peer1", &id_of(&dir));
    net.set_fingerprint("client", &id_of(&client));
    net.spawn_peer("peer1", &[]);
    net.write_settings(&[]);

    let data = content(500_000, 11);
    net.put("peer1", "rsa.bin", &data);
    net.put("client", "ec.bin", &data[..1000]);
    let run = net.p2p(&["download", "rsa.bin", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "rsa.bin"), data);
    let run = net.p2p(&["upload", "ec.bin", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("peer1", "ec.bin"), &data[..1000]);
}

#[test]
fn a_ca_vouches_for_peers_without_pins() {
    let mut net = Net::start(Mode::Tls, &[]);
    let root = net.root.path().to_owned();
    let root = root.as_path();
    openssl(
        root,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-nodes",
            "-subj",
            "/CN=lab CA",
        ],
    );
    for id in ["peer1", "client"] {
        let dir = root.join(id);
        std::fs::create_dir_all(dir.join("served_files")).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                "key.pem",
                "-out",
                "req.pem",
                "-nodes",
                "-subj",
                &format!("/CN={id}"),
            ],
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "req.pem",
                "-CA",
                "../ca.pem",
                "-CAkey",
                "../ca-key.pem",
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-days",
                "30",
                "-extfile",
                "ext.cnf",
            ],
        );
        config_for(&dir, id, "cert.pem", "key.pem");
    }
    net.spawn_peer("peer1", &["--ca", "../ca.pem"]);
    // No pins anywhere.
    net.write_settings_lines(&[net.settings_line("peer1", None), "client 127.0.0.1 9".to_string()]);
    net.put("client", "c.txt", b"vouched");
    let run = net.p2p(&["--ca", "../ca.pem", "upload", "c.txt", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "no first-use warning: the CA vouched");
    assert_eq!(net.read("peer1", "c.txt"), b"vouched");

    // A self-signed peer the CA never signed is refused.
    let other = Net::start(Mode::Tls, &["peer2"]);
    std::fs::copy(root.join("ca.pem"), other.root.path().join("ca.pem")).unwrap();
    other.write_settings_lines(&[other.settings_line("peer2", None)]);
    let run = other.p2p(&["--ca", "../ca.pem", "filelist", "peer2"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("peer2"), "{}", run.stderr);
    insta::assert_snapshot!("not_signed_by_the_ca", other.redact(&run.stderr));
}

#[test]
fn first_use_counts_only_from_the_listed_address() {
    let net = Net::start(Mode::Tls, &["peer1"]);
    net.put("client", "b.txt", b"b");
    let pin = net.fingerprint("peer1").map(str::to_owned);
    // The client claims an id listed at another address, without a pin:
    // anyone could claim it, so peer1 does not trust it on first use.
    net.write_settings_lines(&[net.settings_line("peer1", pin.as_deref()), "client ::1 9".to_string()]);
    let run = net.p2p(&["upload", "b.txt", "peer1"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("known peers only"), "{}", run.stderr);
    assert!(eventually(LOG_WAIT, || net.log("peer1").contains("not from its listed address")), "{}", net.log("peer1"));
    assert!(!net.root.path().join("peer1/known_peers.txt").exists());
    // From its listed address, it is.
    net.write_settings_lines(&[net.settings_line("peer1", pin.as_deref()), "client 127.0.0.1 9".to_string()]);
    let run = net.p2p(&["upload", "b.txt", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_listed_peer_reached_by_address_keeps_its_pin() {
    let net = Net::start(Mode::Tls, &["peer1"]);
    let addr = net.peer("peer1").addr.clone();
    let wrong = "ab".repeat(32);
    net.write_settings_lines(&[net.settings_line("peer1", Some(&wrong))]);
    let run = net.p2p(&["filelist", &addr]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains(&format!("does not match the pinned {wrong}")), "{}", run.stderr);
    assert!(!net.root.path().join("client/known_peers.txt").exists(), "no first use: the pin decides");
}

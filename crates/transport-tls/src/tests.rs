//! TLS over real TCP on 127.0.0.1.

use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use p2p_core::transport::{Incoming, Listener, Transport};
use p2p_transport_tcp::TcpTransport;

use super::*;

fn run<F: std::future::Future>(f: F) -> F::Output {
    smol::block_on(f)
}

/// A server with identity `id`; returns its transport and listener address.
async fn server(id: Identity) -> (TlsTransport<TcpTransport>, TlsListener<p2p_transport_tcp::TcpAcceptor>, String) {
    let t = TlsTransport::new(TcpTransport, Some(id), Trust::new()).unwrap();
    let l = t.bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (t, l, addr)
}

/// Connects `client` to `listener` at `addr`; both ends' results.
async fn pair<T: Transport, L: Listener>(
    client: &T,
    listener: &L,
    addr: &str,
) -> (io::Result<Connected<T::Stream>>, io::Result<Connected<L::Stream>>) {
    let accept = async {
        let incoming = listener.accept().await?;
        incoming.establish().await
    };
    futures_lite::future::zip(client.connect(addr), accept).await
}

#[test]
fn pinned_peers_talk_and_know_each_other() {
    run(async {
        let server_id = Identity::generate("peer1").unwrap();
        let client_id = Identity::generate("peer2").unwrap();
        let (s, listener, addr) = server(server_id).await;
        let mut trust = Trust::new();
        trust.pin(&addr, s.fingerprint().unwrap());
        let client = TlsTransport::new(TcpTransport, Some(client_id.clone()), trust).unwrap();
        let (c, srv) = pair(&client, &listener, &addr).await;
        let (mut c, mut srv) = (c.unwrap(), srv.unwrap());
        assert_eq!(c.peer, s.fingerprint());
        assert_eq!(srv.peer, Some(client_id.fingerprint()));
        c.stream.write_all(b"hello").await.unwrap();
        c.stream.flush().await.unwrap();
        let mut buf = [0u8; 5];
        srv.stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    });
}

#[test]
fn wrong_pin_is_refused_naming_both_fingerprints() {
    run(async {
        let (s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
        let wrong = Identity::generate("impostor").unwrap().fingerprint();
        let mut trust = Trust::new();
        trust.pin(&addr, wrong);
        let client = TlsTransport::new(TcpTransport, None, trust).unwrap();
        let (c, srv) = pair(&client, &listener, &addr).await;
        let e = c.unwrap_err().to_string();
        assert!(e.contains(&wrong.to_string()) && e.contains(&s.fingerprint().unwrap().to_string()), "{e}");
        assert!(srv.is_err());
    });
}

#[test]
fn first_use_is_remembered_and_a_change_refused() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let known = Arc::new(KnownPeers::open(&dir.path().join("known_peers.txt")).unwrap());
        let (s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
        let mut trust = Trust::new();
        trust.remember_in(known.clone());
        let client = TlsTransport::new(TcpTransport, None, trust).unwrap();
        for _ in 0..2 {
            let (c, srv) = pair(&client, &listener, &addr).await;
            assert_eq!(c.unwrap().peer, s.fingerprint());
            assert!(srv.unwrap().peer.is_none(), "an anonymous client");
        }
        assert_eq!(known.check(&format!("server {addr}"), s.fingerprint().unwrap()), Ok(Seen::Known));
        drop(listener);

        // Another identity at the same address.
        let other = TlsTransport::new(TcpTransport, Some(Identity::generate("peer1").unwrap()), Trust::new()).unwrap();
        let listener = other.bind(&addr).await.unwrap();
        let (c, _) = pair(&client, &listener, &addr).await;
        let e = c.unwrap_err().to_string();
        assert!(e.contains("HAS CHANGED"), "{e}");
    });
}

#[test]
fn no_pin_and_nowhere_to_remember_is_refused() {
    run(async {
        let (_s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
        let client = TlsTransport::new(TcpTransport, None, Trust::new()).unwrap();
        let (c, _) = pair(&client, &listener, &addr).await;
        assert!(c.unwrap_err().to_string().contains("no fingerprint pinned"));
    });
}

#[test]
fn plain_and_tls_mixed_up_say_so() {
    run(async {
        // A plain p2p client on a TLS port.
        let (_s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
        let plain = async {
            let mut c = TcpTransport.connect(&addr).await.unwrap().stream;
            c.write_all(&p2p_core::protocol::codec::encode_preamble(1)).await.unwrap();
            c
        };
        let accept = async { listener.accept().await.unwrap().establish().await };
        let (_c, srv) = futures_lite::future::zip(plain, accept).await;
        let e = srv.unwrap_err().to_string();
        assert!(e.contains("plain-TCP client"), "{e}");

        // A TLS client on a plain port.
        let tcp = TcpTransport.bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut trust = Trust::new();
        trust.pin(&addr, Identity::generate("x").unwrap().fingerprint());
        let client = TlsTransport::new(TcpTransport, None, trust).unwrap();
        let serve_plain = async {
            let mut s = tcp.accept().await.unwrap().establish().await.unwrap().stream;
            s.write_all(&p2p_core::protocol::codec::encode_preamble(1)).await.unwrap();
            let mut sink = [0u8; 512];
            let _ = s.read(&mut sink).await;
        };
        let (c, ()) = futures_lite::future::zip(client.connect(&addr), serve_plain).await;
        let e = c.unwrap_err().to_string();
        assert!(e.contains("speaks plain TCP"), "{e}");
    });
}

#[test]
fn certificates_outside_their_dates_are_refused() {
    run(async {
        for (from, until, word) in [((2001, 1, 1), (2002, 1, 1), "expired"), ((2999, 1, 1), (3000, 1, 1), "not valid")]
        {
            // A server with such a certificate.
            let (s, listener, addr) = server(Identity::with_dates("old", from, until)).await;
            let mut trust = Trust::new();
            trust.pin(&addr, s.fingerprint().unwrap());
            let client = TlsTransport::new(TcpTransport, None, trust).unwrap();
            let (c, _) = pair(&client, &listener, &addr).await;
            let e = c.unwrap_err().to_string();
            assert!(e.contains(word), "{e}");

            // A client with such a certificate.
            let (s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
            let mut trust = Trust::new();
            trust.pin(&addr, s.fingerprint().unwrap());
            let client =
                TlsTransport::new(TcpTransport, Some(Identity::with_dates("old", from, until)), trust).unwrap();
            let (_c, srv) = pair(&client, &listener, &addr).await;
            let e = srv.unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        }
    });
}

#[test]
fn listening_needs_an_identity() {
    run(async {
        let t = TlsTransport::new(TcpTransport, None, Trust::new()).unwrap();
        let e = t.bind("127.0.0.1:0").await.unwrap_err().to_string();
        assert!(e.contains("p2p init"), "{e}");
    });
}

/// Runs openssl (which .ci/run installs) in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn openssl_made_identities_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let req = |alg: &[&str], key: &str, cert: &str| {
        let mut args = vec!["req", "-x509"];
        args.extend_from_slice(alg);
        args.extend_from_slice(&["-keyout", key, "-out", cert, "-days", "365", "-nodes", "-subj", "/CN=peer"]);
        openssl(d, &args);
    };
    // As the hybrid README tells users to make them, and the other kinds.
    req(&["-newkey", "rsa:4096"], "rsa4096.key", "rsa4096.pem");
    req(&["-newkey", "rsa:2048"], "rsa2048.key", "rsa2048.pem");
    openssl(d, &["rsa", "-in", "rsa2048.key", "-out", "rsa2048-pkcs1.key", "-traditional"]);
    req(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"], "ec.key", "ec.pem");
    openssl(d, &["ec", "-in", "ec.key", "-out", "ec-sec1.key"]);
    req(&["-newkey", "ed25519"], "ed.key", "ed.pem");
    let cases = [
        ("rsa4096.pem", "rsa4096.key", "PRIVATE KEY"),
        ("rsa2048.pem", "rsa2048.key", "PRIVATE KEY"),
        ("rsa2048.pem", "rsa2048-pkcs1.key", "RSA PRIVATE KEY"),
        ("ec.pem", "ec.key", "PRIVATE KEY"),
        ("ec.pem", "ec-sec1.key", "EC PRIVATE KEY"),
        ("ed.pem", "ed.key", "PRIVATE KEY"),
    ];
    run(async {
        for (cert, key, kind) in cases {
            let text = std::fs::read_to_string(d.join(key)).unwrap();
            assert!(text.contains(&format!("BEGIN {kind}")), "{key} is {kind}");
            let id = Identity::load(&d.join(cert), &d.join(key)).unwrap_or_else(|e| panic!("{cert}: {e}"));
            // It serves and is reached, with the fingerprint openssl prints.
            let (s, listener, addr) = server(id.clone()).await;
            let mut trust = Trust::new();
            trust.pin(&addr, s.fingerprint().unwrap());
            let client = TlsTransport::new(TcpTransport, Some(id.clone()), trust).unwrap();
            let (c, srv) = pair(&client, &listener, &addr).await;
            assert_eq!(c.unwrap().peer, Some(id.fingerprint()), "{cert}");
            assert_eq!(srv.unwrap().peer, Some(id.fingerprint()), "{cert}");
            let printed = std::process::Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", cert])
                .current_dir(d)
                .output()
                .unwrap();
            let printed = String::from_utf8_lossy(&printed.stdout);
            let fp: Fingerprint = printed.trim().rsplit('=').next().unwrap().parse().unwrap();
            assert_eq!(fp, id.fingerprint(), "{cert}: same fingerprint as openssl");
        }
    });
    // A key with a passphrase gets a clear error.
    openssl(d, &["pkey", "-in", "ec.key", "-out", "ec-enc.key", "-aes256", "-passout", "pass:secret"]);
    let e = Identity::load(&d.join("ec.pem"), &d.join("ec-enc.key")).unwrap_err().to_string();
    assert!(e.contains("encrypted") && e.contains("openssl pkey"), "{e}");
}

#[test]
fn clients_that_never_finish_a_handshake_cannot_keep_others_out() {
    use futures_lite::AsyncReadExt;
    use p2p_core::runtime::Runtime;
    use p2p_core::server::{Server, ServerConfig};

    let rt = p2p_host::SmolRuntime::new(2);
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let (s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
        // Handshakes never time out here: only the bound holds clients back.
        let config = ServerConfig {
            max_handshakes: 2,
            handshake_timeout: std::time::Duration::from_secs(600),
            ..ServerConfig::default()
        };
        let server = Server::new(p2p_host::FsStore::new(dir.path()), rt.clone(), config);
        let running = server.clone();
        let _task = rt.spawn(async move { running.run(listener, std::future::pending()).await });

        // Clients that never start their handshake fill every place...
        let mut silent: Vec<_> = Vec::new();
        for _ in 0..2 {
            silent.push(TcpTransport.connect(&addr).await.unwrap().stream);
        }
        // ...yet a client that does its handshake is served: once the
        // oldest silent one has had its grace (a second), it gives way.
        let mut trust = Trust::new();
        trust.pin(&addr, s.fingerprint().unwrap());
        let client = TlsTransport::new(TcpTransport, None, trust).unwrap();
        let connected = client.connect(&addr).await;
        assert!(connected.is_ok(), "served: {:?}", connected.err());
        let mut byte = [0u8; 1];
        assert_eq!(silent[0].read(&mut byte).await.unwrap_or(0), 0, "the oldest silent one was closed");
        assert!(server.connections_open() <= 2);
    });
}

#[test]
fn a_pin_decides_even_when_a_ca_is_trusted() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        // A CA that signed nothing here.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();

        let (s, listener, addr) = server(Identity::generate("peer1").unwrap()).await;
        let mut trust = Trust::new();
        trust.with_ca(&ca_path).unwrap();
        let without_pin = TlsTransport::new(TcpTransport, None, trust.clone()).unwrap();
        trust.pin(&addr, s.fingerprint().unwrap());
        let pinned = TlsTransport::new(TcpTransport, None, trust).unwrap();

        let (c, srv) = pair(&pinned, &listener, &addr).await;
        assert!(c.is_ok() && srv.is_ok(), "the pin matches: the CA need not have signed it");
        let (c, _) = pair(&without_pin, &listener, &addr).await;
        let e = c.unwrap_err().to_string();
        assert!(e.contains("not issued by the trusted CA"), "{e}");
    });
}

#[test]
fn derived_identities_replay_and_talk() {
    let a = Identity::derived("peer1", [7; 32]).unwrap();
    assert_eq!(a.fingerprint(), Identity::derived("peer1", [7; 32]).unwrap().fingerprint());
    assert_ne!(a.fingerprint(), Identity::derived("peer1", [8; 32]).unwrap().fingerprint());
    run(async {
        let (s, listener, addr) = server(a.clone()).await;
        let mut trust = Trust::new();
        trust.pin(&addr, s.fingerprint().unwrap());
        let client =
            TlsTransport::new(TcpTransport, Some(Identity::derived("peer2", [9; 32]).unwrap()), trust).unwrap();
        let (c, srv) = pair(&client, &listener, &addr).await;
        assert_eq!(c.unwrap().peer, Some(a.fingerprint()));
        assert!(srv.unwrap().peer.is_some());
    });
}

//! The harness: real `p2p serve` processes on 127.0.0.1 with ephemeral
//! ports, in the original layout (a folder per peer holding served_files/,
//! peer_settings.txt in the parent), and one-shot commands run from a
//! client folder beside them.
//!
//! Every test that starts peers runs twice, through [`both_modes!`]: over
//! plain TCP (no identities anywhere) and over TLS (`p2p init` in every
//! folder, each peer pinned in the peer list, the client listed too so the
//! peers know it). Snapshots get a `@tcp` or `@tls` suffix.

pub mod fake;
pub mod hosts;
pub mod proxy;
pub mod raw;
pub mod term;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test: this build's, or another given at build time in
/// `P2P_BIN_OVERRIDE` (to show that a test fails on an earlier version).
pub const P2P: &str = match option_env!("P2P_BIN_OVERRIDE") {
    Some(bin) => bin,
    None => env!("CARGO_BIN_EXE_p2p"),
};

/// Longest a command may run before the test fails.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// Declares `tcp::NAME` and `tls::NAME` tests for each `fn NAME(mode: Mode)`.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod tcp {
            $( #[test] fn $name() { super::$name(crate::common::Mode::Tcp) } )*
        }
        mod tls {
            $( #[test] fn $name() { super::$name(crate::common::Mode::Tls) } )*
        }
    };
}

/// How the peers of a test talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No identities: plain TCP, as the original tool.
    Tcp,
    /// Every folder has an identity: TLS, pinned in the peer list.
    Tls,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tcp => "tcp",
            Mode::Tls => "tls",
        }
    }
}

pub struct Net {
    pub root: tempfile::TempDir,
    pub peers: Vec<Peer>,
    pub mode: Mode,
    /// Fingerprints by id (TLS), the client's included.
    pub fingerprints: Vec<(String, String)>,
    _snapshots: insta::internals::SettingsBindDropGuard,
}

pub struct Peer {
    pub id: String,
    pub addr: String,
    pub child: Child,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Net {
    /// Starts a served folder and a server for each id, and writes the
    /// peer list with the ports they got.
    pub fn start(mode: Mode, ids: &[&str]) -> Net {
        Self::start_with(mode, ids, &[])
    }

    /// Like [`start`](Self::start), with extra `serve` arguments for all.
    pub fn start_with(mode: Mode, ids: &[&str], extra: &[&str]) -> Net {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("client/served_files")).unwrap();
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_suffix(mode.name());
        let mut net =
            Net { root, peers: Vec::new(), mode, fingerprints: Vec::new(), _snapshots: settings.bind_to_scope() };
        if mode == Mode::Tls {
            net.init("client");
        }
        for id in ids {
            std::fs::create_dir_all(net.root.path().join(id).join("served_files")).unwrap();
            if mode == Mode::Tls {
                net.init(id);
            }
            net.spawn_peer(id, extra);
        }
        net.write_settings(&[]);
        net
    }

    /// Like [`start`](Self::start), with an index first (`p2p tracker`,
    /// listed as "tracker" in the peer list, pinned over TLS) that every
    /// peer announces to (`serve --tracker tracker`).
    pub fn start_indexed(mode: Mode, ids: &[&str], ttl_secs: u64) -> Net {
        Self::start_indexed_with(mode, ids, ttl_secs, &[])
    }

    /// Like [`start_indexed`](Self::start_indexed), with extra `tracker`
    /// arguments.
    pub fn start_indexed_with(mode: Mode, ids: &[&str], ttl_secs: u64, tracker: &[&str]) -> Net {
        let mut net = Self::start_with(mode, &[], &[]);
        net.spawn_tracker_with("127.0.0.1:0", ttl_secs, tracker);
        net.write_settings(&[]);
        for id in ids {
            std::fs::create_dir_all(net.root.path().join(id).join("served_files")).unwrap();
            if mode == Mode::Tls {
                net.init(id);
            }
            net.spawn_peer(id, &["--tracker", "tracker"]);
        }
        net.write_settings(&[]);
        net
    }

    /// Starts (or restarts) the index in folder `tracker`.
    pub fn spawn_tracker(&mut self, ttl_secs: u64) {
        self.spawn_tracker_on("127.0.0.1:0", ttl_secs);
    }

    /// Starts (or restarts) the index on `listen`.
    pub fn spawn_tracker_on(&mut self, listen: &str, ttl_secs: u64) {
        self.spawn_tracker_with(listen, ttl_secs, &[]);
    }

    /// Starts (or restarts) the index on `listen`, with extra arguments.
    pub fn spawn_tracker_with(&mut self, listen: &str, ttl_secs: u64, extra: &[&str]) {
        let dir = self.root.path().join("tracker");
        std::fs::create_dir_all(&dir).unwrap();
        if self.mode == Mode::Tls && !dir.join("p2p.ron").exists() {
            self.init("tracker");
        }
        let ttl = ttl_secs.to_string();
        let args: Vec<&str> =
            ["tracker", "--listen", listen, "--ttl", &ttl].into_iter().chain(extra.iter().copied()).collect();
        self.launch("tracker", &args);
    }

    /// Gives folder `id` an identity with `p2p init`.
    pub fn init(&mut self, id: &str) -> String {
        let dir = self.root.path().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let run = run_in(&dir, &["init", "--id", id, "--json", "--force"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let fp = doc["fingerprint"].as_str().unwrap().to_string();
        self.set_fingerprint(id, &fp);
        fp
    }

    /// The fingerprint of `id` (TLS).
    pub fn fingerprint(&self, id: &str) -> Option<&str> {
        self.fingerprints.iter().find(|(i, _)| i == id).map(|(_, fp)| fp.as_str())
    }

    /// The client folder's identity files (TLS).
    pub fn client_identity(&self) -> Option<(PathBuf, PathBuf)> {
        let dir = self.root.path().join("client");
        (self.mode == Mode::Tls).then(|| (dir.join("p2p-cert.pem"), dir.join("p2p-key.pem")))
    }

    /// Starts (or restarts) the server of peer `id`.
    pub fn spawn_peer(&mut self, id: &str, extra: &[&str]) {
        let listen: &[&str] = if extra.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let args: Vec<&str> = ["serve", id].iter().chain(listen).chain(extra).copied().collect();
        self.launch(id, &args);
    }

    /// Runs `p2p ARGS...` in folder `id` (stopping the one running there
    /// before), its log in `id.log`, and waits for the address it prints.
    fn launch(&mut self, id: &str, args: &[&str]) {
        self.launch_with(id, P2P, args);
    }

    /// Runs `program ARGS...` (which runs `p2p`, a shell setting limits
    /// first, say) as [`launch`](Self::launch) does.
    pub fn launch_with(&mut self, id: &str, program: &str, args: &[&str]) {
        if let Some(old) = self.peers.iter_mut().find(|p| p.id == id) {
            let _ = old.child.kill();
            let _ = old.child.wait();
        }
        let dir = self.root.path().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(self.root.path().join(format!("{id}.log"))).unwrap();
        let mut child =
            Command::new(program).args(args).current_dir(&dir).stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let addr = first_line_address(&mut child);
        self.peers.retain(|p| p.id != id);
        self.peers.push(Peer { id: id.to_string(), addr, child });
    }

    /// Writes `root/peer_settings.txt` with every running peer, plus
    /// `extra` lines. Over TLS each line pins the peer's fingerprint, and
    /// the client is listed (it serves nothing: any port will do) so that
    /// the peers know it.
    pub fn write_settings(&self, extra: &[&str]) {
        let mut text = String::from("# written by the e2e harness\n");
        for p in &self.peers {
            let (host, port) = p.addr.rsplit_once(':').unwrap();
            let pin = self.fingerprint(&p.id).unwrap_or_default();
            text += format!("{} {host} {port} {pin}", p.id).trim_end();
            text += "\n";
        }
        if let Some(fp) = self.fingerprint("client")
            && !self.peers.iter().any(|p| p.id == "client")
        {
            text += &format!("client 127.0.0.1 9 {fp}\n");
        }
        for l in extra {
            text += l;
            text += "\n";
        }
        std::fs::write(self.root.path().join("peer_settings.txt"), text).unwrap();
    }

    /// The settings line of each running peer: `id 127.0.0.1 port [pin]`.
    pub fn settings_line(&self, id: &str, pin: Option<&str>) -> String {
        let (host, port) = self.peer(id).addr.rsplit_once(':').unwrap();
        format!("{id} {host} {port} {}", pin.unwrap_or_default()).trim_end().to_string()
    }

    /// Replaces `root/peer_settings.txt` with `lines`.
    pub fn write_settings_lines(&self, lines: &[String]) {
        std::fs::write(self.root.path().join("peer_settings.txt"), lines.join("\n") + "\n").unwrap();
    }

    /// Records a new fingerprint for `id` (after `p2p init --force`).
    pub fn set_fingerprint(&mut self, id: &str, fp: &str) {
        self.fingerprints.retain(|(i, _)| i != id);
        self.fingerprints.push((id.to_string(), fp.to_string()));
    }

    pub fn peer(&self, id: &str) -> &Peer {
        self.peers.iter().find(|p| p.id == id).unwrap()
    }

    /// A peer's served folder.
    pub fn served(&self, id: &str) -> PathBuf {
        self.root.path().join(id).join("served_files")
    }

    pub fn put(&self, id: &str, name: &str, content: &[u8]) {
        std::fs::write(self.served(id).join(name), content).unwrap();
    }

    pub fn read(&self, id: &str, name: &str) -> Vec<u8> {
        std::fs::read(self.served(id).join(name)).unwrap()
    }

    /// Runs `p2p ARGS` in the client folder.
    pub fn p2p(&self, args: &[&str]) -> Run {
        run_in(&self.root.path().join("client"), args)
    }

    /// The peer's log so far.
    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.root.path().join(format!("{id}.log"))).unwrap_or_default()
    }

    /// Turns run-specific text (ports, temp paths, timings) into
    /// placeholders, so output can be snapshotted.
    pub fn redact(&self, text: &str) -> String {
        let mut s = text.to_string();
        let root = self.root.path().canonicalize().unwrap();
        s = s.replace(&root.display().to_string(), "[ROOT]");
        s = s.replace(&self.root.path().display().to_string(), "[ROOT]");
        for p in &self.peers {
            s = s.replace(&p.addr, &format!("[{}]", p.id.to_uppercase()));
        }
        redact_common(&self.redact_fingerprints(&s))
    }

    /// Turns fingerprints, whole or short, into `[FP:ID]` and `[fp:ID]`.
    pub fn redact_fingerprints(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (id, fp) in &self.fingerprints {
            s = s.replace(fp, &format!("[FP:{id}]"));
            s = s.replace(&fp[..12], &format!("[fp:{id}]"));
        }
        s
    }

    /// A command's JSON output with fingerprints redacted.
    pub fn json(&self, text: &str) -> serde_json::Value {
        serde_json::from_str(&self.redact_fingerprints(text)).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for p in &mut self.peers {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// Placeholders for what differs between runs and machines.
pub fn redact_common(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        l = replace_all(
            &l,
            "127.0.0.1:",
            |rest| rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()),
            "127.0.0.1:[PORT]",
        );
        // " in 0.12s (34 MiB/s)" and " in 0.12s"
        l = replace_timing(&l);
        out += &l;
        out.push('\n');
    }
    out
}

/// Replaces `marker` + a run of characters (measured by `len`) after it.
fn replace_all(s: &str, marker: &str, len: impl Fn(&str) -> usize, with: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(marker) {
        out += &rest[..i];
        let after = &rest[i + marker.len()..];
        let n = len(after);
        if n == 0 {
            out += marker;
        } else {
            out += with;
        }
        rest = &after[n..];
    }
    out + rest
}

fn replace_timing(s: &str) -> String {
    let Some(i) = s.find(" in ") else { return s.to_string() };
    let after = &s[i + 4..];
    let num_end = after.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(after.len());
    if num_end == 0 || !after[num_end..].starts_with('s') {
        // Not a timing (" in [ROOT]/…"); one may come later on the line.
        return format!("{} in {}", &s[..i], replace_timing(after));
    }
    let mut rest = &after[num_end + 1..];
    if rest.starts_with(" (")
        && let Some(close) = rest.find(")")
    {
        rest = &rest[close + 1..];
    }
    format!("{} in [TIME]{}", &s[..i], replace_timing(rest))
}

pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    wait_with_deadline(spawn_in(dir, args), COMMAND_DEADLINE)
}

/// Starts `p2p ARGS` in `dir` (output piped, for [`wait_with_deadline`]).
pub fn spawn_in(dir: &Path, args: &[&str]) -> Child {
    Command::new(P2P)
        .args(args)
        .current_dir(dir)
        .env("P2P_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn wait_with_deadline(child: Child, deadline: Duration) -> Run {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => {
            let out = out.unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("p2p did not finish within {deadline:?}");
        }
    }
}

/// Reads the "serving ... on ADDR (tcp)" line a server prints first.
pub fn first_line_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the server never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("the server printed its address");
    let addr = line.trim().rsplit(" on ").next().and_then(|s| s.split(' ').next()).unwrap_or_default().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "unexpected first line {line:?}");
    addr
}

/// Polls `cond` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Deterministic pseudo-random content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A free loopback port with nothing listening on it.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Partial files left in a served folder.
pub fn partials(served: &Path) -> usize {
    std::fs::read_dir(served.join(".p2p/partial")).map_or(0, |d| d.count())
}

pub fn b3(data: &[u8]) -> String {
    p2p_core::hash::Hash::of(data).to_string()
}

/// Joins the index at `index` as a peer serving `name` on `port`, and
/// keeps the session open (pinging) until the returned guard is dropped.
pub fn announce(index: &str, port: u16, name: &str, data: &[u8]) -> impl Drop {
    let info = p2p_core::protocol::FileInfo {
        name: p2p_core::name::FileName::new(name).unwrap(),
        size: data.len() as u64,
        hash: p2p_core::hash::Hash::of(data),
    };
    announce_files(index, None, 1, port, vec![info])
}

/// How a test client reaches an index: from loopback host `127.0.0.N`,
/// over TLS with a certificate of its own when the index's fingerprint is
/// given.
fn transport_to(index: &str, tls: Option<&str>, from: u8) -> Either {
    let host = hosts::FromHost(from);
    match tls {
        None => Either::Tcp(host),
        Some(fp) => {
            let mut trust = p2p_transport_tls::Trust::new();
            trust.pin(index, fp.parse().unwrap());
            let me = p2p_transport_tls::Identity::generate("tester").unwrap();
            Either::Tls(p2p_transport_tls::TlsTransport::new(host, Some(me), trust).unwrap())
        }
    }
}

enum Either {
    Tcp(hosts::FromHost),
    Tls(p2p_transport_tls::TlsTransport<hosts::FromHost>),
}

/// Joins the index at `index` (from `127.0.0.{from}`, over TLS with a
/// certificate of its own when `tls` gives the index's fingerprint) as a
/// peer serving `files` on `port`, and keeps the session open (pinging)
/// until the returned guard is dropped. Panics if the index refuses the
/// join.
pub fn announce_files(
    index: &str,
    tls: Option<&str>,
    from: u8,
    port: u16,
    files: Vec<p2p_core::protocol::FileInfo>,
) -> impl Drop + use<> {
    use p2p_core::client::{ClientConfig, Session};
    use p2p_core::runtime::Runtime;
    use p2p_core::transport::Transport;

    struct Stop(Option<std::sync::mpsc::Sender<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.take();
        }
    }
    async fn keep<T: Transport, R: Runtime>(
        t: T,
        rt: R,
        index: String,
        port: u16,
        files: Vec<p2p_core::protocol::FileInfo>,
        joined: std::sync::mpsc::Sender<()>,
        stop: std::sync::mpsc::Receiver<()>,
    ) {
        // Listed after the peers it lies about (ids sort by name).
        let config = ClientConfig { peer_id: "zz-liar".into(), ..ClientConfig::default() };
        let mut s = Session::connect(&t, &rt, &index, &config).await.unwrap();
        s.join(port).await.unwrap();
        for page in files.chunks(p2p_core::protocol::LIST_PAGE) {
            // Past a bound the index lists what fits: go on.
            let _ = s.publish(page.to_vec(), vec![], false).await;
        }
        let _ = joined.send(());
        while stop.recv_timeout(Duration::from_millis(200)) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            if s.ping().await.is_err() {
                return;
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (joined_tx, joined) = std::sync::mpsc::channel::<()>();
    let via = transport_to(index, tls, from);
    let index = index.to_string();
    std::thread::spawn(move || {
        let rt = p2p_host::SmolRuntime::new(1);
        rt.block_on(async {
            match via {
                Either::Tcp(t) => keep(t, rt.clone(), index, port, files, joined_tx, rx).await,
                Either::Tls(t) => keep(t, rt.clone(), index, port, files, joined_tx, rx).await,
            }
        });
    });
    joined.recv_timeout(Duration::from_secs(30)).expect("joined the index");
    Stop(Some(tx))
}

/// Reports to the index at `index` (from `127.0.0.{from}`, over TLS with
/// a certificate of its own when `tls` gives the index's fingerprint) that
/// the peer at `addr` sent block `bad.block` of `hash` bad. The index's
/// answer: `Ok` if it took the report, else its refusal.
pub fn report(
    index: &str,
    tls: Option<&str>,
    from: u8,
    hash: p2p_core::hash::Hash,
    addr: &str,
    bad: p2p_core::protocol::BadBlock,
) -> Result<(), String> {
    use p2p_core::client::{ClientConfig, Session};
    use p2p_core::transport::Transport;

    async fn once<T: Transport>(
        t: T,
        index: &str,
        hash: p2p_core::hash::Hash,
        addr: &str,
        bad: p2p_core::protocol::BadBlock,
    ) -> Result<(), String> {
        let rt = p2p_host::SmolRuntime::new(1);
        let mut s = Session::connect(&t, &rt, index, &ClientConfig::default()).await.map_err(|e| e.to_string())?;
        let r = s.report(hash, addr, bad).await.map_err(|e| e.to_string());
        s.close().await;
        r
    }
    let via = transport_to(index, tls, from);
    p2p_host::SmolRuntime::new(1).block_on(async {
        match via {
            Either::Tcp(t) => once(t, index, hash, addr, bad).await,
            Either::Tls(t) => once(t, index, hash, addr, bad).await,
        }
    })
}

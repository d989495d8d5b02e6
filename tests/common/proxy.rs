//! A TCP proxy on loopback in front of a peer: it counts the bytes the
//! peer sends through it (what a download really cost, whatever the
//! client says) and can hold them to a pace, so that a test can act at a
//! known point of a transfer. It works the same under TLS, which it
//! passes through untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Proxy {
    pub addr: String,
    shared: Arc<Shared>,
}

struct Shared {
    /// Bytes from the peer to clients, all connections together.
    served: AtomicU64,
    /// Bytes per second from the peer to each client; 0 for no limit.
    pace: AtomicU64,
    stop: AtomicBool,
}

impl Proxy {
    /// Forwards connections on an ephemeral loopback port to `target`.
    pub fn start(target: &str, pace: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared =
            Arc::new(Shared { served: AtomicU64::new(0), pace: AtomicU64::new(pace), stop: AtomicBool::new(false) });
        let (target, s) = (target.to_string(), shared.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(peer) = TcpStream::connect(&target) else { continue };
                let (c2, p2, s2) = (client.try_clone().unwrap(), peer.try_clone().unwrap(), s.clone());
                std::thread::spawn(move || pipe(c2, p2, None));
                std::thread::spawn(move || pipe(peer, client, Some(&s2)));
            }
        });
        Proxy { addr, shared }
    }

    /// Bytes the peer has sent through the proxy so far.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Lifts (0) or changes the pace for what is sent from now on.
    pub fn set_pace(&self, bytes_per_sec: u64) {
        self.shared.pace.store(bytes_per_sec, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies `from` to `to` until either end closes; counted and paced when
/// `count` is given.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: Option<&Shared>) {
    let mut buf = vec![0u8; 16 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(shared) = count {
            shared.served.fetch_add(n as u64, Ordering::Relaxed);
            sent += n as u64;
            let pace = shared.pace.load(Ordering::Relaxed);
            if pace > 0 {
                // Rate limiting, not synchronisation: stay behind the pace.
                let due = Duration::from_secs_f64(sent as f64 / pace as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

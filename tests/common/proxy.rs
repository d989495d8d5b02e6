//! A TCP proxy on loopback in front of a peer: it counts the bytes the
//! peer sends through it (what a download really cost, whatever the
//! client says) and can hold them to a pace, so that a test can act at a
//! known point of a transfer. It can also hold what clients send once a
//! number of bytes went through (an upload stays in progress until the
//! test releases it). It works the same under TLS, which it passes through
//! untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    /// Bytes clients may still send to the peer, all connections together.
    budget: Mutex<u64>,
    budget_raised: Condvar,
}

impl Proxy {
    /// Forwards connections on an ephemeral loopback port to `target`.
    pub fn start(target: &str, pace: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            served: AtomicU64::new(0),
            pace: AtomicU64::new(pace),
            stop: AtomicBool::new(false),
            budget: Mutex::new(u64::MAX),
            budget_raised: Condvar::new(),
        });
        let (target, s) = (target.to_string(), shared.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(peer) = TcpStream::connect(&target) else { continue };
                let (c2, p2, s2) = (client.try_clone().unwrap(), peer.try_clone().unwrap(), s.clone());
                let s3 = s.clone();
                std::thread::spawn(move || send(c2, p2, &s3));
                std::thread::spawn(move || pipe(peer, client, Some(&s2)));
            }
        });
        Proxy { addr, shared }
    }

    /// Bytes the peer has sent through the proxy so far.
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Lets only `bytes` more from clients through, then holds the rest
    /// until [`release`](Self::release).
    pub fn hold_after(&self, bytes: u64) {
        *self.shared.budget.lock().unwrap() = bytes;
    }

    /// Lets everything clients send through again.
    pub fn release(&self) {
        *self.shared.budget.lock().unwrap() = u64::MAX;
        self.shared.budget_raised.notify_all();
    }

    /// Lifts (0) or changes the pace for what is sent from now on.
    pub fn set_pace(&self, bytes_per_sec: u64) {
        self.shared.pace.store(bytes_per_sec, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.release();
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

/// Copies what a client sends to the peer, within the budget.
fn send(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    'copy: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let allowed = {
                let mut budget = shared.budget.lock().unwrap();
                while *budget == 0 && !shared.stop.load(Ordering::Relaxed) {
                    budget = shared.budget_raised.wait(budget).unwrap();
                }
                let k = (*budget).min(rest.len() as u64) as usize;
                *budget -= k as u64;
                k
            };
            if allowed == 0 || to.write_all(&rest[..allowed]).is_err() {
                break 'copy;
            }
            rest = &rest[allowed..];
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

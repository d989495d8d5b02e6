//! What the downloads of one [`Downloader`](super::Downloader) share: open
//! sessions to their peers, and a cap on bytes in flight.
//!
//! Fetching many small files one connection each would spend most of its
//! time in handshakes (a TLS handshake costs more than a 1 KiB file), so a
//! source gives its session back when its download is done with it and the
//! next download to that peer takes it. Only a session with nothing left
//! on the wire goes back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::client::Session;
use crate::runtime::Time;

/// Idle sessions kept per peer address.
const MAX_IDLE: usize = 16;
/// A session idle longer than this is not used again: a peer closes idle
/// connections (after two minutes, by default), and one it closed meanwhile
/// would only fail the next file.
const MAX_AGE: Duration = Duration::from_secs(60);

/// Idle sessions, by peer address, with when each became idle.
pub(super) struct Pool<S, R> {
    idle: Mutex<Idle<S, R>>,
}

type Idle<S, R> = HashMap<String, Vec<(Time, Session<S, R>)>>;

impl<S, R> Pool<S, R> {
    pub(super) fn new() -> Self {
        Self { idle: Mutex::default() }
    }

    /// An idle session with `addr` that was used at most [`MAX_AGE`]
    /// before `now`, most recently used first.
    pub(super) fn take(&self, addr: &str, now: Time) -> Option<Session<S, R>> {
        let mut idle = self.lock();
        let list = idle.get_mut(addr)?;
        // Sessions idle too long are dropped: the peer sees them end.
        list.retain(|(since, _)| now.saturating_since(*since) <= MAX_AGE);
        list.pop().map(|(_, s)| s)
    }

    /// Keeps `session` for the next download from `addr`; gives it back
    /// if enough are kept already.
    pub(super) fn put(&self, addr: &str, session: Session<S, R>, now: Time) -> Option<Session<S, R>> {
        let mut idle = self.lock();
        let list = idle.entry(addr.to_owned()).or_default();
        if list.len() >= MAX_IDLE {
            return Some(session);
        }
        list.push((now, session));
        None
    }

    /// Every idle session, to be closed.
    pub(super) fn drain(&self) -> Vec<Session<S, R>> {
        self.lock().drain().flat_map(|(_, list)| list).map(|(_, s)| s).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle<S, R>> {
        // Only moved in and out whole: a panic cannot leave it half-updated.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes in flight for all downloads together, capped.
#[derive(Debug)]
pub(super) struct Budget {
    cap: u64,
    used: AtomicU64,
}

impl Budget {
    pub(super) fn new(cap: u64) -> Self {
        Self { cap, used: AtomicU64::new(0) }
    }

    /// One download's part of the budget, given back when it is dropped.
    pub(super) fn share(&self) -> Share<'_> {
        Share { budget: self, mine: 0 }
    }
}

/// What one download holds of a [`Budget`].
#[derive(Debug)]
pub(super) struct Share<'a> {
    budget: &'a Budget,
    mine: u64,
}

impl Share<'_> {
    /// The most this download may have in flight now: what the others
    /// leave, but at least one byte, so that every download can always
    /// have a request out and none starves.
    pub(super) fn cap(&self) -> u64 {
        let others = self.budget.used.load(Ordering::Relaxed).saturating_sub(self.mine);
        self.budget.cap.saturating_sub(others).max(1)
    }

    /// This download now has `in_flight` bytes in flight.
    pub(super) fn set(&mut self, in_flight: u64) {
        if in_flight >= self.mine {
            self.budget.used.fetch_add(in_flight - self.mine, Ordering::Relaxed);
        } else {
            self.budget.used.fetch_sub(self.mine - in_flight, Ordering::Relaxed);
        }
        self.mine = in_flight;
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_leave_room_for_each_other_and_give_it_back() {
        let budget = Budget::new(100);
        let mut a = budget.share();
        let mut b = budget.share();
        a.set(70);
        assert_eq!(b.cap(), 30);
        assert_eq!(a.cap(), 100);
        b.set(30);
        // Full: still one request each, never zero.
        assert_eq!(a.cap(), 70);
        a.set(90);
        assert_eq!(b.cap(), 10);
        b.set(120);
        assert_eq!(a.cap(), 1);
        drop(b);
        assert_eq!(a.cap(), 100);
        a.set(10);
        drop(a);
        assert_eq!(budget.share().cap(), 100);
    }
}

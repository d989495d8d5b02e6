//! A first-come, first-served budget of permits: the memory a server
//! gives to file data being sent. One host may hold at most a share of it,
//! so that many connections from one machine cannot take all of it.
//!
//! A plain semaphore lets whoever asks at the right moment take a permit
//! that was just given back, ahead of those already waiting: connections
//! that keep the server busy then keep it, and others starve until they
//! are done (with 200 downloaders of one file, a quarter finished a
//! second after the rest). Here a permit given back goes to the longest
//! waiter, and nobody takes a free one while others wait, so every
//! connection gets its turn.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Permits handed out in the order they were asked for.
#[derive(Debug)]
pub(super) struct Fair {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Most permits one host may hold.
    per_host: usize,
    /// Permits each host holds.
    held: HashMap<Arc<str>, usize>,
    /// Waiters, longest first.
    queue: VecDeque<u64>,
    waiters: HashMap<u64, Waiter>,
    next: u64,
}

#[derive(Debug)]
struct Waiter {
    waker: Waker,
    host: Arc<str>,
    /// A permit was handed to it and is its own now.
    granted: bool,
}

impl State {
    fn room_for(&self, host: &str) -> bool {
        self.held.get(host).copied().unwrap_or(0) < self.per_host
    }

    /// Whether a waiter that may take a permit now is queued.
    fn eligible_waiting(&self) -> bool {
        self.queue.iter().any(|id| self.waiters.get(id).is_some_and(|w| !w.granted && self.room_for(&w.host)))
    }

    fn take(&mut self, host: &Arc<str>) {
        *self.held.entry(host.clone()).or_default() += 1;
    }
}

/// One permit, given back when dropped.
#[derive(Debug)]
pub(super) struct Permit(Arc<Fair>, Arc<str>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.give_back(&self.1);
    }
}

impl Fair {
    /// `permits` in all; one host may hold at most `per_host` of them.
    pub(super) fn new(permits: usize, per_host: usize) -> Arc<Self> {
        let state = State { free: permits, per_host: per_host.max(1), ..State::default() };
        Arc::new(Self { state: Mutex::new(state) })
    }

    /// A permit for `host` now, if one is free, the host has room, and
    /// nobody who could take it is waiting.
    pub(super) fn try_acquire(self: &Arc<Self>, host: &Arc<str>) -> Option<Permit> {
        let mut s = self.lock();
        if s.free > 0 && s.room_for(host) && !s.eligible_waiting() {
            s.free -= 1;
            s.take(host);
            return Some(Permit(self.clone(), host.clone()));
        }
        None
    }

    /// A permit for `host`, after everyone who asked earlier and may take
    /// one got one.
    pub(super) fn acquire(self: &Arc<Self>, host: &Arc<str>) -> Acquire {
        Acquire { fair: self.clone(), host: host.clone(), id: None }
    }

    fn give_back(&self, host: &str) {
        let mut s = self.lock();
        if let Some(n) = s.held.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                s.held.remove(host);
            }
        }
        // To the longest waiter whose host has room.
        let next = s.queue.iter().position(|id| s.waiters.get(id).is_some_and(|w| !w.granted && s.room_for(&w.host)));
        if let Some(i) = next
            && let Some(id) = s.queue.remove(i)
            && let Some(w) = s.waiters.get(&id)
        {
            let h = w.host.clone();
            s.take(&h);
            if let Some(w) = s.waiters.get_mut(&id) {
                w.granted = true;
                w.waker.wake_by_ref();
            }
            return;
        }
        s.free += 1;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counts and a queue only, each change whole: a panic elsewhere
        // leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits for a permit of a [`Fair`] budget.
#[derive(Debug)]
pub(super) struct Acquire {
    fair: Arc<Fair>,
    host: Arc<str>,
    /// Its place in the queue, once it waits.
    id: Option<u64>,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let fair = self.fair.clone();
        let mut s = fair.lock();
        match self.id {
            None => {
                let host = self.host.clone();
                if s.free > 0 && s.room_for(&host) && !s.eligible_waiting() {
                    s.free -= 1;
                    s.take(&host);
                    return Poll::Ready(Permit(fair.clone(), host));
                }
                let id = s.next;
                s.next += 1;
                s.queue.push_back(id);
                s.waiters.insert(id, Waiter { waker: cx.waker().clone(), host, granted: false });
                self.id = Some(id);
                Poll::Pending
            }
            Some(id) => match s.waiters.get_mut(&id) {
                Some(w) if w.granted => {
                    s.waiters.remove(&id);
                    self.id = None;
                    Poll::Ready(Permit(fair.clone(), self.host.clone()))
                }
                Some(w) => {
                    w.waker.clone_from(cx.waker());
                    Poll::Pending
                }
                // Not possible (an entry goes only with its permit), but
                // if it were, asking again is the way out.
                None => {
                    self.id = None;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            },
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let mut s = self.fair.lock();
        match s.waiters.remove(&id) {
            // Handed a permit it will never use: the next waiter gets it.
            Some(w) if w.granted => {
                drop(s);
                self.fair.give_back(&w.host);
            }
            Some(_) => s.queue.retain(|&i| i != id),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn permits_go_to_the_longest_waiter_and_nobody_barges() {
        let fair = Fair::new(1, 1);
        let h: Arc<str> = Arc::from("h");
        let held = fair.try_acquire(&h).expect("one is free");
        let mut first = Box::pin(fair.acquire(&h));
        let mut second = Box::pin(fair.acquire(&h));
        assert!(block_on(poll_once(&mut first)).is_none());
        assert!(block_on(poll_once(&mut second)).is_none());
        drop(held);
        // Given back while two wait: a late try does not take it.
        assert!(fair.try_acquire(&h).is_none());
        assert!(block_on(poll_once(&mut second)).is_none(), "second waits behind first");
        let p1 = block_on(poll_once(&mut first)).expect("first gets it");
        // A waiter that gives up passes on what it was handed.
        drop(p1);
        drop(second);
        assert!(fair.try_acquire(&h).is_some(), "the permit came back to the pool");
        let mut third = Box::pin(fair.acquire(&h));
        let p = block_on(poll_once(&mut third)).expect("free again");
        drop(p);
        assert_eq!(fair.lock().free, 1);
        assert!(fair.lock().waiters.is_empty() && fair.lock().queue.is_empty());
        assert!(fair.lock().held.is_empty());
    }

    #[test]
    fn one_host_holds_at_most_its_share_and_others_go_ahead_of_it() {
        let fair = Fair::new(4, 2);
        let (busy, other): (Arc<str>, Arc<str>) = (Arc::from("busy"), Arc::from("other"));
        let a = fair.try_acquire(&busy).expect("room");
        let b = fair.try_acquire(&busy).expect("room");
        assert!(fair.try_acquire(&busy).is_none(), "its share is taken, though two are free");
        let mut waiting = Box::pin(fair.acquire(&busy));
        assert!(block_on(poll_once(&mut waiting)).is_none());
        // Another host is not held up by the waiter that may not take one.
        let c = fair.try_acquire(&other).expect("another host goes ahead");
        drop(a);
        let d = block_on(poll_once(&mut waiting)).expect("its own came back: its turn");
        drop((b, c, d));
        assert_eq!(fair.lock().free, 4);
        assert!(fair.lock().held.is_empty());
    }
}

//! A first-come, first-served budget of permits: the memory a server
//! gives to file data being sent.
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
    /// Waiters, longest first.
    queue: VecDeque<u64>,
    waiters: HashMap<u64, Waiter>,
    next: u64,
}

#[derive(Debug)]
struct Waiter {
    waker: Waker,
    /// A permit was handed to it and is its own now.
    granted: bool,
}

/// One permit, given back when dropped.
#[derive(Debug)]
pub(super) struct Permit(Arc<Fair>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

impl Fair {
    pub(super) fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { free: permits, ..State::default() }) })
    }

    /// A permit now, if one is free and nobody is waiting for one.
    pub(super) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut s = self.lock();
        if s.queue.is_empty() && s.free > 0 {
            s.free -= 1;
            return Some(Permit(self.clone()));
        }
        None
    }

    /// A permit, after everyone who asked earlier got one.
    pub(super) fn acquire(self: &Arc<Self>) -> Acquire {
        Acquire { fair: self.clone(), id: None }
    }

    fn give_back(&self) {
        let mut s = self.lock();
        while let Some(id) = s.queue.pop_front() {
            if let Some(w) = s.waiters.get_mut(&id) {
                w.granted = true;
                w.waker.wake_by_ref();
                return;
            }
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
                if s.queue.is_empty() && s.free > 0 {
                    s.free -= 1;
                    return Poll::Ready(Permit(fair.clone()));
                }
                let id = s.next;
                s.next += 1;
                s.queue.push_back(id);
                s.waiters.insert(id, Waiter { waker: cx.waker().clone(), granted: false });
                self.id = Some(id);
                Poll::Pending
            }
            Some(id) => match s.waiters.get_mut(&id) {
                Some(w) if w.granted => {
                    s.waiters.remove(&id);
                    self.id = None;
                    Poll::Ready(Permit(fair.clone()))
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
                self.fair.give_back();
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
        let fair = Fair::new(1);
        let held = fair.try_acquire().expect("one is free");
        let mut first = Box::pin(fair.acquire());
        let mut second = Box::pin(fair.acquire());
        assert!(block_on(poll_once(&mut first)).is_none());
        assert!(block_on(poll_once(&mut second)).is_none());
        drop(held);
        // Given back while two wait: a late try does not take it.
        assert!(fair.try_acquire().is_none());
        assert!(block_on(poll_once(&mut second)).is_none(), "second waits behind first");
        let p1 = block_on(poll_once(&mut first)).expect("first gets it");
        // A waiter that gives up passes on what it was handed.
        drop(p1);
        drop(second);
        assert!(fair.try_acquire().is_some(), "the permit came back to the pool");
        let mut third = Box::pin(fair.acquire());
        let p = block_on(poll_once(&mut third)).expect("free again");
        drop(p);
        assert_eq!(fair.lock().free, 1);
        assert!(fair.lock().waiters.is_empty() && fair.lock().queue.is_empty());
    }
}

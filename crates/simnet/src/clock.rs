//! Virtual time and the per-peer runtime handle.
//!
//! One thread runs everything. The clock stands still while any task can
//! run; when none can, the simulation moves it to the earliest timer and
//! wakes what waits there. Timers are ordered by (deadline, sequence
//! number), so wake-ups happen in the same order on every run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_task::Runnable;
use p2p_core::runtime::{Runtime, Task, Time};

/// The virtual clock and its timers, shared by every peer of one run, and
/// the hosts that have a task ready to run, in the order they became so.
#[derive(Debug, Default)]
pub struct Clock {
    state: Mutex<ClockState>,
    ready: Mutex<Ready>,
    /// Tasks woken after their host went down, to be dropped (cancelled)
    /// by [`Clock::bury`] rather than inside the wake: a waker may be
    /// called with a lock held (an event's list of listeners) that the
    /// task's own drop takes again.
    dead: Mutex<VecDeque<Runnable>>,
}

/// Hosts with a task ready to run: the simulation runs only those, rather
/// than asking every host whether it has work (which made a run of 5,000
/// peers quadratic).
#[derive(Debug, Default)]
struct Ready {
    order: VecDeque<usize>,
    queued: Vec<bool>,
}

#[derive(Debug, Default)]
struct ClockState {
    now: Time,
    next_seq: u64,
    /// Every timer set, earliest first, cancelled ones too: a cancel only
    /// forgets the waker (most timers are cancelled, and a heap cannot
    /// remove from the middle).
    order: BinaryHeap<Reverse<(Time, u64)>>,
    /// The timers not cancelled, by sequence number.
    live: HashMap<u64, Waker, foldhash::fast::FixedState>,
}

impl ClockState {
    /// Drops cancelled timers from the front of the heap, and rebuilds it
    /// when most of it is cancelled ones.
    fn tidy(&mut self) {
        while let Some(Reverse((_, seq))) = self.order.peek()
            && !self.live.contains_key(seq)
        {
            self.order.pop();
        }
        if self.order.len() > 1024 && self.order.len() > 4 * self.live.len() {
            let live = &self.live;
            self.order.retain(|Reverse((_, seq))| live.contains_key(seq));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain values: a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Clock {
    /// The current virtual time.
    pub fn now(&self) -> Time {
        lock(&self.state).now
    }

    /// Wakes `waker` at `at` (at once if that has passed); returns the
    /// timer's key, for [`Clock::cancel`].
    pub fn wake_at(&self, at: Time, waker: Waker) -> (Time, u64) {
        let mut s = lock(&self.state);
        let key = (at, s.next_seq);
        s.next_seq += 1;
        s.order.push(Reverse(key));
        s.live.insert(key.1, waker);
        key
    }

    /// Has `timer` wake `waker` at `at` (at `None`, no timer). A timer
    /// still pending for the same instant stays, with the latest waker: a
    /// future raced against others is polled again at each of their
    /// wakes, and a new timer each time filled the heap with cancelled
    /// ones (a tenth of a crowd's run went to it).
    pub fn arm(&self, timer: &mut Option<(Time, u64)>, at: Option<Time>, waker: &Waker) {
        if let (Some(k), Some(at)) = (*timer, at)
            && k.0 == at
            && self.rewake(k, waker)
        {
            return;
        }
        if let Some(k) = timer.take() {
            self.cancel(k);
        }
        *timer = at.map(|at| self.wake_at(at, waker.clone()));
    }

    /// Has timer `key`, still pending, wake `waker` instead; false if it is
    /// not pending (it fired, or was cancelled).
    fn rewake(&self, key: (Time, u64), waker: &Waker) -> bool {
        let mut s = lock(&self.state);
        match s.live.get_mut(&key.1) {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Forgets a timer.
    pub fn cancel(&self, key: (Time, u64)) {
        let mut s = lock(&self.state);
        if s.live.remove(&key.1).is_some() {
            s.tidy();
        }
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Time> {
        let mut s = lock(&self.state);
        s.tidy();
        s.order.peek().map(|Reverse((at, _))| *at)
    }

    /// Moves the clock to `to` (never backwards) and wakes every timer due
    /// by then, earliest first. Returns how many were woken.
    pub fn advance_to(&self, to: Time) -> usize {
        let due: Vec<Waker> = {
            let mut s = lock(&self.state);
            s.now = s.now.max(to);
            let now = s.now;
            let mut due = Vec::new();
            while let Some(&Reverse((at, seq))) = s.order.peek()
                && at <= now
            {
                s.order.pop();
                if let Some(w) = s.live.remove(&seq) {
                    due.push(w);
                }
            }
            s.tidy();
            due
        };
        let n = due.len();
        for w in due {
            w.wake();
        }
        self.bury();
        n
    }

    /// A future that completes at `at`.
    pub fn sleep_until(self: &Arc<Self>, at: Time) -> Sleep {
        Sleep { clock: self.clone(), at, key: None }
    }

    /// Host `host` has a task ready to run.
    pub fn mark_ready(&self, host: usize) {
        let mut r = lock(&self.ready);
        if r.queued.len() <= host {
            r.queued.resize(host + 1, false);
        }
        if !r.queued[host] {
            r.queued[host] = true;
            r.order.push_back(host);
        }
    }

    /// Drops every task woken after its host went down, and those their
    /// drops wake in turn.
    pub fn bury(&self) {
        loop {
            let Some(r) = lock(&self.dead).pop_front() else { return };
            drop(r);
        }
    }

    /// The host that became ready first, taken off the list.
    pub fn next_ready(&self) -> Option<usize> {
        let mut r = lock(&self.ready);
        let host = r.order.pop_front()?;
        r.queued[host] = false;
        Some(host)
    }
}

/// Completes at a virtual time.
#[derive(Debug)]
pub struct Sleep {
    clock: Arc<Clock>,
    at: Time,
    key: Option<(Time, u64)>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now() >= self.at {
            if let Some(k) = self.key.take() {
                self.clock.cancel(k);
            }
            return Poll::Ready(());
        }
        let this = &mut *self;
        this.clock.arm(&mut this.key, Some(this.at), cx.waker());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.clock.cancel(k);
        }
    }
}

/// A peer's machine: its executor, which a crash drops (cancelling all
/// its tasks at once).
#[derive(Debug)]
pub struct Host {
    index: usize,
    clock: Arc<Clock>,
    exec: Mutex<Option<Arc<Exec>>>,
}

impl Host {
    /// Host number `index` of the run, with a fresh executor.
    pub fn up(clock: &Arc<Clock>, index: usize) -> Arc<Host> {
        let exec = Exec::new(clock, index);
        Arc::new(Host { index, clock: clock.clone(), exec: Mutex::new(Some(exec)) })
    }

    /// Runs one ready task; false if none was ready (or the host is down).
    pub fn tick(&self) -> bool {
        let exec = lock(&self.exec).clone();
        let ran = exec.is_some_and(|e| e.tick());
        self.clock.bury();
        ran
    }

    /// Whether a task is ready to run.
    pub fn has_work(&self) -> bool {
        lock(&self.exec).as_ref().is_some_and(|e| !lock(&e.queue).is_empty())
    }

    /// Drops the executor and every task on it.
    pub fn crash(&self) {
        let exec = lock(&self.exec).take();
        drop(exec);
        self.clock.bury();
    }

    /// A new, empty executor after a crash.
    pub fn restart(&self) {
        *lock(&self.exec) = Some(Exec::new(&self.clock, self.index));
    }

    /// Whether the host is running.
    pub fn is_up(&self) -> bool {
        lock(&self.exec).is_some()
    }
}

/// A single-threaded executor on a ready list: a woken task goes to its
/// host's queue, and the host to the clock's list of ready hosts.
#[derive(Debug)]
struct Exec {
    index: usize,
    clock: Arc<Clock>,
    queue: Mutex<VecDeque<Runnable>>,
    /// Every live task's waker, so that dropping the executor can cancel
    /// them all.
    active: Mutex<Active>,
}

#[derive(Debug, Default)]
struct Active {
    next: u64,
    wakers: BTreeMap<u64, Waker>,
}

impl Exec {
    fn new(clock: &Arc<Clock>, index: usize) -> Arc<Self> {
        Arc::new(Exec { index, clock: clock.clone(), queue: Mutex::default(), active: Mutex::default() })
    }

    fn spawn<T, F>(self: &Arc<Self>, fut: F) -> Task<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let id = {
            let mut a = lock(&self.active);
            a.next += 1;
            a.next
        };
        // Made before the task first runs: a task cancelled before then
        // is taken off the list too.
        let forget = Forget(Arc::downgrade(self), id);
        let sched_exec = Arc::downgrade(self);
        let clock = self.clock.clone();
        let wrapped = Forgetting { fut, _forget: forget };
        // A task woken after its host crashed is dropped, which cancels
        // it: soon after, not inside the wake (see `Clock::dead`).
        let schedule = move |r: Runnable| match sched_exec.upgrade() {
            Some(e) => {
                lock(&e.queue).push_back(r);
                e.clock.mark_ready(e.index);
            }
            None => lock(&clock.dead).push_back(r),
        };
        let (runnable, task) = async_task::spawn(wrapped, schedule);
        lock(&self.active).wakers.insert(id, runnable.waker());
        runnable.schedule();
        task
    }

    fn tick(&self) -> bool {
        let next = lock(&self.queue).pop_front();
        match next {
            Some(r) => {
                r.run();
                true
            }
            None => false,
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        // Woken, every task is scheduled on an executor that is gone, and
        // dropped: cancelled, in the order they were spawned.
        let wakers: Vec<Waker> = std::mem::take(&mut lock(&self.active).wakers).into_values().collect();
        for w in wakers {
            w.wake();
        }
        let queued: Vec<Runnable> = lock(&self.queue).drain(..).collect();
        drop(queued);
        self.clock.bury();
    }
}

/// Takes a finished or cancelled task off its executor's list.
struct Forget(Weak<Exec>, u64);

pin_project_lite::pin_project! {
    /// A task's future with its [`Forget`]. Not an `async` block: one that
    /// awaits a future it captured holds it twice (before its first poll
    /// and while awaiting), which doubled every simulated task's memory.
    struct Forgetting<F> {
        #[pin]
        fut: F,
        _forget: Forget,
    }
}

impl<F: Future> Future for Forgetting<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(e) = self.0.upgrade() {
            lock(&e.active).wakers.remove(&self.1);
        }
    }
}

/// The [`Runtime`] a simulated peer's engine gets: virtual time, its host's
/// executor, and its own random stream.
#[derive(Debug, Clone)]
pub struct SimRuntime {
    clock: Arc<Clock>,
    host: Weak<Host>,
    rng: Arc<Mutex<fastrand::Rng>>,
}

impl SimRuntime {
    /// A runtime for the peer on `host`, drawing from `seed`.
    pub fn new(clock: Arc<Clock>, host: &Arc<Host>, seed: u64) -> Self {
        SimRuntime { clock, host: Arc::downgrade(host), rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))) }
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }
}

impl Runtime for SimRuntime {
    fn now(&self) -> Time {
        self.clock.now()
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.clock.sleep_until(self.clock.now() + d)
    }

    fn spawn<T, F>(&self, fut: F) -> Task<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let exec = self.host.upgrade().and_then(|h| lock(&h.exec).clone());
        match exec {
            Some(e) => e.spawn(fut),
            // The host crashed: the task never runs (and whoever spawned it
            // is being dropped too).
            None => {
                let (runnable, task) = async_task::spawn(fut, |_| {});
                drop(runnable);
                task
            }
        }
    }

    fn spawn_blocking<T, F>(&self, f: F) -> Task<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // Blocking work takes no virtual time; slow disks are modelled by
        // the store.
        self.spawn(async move { f() })
    }

    fn random_u64(&self) -> u64 {
        lock(&self.rng).u64(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_jumps_to_the_next_timer_and_wakes_in_order() {
        let clock = Arc::new(Clock::default());
        let host = Host::up(&clock, 0);
        let rt = SimRuntime::new(clock.clone(), &host, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        for (i, ms) in [(0, 30u64), (1, 10), (2, 30), (3, 20)] {
            let (rt2, order) = (rt.clone(), order.clone());
            rt.spawn(async move {
                rt2.sleep(Duration::from_millis(ms)).await;
                lock(&order).push((i, rt2.now().since_epoch().as_millis()));
            })
            .detach();
        }
        loop {
            while host.tick() {}
            match clock.next_deadline() {
                Some(t) => {
                    clock.advance_to(t);
                }
                None => break,
            }
        }
        assert_eq!(*lock(&order), [(1, 10), (3, 20), (0, 30), (2, 30)]);
    }

    #[test]
    fn a_sleep_polled_again_keeps_its_timer_and_wakes_the_latest_waker() {
        use std::task::Wake;
        struct Count(Mutex<u32>);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                *lock(&self.0) += 1;
            }
        }
        let clock = Arc::new(Clock::default());
        let mut sleep = Box::pin(clock.sleep_until(Time::ZERO + Duration::from_millis(10)));
        let (first, second) = (Arc::new(Count(Mutex::new(0))), Arc::new(Count(Mutex::new(0))));
        for waker in [Waker::from(first.clone()), Waker::from(second.clone()), Waker::from(second.clone())] {
            assert!(sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        }
        assert_eq!(lock(&clock.state).order.len(), 1, "one timer, however often it is polled");
        assert_eq!(clock.advance_to(Time::ZERO + Duration::from_millis(10)), 1);
        assert_eq!((*lock(&first.0), *lock(&second.0)), (0, 1), "the latest waker is woken");
        let waker = Waker::from(second.clone());
        assert!(sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_ready());
    }

    /// Wakes what waits on it with its lock held, as an event's list of
    /// listeners does.
    #[derive(Default)]
    struct Notifier {
        waiting: Mutex<Vec<Waker>>,
        /// Set when a waiter was dropped while the lock was held.
        dropped_inside: Mutex<bool>,
    }

    struct Wait(Arc<Notifier>);

    impl Future for Wait {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            lock(&self.0.waiting).push(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Drop for Wait {
        fn drop(&mut self) {
            if self.0.waiting.try_lock().is_err() {
                *lock(&self.0.dropped_inside) = true;
            }
        }
    }

    struct NotifyOnDrop(Arc<Notifier>);

    impl Drop for NotifyOnDrop {
        fn drop(&mut self) {
            let waiting = lock(&self.0.waiting);
            for w in waiting.iter() {
                w.wake_by_ref();
            }
        }
    }

    #[test]
    fn a_cancelled_timer_neither_wakes_nor_sets_the_next_deadline() {
        struct Count(Arc<Mutex<u32>>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                *lock(&self.0) += 1;
            }
        }
        let clock = Clock::default();
        let woken = Arc::new(Mutex::new(0));
        let waker = || Waker::from(Arc::new(Count(woken.clone())));
        let at = |ms: u64| Time::ZERO + Duration::from_millis(ms);
        // Many more cancelled than kept, so the heap is also rebuilt.
        let keys: Vec<_> = (0..5000).map(|i| clock.wake_at(at(1 + i % 100), waker())).collect();
        let kept = clock.wake_at(at(50), waker());
        for k in keys {
            clock.cancel(k);
        }
        assert_eq!(clock.next_deadline(), Some(at(50)));
        assert_eq!(clock.advance_to(at(49)), 0);
        assert_eq!(clock.advance_to(at(100)), 1);
        assert_eq!(*lock(&woken), 1);
        assert_eq!(clock.next_deadline(), None);
        // Cancelling one that already fired changes nothing.
        clock.cancel(kept);
        assert_eq!(clock.next_deadline(), None);
    }

    #[test]
    fn a_task_cancelled_by_a_wake_is_dropped_after_it() {
        let clock = Arc::new(Clock::default());
        let host = Host::up(&clock, 0);
        let rt = SimRuntime::new(clock.clone(), &host, 1);
        let n = Arc::new(Notifier::default());
        // Dropped first by the crash, it wakes the second with the lock held.
        let guard = NotifyOnDrop(n.clone());
        rt.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        })
        .detach();
        rt.spawn(Wait(n.clone())).detach();
        while host.tick() {}
        assert_eq!(lock(&n.waiting).len(), 1);
        host.crash();
        assert!(!*lock(&n.dropped_inside));
    }

    #[test]
    fn a_crash_cancels_every_task() {
        let clock = Arc::new(Clock::default());
        let host = Host::up(&clock, 0);
        let rt = SimRuntime::new(clock.clone(), &host, 1);
        let done = Arc::new(Mutex::new(false));
        let d = done.clone();
        let rt2 = rt.clone();
        rt.spawn(async move {
            rt2.sleep(Duration::from_secs(1)).await;
            *lock(&d) = true;
        })
        .detach();
        while host.tick() {}
        host.crash();
        clock.advance_to(Time::from_epoch(Duration::from_secs(2)));
        while host.tick() {}
        assert!(!*lock(&done));
        assert!(!host.is_up());
    }
}

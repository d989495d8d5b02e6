//! The `Runtime` handle: time, tasks and randomness, supplied from outside.
//!
//! The engine never reads a clock, spawns a thread or draws from a global
//! random generator itself. It asks its `Runtime`, which is smol's real
//! clock and executor in the binaries and a virtual clock in simnet. That
//! is what lets a simulation replay the engine exactly from a seed.

use std::future::Future;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

pub use async_task::Task;

/// A point in time: the time since the runtime's own epoch. Only
/// differences between two `Time`s of one runtime mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(Duration);

impl Time {
    /// The runtime's epoch.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The time `d` after the epoch.
    pub fn from_epoch(d: Duration) -> Self {
        Self(d)
    }

    /// Time since the epoch.
    pub fn since_epoch(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, earlier: Time) -> Duration {
        self.saturating_since(earlier)
    }
}

/// Time, tasks and randomness for the engine.
///
/// Implementations are cheap handles: clone them freely.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Time;

    /// Completes once `d` has passed.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static;

    /// Runs `fut` concurrently. Dropping the returned task cancels it;
    /// [`Task::detach`] lets it run on.
    fn spawn<T, F>(&self, fut: F) -> Task<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static;

    /// Runs CPU-heavy or blocking work (hashing, file IO) where it does not
    /// hold up the tasks.
    fn spawn_blocking<T, F>(&self, f: F) -> Task<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static;

    /// A random number from the runtime's source (seeded in simulations).
    fn random_u64(&self) -> u64;
}

/// Runs every future to its end, on this task; their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Returned by [`timeout`] when the time ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct Elapsed(pub Duration);

/// Runs `fut`, giving up after `d`.
///
/// Not an `async fn`: one keeps its argument and, while awaiting it, a
/// second copy, and most futures of the engine are wrapped in a timeout
/// somewhere. A swarm keeps thousands of them alive.
pub fn timeout<'a, R: Runtime, F: Future>(
    rt: &'a R,
    d: Duration,
    fut: F,
) -> Timeout<F, impl Future<Output = ()> + use<'a, R, F>> {
    Timeout { fut, sleep: rt.sleep(d), d }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F, S> {
        #[pin]
        fut: F,
        #[pin]
        sleep: S,
        d: Duration,
    }
}

impl<F: Future, S: Future<Output = ()>> Future for Timeout<F, S> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(*this.d))),
            Poll::Pending => Poll::Pending,
        }
    }
}

//! p2p-core's `Runtime` on smol.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_executor::Executor;
use p2p_core::runtime::{Runtime, Task, Time};

/// smol's executor on a pool of threads, async-io's timers, and the
/// blocking pool for file work. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SmolRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    executor: Arc<Executor<'static>>,
    epoch: Instant,
    rng: AtomicU64,
    /// Dropping this (with the last runtime handle) stops the workers.
    _stop: async_channel::Sender<()>,
}

impl SmolRuntime {
    /// A runtime whose tasks run on `threads` worker threads, plus the
    /// thread that calls [`block_on`](Self::block_on).
    pub fn new(threads: usize) -> Self {
        let executor = Arc::new(Executor::new());
        let (stop, wait) = async_channel::bounded::<()>(1);
        for i in 0..threads {
            let ex = executor.clone();
            let wait = wait.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("p2p-worker-{i}"))
                .spawn(move || async_io::block_on(ex.run(wait.recv())));
            if let Err(e) = spawned {
                // Fewer workers is slower, not wrong: block_on still runs tasks.
                tracing::warn!(error = %e, "could not start a worker thread");
            }
        }
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32);
        Self { inner: Arc::new(Inner { executor, epoch: Instant::now(), rng: AtomicU64::new(seed), _stop: stop }) }
    }

    /// Runs `fut` to completion on this thread, which also runs tasks.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        async_io::block_on(self.inner.executor.run(fut))
    }
}

impl Runtime for SmolRuntime {
    fn now(&self) -> Time {
        Time::from_epoch(self.inner.epoch.elapsed())
    }

    // Not an `async fn`: the future must not borrow `self`.
    #[allow(clippy::manual_async_fn)]
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        async move {
            async_io::Timer::after(d).await;
        }
    }

    fn spawn<T, F>(&self, fut: F) -> Task<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        self.inner.executor.spawn(fut)
    }

    fn spawn_blocking<T, F>(&self, f: F) -> Task<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        blocking::unblock(f)
    }

    fn random_u64(&self) -> u64 {
        // splitmix64 over an atomic counter: lock-free, and good enough for
        // jitter and temporary names (nothing here needs secrecy).
        let mut z = self.inner.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawns_sleeps_and_blocks() {
        let rt = SmolRuntime::new(1);
        let t0 = rt.now();
        let v = rt.block_on(async {
            let a = rt.spawn(async { 20 });
            let b = rt.spawn_blocking(|| 22);
            rt.sleep(Duration::from_millis(5)).await;
            a.await + b.await
        });
        assert_eq!(v, 42);
        assert!(rt.now() - t0 >= Duration::from_millis(5));
        assert_ne!(rt.random_u64(), rt.random_u64());
    }
}

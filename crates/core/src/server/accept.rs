//! Taking connections: a task per connection, the transport's handshake
//! (TLS) in that task under its own timeout, and a bound on handshakes in
//! progress. Shared by the file server and the index.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_lock::Semaphore;

use crate::runtime::{Runtime, Task, timeout};
use crate::transport::{Connected, Incoming, Listener};

/// Bounds on taking connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Transport handshakes in progress at once.
    pub(crate) max_handshakes: usize,
    /// Longest a transport handshake may take.
    pub(crate) handshake_timeout: Duration,
}

/// Accepts connections from `listener` and runs `serve` for each on its
/// own task until `stop` completes; then cancels every connection and
/// returns once they are all gone. A failed accept (a connection reset
/// early, a short shortage of file descriptors) is logged and retried.
pub(crate) async fn run<L, R, F, Fut>(rt: &R, listener: L, limits: Limits, stop: impl Future<Output = ()>, serve: F)
where
    L: Listener,
    R: Runtime,
    F: Fn(Connected<L::Stream>, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let mut tasks: HashMap<u64, Task<()>> = HashMap::new();
    let accepting = async {
        let (done_tx, done_rx) = async_channel::unbounded::<u64>();
        let mut next = 0u64;
        // A connection is taken only with a handshake slot free: beyond
        // the limit, new ones wait in the listener's backlog, so a burst
        // of clients is served in turn and silent ones hold no more than
        // their slots, until their handshake times out.
        let slots = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
        loop {
            // Connections that ended meanwhile (under a steady stream of
            // new ones the wait below always finds a connection first).
            while let Ok(id) = done_rx.try_recv() {
                tasks.remove(&id);
            }
            let next_connection = async {
                let slot = slots.acquire_arc().await;
                Some((listener.accept().await, slot))
            };
            let accepted = futures_lite::future::or(next_connection, async {
                if let Ok(id) = done_rx.recv().await {
                    tasks.remove(&id);
                }
                None
            })
            .await;
            let (incoming, slot) = match accepted {
                None => continue,
                Some((Ok(i), slot)) => (i, slot),
                Some((Err(e), _)) => {
                    tracing::warn!(error = %e, "accept failed");
                    rt.sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            next += 1;
            let id = next;
            let (serve, done) = (serve.clone(), done_tx.clone());
            let rt2 = rt.clone();
            let task = rt.spawn(async move {
                let remote = incoming.remote();
                // The transport's handshake (TLS) runs here, in the
                // connection's own task and under its own timeout.
                let established = timeout(&rt2, limits.handshake_timeout, incoming.establish()).await;
                drop(slot);
                match established {
                    Ok(Ok(connected)) => serve(connected, remote).await,
                    Ok(Err(e)) => tracing::warn!("refused {remote}: {e}"),
                    Err(e) => tracing::warn!("refused {remote}: handshake not finished, {e}"),
                }
                let _ = done.send(id).await;
            });
            tasks.insert(id, task);
        }
    };
    futures_lite::future::or(accepting, stop).await;
    for (_, task) in tasks.drain() {
        task.cancel().await;
    }
}

//! Taking connections: a task per connection, the transport's handshake
//! (TLS) in that task under its own timeout, and [`Admission`] deciding
//! who keeps a place when there are not enough. Shared by the file server
//! and the index.
//!
//! Connections that arrive while as many are doing their handshakes as
//! may wait in the listener's backlog, in the order they came; one whose
//! handshake has had its grace gives way to them, and an established one
//! idle the longest gives way to a new one when all places are taken. So
//! clients that open connections and do nothing cannot keep others out.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::admission::{self, Admission, ConnId, Full};
use crate::runtime::{Runtime, Task, timeout};
use crate::transport::{Connected, Incoming, Listener};

/// The connections of one server (or index), and who keeps a place.
/// Cheap to share.
#[derive(Debug)]
pub(crate) struct Connections {
    admission: Mutex<Admission>,
    handshake_timeout: Duration,
    /// Connections to close, for the accept loop (which owns their tasks).
    kicks: async_channel::Sender<ConnId>,
    kicked: async_channel::Receiver<ConnId>,
    /// A place for handshakes came free (one is pending at most: a signal
    /// for the accept loop to look again).
    freed: async_channel::Sender<()>,
    look: async_channel::Receiver<()>,
}

impl Connections {
    pub(crate) fn new(limits: admission::Limits, handshake_timeout: Duration) -> Arc<Self> {
        let (kicks, kicked) = async_channel::unbounded();
        let (freed, look) = async_channel::bounded(1);
        let admission = Mutex::new(Admission::new(limits));
        Arc::new(Self { admission, handshake_timeout, kicks, kicked, freed, look })
    }

    /// Connections open now (through their handshakes or not).
    pub(crate) fn open(&self) -> usize {
        self.lock().open()
    }

    /// Closes connection `id` (its client misbehaves).
    pub(crate) fn close_one(&self, id: ConnId) {
        self.lock().leave(id);
        self.close([id]);
    }

    fn close(&self, ids: impl IntoIterator<Item = ConnId>) {
        for id in ids {
            // Unbounded: never full; closed only with the accept loop.
            let _ = self.kicks.try_send(id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Admission> {
        // Each change is one call that leaves the state whole.
        self.admission.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place: it tells [`Admission`] how the connection is
/// doing, and gives the place back when dropped (also when its task is
/// cancelled).
#[derive(Debug)]
pub(crate) struct Slot<R: Runtime> {
    conns: Arc<Connections>,
    rt: R,
    id: ConnId,
}

impl<R: Runtime> Slot<R> {
    /// The connection is through its handshakes: known (a pinned or
    /// remembered peer) or a stranger. Idle connections are closed to make
    /// room for it; if none can be, it gets why, to tell the client.
    pub(crate) fn establish(&self, known: bool) -> Result<(), Full> {
        let established = self.conns.lock().establish(self.id, known, self.rt.now());
        let _ = self.conns.freed.try_send(());
        self.conns.close(established?);
        Ok(())
    }

    /// The connection works on a request: it keeps its place.
    pub(crate) fn busy(&self) {
        self.conns.lock().busy(self.id);
    }

    /// The connection waits for a request, subscribed to a swarm or not:
    /// after a while it may make room for others.
    pub(crate) fn idle(&self, swarming: bool) {
        self.conns.lock().idle(self.id, self.rt.now(), swarming);
    }

    /// This connection's number.
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }
}

impl<R: Runtime> Drop for Slot<R> {
    fn drop(&mut self) {
        self.conns.lock().leave(self.id);
        let _ = self.conns.freed.try_send(());
    }
}

/// Accepts connections from `listener` and runs `serve` for each on its
/// own task until `stop` completes; then cancels every connection and
/// returns once they are all gone. A failed accept (a connection reset
/// early, a short shortage of file descriptors) is logged and retried.
pub(crate) async fn run<L, R, F, Fut>(
    rt: &R,
    conns: &Arc<Connections>,
    listener: L,
    stop: impl Future<Output = ()>,
    serve: F,
) where
    L: Listener,
    R: Runtime,
    F: Fn(Connected<L::Stream>, String, Slot<R>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let mut tasks: HashMap<ConnId, Task<()>> = HashMap::new();
    let accepting = async {
        let (done_tx, done_rx) = async_channel::unbounded::<ConnId>();
        loop {
            enum Next<I> {
                Accepted(std::io::Result<I>),
                /// A connection's task ended.
                Done(ConnId),
                /// A connection must make room.
                Close(ConnId),
                /// A pending connection's grace is over: look again.
                Look,
            }
            // Room to take one more, or when there may be.
            let room = conns.lock().make_room(rt.now());
            let wait = match room {
                Ok(None) => None,
                Ok(Some(old)) => {
                    tracing::debug!("closed connection {old}: its handshake took too long while others waited");
                    tasks.remove(&old);
                    None
                }
                Err(at) => Some(at.saturating_since(rt.now()).max(Duration::from_millis(1))),
            };
            let next = futures_lite::future::or(
                async {
                    match wait {
                        None => Next::Accepted(listener.accept().await),
                        Some(d) => {
                            futures_lite::future::or(rt.sleep(d), async {
                                let _ = conns.look.recv().await;
                            })
                            .await;
                            Next::Look
                        }
                    }
                },
                futures_lite::future::or(
                    async {
                        match done_rx.recv().await {
                            Ok(id) => Next::Done(id),
                            Err(_) => std::future::pending().await,
                        }
                    },
                    async {
                        match conns.kicked.recv().await {
                            Ok(id) => Next::Close(id),
                            Err(_) => std::future::pending().await,
                        }
                    },
                ),
            )
            .await;
            let incoming = match next {
                Next::Look => continue,
                Next::Done(id) => {
                    tasks.remove(&id);
                    continue;
                }
                Next::Close(id) => {
                    // Dropping a task cancels it; its slot gives back the place.
                    if tasks.remove(&id).is_some() {
                        tracing::debug!("closed connection {id} to make room");
                    }
                    continue;
                }
                Next::Accepted(Ok(i)) => i,
                Next::Accepted(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed");
                    rt.sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let remote = incoming.remote();
            let id = conns.lock().arrive(&crate::transport::host_of(&remote), rt.now());
            let slot = Slot { conns: conns.clone(), rt: rt.clone(), id };
            let (serve, done) = (serve.clone(), done_tx.clone());
            let (rt2, limit) = (rt.clone(), conns.handshake_timeout);
            let task = rt.spawn(async move {
                // The transport's handshake (TLS) runs here, in the
                // connection's own task and under its own timeout.
                match timeout(&rt2, limit, incoming.establish()).await {
                    Ok(Ok(connected)) => serve(connected, remote, slot).await,
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

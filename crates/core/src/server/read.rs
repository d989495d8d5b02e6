//! Serving a Read request: file bytes out, one data frame per chunk, with
//! the next chunk read from the store while the current one is sent.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::admission::ConnId;
use super::fair::Permit;
use super::link::Link;
use super::{Failure, Refusal, Server};
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{ErrorCode, MAX_READ};
use crate::runtime::{Runtime, Task, Time, timeout};
use crate::store::{ReadAt, Store};
use crate::transport::Stream;

/// Bytes read from the store and sent as one data frame. Small enough that
/// the shared budget of file data in memory covers many clients at once.
pub(super) const CHUNK: usize = 1024 * 1024;

/// Reads of contents being downloaded here (blocks passed on in a swarm)
/// answered at once; the others wait their turn. A block reaches a few
/// peers at the uplink's full rate, and each of them passes it on,
/// rather than every peer at a crawl at once.
pub(super) const PASSING: usize = 4;
/// The longest a read waits its turn; past this it is answered anyway.
const PASSING_WAIT: Duration = Duration::from_secs(2);

/// How long a send may make no progress at all before its client counts as
/// not reading: longer than a link that delivers anything stays silent
/// (a loss recovery, a long round trip), far shorter than a stall timeout.
const STALL_AFTER: Duration = Duration::from_secs(1);

/// File data held by connections whose client stopped reading: bounded,
/// and the connection stalled the longest is closed to stay in bounds.
#[derive(Debug)]
pub(super) struct Stalled {
    budget: usize,
    bytes: usize,
    /// Each stalled send: (since, connection, serial) → bytes.
    held: BTreeMap<(Time, ConnId, u64), usize>,
    next: u64,
}

impl Stalled {
    pub(super) fn new(budget: usize) -> Self {
        Self { budget, bytes: 0, held: BTreeMap::new(), next: 0 }
    }

    /// Charges `bytes` for connection `conn`; returns the key to give them
    /// back with, and the connections to close to stay in bounds (never
    /// `conn` itself).
    fn charge(&mut self, conn: ConnId, bytes: usize, now: Time) -> ((Time, ConnId, u64), Vec<ConnId>) {
        self.next += 1;
        let key = (now, conn, self.next);
        self.held.insert(key, bytes);
        self.bytes += bytes;
        // The closed connections' bytes count as given back at once: their
        // tasks end soon, and must not be counted against the next one.
        let mut close = Vec::new();
        while self.bytes > self.budget {
            let Some(victim) = self.held.keys().map(|k| k.1).find(|c| *c != conn) else { break };
            close.push(victim);
            let gone: Vec<_> = self.held.keys().filter(|k| k.1 == victim).copied().collect();
            for k in gone {
                self.release(&k);
            }
        }
        (key, close)
    }

    fn release(&mut self, key: &(Time, ConnId, u64)) {
        if let Some(b) = self.held.remove(key) {
            self.bytes -= b;
        }
    }
}

/// Bytes of one stalled send, given back when dropped.
pub(super) struct StalledSend<'a> {
    stalled: &'a Mutex<Stalled>,
    key: (Time, ConnId, u64),
}

impl Drop for StalledSend<'_> {
    fn drop(&mut self) {
        self.stalled.lock().unwrap_or_else(PoisonError::into_inner).release(&self.key);
    }
}

pub(super) struct ReadRequest {
    pub(super) id: u32,
    pub(super) hash: Hash,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// The end of `offset+len`, if within a file of `size` bytes and a
/// read's bounds.
fn in_bounds(offset: u64, len: u64, size: u64) -> Result<u64, Refusal> {
    if len == 0 || len > MAX_READ {
        let message = format!("read of {len} bytes; the limit is 1..={MAX_READ}");
        return Err(Refusal::new(ErrorCode::BadRequest, message));
    }
    offset.checked_add(len).filter(|&e| e <= size).ok_or_else(|| {
        Refusal::new(ErrorCode::BadRequest, format!("range {offset}+{len} is past the end ({size} bytes)"))
    })
}

/// A chunk being read, with the memory permit it holds.
type Pending = Task<(std::io::Result<Vec<u8>>, Permit)>;

impl<S: Store, R: Runtime> Server<S, R> {
    pub(super) async fn read<St: Stream>(&self, link: &mut Link<St, R>, req: ReadRequest) -> Result<(), Failure> {
        let ReadRequest { id, hash, offset, len } = req;
        let shared = !self.config.downloads_only || self.catalog.went_live(&hash);
        let entry = match shared {
            true => self.catalog.by_hash(&hash).await.map_err(Refusal::from)?,
            false => None,
        };
        let Some(entry) = entry else {
            // A content being downloaded here: only what is verified and
            // written is served, and the rest is "not yet" (the client
            // asks another peer, or again later).
            let Some(live) = self.catalog.live(&hash) else {
                return Err(Refusal::new(ErrorCode::NotFound, format!("no file with hash {hash}")).into());
            };
            let end = in_bounds(offset, len, live.manifest().size())?;
            if !live.has_range(offset, end) {
                let message = format!("bytes {offset}..{end} are not here yet");
                return Err(Refusal::new(ErrorCode::NotYet, message).into());
            }
            let file = Arc::new(live.reader().clone());
            let _turn = timeout(&self.rt, PASSING_WAIT, self.shared.passing.acquire()).await.ok();
            return self.send_range(link, id, hash, live.name().clone(), file, offset, end).await;
        };
        let size = entry.info.size;
        let end = in_bounds(offset, len, size)?;
        let (file, meta) = self.catalog.store().open(&entry.info.name).await.map_err(Refusal::from)?;
        if meta.size != size {
            let message = format!("{} changed while being served", entry.info.name);
            return Err(Refusal::new(ErrorCode::Changed, message).into());
        }
        self.send_range(link, id, hash, entry.info.name, Arc::new(file), offset, end).await
    }

    /// Sends bytes `offset..end` of `file` as the answer to read `id`.
    #[allow(clippy::too_many_arguments)]
    async fn send_range<St: Stream, F: ReadAt>(
        &self,
        link: &mut Link<St, R>,
        id: u32,
        hash: Hash,
        name: FileName,
        file: Arc<F>,
        offset: u64,
        end: u64,
    ) -> Result<(), Failure> {
        let host = link.host.clone();
        let mut pos = offset;
        // A sent chunk's buffer is read into again: no fresh allocation
        // (and its page faults) per chunk.
        let mut spare = None;
        let mut pending = Some(self.start_read(&host, &file, pos, end, None, None).await?);
        while let Some(task) = pending.take() {
            let (data, permit) = task.await;
            let data = data.map_err(|e| {
                tracing::warn!(file = %name, error = %e, "read failed");
                Refusal::new(ErrorCode::Internal, format!("cannot read {name} on the serving peer"))
            })?;
            let next = pos + data.len() as u64;
            if next < end {
                // Read ahead while this chunk goes out, if the budget has
                // room; never wait for a second permit while holding one,
                // so connections cannot starve each other into a deadlock.
                if let Some(p) = self.shared.buffers.try_acquire(&host) {
                    pending = Some(self.start_read(&host, &file, next, end, Some(p), spare.take()).await?);
                }
            }
            // A client that does not read what it asked for gives its share
            // of the budget back (and its read-ahead), so that it cannot
            // hold up the others; its data waits in the stalled budget.
            {
                let conn_id = link.id;
                let written = link.conn.written();
                let mut send = pin!(link.conn.send_data(id, pos, &data));
                // Slow is fine; not moving at all for STALL_AFTER is not.
                let mut seen = written.load(Ordering::Relaxed);
                let sent = loop {
                    match timeout(&self.rt, STALL_AFTER, send.as_mut()).await {
                        Ok(sent) => break Some(sent),
                        Err(_) => {
                            let now = written.load(Ordering::Relaxed);
                            if now == seen {
                                break None;
                            }
                            seen = now;
                        }
                    }
                };
                drop(permit);
                match sent {
                    Some(sent) => sent?,
                    None => {
                        drop(pending.take());
                        let _stalled = self.stall(conn_id, data.len());
                        send.await?;
                    }
                }
            }
            let sent = link.stats.sent.entry(hash).or_insert_with(|| (name.clone(), 0));
            sent.1 += data.len() as u64;
            spare = Some(data);
            pos = next;
            if link.take_incoming(id).await? {
                break;
            }
            if pending.is_none() && pos < end {
                pending = Some(self.start_read(&host, &file, pos, end, None, spare.take()).await?);
            }
        }
        link.conn.flush().await?;
        Ok(())
    }

    /// Counts `bytes` of connection `conn` as held for a client that does
    /// not read them; closes the connections stalled longest if that goes
    /// over the budget.
    fn stall(&self, conn: ConnId, bytes: usize) -> StalledSend<'_> {
        let (key, close) = {
            let mut s = self.shared.stalled.lock().unwrap_or_else(PoisonError::into_inner);
            s.charge(conn, bytes, self.rt.now())
        };
        for c in close {
            tracing::warn!("closing connection {c}: its client stopped reading and others need the memory");
            self.conns.close_one(c);
        }
        StalledSend { stalled: &self.shared.stalled, key }
    }

    /// Starts reading the chunk at `pos` on its own task. Waits for room in
    /// the memory budget, but not forever: a client is told "busy" rather
    /// than left waiting behind slow readers.
    async fn start_read<F: ReadAt>(
        &self,
        host: &Arc<str>,
        file: &Arc<F>,
        pos: u64,
        end: u64,
        permit: Option<Permit>,
        buf: Option<Vec<u8>>,
    ) -> Result<Pending, Refusal> {
        let permit = match permit {
            Some(p) => p,
            None => timeout(&self.rt, self.config.io_timeout, self.shared.buffers.acquire(host))
                .await
                .map_err(|_| Refusal::new(ErrorCode::Busy, "serving too many clients at once; try again later"))?,
        };
        let len = (end - pos).min(CHUNK as u64) as usize;
        let file = file.clone();
        let buf = buf.unwrap_or_else(|| Vec::with_capacity(CHUNK));
        Ok(self.rt.spawn(async move {
            let r = file.read_at(pos, len, buf).await;
            (r, permit)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_connections_stalled_longest_are_closed_to_stay_in_the_budget() {
        let t = |ms| Time::from_epoch(Duration::from_millis(ms));
        let mut s = Stalled::new(3 << 20);
        let (a, none) = s.charge(1, 1 << 20, t(0));
        assert!(none.is_empty());
        let (_, none) = s.charge(2, 1 << 20, t(1));
        assert!(none.is_empty());
        let (_, none) = s.charge(3, 1 << 20, t(2));
        assert!(none.is_empty(), "exactly the budget");
        // Over: the one stalled longest goes, never the one asking.
        assert_eq!(s.charge(4, 1 << 20, t(3)).1, [1]);
        assert_eq!(s.charge(1, 2 << 20, t(4)).1, [2, 3], "enough of them to fit, oldest first");
        assert_eq!(s.bytes, 3 << 20, "4 and 1");
        // Given back when the sends end (1's first, closed, is gone already).
        s.release(&a);
        assert_eq!(s.bytes, 3 << 20);
    }
}

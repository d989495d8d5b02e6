//! Serving a Read request: file bytes out, one data frame per chunk, with
//! the next chunk read from the store while the current one is sent.

use std::sync::Arc;

use super::fair::Permit;
use super::link::Link;
use super::{Failure, Refusal, Server};
use crate::hash::Hash;
use crate::protocol::{ErrorCode, MAX_READ};
use crate::runtime::{Runtime, Task, timeout};
use crate::store::{ReadAt, Store};
use crate::transport::Stream;

/// Bytes read from the store and sent as one data frame. Small enough that
/// the shared budget of file data in memory covers many clients at once.
pub(super) const CHUNK: usize = 1024 * 1024;

pub(super) struct ReadRequest {
    pub(super) id: u32,
    pub(super) hash: Hash,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// A chunk being read, with the memory permit it holds.
type Pending = Task<(std::io::Result<Vec<u8>>, Permit)>;

impl<S: Store, R: Runtime> Server<S, R> {
    pub(super) async fn read<St: Stream>(&self, link: &mut Link<St, R>, req: ReadRequest) -> Result<(), Failure> {
        let ReadRequest { id, hash, offset, len } = req;
        if len == 0 || len > MAX_READ {
            let message = format!("read of {len} bytes; the limit is 1..={MAX_READ}");
            return Err(Refusal::new(ErrorCode::BadRequest, message).into());
        }
        let entry = self
            .catalog
            .by_hash(&hash)
            .await
            .map_err(Refusal::from)?
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no file with hash {hash}")))?;
        let size = entry.info.size;
        let end = offset.checked_add(len).filter(|&e| e <= size).ok_or_else(|| {
            Refusal::new(ErrorCode::BadRequest, format!("range {offset}+{len} is past the end ({size} bytes)"))
        })?;
        let (file, meta) = self.catalog.store().open(&entry.info.name).await.map_err(Refusal::from)?;
        if meta.size != size {
            let message = format!("{} changed while being served", entry.info.name);
            return Err(Refusal::new(ErrorCode::Changed, message).into());
        }
        let file = Arc::new(file);
        let mut pos = offset;
        // A sent chunk's buffer is read into again: no fresh allocation
        // (and its page faults) per chunk.
        let mut spare = None;
        let mut pending = Some(self.start_read(&file, pos, end, None, None).await?);
        while let Some(task) = pending.take() {
            let (data, permit) = task.await;
            let data = data.map_err(|e| {
                tracing::warn!(file = %entry.info.name, error = %e, "read failed");
                Refusal::new(ErrorCode::Internal, format!("cannot read {} on the serving peer", entry.info.name))
            })?;
            let next = pos + data.len() as u64;
            if next < end {
                // Read ahead while this chunk goes out, if the budget has
                // room; never wait for a second permit while holding one,
                // so connections cannot starve each other into a deadlock.
                if let Some(p) = self.shared.buffers.try_acquire() {
                    pending = Some(self.start_read(&file, next, end, Some(p), spare.take()).await?);
                }
            }
            link.conn.send_data(id, pos, &data).await?;
            drop(permit);
            let sent = link.stats.sent.entry(hash).or_insert_with(|| (entry.info.name.clone(), 0));
            sent.1 += data.len() as u64;
            spare = Some(data);
            pos = next;
            if link.take_incoming(id).await? {
                break;
            }
            if pending.is_none() && pos < end {
                pending = Some(self.start_read(&file, pos, end, None, spare.take()).await?);
            }
        }
        link.conn.flush().await?;
        Ok(())
    }

    /// Starts reading the chunk at `pos` on its own task. Waits for room in
    /// the memory budget, but not forever: a client is told "busy" rather
    /// than left waiting behind slow readers.
    async fn start_read(
        &self,
        file: &Arc<S::File>,
        pos: u64,
        end: u64,
        permit: Option<Permit>,
        buf: Option<Vec<u8>>,
    ) -> Result<Pending, Refusal> {
        let permit = match permit {
            Some(p) => p,
            None => timeout(&self.rt, self.config.io_timeout, self.shared.buffers.acquire())
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

//! Serving a Read request: file bytes out, one data frame per chunk, with
//! the next chunk read from the store while the current one is sent.

use std::collections::VecDeque;
use std::sync::Arc;

use async_lock::SemaphoreGuardArc;

use super::{ConnStats, Failure, Refusal, Server, poll_incoming};
use crate::conn::Conn;
use crate::hash::Hash;
use crate::protocol::{ErrorCode, MAX_DATA, MAX_READ, Message};
use crate::runtime::{Runtime, Task};
use crate::store::{ReadAt, Store};
use crate::transport::Stream;

pub(super) struct ReadRequest {
    pub(super) id: u32,
    pub(super) hash: Hash,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// A chunk being read, with the memory permit it holds.
type Pending = Task<(std::io::Result<Vec<u8>>, SemaphoreGuardArc)>;

impl<S: Store, R: Runtime> Server<S, R> {
    pub(super) async fn read<St: Stream>(
        &self,
        conn: &mut Conn<St, R>,
        queue: &mut VecDeque<Message>,
        req: ReadRequest,
        stats: &mut ConnStats,
    ) -> Result<(), Failure> {
        let ReadRequest { id, hash, offset, len } = req;
        if len == 0 || len > MAX_READ {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                format!("read of {len} bytes; the limit is 1..={MAX_READ}"),
            )
            .into());
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
            return Err(
                Refusal::new(ErrorCode::Changed, format!("{} changed while being served", entry.info.name)).into()
            );
        }
        let file = Arc::new(file);
        let mut pos = offset;
        let mut pending = Some(self.start_read(&file, pos, end, None).await);
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
                if let Some(p) = self.shared.buffers.try_acquire_arc() {
                    pending = Some(self.start_read(&file, next, end, Some(p)).await);
                }
            }
            conn.send_data(id, pos, &data).await?;
            drop(permit);
            let sent = stats.sent.entry(hash).or_insert_with(|| (entry.info.name.clone(), 0));
            sent.1 += data.len() as u64;
            pos = next;
            if poll_incoming(conn, queue, id, self.config.max_queued).await? {
                break;
            }
            if pending.is_none() && pos < end {
                pending = Some(self.start_read(&file, pos, end, None).await);
            }
        }
        conn.flush().await?;
        Ok(())
    }

    /// Starts reading the chunk at `pos` on its own task.
    async fn start_read(&self, file: &Arc<S::File>, pos: u64, end: u64, permit: Option<SemaphoreGuardArc>) -> Pending {
        let permit = match permit {
            Some(p) => p,
            None => self.shared.buffers.acquire_arc().await,
        };
        let len = (end - pos).min(MAX_DATA as u64) as usize;
        let file = file.clone();
        self.rt.spawn(async move {
            let r = file.read_at(pos, len, Vec::with_capacity(len)).await;
            (r, permit)
        })
    }
}

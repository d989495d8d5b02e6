//! Pushing a file to a peer.

use std::sync::Arc;

use super::{ClientError, Session, unexpected};
use crate::catalog::Entry;
use crate::conn::ConnError;
use crate::protocol::codec::Frame;
use crate::protocol::{MANIFEST_PAGE, MAX_DATA, Message, StoreOutcome};
use crate::runtime::Runtime;
use crate::store::{ReadAt, StoreError};
use crate::transport::Stream;

fn unexpected_data(id: u32) -> ClientError {
    ClientError::Conn(ConnError::Unexpected(format!("data for request {id} during an upload")))
}

impl<S: Stream, R: Runtime> Session<S, R> {
    /// Uploads the file `entry` describes, reading its bytes from `file`.
    /// The peer verifies every block and answers once the file is durable
    /// under its name, or refuses (already being uploaded, exists...).
    pub async fn upload<F: ReadAt>(
        &mut self,
        rt: &R,
        file: Arc<F>,
        entry: &Entry,
    ) -> Result<StoreOutcome, ClientError> {
        let id = self.id();
        let info = &entry.info;
        let offer = Message::Offer { id, name: info.name.to_string(), size: info.size, hash: info.hash };
        self.conn.send(&offer).await?;
        match self.response(id).await? {
            Message::Stored { outcome, .. } => return Ok(outcome),
            Message::Accept { .. } => {}
            other => return Err(unexpected(&other)),
        }

        let m = &entry.manifest;
        let mut first = 0u64;
        for page in m.cvs().chunks(MANIFEST_PAGE) {
            let last = first + page.len() as u64 == m.block_count();
            let msg = Message::ManifestPage {
                id,
                info: info.clone(),
                block_size: m.block_size(),
                first_block: first,
                cvs: page.to_vec(),
                last,
            };
            self.conn.send(&msg).await?;
            first += page.len() as u64;
        }

        let size = info.size;
        let read = |pos: u64| {
            let file = file.clone();
            let len = (size - pos).min(MAX_DATA as u64) as usize;
            rt.spawn(async move { file.read_at(pos, len, Vec::with_capacity(len)).await })
        };
        let mut pos = 0;
        let mut pending = (size > 0).then(|| read(0));
        while let Some(task) = pending.take() {
            let data =
                task.await.map_err(|e| ClientError::Local(StoreError::io(format!("reading {}", info.name), e)))?;
            let next = pos + data.len() as u64;
            if next < size {
                pending = Some(read(next));
            }
            if let Err(e) = self.conn.send_data(id, pos, &data).await {
                // The peer may have said why before it stopped reading.
                return Err(self.reason_for(id, e).await);
            }
            pos = next;
            // A refusal mid-stream (a block failed verification, disk full)
            // arrives as an error: stop sending at once.
            match self.conn.try_read_frame().await? {
                Some(Frame::Control(Message::Working { .. })) | None => {}
                Some(Frame::Control(Message::Error { code, message, .. })) => {
                    return Err(ClientError::refused(code, &message));
                }
                Some(Frame::Control(other)) => return Err(unexpected(&other)),
                Some(Frame::Data(d)) => return Err(unexpected_data(d.id)),
            }
        }
        self.conn.flush().await?;
        // The peer syncs the file before answering, saying it is working:
        // the deadline counts from now.
        self.restart_deadline();
        match self.response(id).await? {
            Message::Stored { outcome, .. } => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    /// After a failed send: the peer's error message if it sent one.
    async fn reason_for(&mut self, id: u32, e: ConnError) -> ClientError {
        match self.response(id).await {
            Err(refused @ ClientError::Refused { .. }) => refused,
            _ => ClientError::Conn(e),
        }
    }
}

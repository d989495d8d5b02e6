//! Receiving an upload: offer, checks, manifest, verified blocks, commit.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Failure, Refusal, Server};
use crate::conn::{Conn, ConnError, Wait, kind};
use crate::hash::Hash;
use crate::manifest::{MAX_FILE_SIZE, Manifest, block_count, block_size_for};
use crate::name::FileName;
use crate::protocol::codec::Frame;
use crate::protocol::{ErrorCode, Message, StoreOutcome};
use crate::runtime::Runtime;
use crate::store::{PartialFile, Store, StoreError, WriteAt};
use crate::transport::Stream;
use crate::verify::BlockWriter;

pub(super) struct Offer {
    pub(super) id: u32,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) hash: Hash,
}

/// Holds a name in the "being uploaded" set; releases it when dropped.
struct Claim<'a, S: Store, R: Runtime> {
    server: &'a Server<S, R>,
    name: FileName,
}

impl<S: Store, R: Runtime> Drop for Claim<'_, S, R> {
    fn drop(&mut self) {
        self.server.uploading().remove(&self.name);
    }
}

impl<S: Store, R: Runtime> Server<S, R> {
    pub(super) async fn upload<St: Stream>(
        &self,
        conn: &mut Conn<St, R>,
        queue: &mut VecDeque<Message>,
        offer: Offer,
        who: &str,
    ) -> Result<(), Failure> {
        let Offer { id, name, size, hash } = offer;
        let started = self.rt.now();
        let name = FileName::new(&name)
            .map_err(|e| Refusal::new(ErrorCode::InvalidName, format!("{:?}: {e}", crate::sanitize(&name, 300))))?;
        if !self.config.accept_uploads {
            return Err(Refusal::new(ErrorCode::Forbidden, "this peer does not accept uploads").into());
        }
        if size > MAX_FILE_SIZE {
            return Err(Refusal::new(ErrorCode::TooLarge, format!("{size} bytes is over the 4 TiB limit")).into());
        }
        if !self.uploading().insert(name.clone()) {
            tracing::info!("refused upload of {name} from {who}: already being uploaded");
            return Err(Refusal::new(ErrorCode::AlreadyUploading, format!("{name} is already being uploaded")).into());
        }
        let _claim = Claim { server: self, name: name.clone() };
        match self.catalog.by_name(&name).await {
            Ok(e) if e.info.hash == hash => {
                conn.send(&Message::Stored { id, outcome: StoreOutcome::Unchanged }).await?;
                tracing::info!("upload of {name} from {who}: unchanged");
                return Ok(());
            }
            Ok(e) if !self.config.allow_overwrite => {
                tracing::info!("refused upload of {name} from {who}: exists with different content");
                return Err(Refusal::new(
                    ErrorCode::Exists,
                    format!(
                        "{name} exists with different content (blake3 {}); the receiving peer does not allow overwriting",
                        e.info.hash.short()
                    ),
                )
                .into());
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Refusal::from(e).into()),
        }
        let partial = self.catalog.store().create_partial(&name, size).await.map_err(Refusal::from)?;
        conn.send(&Message::Accept { id }).await?;

        let manifest = self.receive_manifest(conn, queue, id, &name, size, hash).await?;
        let mut writer = BlockWriter::new(manifest.clone(), 0..size)
            .map_err(|e| Refusal::new(ErrorCode::Corrupt, format!("{name}: {e}")))?;
        let out = partial.writer();
        while !writer.is_done() {
            let frame = conn.read_frame(Wait::Busy).await?;
            match frame {
                Some(Frame::Data(d)) if d.id == id => {
                    let blocks = writer.push(d.offset, d.bytes).map_err(|e| {
                        tracing::warn!("refused upload of {name} from {who}: {e}");
                        Refusal::new(ErrorCode::Corrupt, format!("{name}: {e}"))
                    })?;
                    for (offset, block) in blocks {
                        out.write_at(offset, block)
                            .await
                            .map_err(|e| Refusal::from(StoreError::io(format!("writing {name}"), e)))?;
                    }
                }
                Some(Frame::Data(d)) => {
                    return Err(ConnError::Unexpected(format!("data for request {} during upload {id}", d.id)).into());
                }
                Some(Frame::Control(Message::Cancel { id: c })) if c == id => {
                    tracing::info!("upload of {name} from {who}: cancelled by the sender");
                    return Ok(());
                }
                Some(Frame::Control(m)) => self.queue_during_upload(queue, m)?,
                None => return Err(ConnError::Closed.into()),
            }
        }
        let meta = partial.commit(self.config.allow_overwrite).await.map_err(Refusal::from)?;
        self.catalog.insert(meta, manifest).await;
        conn.send(&Message::Stored { id, outcome: StoreOutcome::Stored }).await?;
        let secs = (self.rt.now() - started).as_secs_f64();
        tracing::info!("stored {name}: {} from {who} in {secs:.2}s", crate::units::bytes(size));
        Ok(())
    }

    /// Reads the uploader's manifest pages and checks them against `hash`.
    async fn receive_manifest<St: Stream>(
        &self,
        conn: &mut Conn<St, R>,
        queue: &mut VecDeque<Message>,
        id: u32,
        name: &FileName,
        size: u64,
        hash: Hash,
    ) -> Result<Arc<Manifest>, Failure> {
        let mut cvs = Vec::new();
        loop {
            let msg = conn.read_message(Wait::Busy).await?;
            let (info, bs, first, page, last) = match msg {
                Message::ManifestPage { id: i, info, block_size, first_block, cvs, last } if i == id => {
                    (info, block_size, first_block, cvs, last)
                }
                Message::Cancel { id: c } if c == id => return Err(ConnError::Closed.into()),
                Message::ManifestPage { .. } | Message::Files { .. } | Message::Accept { .. } => {
                    return Err(ConnError::Unexpected(format!("{} during upload {id}", kind(&msg))).into());
                }
                other => {
                    self.queue_during_upload(queue, other)?;
                    continue;
                }
            };
            if info.name != *name || info.size != size || info.hash != hash {
                return Err(Refusal::new(ErrorCode::BadRequest, "manifest is for another file than offered").into());
            }
            if bs != block_size_for(size) {
                return Err(
                    Refusal::new(ErrorCode::BadRequest, format!("block size {bs} for a file of {size} bytes")).into()
                );
            }
            if first != cvs.len() as u64 {
                return Err(Refusal::new(ErrorCode::BadRequest, "manifest pages out of order").into());
            }
            let want = block_count(size, bs);
            if cvs.len() as u64 + page.len() as u64 > want {
                return Err(Refusal::new(ErrorCode::BadRequest, "manifest has more blocks than the file").into());
            }
            cvs.extend(page);
            if last {
                break;
            }
        }
        let m = Manifest::from_parts(size, block_size_for(size), cvs, hash)
            .map_err(|e| Refusal::new(ErrorCode::Corrupt, format!("{name}: manifest refused: {e}")))?;
        Ok(Arc::new(m))
    }

    fn queue_during_upload(&self, queue: &mut VecDeque<Message>, m: Message) -> Result<(), Failure> {
        if queue.len() >= self.config.max_queued {
            return Err(ConnError::Unexpected("too many requests queued during an upload".into()).into());
        }
        queue.push_back(m);
        Ok(())
    }
}

//! Receiving an upload: offer, checks, manifest, verified blocks, commit.

use std::sync::Arc;

use async_lock::SemaphoreGuardArc;

use super::link::Link;
use super::{Failure, Refusal, Server, Standing, UploadPolicy};
use crate::conn::{ConnError, Wait, kind, rate_time};
use crate::hash::Hash;
use crate::manifest::{MAX_FILE_SIZE, Manifest, block_count, block_size_for};
use crate::name::FileName;
use crate::protocol::codec::Frame;
use crate::protocol::{ErrorCode, Message, StoreOutcome};
use crate::runtime::{Runtime, timeout};
use crate::store::{PartialFile, Store, StoreError, WriteAt};
use crate::transport::Stream;
use crate::verify::BlockWriter;

/// Free space an upload must leave on the receiving disk.
pub(super) const FREE_MARGIN: u64 = 16 << 20;

/// Upload budget permits (of one MiB) every upload holds for its buffers:
/// the read buffer, the block being verified and the run being written.
pub(super) const MIN_PERMITS: usize = 4;

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

/// How an upload ended early.
enum Stop {
    /// The uploader cancelled it.
    Cancelled,
    Failed(Failure),
}

impl<E: Into<Failure>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

impl<S: Store, R: Runtime> Server<S, R> {
    pub(super) async fn upload<St: Stream>(&self, link: &mut Link<St, R>, offer: Offer) -> Result<(), Failure> {
        let Offer { id, name, size, hash } = offer;
        // Written as it will be on every file system: composed (NFC).
        let name = FileName::new(&name)
            .map_err(|e| Refusal::new(ErrorCode::InvalidName, format!("{:?}: {e}", crate::sanitize(&name, 300))))?
            .to_nfc();
        match (self.config.uploads, link.standing) {
            (UploadPolicy::Nobody, _) => {
                return Err(Refusal::new(ErrorCode::Forbidden, "this peer does not accept uploads").into());
            }
            (UploadPolicy::KnownPeers, Standing::Stranger) => {
                let who = match link.identity {
                    Some(fp) => format!("this client's certificate {fp} is not one it knows"),
                    None => "this client has no identity".to_string(),
                };
                tracing::info!("refused upload of {name} from {}: not a known peer", link.who);
                let message = format!("this peer accepts uploads from known peers only, and {who}");
                return Err(Refusal::new(ErrorCode::Forbidden, message).into());
            }
            _ => {}
        }
        if size > MAX_FILE_SIZE {
            return Err(Refusal::new(ErrorCode::TooLarge, format!("{size} bytes is over the 4 TiB limit")).into());
        }
        let who = link.who.clone();
        if !self.uploading().insert(name.clone()) {
            tracing::info!("refused upload of {name} from {who}: already being uploaded");
            return Err(Refusal::new(ErrorCode::AlreadyUploading, format!("{name} is already being uploaded")).into());
        }
        let _claim = Claim { server: self, name: name.clone() };
        if let Some(other) = link.working(id, self.catalog.collision(&name, true)).await?.map_err(Refusal::from)? {
            tracing::info!("refused upload of {name} from {who}: collides with {other}");
            let message = format!(
                "{name} would be the same file as {other} on Windows and macOS (the names differ only in case or \
                 Unicode form); rename one"
            );
            return Err(Refusal::new(ErrorCode::InvalidName, message).into());
        }
        if let Some(free) = self.catalog.store().available().await
            && size.saturating_add(FREE_MARGIN) > free
        {
            tracing::info!("refused upload of {name} from {who}: {size} bytes, {free} free");
            let location = self.catalog.store().location();
            return Err(Refusal::from(StoreError::NoSpace { name, location, needed: size, free }).into());
        }
        match link.working(id, self.catalog.by_name(&name)).await? {
            Ok(e) if e.info.hash == hash => {
                link.conn.send(&Message::Stored { id, outcome: StoreOutcome::Unchanged }).await?;
                tracing::info!("upload of {name} from {who}: unchanged");
                return Ok(());
            }
            Ok(e) if !self.config.allow_overwrite => {
                tracing::info!("refused upload of {name} from {who}: exists with different content");
                let message = format!(
                    "{name} exists with different content (blake3 {}); the receiving peer does not allow overwriting",
                    e.info.hash.short()
                );
                return Err(Refusal::new(ErrorCode::Exists, message).into());
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Refusal::from(e).into()),
        }
        let _memory = self.reserve(size).ok_or_else(|| {
            tracing::info!("refused upload of {name} from {who}: too many uploads in progress");
            Refusal::new(ErrorCode::Busy, "receiving too many uploads at once; try again later")
        })?;
        let partial = self.catalog.store().create_partial(&name, size).await.map_err(Refusal::from)?;
        link.conn.send(&Message::Accept { id }).await?;

        let started = self.rt.now();
        let manifest = match self.receive_manifest(link, id, &name, size, hash).await {
            Ok(m) => m,
            Err(Stop::Cancelled) => return Ok(()),
            Err(Stop::Failed(f)) => return Err(f),
        };
        let mut writer = BlockWriter::new(manifest.clone(), 0..size)
            .map_err(|e| Refusal::new(ErrorCode::Corrupt, format!("{name}: {e}")))?;
        let out = partial.writer();
        while !writer.is_done() {
            let frame = link.conn.read_frame(Wait::Busy).await?;
            match frame {
                Some(Frame::Data(d)) if d.id == id => {
                    let runs = writer.push(d.offset, d.bytes).map_err(|e| {
                        tracing::warn!("refused upload of {name} from {who}: {e}");
                        Refusal::new(ErrorCode::Corrupt, format!("{name}: {e}"))
                    })?;
                    for (offset, run) in runs {
                        out.write_at(offset, run)
                            .await
                            .map_err(|e| Refusal::from(StoreError::io(format!("writing {name}"), e)))?;
                    }
                }
                Some(Frame::Data(d)) => {
                    return Err(ConnError::Unexpected(format!("data for request {} during upload {id}", d.id)).into());
                }
                Some(Frame::Control(m)) => {
                    if link.take(m, id)? {
                        tracing::info!("upload of {name} from {who}: cancelled by the sender");
                        return Ok(());
                    }
                }
                None => return Err(ConnError::Closed.into()),
            }
            // However the data trickles, the whole must keep a minimum pace.
            let elapsed = self.rt.now() - started;
            if elapsed > self.config.io_timeout + rate_time(writer.next_offset() as usize) {
                tracing::info!("dropped upload of {name} from {who}: too slow");
                let message = format!("{name}: upload slower than the minimum rate; giving up");
                return Err(ConnError::Unexpected(message).into());
            }
        }
        let commit = partial.commit(self.config.allow_overwrite);
        let meta = link.working(id, commit).await?.map_err(Refusal::from)?;
        self.catalog.insert(meta, manifest).await;
        self.catalog.written_by_us().await;
        link.conn.send(&Message::Stored { id, outcome: StoreOutcome::Stored }).await?;
        let secs = (self.rt.now() - started).as_secs_f64();
        tracing::info!("stored {name}: {} from {who} in {secs:.2}s", crate::units::bytes(size));
        Ok(())
    }

    /// Takes the memory an upload of `size` bytes needs from the upload
    /// budget: its buffers and its manifest. `None` if it does not fit now.
    fn reserve(&self, size: u64) -> Option<Vec<SemaphoreGuardArc>> {
        let manifest_bytes = block_count(size, block_size_for(size)) * 32;
        let permits = MIN_PERMITS + manifest_bytes.div_ceil(1 << 20) as usize;
        // All or nothing: the permits taken so far go back if one is missing.
        (0..permits).map(|_| self.shared.uploads.try_acquire_arc()).collect()
    }

    /// Reads the uploader's manifest pages and checks them against `hash`.
    async fn receive_manifest<St: Stream>(
        &self,
        link: &mut Link<St, R>,
        id: u32,
        name: &FileName,
        size: u64,
        hash: Hash,
    ) -> Result<Arc<Manifest>, Stop> {
        let block_size = block_size_for(size);
        let want = block_count(size, block_size);
        // The upload holds its name and its memory meanwhile: the manifest
        // must come whole within the IO timeout plus its size at the
        // minimum rate, however its pages trickle.
        let deadline = self.rt.now() + self.config.io_timeout + rate_time(want as usize * 32);
        let mut cvs = Vec::new();
        loop {
            let left = deadline.saturating_since(self.rt.now());
            let msg = match timeout(&self.rt, left, link.conn.read_message(Wait::Busy)).await {
                Ok(m) => m?,
                Err(_) => {
                    tracing::info!("dropped upload of {name} from {}: the manifest did not come in time", link.who);
                    return Err(ConnError::Stalled(self.config.io_timeout).into());
                }
            };
            let (info, bs, first, page, last) = match msg {
                Message::ManifestPage { id: i, info, block_size, first_block, cvs, last } if i == id => {
                    (info, block_size, first_block, cvs, last)
                }
                Message::Cancel { id: c } if c == id => return Err(Stop::Cancelled),
                Message::ManifestPage { .. } => {
                    return Err(ConnError::Unexpected(format!("{} during upload {id}", kind(&msg))).into());
                }
                other => {
                    if link.take(other, id)? {
                        return Err(Stop::Cancelled);
                    }
                    continue;
                }
            };
            if info.name.to_nfc() != *name || info.size != size || info.hash != hash {
                return Err(Refusal::new(ErrorCode::BadRequest, "manifest is for another file than offered").into());
            }
            if bs != block_size {
                let message = format!("block size {bs} for a file of {size} bytes");
                return Err(Refusal::new(ErrorCode::BadRequest, message).into());
            }
            if first != cvs.len() as u64 {
                return Err(Refusal::new(ErrorCode::BadRequest, "manifest pages out of order").into());
            }
            if cvs.len() as u64 + page.len() as u64 > want {
                return Err(Refusal::new(ErrorCode::BadRequest, "manifest has more blocks than the file").into());
            }
            if page.is_empty() && !last {
                return Err(Refusal::new(ErrorCode::BadRequest, "an empty manifest page that is not the last").into());
            }
            cvs.extend(page);
            if last {
                break;
            }
        }
        let m = Manifest::from_parts(size, block_size, cvs, hash)
            .map_err(|e| Refusal::new(ErrorCode::Corrupt, format!("{name}: manifest refused: {e}")))?;
        Ok(Arc::new(m))
    }
}

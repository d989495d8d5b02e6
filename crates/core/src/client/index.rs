//! Talking to an index: joining and publishing as a serving peer, and
//! asking what is on the network and who serves a file.

use std::time::Duration;

use super::{ClientError, Session, unexpected};
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{BadBlock, CAP_INDEX, FileInfo, FileRef, IndexedFile, Message, PeerInfo, Sources};
use crate::runtime::Runtime;
use crate::transport::Stream;

impl<S: Stream, R: Runtime> Session<S, R> {
    /// Whether the peer is an index (and not a peer serving files).
    pub fn is_index(&self) -> bool {
        self.peer().capabilities & CAP_INDEX != 0
    }

    /// Joins the index as a peer serving on `port`. Returns how long the
    /// index waits for a sign of life before it forgets this peer.
    pub async fn join(&mut self, port: u16) -> Result<Duration, ClientError> {
        let id = self.id();
        self.conn.send(&Message::Join { id, port }).await?;
        match self.response(id).await? {
            Message::Joined { ttl_secs, .. } => Ok(Duration::from_secs(u64::from(ttl_secs.max(1)))),
            other => Err(unexpected(&other)),
        }
    }

    /// Publishes a page of this peer's files (at most
    /// [`LIST_PAGE`](crate::protocol::LIST_PAGE) of each kind). Returns how
    /// many files the index lists for this peer now.
    pub async fn publish(
        &mut self,
        files: Vec<FileInfo>,
        removed: Vec<FileName>,
        reset: bool,
    ) -> Result<u32, ClientError> {
        let id = self.id();
        self.conn.send(&Message::Publish { id, files, removed, reset }).await?;
        match self.response(id).await? {
            Message::Published { files, .. } => Ok(files),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the index this joined peer downloads `info` and serves what
    /// it has of it (a partial source, until the session ends). Returns
    /// how many contents the index lists it fetching.
    pub async fn fetching(&mut self, info: FileInfo) -> Result<u32, ClientError> {
        let id = self.id();
        self.conn.send(&Message::Fetching { id, info }).await?;
        match self.response(id).await? {
            Message::Published { files, .. } => Ok(files),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the index this peer is alive.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let id = self.id();
        self.conn.send(&Message::Ping { id }).await?;
        match self.response(id).await? {
            Message::Pong { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Every file on the network, with the number of peers serving each.
    pub async fn index_files(&mut self) -> Result<Vec<IndexedFile>, ClientError> {
        let id = self.id();
        self.conn.send(&Message::IndexList { id }).await?;
        self.pages(id, "the index", "files", |m| match m {
            Message::IndexFiles { files, last, .. } => Ok((files, last)),
            other => Err(other),
        })
        .await
    }

    /// Who serves `file`, per content, the most served first.
    pub async fn locate(&mut self, file: FileRef) -> Result<Vec<Sources>, ClientError> {
        let id = self.id();
        self.conn.send(&Message::Locate { id, file }).await?;
        match self.response(id).await? {
            Message::Located { mut found, .. } => {
                for sources in &mut found {
                    sources.peers.iter_mut().for_each(clean);
                }
                Ok(found)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The peers online.
    pub async fn peers(&mut self) -> Result<Vec<PeerInfo>, ClientError> {
        let id = self.id();
        self.conn.send(&Message::ListPeers { id }).await?;
        let mut peers = self
            .pages(id, "the index", "peers", |m| match m {
                Message::PeerPage { peers, last, .. } => Ok((peers, last)),
                other => Err(other),
            })
            .await?;
        peers.iter_mut().for_each(clean);
        Ok(peers)
    }

    /// Tells the index that the peer at `addr` sent a block of `hash` that
    /// failed verification, with the evidence.
    pub async fn report(&mut self, hash: Hash, addr: &str, bad: BadBlock) -> Result<(), ClientError> {
        let id = self.id();
        self.conn.send(&Message::Report { id, hash, addr: addr.to_owned(), bad: Box::new(bad) }).await?;
        match self.response(id).await? {
            Message::Noted { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// A peer as a (possibly hostile) index describes it, made safe to print:
/// its id and address go to terminals and logs.
fn clean(p: &mut PeerInfo) {
    p.id = crate::sanitize(&p.id, crate::protocol::MAX_PEER_ID);
    p.addr = crate::sanitize(&p.addr, 300);
}

//! A downloader's use of the index: where a file is, and telling the index
//! about peers that served bad data.

use std::collections::HashMap;
use std::time::Duration;

use async_lock::Mutex;

use crate::client::{ClientConfig, ClientError, Session};
use crate::download::{Finder, Problem, ProblemKind, SourceSpec, Wanted};
use crate::hash::Hash;
use crate::protocol::{BadBlock, ErrorCode, FileInfo, IndexedFile, PeerInfo, Sources};
use crate::runtime::Runtime;
use crate::transport::Transport;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Why the index named no sources to download from.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The index could not be asked.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The address is a peer serving files, not an index.
    #[error("{0} is not an index (it serves files: name it as a PEER instead)")]
    NotIndex(String),
    /// No peer on the network serves it.
    #[error("no peer on the network serves {0}")]
    NotFound(Wanted),
    /// Peers serve different contents under the name.
    #[error("{name} is served with {} different contents; choose one with --hash", .found.len())]
    Ambiguous {
        /// The name.
        name: String,
        /// Each content and who serves it, the most served first.
        found: Vec<Sources>,
    },
}

/// Where to download a file from, as the index says.
#[derive(Debug, Clone)]
pub struct Found {
    /// The content.
    pub info: FileInfo,
    /// Its sources, labelled by peer id (or address where ids are
    /// missing or shared).
    pub sources: Vec<SourceSpec>,
    /// The same peers as the index knows them (fingerprints over TLS).
    pub peers: Vec<PeerInfo>,
}

/// Names for `peers` in output: the peer id where it is set and no other
/// of them has it, the address otherwise.
pub fn peer_labels(peers: &[PeerInfo]) -> Vec<String> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for p in peers {
        *ids.entry(p.id.as_str()).or_default() += 1;
    }
    peers
        .iter()
        .map(|p| {
            let unique = !p.id.is_empty() && ids.get(p.id.as_str()) == Some(&1);
            if unique { p.id.clone() } else { p.addr.clone() }
        })
        .collect()
}

/// Most tries of one question when the index says it is asked too often
/// (it allows a burst, then a steady rate per session).
const BUSY_TRIES: u32 = 8;

/// A downloader's connection to the index: opened on first use, kept for
/// every file of a command (a download of thousands of files asks the
/// index thousands of times), opened again if it breaks.
pub struct IndexClient<T: Transport, R> {
    transport: T,
    rt: R,
    addr: String,
    config: ClientConfig,
    session: Mutex<Option<Session<T::Stream, R>>>,
}

impl<T: Transport, R> std::fmt::Debug for IndexClient<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexClient").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// A download asks the index again for the peers that hold its content
/// (whole or in part), when it is short of sources. This peer itself (its
/// own download, announced under its id) is left out.
impl<T: Transport, R: Runtime> Finder for IndexClient<T, R> {
    fn find(&self, hash: Hash) -> BoxFuture<'_, Vec<SourceSpec>> {
        Box::pin(async move {
            match self.lookup(&Wanted::Hash(hash)).await {
                Ok(found) => found
                    .sources
                    .into_iter()
                    .zip(&found.peers)
                    .filter(|(_, p)| p.id != self.config.peer_id || self.config.peer_id.is_empty())
                    .map(|(s, _)| s)
                    .collect(),
                Err(e) => {
                    tracing::debug!(index = %self.addr, "cannot ask for more sources: {e}");
                    Vec::new()
                }
            }
        })
    }
}

/// One try of a question to the index.
enum Try<O> {
    Done(O),
    /// The session broke: open another.
    Broken(ClientError),
    /// Asked too often: wait a little.
    Busy(ClientError),
}

impl<T: Transport, R: Runtime> IndexClient<T, R> {
    /// A client of the index at `addr`; nothing is connected yet.
    pub fn new(transport: T, rt: R, addr: &str, config: ClientConfig) -> Self {
        Self { transport, rt, addr: addr.to_owned(), config, session: Mutex::new(None) }
    }

    /// The index's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Every peer the index knows to be online.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, LookupError> {
        self.ask(|s| Box::pin(s.peers())).await
    }

    /// Every file on the network.
    pub async fn files(&self) -> Result<Vec<IndexedFile>, LookupError> {
        self.ask(|s| Box::pin(s.index_files())).await
    }

    /// Who serves `wanted`. A name served with more than one content is
    /// [`LookupError::Ambiguous`].
    pub async fn lookup(&self, wanted: &Wanted) -> Result<Found, LookupError> {
        let file = wanted.request();
        let mut found = self.ask(|s| Box::pin(s.locate(file.clone()))).await?;
        if found.len() > 1 {
            return Err(LookupError::Ambiguous { name: wanted.to_string(), found });
        }
        let Some(one) = found.pop().filter(|s| !s.peers.is_empty()) else {
            return Err(LookupError::NotFound(wanted.clone()));
        };
        let sources = peer_labels(&one.peers)
            .into_iter()
            .zip(&one.peers)
            .map(|(label, p)| SourceSpec { label, addr: p.addr.clone() })
            .collect();
        Ok(Found { info: one.info, sources, peers: one.peers })
    }

    /// Tells the index that peers sent blocks of `hash` that failed
    /// verification: each peer's address, with the evidence.
    pub async fn report_corrupt(&self, hash: Hash, reports: &[(String, BadBlock)]) -> Result<(), LookupError> {
        for (addr, bad) in reports {
            self.ask(|s| {
                let (addr, bad) = (addr.clone(), bad.clone());
                Box::pin(async move { s.report(hash, &addr, bad).await })
            })
            .await?;
        }
        Ok(())
    }

    /// Closes the session, if one is open.
    pub async fn close(&self) {
        let session = self.session.lock().await.take();
        if let Some(s) = session {
            s.close().await;
        }
    }

    /// Asks `question` on the kept session: once more on a fresh session if
    /// the kept one broke (the index may have closed it while idle), and
    /// again after a pause while the index says it is asked too often.
    async fn ask<O, F>(&self, mut question: F) -> Result<O, LookupError>
    where
        F: for<'s> FnMut(&'s mut Session<T::Stream, R>) -> BoxFuture<'s, Result<O, ClientError>>,
    {
        let mut reopened = false;
        let mut busy = 0;
        loop {
            match self.try_once(&mut question).await? {
                Try::Done(o) => return Ok(o),
                Try::Broken(e) if reopened => return Err(e.into()),
                Try::Broken(_) => reopened = true,
                Try::Busy(e) if busy + 1 >= BUSY_TRIES => return Err(e.into()),
                Try::Busy(_) => {
                    busy += 1;
                    self.rt.sleep(Duration::from_millis(50 << busy.min(4))).await;
                }
            }
        }
    }

    async fn try_once<O, F>(&self, question: &mut F) -> Result<Try<O>, LookupError>
    where
        F: for<'s> FnMut(&'s mut Session<T::Stream, R>) -> BoxFuture<'s, Result<O, ClientError>>,
    {
        let mut kept = self.session.lock().await;
        let fresh = kept.is_none();
        let session = match &mut *kept {
            Some(s) => s,
            None => {
                let s = Session::connect(&self.transport, &self.rt, &self.addr, &self.config).await?;
                if !s.is_index() {
                    return Err(LookupError::NotIndex(self.addr.clone()));
                }
                kept.insert(s)
            }
        };
        match question(session).await {
            Ok(o) => Ok(Try::Done(o)),
            Err(e) if e.code() == Some(ErrorCode::Busy) => Ok(Try::Busy(e)),
            // A session just opened that breaks is not retried.
            Err(e @ ClientError::Conn(_)) => {
                *kept = None;
                if fresh { Err(e.into()) } else { Ok(Try::Broken(e)) }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The sources a download found sending corrupt blocks, by address, with
/// the evidence, each once. Labels are as in `sources`; a label not there
/// is a source heard of while downloading (peer exchange), which is
/// labelled by its address.
pub fn corrupt_sources<'a>(
    sources: &'a [SourceSpec],
    problems: impl IntoIterator<Item = (&'a str, &'a Problem)>,
) -> Vec<(String, BadBlock)> {
    let mut out: Vec<(String, BadBlock)> = Vec::new();
    for (label, problem) in problems {
        if problem.kind == ProblemKind::Corrupt
            && let Some(bad) = &problem.evidence
        {
            let addr = sources.iter().find(|s| s.label == label).map_or(label, |s| s.addr.as_str());
            if !out.iter().any(|(a, _)| a == addr) {
                out.push((addr.to_string(), bad.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(block: u64) -> Problem {
        Problem {
            kind: ProblemKind::Corrupt,
            detail: "bad block".into(),
            evidence: Some(BadBlock { block, got: [1; 32], want: [2; 32], proof: Vec::new() }),
        }
    }

    #[test]
    fn corrupt_sources_are_named_by_address_each_once() {
        let sources = [SourceSpec { label: "peer-a".into(), addr: "198.18.0.2:5000".into() }];
        let refused = Problem { kind: ProblemKind::Refused, detail: "no".into(), evidence: None };
        let (a, a2, heard, other) = (corrupt(1), corrupt(2), corrupt(3), refused);
        let problems = [
            ("peer-a", &a),
            ("peer-a", &a2),
            // Heard of by peer exchange: its label is its address.
            ("198.18.0.9:41000", &heard),
            ("198.18.0.7:5000", &other),
        ];
        let out = corrupt_sources(&sources, problems);
        let addrs: Vec<&str> = out.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(addrs, ["198.18.0.2:5000", "198.18.0.9:41000"]);
        assert_eq!(out[0].1.block, 1);
    }
}

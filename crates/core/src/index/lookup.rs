//! A downloader's use of the index: where a file is, and telling the index
//! about peers that served bad data.

use std::collections::HashMap;

use crate::client::{ClientConfig, ClientError, Session};
use crate::download::{Problem, ProblemKind, SourceSpec, Wanted};
use crate::hash::Hash;
use crate::protocol::{FileInfo, FileRef, PeerInfo, Sources};
use crate::runtime::Runtime;
use crate::transport::Transport;

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

/// Asks the index at `index` who serves `wanted`. A name served with more
/// than one content is [`LookupError::Ambiguous`].
pub async fn lookup<T: Transport, R: Runtime>(
    transport: &T,
    rt: &R,
    index: &str,
    config: &ClientConfig,
    wanted: &Wanted,
) -> Result<Found, LookupError> {
    let mut session = Session::connect(transport, rt, index, config).await?;
    if !session.is_index() {
        return Err(LookupError::NotIndex(index.to_owned()));
    }
    let file = match wanted {
        Wanted::Name(n) => FileRef::Name(n.to_string()),
        Wanted::Hash(h) => FileRef::Hash(*h),
    };
    let mut found = session.locate(file).await?;
    session.close().await;
    if found.len() > 1 {
        return Err(LookupError::Ambiguous { name: wanted.to_string(), found });
    }
    let Some(one) = found.pop().filter(|s| !s.peers.is_empty()) else {
        return Err(LookupError::NotFound(wanted.clone()));
    };
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for p in &one.peers {
        *ids.entry(p.id.as_str()).or_default() += 1;
    }
    let sources = one
        .peers
        .iter()
        .map(|p| {
            let unique = !p.id.is_empty() && ids.get(p.id.as_str()) == Some(&1);
            SourceSpec { label: if unique { p.id.clone() } else { p.addr.clone() }, addr: p.addr.clone() }
        })
        .collect();
    Ok(Found { info: one.info, sources, peers: one.peers })
}

/// Tells the index that the peers at `addrs` sent data of `hash` that
/// failed verification.
pub async fn report_corrupt<T: Transport, R: Runtime>(
    transport: &T,
    rt: &R,
    index: &str,
    config: &ClientConfig,
    hash: Hash,
    addrs: &[String],
) -> Result<(), ClientError> {
    if addrs.is_empty() {
        return Ok(());
    }
    let mut session = Session::connect(transport, rt, index, config).await?;
    for addr in addrs {
        session.suspect(hash, addr).await?;
    }
    session.close().await;
    Ok(())
}

/// The addresses of the sources a download found sending corrupt data,
/// from its per-source problems (labels as in `sources`).
pub fn corrupt_sources<'a>(
    sources: &'a [SourceSpec],
    problems: impl IntoIterator<Item = (&'a str, &'a Problem)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (label, problem) in problems {
        if problem.kind == ProblemKind::Corrupt
            && let Some(s) = sources.iter().find(|s| s.label == label)
            && !out.contains(&s.addr)
        {
            out.push(s.addr.clone());
        }
    }
    out
}

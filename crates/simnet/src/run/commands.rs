//! The commands a step runs on a peer (list, download, upload), and how
//! their results are merged into one step result.

use super::*;
use p2p_core::download::{Downloader, Finder, Wanted};
use p2p_core::index::{IndexClient, LookupError, announce_fetching, corrupt_sources};

pub(super) fn failed(kind: ErrorKind, result: String) -> Ended {
    Ended { ok: false, kind: Some(kind), result: format!("error: {result}"), ..Ended::default() }
}

/// A short word for each kind, as it appears in results.
pub(super) fn kind_word(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::AlreadyUploading => "already being uploaded",
        ErrorKind::NotFound => "does not have",
        ErrorKind::Exists => "exists",
        ErrorKind::Forbidden => "does not accept",
        ErrorKind::Busy => "busy",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Timeout => "no answer",
        ErrorKind::Connection => "connection",
        ErrorKind::Other => "error",
    }
}

pub(super) fn kind_of_code(code: ErrorCode) -> ErrorKind {
    match code {
        ErrorCode::AlreadyUploading => ErrorKind::AlreadyUploading,
        ErrorCode::NotFound => ErrorKind::NotFound,
        ErrorCode::Exists => ErrorKind::Exists,
        ErrorCode::Forbidden => ErrorKind::Forbidden,
        ErrorCode::Busy => ErrorKind::Busy,
        ErrorCode::Corrupt => ErrorKind::Corrupt,
        _ => ErrorKind::Other,
    }
}

pub(super) fn kind_of(e: &ClientError) -> ErrorKind {
    if let Some(code) = e.code() {
        return kind_of_code(code);
    }
    match e {
        ClientError::Connect { .. } => ErrorKind::Connection,
        ClientError::ConnectTimeout { .. } => ErrorKind::Timeout,
        ClientError::Manifest(_) => ErrorKind::Corrupt,
        ClientError::Conn(c) => {
            let text = c.to_string();
            if text.contains("no progress") || text.contains("timed out") {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connection
            }
        }
        _ => ErrorKind::Other,
    }
}

/// The kind of a download source's failure.
pub(super) fn kind_of_problem(p: &Problem) -> ErrorKind {
    match p.kind {
        ProblemKind::NotFound => ErrorKind::NotFound,
        ProblemKind::Corrupt => ErrorKind::Corrupt,
        ProblemKind::Busy => ErrorKind::Busy,
        ProblemKind::Refused => ErrorKind::Forbidden,
        ProblemKind::Slow | ProblemKind::Late => ErrorKind::Timeout,
        ProblemKind::Unreachable => ErrorKind::Connection,
        ProblemKind::Different | ProblemKind::Other => ErrorKind::Other,
    }
}

pub(super) async fn file_list<T: Transport>(
    transport: &T,
    rt: &SimRuntime,
    client: &ClientConfig,
    addrs: &Addresses,
    peers: &[String],
) -> Ended {
    let tasks: Vec<_> = peers
        .iter()
        .map(|p| {
            let (t, rt2, c, addr) = (transport.clone(), rt.clone(), client.clone(), addrs.of(p));
            rt.spawn(async move {
                let mut s = Session::connect(&t, &rt2, &addr, &c).await?;
                let files = s.list().await?;
                s.close().await;
                Ok::<_, ClientError>(files)
            })
        })
        .collect();
    let mut parts = Vec::new();
    let mut kind = None;
    for (p, task) in peers.iter().zip(tasks) {
        let result = match task.await {
            Ok(files) => {
                let names: Vec<String> = files.iter().map(|f| f.name.to_string()).collect();
                let n = files.len();
                format!("{n} file{} [{}]", if n == 1 { "" } else { "s" }, names.join(", "))
            }
            Err(e) => {
                kind = kind.or(Some(kind_of(&e)));
                format!("error: {e}")
            }
        };
        parts.push(Part { peer: p.clone(), bytes: 0, result, ended: None });
    }
    finish(parts, kind)
}

/// One step's result from the results of each peer that did it.
pub(super) fn merge(mut done: Vec<(String, Time, Ended)>) -> Ended {
    if done.len() == 1
        && let Some((_, _, e)) = done.pop()
    {
        return e;
    }
    let kind = done.iter().find_map(|(_, _, e)| e.kind);
    let part_ends: Vec<Time> = done.iter().map(|(_, at, _)| *at).collect();
    let sources = done.iter().flat_map(|(_, _, e)| e.sources.iter().cloned()).collect();
    let parts = done
        .into_iter()
        .map(|(peer, at, e)| Part {
            peer,
            bytes: e.parts.iter().map(|p| p.bytes).sum(),
            result: e.result,
            ended: Some(secs(at.since_epoch())),
        })
        .collect();
    let mut ended = finish(parts, kind);
    ended.part_ends = part_ends;
    ended.sources = sources;
    ended
}

pub(super) fn finish(parts: Vec<Part>, kind: Option<ErrorKind>) -> Ended {
    let ok = kind.is_none();
    let failed = parts.iter().filter(|p| p.result.starts_with("error")).count();
    let result = if ok { "ok".to_string() } else { format!("error: {failed} of {} failed", parts.len()) };
    Ended { ok, kind, result, parts, ..Ended::default() }
}

/// Where a download takes its sources from.
pub(super) enum Sources {
    /// These peers.
    Named(Vec<String>),
    /// Every peer the index at this address names.
    Index(String),
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn fetch<T: Transport>(
    transport: &T,
    rt: &SimRuntime,
    catalog: &Catalog<MemStore>,
    client: &ClientConfig,
    addrs: &Addresses,
    name: &str,
    pin: Option<Hash>,
    from: Sources,
    swarm: bool,
) -> Ended {
    let Ok(file) = FileName::new(name) else {
        return failed(ErrorKind::Other, format!("{name:?} is not a file name"));
    };
    let wanted = Wanted::Name(file.clone());
    // The peer serves its downloads to the others on its own port.
    let port = addrs.of(&client.peer_id).rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
    let (sources, index) = match from {
        Sources::Named(peers) => {
            (peers.iter().map(|p| SourceSpec { label: p.clone(), addr: addrs.of(p) }).collect::<Vec<_>>(), None)
        }
        Sources::Index(addr) => {
            let ix = IndexClient::new(transport.clone(), rt.clone(), &addr, client.clone());
            match ix.lookup(&wanted).await {
                Ok(found) => {
                    if swarm {
                        // The index names this peer to the others as a
                        // source, from when its download starts.
                        let (tell, told) = async_channel::bounded(1);
                        let _ = tell.try_send(found.info.clone());
                        let (t, rt2, catalog, client) =
                            (transport.clone(), rt.clone(), catalog.clone(), client.clone());
                        rt.spawn(async move {
                            let _ = announce_fetching(&t, &rt2, &catalog, &addr, &client, port, told).await;
                        })
                        .detach();
                    }
                    (found.sources, Some((ix, found.info.hash)))
                }
                Err(e) => {
                    ix.close().await;
                    return match e {
                        LookupError::NotFound(_) => {
                            failed(ErrorKind::NotFound, format!("the index names no peer with {name}"))
                        }
                        e => failed(ErrorKind::Other, e.to_string()),
                    };
                }
            }
        }
    };
    // Pinned to the content asked for, or else to the one the index named.
    let wanted = match pin.or(index.as_ref().map(|(_, hash)| *hash)) {
        Some(hash) => Wanted::Exact { name: file.clone(), hash },
        None => wanted,
    };
    let config = DownloadConfig { client: client.clone(), swarm: swarm.then_some(port), ..DownloadConfig::default() };
    // With an index, the download asks it again when short of sources.
    let downloader = Downloader::new(transport.clone(), rt.clone(), catalog.clone(), config);
    let finder = index.as_ref().map(|(ix, _)| ix as &dyn Finder);
    let result = downloader.download_finding(wanted, &sources, finder, |_| {}).await;
    downloader.close().await;
    if let Some((ix, hash)) = index {
        // Downloaders tell the index who sent corrupt data.
        let problems: Vec<(&str, &Problem)> = match &result {
            Ok(r) => r.sources.iter().filter_map(|s| s.problem.as_ref().map(|p| (s.label.as_str(), p))).collect(),
            Err(e) => e.reasons().iter().map(|(l, p)| (l.as_str(), p)).collect(),
        };
        let _ = ix.report_corrupt(hash, &corrupt_sources(&sources, problems)).await;
        ix.close().await;
    }
    // What each source gave, for the checks.
    let sources: Vec<FromSource> = match &result {
        Ok(r) => r.sources.iter().map(|s| FromSource::new(&s.label, s.bytes, s.problem.as_ref())).collect(),
        Err(e) => e.reasons().iter().map(|(label, why)| FromSource::new(label, 0, Some(why))).collect(),
    };
    match result {
        Ok(report) => {
            let parts = report
                .sources
                .iter()
                .map(|s| Part {
                    peer: s.label.clone(),
                    bytes: s.bytes,
                    result: match &s.problem {
                        Some(p) => format!("dropped: {p}"),
                        None => "ok".into(),
                    },
                    ended: None,
                })
                .collect();
            let result = match report.outcome {
                Fetched::Downloaded if report.resumed > 0 => format!(
                    "ok: downloaded {} bytes ({} resumed), blake3 {}",
                    report.info.size, report.resumed, report.info.hash
                ),
                Fetched::Downloaded => {
                    format!("ok: downloaded {} bytes, blake3 {}", report.info.size, report.info.hash)
                }
                Fetched::AlreadyPresent => "ok: already there".to_string(),
            };
            Ended { ok: true, kind: None, result, parts, sources, ..Ended::default() }
        }
        Err(e) => {
            let parts: Vec<Part> = e
                .reasons()
                .iter()
                .map(|(peer, why)| Part { peer: peer.clone(), bytes: 0, result: format!("error: {why}"), ended: None })
                .collect();
            let kind = e.reasons().first().map_or(ErrorKind::Other, |(_, why)| kind_of_problem(why));
            Ended { ok: false, kind: Some(kind), result: format!("error: {e}"), parts, sources, ..Ended::default() }
        }
    }
}

/// `index_list`: the network's files as the index at `index` lists them.
pub(super) async fn index_list<T: Transport>(
    transport: &T,
    rt: &SimRuntime,
    client: &ClientConfig,
    addrs: &Addresses,
    index: &str,
) -> Ended {
    let asked = async {
        let mut s = Session::connect(transport, rt, &addrs.of(index), client).await?;
        let files = s.index_files().await?;
        s.close().await;
        Ok::<_, ClientError>(files)
    };
    match asked.await {
        Ok(files) => {
            let n = files.len();
            let result = format!("ok: {n} file{} on the network", if n == 1 { "" } else { "s" });
            Ended { ok: true, kind: None, result, ..Ended::default() }
        }
        Err(e) => failed(kind_of(&e), e.to_string()),
    }
}

pub(super) async fn push<T: Transport>(
    transport: &T,
    rt: &SimRuntime,
    catalog: &Catalog<MemStore>,
    client: &ClientConfig,
    addrs: &Addresses,
    name: &str,
    to: &[String],
) -> Ended {
    let Ok(file) = FileName::new(name) else {
        return failed(ErrorKind::Other, format!("{name:?} is not a file name"));
    };
    let entry = match catalog.by_name(&file).await {
        Ok(e) => e,
        Err(e) => return failed(ErrorKind::NotFound, format!("cannot read {name}: {e}")),
    };
    let tasks: Vec<_> = to
        .iter()
        .map(|p| {
            let (t, rt2, c, addr) = (transport.clone(), rt.clone(), client.clone(), addrs.of(p));
            let (store, entry, file) = (catalog.store().clone(), entry.clone(), file.clone());
            rt.spawn(async move {
                let (handle, _) = store.open(&file).await.map_err(ClientError::Local)?;
                let mut s = Session::connect(&t, &rt2, &addr, &c).await?;
                let outcome = s.upload(&rt2, Arc::new(handle), &entry).await?;
                s.close().await;
                Ok::<_, ClientError>(outcome)
            })
        })
        .collect();
    let mut parts = Vec::new();
    let mut kind = None;
    for (p, task) in to.iter().zip(tasks) {
        let (bytes, result) = match task.await {
            Ok(StoreOutcome::Stored) => (entry.info.size, "stored".to_string()),
            Ok(StoreOutcome::Unchanged) => (0, "unchanged".to_string()),
            Err(e) => {
                kind = kind.or(Some(kind_of(&e)));
                (0, format!("error: {e}"))
            }
        };
        parts.push(Part { peer: p.clone(), bytes, result, ended: None });
    }
    finish(parts, kind)
}

pub(super) fn parts_text(parts: &[Part]) -> String {
    parts.iter().map(|p| format!("; {} {} ({} bytes)", p.peer, p.result, p.bytes)).collect()
}

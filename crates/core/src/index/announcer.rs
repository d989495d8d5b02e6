//! A serving peer's session with the index: join, publish the file list,
//! then publish what changes and ping while nothing does; reconnect with
//! backoff when the session ends.
//!
//! What changed is found by scanning the folder (names, sizes and
//! modification stamps, no hashing) when told something may have changed
//! (a folder watcher's signal), and every [`AnnounceConfig::rescan`]
//! anyway, which catches what a watcher misses. A file is published only
//! once two scans at least [`AnnounceConfig::settle`] apart saw it the
//! same: a file still being written is not (our own downloads and
//! uploads appear under their names whole, and are published at once on
//! the next scan after that). It is hashed once, off the async threads,
//! by the catalog. A burst of signals is one scan: signals are gathered
//! for [`AnnounceConfig::debounce`] first.

use std::collections::BTreeMap;
use std::time::Duration;

use async_channel::Receiver;

use crate::catalog::Catalog;
use crate::client::{ClientConfig, ClientError, Session};
use crate::download::SWARM_FROM;
use crate::index::state::MAX_FETCHING;
use crate::name::FileName;
use crate::protocol::{ErrorCode, FileInfo, LIST_PAGE};
use crate::runtime::{Runtime, Time, join_all};
use crate::store::{FileMeta, Store, StoreError};
use crate::transport::Transport;

/// Files hashed at once by a scan.
const HASH_AT_ONCE: usize = 16;

/// Settings of an announcer.
#[derive(Debug, Clone)]
pub struct AnnounceConfig {
    /// Connection settings (the peer id is the one the index shows).
    pub client: ClientConfig,
    /// The port this peer serves on.
    pub port: u16,
    /// Signals of change gathered into one scan.
    pub debounce: Duration,
    /// Least time between the two scans that must agree on a file.
    pub settle: Duration,
    /// A full scan this often, signal or not.
    pub rescan: Duration,
    /// Longest wait before connecting again.
    pub max_backoff: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            port: 0,
            debounce: Duration::from_millis(250),
            settle: Duration::from_millis(500),
            rescan: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Keeps a peer's files published at an index.
#[derive(Debug)]
pub struct Announcer<T, R, S: Store> {
    transport: T,
    rt: R,
    catalog: Catalog<S>,
    index: String,
    config: AnnounceConfig,
    /// The last scan: what each file looked like, and since when.
    seen: BTreeMap<FileName, (FileMeta, Time)>,
    /// What the index has from this session.
    published: BTreeMap<FileName, FileInfo>,
}

/// Why a session with the index ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Local(#[from] StoreError),
    #[error("{0} is not an index (it serves files; name it as a peer instead)")]
    NotIndex(String),
}

impl<T: Transport, R: Runtime, S: Store> Announcer<T, R, S> {
    /// An announcer of `catalog`'s files to the index at `index`.
    pub fn new(transport: T, rt: R, catalog: Catalog<S>, index: &str, config: AnnounceConfig) -> Self {
        Self {
            transport,
            rt,
            catalog,
            index: index.to_owned(),
            config,
            seen: BTreeMap::new(),
            published: BTreeMap::new(),
        }
    }

    /// Runs for as long as the peer serves: each signal on `changes` means
    /// the folder may have changed.
    pub async fn run(mut self, changes: Receiver<()>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = self.rt.now();
            let end = self.session(&changes).await;
            tracing::warn!("index {}: {end}; connecting again in {backoff:?}", self.index);
            // A session that lasted starts the backoff over.
            if self.rt.now().saturating_since(started) > self.config.max_backoff {
                backoff = Duration::from_secs(1);
            }
            // Jitter, so that peers of an index that restarted do not all
            // come back at once.
            let jitter = Duration::from_millis(self.rt.random_u64() % 1000);
            self.rt.sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    async fn session(&mut self, changes: &Receiver<()>) -> SessionEnd {
        match self.serve_session(changes).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn serve_session(&mut self, changes: &Receiver<()>) -> Result<std::convert::Infallible, SessionEnd> {
        let mut session = Session::connect(&self.transport, &self.rt, &self.index, &self.config.client).await?;
        if !session.is_index() {
            return Err(SessionEnd::NotIndex(self.index.clone()));
        }
        let ttl = session.join(self.config.port).await?;
        tracing::info!("joined the index at {}", self.index);
        self.published.clear();
        // A full list first (`reset` forgets what an earlier session left).
        let mut reset = true;
        let ping_every = (ttl / 3).max(Duration::from_millis(100));
        self.sync(&mut session, &mut reset, ping_every).await?;
        let mut next_ping = self.rt.now() + ping_every;
        let mut next_scan = self.rt.now() + self.config.rescan;
        loop {
            // Files seen changing are looked at again once they may have settled.
            let recheck = self.unsettled_until();
            let now = self.rt.now();
            let wake = [Some(next_ping), Some(next_scan), recheck].into_iter().flatten().min().unwrap_or(next_ping);
            let timer = self.rt.sleep(wake.saturating_since(now));
            let signalled = futures_lite::future::or(async { changes.recv().await.is_ok() }, async {
                timer.await;
                false
            })
            .await;
            if signalled {
                self.gather(changes).await;
            }
            let now = self.rt.now();
            if signalled || now >= next_scan || recheck.is_some_and(|t| now >= t) {
                self.sync(&mut session, &mut reset, ping_every).await?;
                next_scan = self.rt.now() + self.config.rescan;
                next_ping = self.rt.now() + ping_every;
            } else if now >= next_ping {
                session.ping().await?;
                next_ping = self.rt.now() + ping_every;
            }
        }
    }

    /// Takes further signals until none came for `debounce` (at most four
    /// times that in all, so a steady stream of changes is still published).
    async fn gather(&self, changes: &Receiver<()>) {
        let until = self.rt.now() + self.config.debounce * 4;
        loop {
            let now = self.rt.now();
            if now >= until {
                return;
            }
            let quiet = self.rt.sleep(self.config.debounce.min(until.saturating_since(now)));
            let more = futures_lite::future::or(async { changes.recv().await.is_ok() }, async {
                quiet.await;
                false
            })
            .await;
            if !more {
                return;
            }
        }
    }

    /// When the earliest file seen changing may have settled.
    fn unsettled_until(&self) -> Option<Time> {
        let now = self.rt.now();
        self.seen.values().map(|(_, since)| *since + self.config.settle).filter(|&t| t > now).min()
    }

    /// Scans the folder and publishes what changed since the last publish.
    /// Looks at the folder and publishes what changed since the last
    /// publish. Hashing new files can take long (a large file copied in):
    /// the index is pinged meanwhile, so it does not forget this peer.
    async fn sync(
        &mut self,
        session: &mut Session<T::Stream, R>,
        reset: &mut bool,
        ping_every: Duration,
    ) -> Result<(), SessionEnd> {
        let rt = self.rt.clone();
        let (files, removed) = {
            let mut look = std::pin::pin!(self.look());
            loop {
                let tick = rt.sleep(ping_every);
                let done = futures_lite::future::or(async { Some(look.as_mut().await) }, async {
                    tick.await;
                    None
                })
                .await;
                match done {
                    Some(changes) => break changes?,
                    None => session.ping().await?,
                }
            }
        };
        if files.is_empty() && removed.is_empty() && !*reset {
            return Ok(());
        }
        let (added, gone) = (files.len(), removed.len());
        let mut refused = None;
        let mut files = files.into_iter().peekable();
        let mut removed = removed.into_iter().peekable();
        loop {
            let page: Vec<FileInfo> = files.by_ref().take(LIST_PAGE).collect();
            let gone_page: Vec<FileName> = removed.by_ref().take(LIST_PAGE).collect();
            for name in &gone_page {
                self.published.remove(name);
            }
            match session.publish(page.clone(), gone_page, *reset).await {
                Ok(listed) => tracing::debug!(listed, "published a page to the index"),
                // Past one of the index's bounds: it lists what fits, and
                // the session goes on; the log says what was left out.
                Err(e) if e.code() == Some(ErrorCode::TooLarge) => refused = Some(e),
                Err(e) => return Err(e.into()),
            }
            *reset = false;
            for info in page {
                self.published.insert(info.name.clone(), info);
            }
            if files.peek().is_none() && removed.peek().is_none() {
                break;
            }
        }
        match refused {
            Some(e) => tracing::warn!(
                "index {}: published {added} new or changed and {gone} gone, but it did not list them all: {e}",
                self.index
            ),
            None if added + gone > 0 => tracing::info!("published to the index: {added} new or changed, {gone} gone"),
            None => {}
        }
        Ok(())
    }

    /// Scans the folder and hashes what settled: the files new or changed
    /// since the last publish, and the names gone.
    async fn look(&mut self) -> Result<(Vec<FileInfo>, Vec<FileName>), SessionEnd> {
        let now = self.rt.now();
        let metas = self.catalog.scan().await?;
        let mut seen = BTreeMap::new();
        let mut settled = Vec::new();
        for meta in metas {
            let since = match self.seen.get(&meta.name) {
                Some((old, since)) if *old == meta => *since,
                _ => now,
            };
            seen.insert(meta.name.clone(), (meta.clone(), since));
            if now.saturating_since(since) >= self.config.settle {
                settled.push(meta);
            }
        }
        // Hashed a few at a time (each off the async threads): a folder of
        // ten thousand new files is not hashed one after the other.
        let mut files = Vec::new();
        for batch in settled.chunks(HASH_AT_ONCE) {
            let entries = join_all(batch.iter().map(|m| self.catalog.entry(m.clone())).collect()).await;
            for entry in entries {
                match entry {
                    Ok(e) if self.published.get(&e.info.name) != Some(&e.info) => files.push(e.info),
                    Ok(_) => {}
                    // Gone or changed since the scan: the next scan sees it as it is.
                    Err(StoreError::NotFound(_) | StoreError::Changed(_) | StoreError::TooLarge(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let removed: Vec<FileName> = self.published.keys().filter(|n| !seen.contains_key(*n)).cloned().collect();
        self.seen = seen;
        Ok((files, removed))
    }
}

/// Why a downloader stopped telling the index what it fetches.
#[derive(Debug, thiserror::Error)]
pub enum FetchingEnd {
    /// The session failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The address is a peer, not an index.
    #[error("{0} is not an index")]
    NotIndex(String),
}

/// Tells the index at `index` which contents this peer downloads and
/// serves what it has of on `port`: each [`FileInfo`] that comes on
/// `files`, as soon as its download has gone live in `catalog` (before, it
/// has nothing to serve). One session for them all, kept alive so that
/// the index names this peer as a partial source of each (and, once one
/// is done, as a peer that has it all) until the future is dropped, at
/// most [`MAX_FETCHING`](crate::index::state::MAX_FETCHING) of them. Files
/// too small to swarm are not told. Returns once `files` is closed and
/// nothing is left to tell, or if the session fails.
pub async fn announce_fetching<T: Transport, R: Runtime, S: Store>(
    transport: &T,
    rt: &R,
    catalog: &Catalog<S>,
    index: &str,
    client: &ClientConfig,
    port: u16,
    files: Receiver<FileInfo>,
) -> Result<(), FetchingEnd> {
    let mut waiting: Vec<FileInfo> = Vec::new();
    let mut session = None;
    let mut ping_every = Duration::from_secs(10);
    // The index must hear from this session within its TTL, whatever
    // else wakes this loop.
    let mut next_ping: Option<Time> = None;
    let mut told = 0;
    let mut open = true;
    loop {
        let listener = catalog.live_listener();
        let (live, still): (Vec<FileInfo>, Vec<FileInfo>) =
            waiting.drain(..).partition(|info| catalog.went_live(&info.hash));
        waiting = still;
        for info in live {
            if told >= MAX_FETCHING {
                tracing::debug!(file = %info.name, "not named to the index: it takes {MAX_FETCHING} at most");
                continue;
            }
            if session.is_none() {
                let mut s = Session::connect(transport, rt, index, client).await?;
                if !s.is_index() {
                    return Err(FetchingEnd::NotIndex(index.to_owned()));
                }
                ping_every = (s.join(port).await? / 3).max(Duration::from_millis(100));
                session = Some(s);
            }
            if let Some(s) = session.as_mut() {
                let name = info.name.clone();
                match s.fetching(info).await {
                    Ok(_) => {
                        told += 1;
                        tracing::debug!(file = %name, "the index names this peer as a source");
                    }
                    // Refused (too many at once, say): the others stay named.
                    Err(e) if e.code().is_some() => tracing::debug!(file = %name, "the index did not take it: {e}"),
                    Err(e) => return Err(e.into()),
                }
                next_ping = Some(rt.now() + ping_every);
            }
        }
        if let (Some(s), Some(at)) = (session.as_mut(), next_ping)
            && rt.now() >= at
        {
            s.ping().await?;
            next_ping = Some(rt.now() + ping_every);
        }
        if !open && waiting.is_empty() && session.is_none() {
            return Ok(());
        }
        let timer = rt.sleep(next_ping.map_or(ping_every, |at| at.saturating_since(rt.now())));
        let next = futures_lite::future::or(
            async {
                match open {
                    true => Some(files.recv().await.ok()),
                    false => std::future::pending().await,
                }
            },
            futures_lite::future::or(
                async {
                    listener.await;
                    None
                },
                async {
                    timer.await;
                    None
                },
            ),
        )
        .await;
        match next {
            Some(Some(info)) if info.size >= SWARM_FROM => waiting.push(info),
            Some(Some(_)) | None => {}
            Some(None) => open = false,
        }
    }
}

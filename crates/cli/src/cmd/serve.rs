//! `p2p serve PEER_ID [--dir DIR] [--listen ADDR] [--allow-overwrite]`

use std::time::Duration;

use anyhow::Context as _;
use p2p_core::index::{AnnounceConfig, Announcer};
use p2p_core::runtime::Runtime;
use p2p_core::server::{Server, ServerConfig, UploadPolicy};
use p2p_core::transport::{Listener, Transport};
use p2p_host::FsStore;
use serde_json::json;

use super::interrupt;
use crate::args::{Serve, UploadsArg};
use crate::config::{Loaded, Uploads};
use crate::net::{self, Net};
use crate::settings::{FILE_NAME, PeerList};
use crate::watch;
use crate::{Context, Status, UsageError};

pub(crate) fn run(ctx: &Context, args: Serve) -> anyhow::Result<Status> {
    net::check_ca(ctx.ca.as_ref())?;
    let config = Loaded::find(ctx.config.as_deref())?;
    let id = match (&args.peer_id, &config) {
        (Some(id), Some(c)) if *id != c.config.id => anyhow::bail!(
            "this folder's identity is {:?} ({}), not {id:?}: serve as {:?} or from another folder",
            c.config.id,
            c.path.display(),
            c.config.id
        ),
        (Some(id), _) => id.clone(),
        (None, Some(c)) => c.config.id.clone(),
        (None, None) => {
            return Err(
                UsageError("name the PEER_ID to serve as (or run `p2p init` to give this folder one)".into()).into()
            );
        }
    };
    let tracker = super::tracker_target(ctx, args.tracker.as_deref())?;
    let list = PeerList::find(ctx.settings.as_deref())?;
    let addr = match (
        &args.listen,
        list.as_ref().and_then(|l| l.get(&id)),
        config.as_ref().and_then(|c| c.config.listen.clone()),
    ) {
        (Some(a), _, _) => a.clone(),
        (None, Some(entry), _) => entry.addr(),
        (None, None, Some(a)) => a,
        (None, None, None) => return Err(no_address(&id, list.as_ref())),
    };
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => super::served_dir(ctx)?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot open {}", dir.display()))?;

    let (net, gate) = net::for_server(ctx.transport, config.as_ref(), ctx.ca.as_ref(), ctx.settings.as_deref())?;
    let tls = matches!(net, Net::Tls(_));
    let uploads = match (args.uploads, args.no_uploads, config.as_ref().and_then(|c| c.config.uploads)) {
        (Some(UploadsArg::Nobody), _, _) | (None, true, _) | (None, false, Some(Uploads::Nobody)) => {
            UploadPolicy::Nobody
        }
        (Some(UploadsArg::Known), _, _) | (None, false, Some(Uploads::KnownPeers)) => UploadPolicy::KnownPeers,
        (Some(UploadsArg::Anyone), _, _) | (None, false, Some(Uploads::Anyone)) => UploadPolicy::Anyone,
        // Over TLS, strangers may not push; plain TCP is for trusted
        // networks, where the original tool let anyone push.
        (None, false, None) if tls => UploadPolicy::KnownPeers,
        (None, false, None) => UploadPolicy::Anyone,
    };
    let private = args.private || config.as_ref().is_some_and(|c| c.config.private);
    if private && !tls {
        anyhow::bail!("--private needs TLS: over plain TCP no peer can be told from another (run `p2p init`)");
    }
    let rt = &ctx.rt;
    // Signals are watched before the port opens (see `interrupt`).
    let stop = interrupt();
    let listener = rt
        .block_on(net.bind(&addr))
        .with_context(|| format!("cannot listen on {addr} (is another peer running there?)"))?;
    let bound = listener.local_addr()?;
    // Idle connections last as long as --timeout, and the caps fit in
    // the descriptors this process may open (two per connection: the
    // socket and the file being sent).
    let timeout = Duration::from_secs(args.timeout.max(1));
    let defaults = ServerConfig::default();
    let (max_connections, max_handshakes) =
        p2p_host::connection_caps(p2p_host::open_files_limit(), 2, defaults.max_connections, defaults.max_handshakes);
    let config = ServerConfig {
        peer_id: id.clone(),
        uploads,
        private,
        gate,
        allow_overwrite: args.allow_overwrite,
        io_timeout: timeout,
        idle_timeout: timeout,
        max_connections,
        max_handshakes,
        ..defaults
    };
    let store = FsStore::new(&dir);
    let swept = store.sweep_partials();
    if swept > 0 {
        tracing::info!("removed {swept} partial files left by transfers that were killed");
    }
    let server = Server::new(store, rt.clone(), config);

    let fingerprint = net.fingerprint();
    if ctx.out.json {
        let mut line = json!({ "peer": id, "address": bound, "dir": dir.display().to_string() });
        super::Via { transport: net.label(), identity: fingerprint }.annotate(&mut line);
        ctx.out.json(&line);
    } else {
        // Printed even with -q: scripts and tests read the bound address here.
        let how = super::transport_note(fingerprint);
        println!("serving {} as {id} on {bound} ({how})", dir.display());
    }
    match (tls, uploads) {
        (false, UploadPolicy::Anyone) => tracing::warn!(
            "plain TCP: connections are neither encrypted nor authenticated, and anyone who can reach {bound} may \
             push files (`p2p init` for TLS, or --uploads nobody)"
        ),
        (false, _) => tracing::warn!("plain TCP: connections are neither encrypted nor authenticated"),
        _ => {}
    }

    // With an index: announce the folder to it, and watch the folder so
    // that changes reach it within a second or two.
    let _watcher = match tracker {
        Some(index) => {
            let (client, _) = super::client_net(ctx, &[Ok(index.clone())])?;
            let port = bound.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
            let (changes, signals) = async_channel::bounded(1);
            let watcher = match watch::watch(&dir, changes) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!("{e:#}; changes reach the index at the next full look (every 30 s)");
                    None
                }
            };
            let config =
                AnnounceConfig { client: super::client_config(args.timeout, &id), port, ..AnnounceConfig::default() };
            tracing::info!("announcing to the index {}", index.display());
            let announcer = Announcer::new(client, rt.clone(), server.catalog().clone(), &index.addr, config);
            rt.spawn(announcer.run(signals)).detach();
            watcher
        }
        None => None,
    };

    let indexer = server.clone();
    rt.spawn(async move {
        match indexer.index().await {
            Ok(1) => tracing::info!("1 file ready"),
            Ok(n) => tracing::info!("{n} files ready"),
            Err(e) => tracing::warn!("cannot list the served folder: {e}"),
        }
    })
    .detach();

    rt.block_on(server.run(listener, stop));
    tracing::info!("stopped");
    Ok(Status::Ok)
}

/// Why there is no address to listen on.
fn no_address(id: &str, list: Option<&PeerList>) -> anyhow::Error {
    match list {
        Some(list) => anyhow::anyhow!("peer {id:?} is not in {} (known: {})", list.path.display(), list.ids()),
        None => anyhow::anyhow!(
            "no {FILE_NAME} in this folder or its parent to find {id:?} in: create one (lines \"peerID ip port\"), \
             pass --settings FILE, or pass --listen ADDR"
        ),
    }
}

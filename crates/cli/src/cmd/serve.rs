//! `p2p serve PEER_ID [--dir DIR] [--listen ADDR] [--allow-overwrite]`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use p2p_core::runtime::Runtime;
use p2p_core::server::{Server, ServerConfig, UploadPolicy};
use p2p_core::transport::{Listener, Transport};
use p2p_host::FsStore;
use p2p_transport_tcp::TcpTransport;
use serde_json::json;

use super::interrupt;
use crate::args::Serve;
use crate::settings::{FILE_NAME, PeerList};
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Serve) -> anyhow::Result<Status> {
    let addr = match &args.listen {
        Some(a) => a.clone(),
        None => listen_addr(ctx, &args.peer_id)?,
    };
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("served_files"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot open {}", dir.display()))?;

    let rt = &ctx.rt;
    let listener = rt
        .block_on(TcpTransport.bind(&addr))
        .with_context(|| format!("cannot listen on {addr} (is another peer running there?)"))?;
    let bound = listener.local_addr()?;
    let config = ServerConfig {
        peer_id: args.peer_id.clone(),
        uploads: if args.no_uploads { UploadPolicy::Nobody } else { UploadPolicy::Anyone },
        allow_overwrite: args.allow_overwrite,
        io_timeout: Duration::from_secs(args.timeout.max(1)),
        ..ServerConfig::default()
    };
    let store = FsStore::new(&dir);
    let swept = store.sweep_partials();
    if swept > 0 {
        tracing::info!("removed {swept} partial files left by transfers that were killed");
    }
    let server = Server::new(store, rt.clone(), config);

    if ctx.out.json {
        let line = json!({
            "peer": args.peer_id, "address": bound, "dir": dir.display().to_string(), "transport": "tcp",
        });
        ctx.out.json(&line);
    } else {
        // Printed even with -q: scripts and tests read the bound address here.
        println!("serving {} as {} on {bound} (tcp)", dir.display(), args.peer_id);
    }

    let indexer = server.clone();
    rt.spawn(async move {
        match indexer.index().await {
            Ok(1) => tracing::info!("1 file ready"),
            Ok(n) => tracing::info!("{n} files ready"),
            Err(e) => tracing::warn!("cannot list the served folder: {e}"),
        }
    })
    .detach();

    rt.block_on(server.run(listener, interrupt()));
    tracing::info!("stopped");
    Ok(Status::Ok)
}

/// The address the peer list gives `id`.
fn listen_addr(ctx: &Context, id: &str) -> anyhow::Result<String> {
    let Some(list) = PeerList::find(ctx.settings.as_deref())? else {
        anyhow::bail!(
            "no {FILE_NAME} in this folder or its parent to find {id:?} in: create one (lines \"peerID ip port\"), \
             pass --settings FILE, or pass --listen ADDR"
        );
    };
    match list.get(id) {
        Some(p) => Ok(p.addr()),
        None => anyhow::bail!("peer {id:?} is not in {} (known: {})", list.path.display(), list.ids()),
    }
}

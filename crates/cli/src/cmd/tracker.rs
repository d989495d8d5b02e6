//! `p2p tracker [--listen ADDR] [--ttl SECS] [--private]`: the index.

use std::time::Duration;

use anyhow::Context as _;
use p2p_core::index::{Tracker, TrackerConfig};
use p2p_core::transport::{Listener, Transport};
use serde_json::json;

use super::interrupt;
use crate::args::Tracker as Args;
use crate::config::Loaded;
use crate::net::{self, Net};
use crate::{Context, Status, UsageError};

/// Where the index listens unless told: the port BitTorrent trackers use.
const DEFAULT_LISTEN: &str = "0.0.0.0:6969";

pub(crate) fn run(ctx: &Context, args: Args) -> anyhow::Result<Status> {
    if args.ttl == 0 {
        return Err(UsageError("--ttl must be at least 1 second".into()).into());
    }
    net::check_ca(ctx.ca.as_ref())?;
    // The index's side of the config (the hybrid config.json's server
    // section), else this folder's own identity.
    let config = Loaded::find(ctx.config.as_deref())?.map(|mut c| match c.server.take() {
        Some(server) => *server,
        None => c,
    });
    let listen = args
        .listen
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.config.listen.clone()))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let (net, gate) = net::for_server(ctx.transport, config.as_ref(), ctx.ca.as_ref(), ctx.settings.as_deref())?;
    let tls = matches!(net, Net::Tls(_));
    let private = args.private || config.as_ref().is_some_and(|c| c.config.private);
    if private && !tls {
        anyhow::bail!("--private needs TLS: over plain TCP no peer can be told from another (run `p2p init`)");
    }
    let rt = &ctx.rt;
    // Signals are watched before the port opens (see `interrupt`).
    let stop = interrupt();
    let listener = rt
        .block_on(net.bind(&listen))
        .with_context(|| format!("cannot listen on {listen} (is another index running there?)"))?;
    let bound = listener.local_addr()?;
    let id = config.as_ref().map(|c| c.config.id.clone()).unwrap_or_default();
    // Connections that have not joined last as long as --timeout when
    // idle, and the caps fit in the descriptors this process may open.
    let timeout = Duration::from_secs(args.timeout.max(1));
    let defaults = TrackerConfig::default();
    let (max_connections, max_handshakes) =
        p2p_host::connection_caps(p2p_host::open_files_limit(), 1, defaults.max_connections, defaults.max_handshakes);
    let tracker_config = TrackerConfig {
        peer_id: id,
        ttl: Duration::from_secs(args.ttl),
        private,
        gate,
        io_timeout: timeout,
        idle_timeout: timeout,
        max_connections,
        max_handshakes,
        ..defaults
    };
    let tracker = Tracker::new(rt.clone(), tracker_config);

    let fingerprint = net.fingerprint();
    if ctx.out.json {
        let mut line = json!({ "index": bound, "ttl": args.ttl });
        super::Via { transport: net.label(), identity: fingerprint }.annotate(&mut line);
        ctx.out.json(&line);
    } else {
        // Printed even with -q: scripts and tests read the bound address here.
        let how = super::transport_note(fingerprint);
        println!("index on {bound} ({how}); peers are forgotten after {}s of silence", args.ttl);
    }
    if !tls {
        tracing::warn!("plain TCP: anyone who can reach {bound} may announce files and ask for the list");
    }
    rt.block_on(tracker.run(listener, stop));
    tracing::info!("stopped");
    Ok(Status::Ok)
}

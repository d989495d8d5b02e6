//! `p2p init [--id NAME] [--listen ADDR]`

use std::path::Path;

use anyhow::Context as _;
use p2p_transport_tls::Identity;
use serde_json::json;

use crate::args::Init;
use crate::config::{FILE_NAME, template};
use crate::{Context, Status};

const CERT: &str = "p2p-cert.pem";
const KEY: &str = "p2p-key.pem";

pub(crate) fn run(ctx: &Context, args: Init) -> anyhow::Result<Status> {
    let config_path = ctx.config.clone().unwrap_or_else(|| FILE_NAME.into());
    let dir = config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let (cert, key) = if dir == Path::new(".") { (CERT.into(), KEY.into()) } else { (dir.join(CERT), dir.join(KEY)) };
    if !args.force {
        for p in [&config_path, &cert, &key] {
            if p.exists() {
                anyhow::bail!(
                    "{} already exists: this folder has an identity (`p2p id` shows it; --force replaces it)",
                    p.display()
                );
            }
        }
    }
    let id = match args.id {
        Some(id) => id,
        None => {
            let here = std::fs::canonicalize(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
            here.file_name().and_then(|n| n.to_str()).map(str::to_owned).unwrap_or_else(|| "peer".into())
        }
    };
    // The peer list and known_peers.txt are split on whitespace, with `#`
    // starting a comment.
    if id.is_empty()
        || id.len() > p2p_core::protocol::MAX_PEER_ID
        || id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        anyhow::bail!("{id:?} is not a usable peer id: 1 to 128 bytes, no spaces or '#'");
    }
    if let Some(listen) = &args.listen
        && listen.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none()
    {
        anyhow::bail!("--listen {listen:?}: expected host:port");
    }
    let identity = Identity::create(&id, &cert, &key)?;
    std::fs::write(&config_path, template(&id, args.listen.as_deref(), CERT, KEY))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let fp = identity.fingerprint();
    ctx.out.json(&json!({
        "id": id,
        "fingerprint": fp.to_string(),
        "config": config_path.display().to_string(),
        "cert": cert.display().to_string(),
        "key": key.display().to_string(),
    }));
    ctx.out.line(&format!("created the identity of {id}: {fp}"));
    ctx.out.line(&format!("  {}, {}, {} (keep the key private)", config_path.display(), cert.display(), key.display()));
    ctx.out.line("  other peers pin it with a fourth column in their peer_settings.txt:");
    ctx.out.line(&format!("  {id} <ip> <port> {fp}"));
    Ok(Status::Ok)
}

//! `p2p peers [--tracker PEER]`: the peers the index knows to be online.

use serde_json::json;

use super::{client_config, client_net, index_session, require_tracker, until_cancelled};
use crate::args::Peers;
use crate::output;
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Peers) -> anyhow::Result<Status> {
    let index = require_tracker(ctx, args.tracker.as_deref())?;
    let (net, id) = client_net(ctx, &[Ok(index.clone())])?;
    let config = client_config(args.timeout, &id);
    let rt = &ctx.rt;
    let asked = until_cancelled(ctx, async {
        let mut s = index_session(&net, rt, &index, &config).await?;
        let peers = s.peers().await.map_err(|e| output::describe(&e))?;
        let via = super::Via::of(&s);
        s.close().await;
        Ok::<_, String>((peers, via))
    });
    let Some(asked) = asked else { return Ok(Status::Cancelled) };
    let (peers, via) = match asked {
        Ok(found) => found,
        Err(e) => {
            ctx.out.error(&format!("{}: {e}", index.display()));
            ctx.out.json(&json!({ "index": index.label, "error": e }));
            return Ok(Status::Failed);
        }
    };
    let count = match peers.len() {
        1 => "1 peer online".to_string(),
        n => format!("{n} peers online"),
    };
    ctx.out.line(&format!("{}: {count}", index.display_via(&via.short())));
    let id_w = peers.iter().map(|p| p.id.chars().count()).max().unwrap_or(0);
    let addr_w = peers.iter().map(|p| p.addr.len()).max().unwrap_or(0);
    for p in &peers {
        let files = if p.files == 1 { "1 file".to_string() } else { format!("{} files", p.files) };
        let fp = p.fingerprint.map(|f| format!("  tls {}", f.short())).unwrap_or_default();
        let pad = id_w - p.id.chars().count();
        ctx.out.line(&format!("  {}{:pad$}  {:addr_w$}  {files}{fp}", p.id, "", p.addr));
    }
    let brief: Vec<String> = peers.iter().map(|p| format!("{} ({}, {} files)", p.id, p.addr, p.files)).collect();
    ctx.out.brief(&format!("{count}: {}", brief.join(", ")));
    let doc: Vec<serde_json::Value> = peers
        .iter()
        .map(|p| {
            let mut v = json!({ "id": p.id, "addr": p.addr, "files": p.files });
            if let Some(fp) = p.fingerprint {
                v["fingerprint"] = fp.to_string().into();
            }
            v
        })
        .collect();
    ctx.out.json(&serde_json::Value::Array(doc));
    Ok(Status::Ok)
}

//! `p2p peers [--tracker PEER]`: the peers the index knows to be online.

use serde_json::json;

use super::ask_index;
use crate::args::Peers;
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Peers) -> anyhow::Result<Status> {
    let (index, peers, via) = match ask_index(ctx, args.tracker.as_deref(), args.timeout, |s| Box::pin(s.peers()))? {
        Ok(asked) => asked,
        Err(status) => return Ok(status),
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

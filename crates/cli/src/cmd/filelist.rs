//! `p2p filelist PEER...`

use p2p_core::protocol::FileInfo;
use p2p_core::units;
use serde_json::json;

use p2p_core::protocol::IndexedFile;

use super::{ask_index, client_config, client_net, report_listing, targets, with_each_peer};
use crate::args::Filelist;
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Filelist) -> anyhow::Result<Status> {
    if args.peers.is_empty() {
        return network(ctx, &args);
    }
    let targets = targets(ctx, &args.peers)?;
    let (net, id) = client_net(ctx, &targets)?;
    let Some(results) = with_each_peer(ctx, &net, &targets, &client_config(args.timeout, &id), |mut s| async move {
        let files = s.list().await?;
        s.close().await;
        Ok(files)
    }) else {
        return Ok(Status::Cancelled);
    };

    let mut all_ok = true;
    let mut doc = Vec::new();
    let mut brief = Vec::new();
    for (arg, (target, result)) in args.peers.iter().zip(targets.iter().zip(results)) {
        let label = target.as_ref().map_or(arg.clone(), |t| t.label.clone());
        match result {
            Ok((files, via)) => {
                if let Ok(t) = target {
                    print_table(ctx, &t.display_via(&via.short()), &files);
                }
                report_listing(ctx, &label, &files);
                brief.push(brief_listing(&label, &files));
                let mut entry = json!({ "peer": label });
                via.annotate(&mut entry);
                entry["files"] = files.iter().map(file_json).collect::<Vec<_>>().into();
                doc.push(entry);
            }
            Err(e) => {
                all_ok = false;
                match target {
                    Ok(t) => ctx.out.error(&format!("{}: {e}", t.display())),
                    Err(_) => ctx.out.error(&e),
                }
                doc.push(json!({ "peer": label, "error": e }));
            }
        }
    }
    ctx.out.json(&serde_json::Value::Array(doc));
    if !brief.is_empty() {
        ctx.out.brief(&brief.join("; "));
    }
    Ok(all_ok.into())
}

/// One peer's files on part of a line: "peer1: a.txt (17 B), b.bin (2.0 MiB)".
fn brief_listing(peer: &str, files: &[FileInfo]) -> String {
    if files.is_empty() {
        return format!("{peer}: no files");
    }
    let files: Vec<String> = files.iter().map(|f| format!("{} ({})", f.name.as_str(), units::bytes(f.size))).collect();
    format!("{peer}: {}", files.join(", "))
}

fn file_json(f: &FileInfo) -> serde_json::Value {
    json!({ "name": f.name.as_str(), "size": f.size, "hash": f.hash.to_string() })
}

fn print_table(ctx: &Context, peer: &str, files: &[FileInfo]) {
    let count = match files.len() {
        0 => "no files".to_string(),
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    };
    ctx.out.line(&format!("{peer}: {count}"));
    let sizes: Vec<String> = files.iter().map(|f| units::bytes(f.size)).collect();
    let name_w = files.iter().map(|f| f.name.as_str().chars().count()).max().unwrap_or(0);
    let size_w = sizes.iter().map(String::len).max().unwrap_or(0);
    for (f, size) in files.iter().zip(&sizes) {
        let name = f.name.as_str();
        let pad = name_w - name.chars().count();
        ctx.out.line(&format!("  {name}{:pad$}  {size:>size_w$}  {}", "", f.hash));
    }
}

/// The whole network's files, as the index knows them.
fn network(ctx: &Context, args: &Filelist) -> anyhow::Result<Status> {
    let asked = ask_index(ctx, args.tracker.as_deref(), args.timeout, |s| Box::pin(s.index_files()))?;
    let (index, files, via) = match asked {
        Ok(asked) => asked,
        Err(status) => return Ok(status),
    };
    let count = match files.len() {
        0 => "no files".to_string(),
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    };
    ctx.out.line(&format!("{}: {count} on the network", index.display_via(&via.short())));
    let sizes: Vec<String> = files.iter().map(|f| units::bytes(f.info.size)).collect();
    let name_w = files.iter().map(|f| f.info.name.as_str().chars().count()).max().unwrap_or(0);
    let size_w = sizes.iter().map(String::len).max().unwrap_or(0);
    for (f, size) in files.iter().zip(&sizes) {
        let name = f.info.name.as_str();
        let pad = name_w - name.chars().count();
        let peers = format!("{} peer{}", f.sources, plural(f.sources));
        ctx.out.line(&format!("  {name}{:pad$}  {size:>size_w$}  {}  {peers}", "", f.info.hash));
    }
    report_listing(ctx, &index.label, &files.iter().map(|f| f.info.clone()).collect::<Vec<_>>());
    let brief: Vec<String> = files
        .iter()
        .map(|f| format!("{} ({}, {} peer{})", f.info.name, units::bytes(f.info.size), f.sources, plural(f.sources)))
        .collect();
    ctx.out.brief(&format!("the network: {}", if brief.is_empty() { "no files".into() } else { brief.join(", ") }));
    let mut doc = json!({ "index": index.label });
    via.annotate(&mut doc);
    doc["files"] = files.iter().map(indexed_json).collect::<Vec<_>>().into();
    ctx.out.json(&doc);
    Ok(Status::Ok)
}

fn indexed_json(f: &IndexedFile) -> serde_json::Value {
    let mut v = file_json(&f.info);
    v["sources"] = f.sources.into();
    v
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

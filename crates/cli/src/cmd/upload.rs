//! `p2p upload FILE PEER...`

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use p2p_core::catalog::{Catalog, Entry};
use p2p_core::name::FileName;
use p2p_core::protocol::{FileInfo, StoreOutcome};
use p2p_core::runtime::Runtime;
use p2p_core::store::Store;
use p2p_host::{FsFile, FsStore};
use serde_json::json;

use super::{client_config, client_net, targets, until_cancelled, with_each_peer};
use crate::args::Upload;
use crate::output::transfer;
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Upload) -> anyhow::Result<Status> {
    let targets = targets(ctx, &args.peers)?;
    let rt = &ctx.rt;
    let served = super::served_dir(ctx)?;
    let Some(local) = until_cancelled(ctx, open_local(&args.file, &served)) else { return Ok(Status::Cancelled) };
    let (file, entry) = local?;
    let file = Arc::new(file);
    let (net, id) = client_net(ctx, &targets)?;
    let (rt2, upload) = (rt.clone(), entry.clone());
    let Some(results) = with_each_peer(ctx, &net, &targets, &client_config(args.timeout, &id), move |mut s| {
        let (rt, file, entry) = (rt2.clone(), file.clone(), upload.clone());
        async move {
            let started = rt.now();
            let outcome = s.upload(&rt, file, &entry).await?;
            s.close().await;
            Ok((outcome, rt.now() - started))
        }
    }) else {
        return Ok(Status::Cancelled);
    };

    let name = &entry.info.name;
    let mut all_ok = true;
    let mut doc = Vec::new();
    // The one-line result of a script: who stored it, who had it.
    let (mut stored, mut unchanged) = (Vec::new(), Vec::new());
    for (arg, (target, result)) in args.peers.iter().zip(targets.iter().zip(results)) {
        let label = target.as_ref().map_or(arg.clone(), |t| t.label.clone());
        let shown = target.as_ref().map_or(arg.clone(), |t| t.display());
        match result {
            Ok(((outcome, took), via)) => {
                let shown = target.as_ref().map_or(arg.clone(), |t| t.display_via(&via.short()));
                let status = match outcome {
                    StoreOutcome::Stored => {
                        ctx.out.line(&format!("{shown}: stored {name} ({})", transfer(entry.info.size, took)));
                        stored.push(label.clone());
                        "stored"
                    }
                    StoreOutcome::Unchanged => {
                        ctx.out.line(&format!("{shown}: {name} unchanged (the peer already has this exact file)"));
                        unchanged.push(label.clone());
                        "unchanged"
                    }
                };
                let mut v = json!({ "peer": label, "status": status });
                via.annotate(&mut v);
                doc.push(v);
            }
            Err(e) => {
                all_ok = false;
                match target {
                    Ok(_) => ctx.out.error(&format!("{shown}: {e}")),
                    Err(_) => ctx.out.error(&e),
                }
                doc.push(json!({ "peer": label, "status": "error", "error": e }));
            }
        }
    }
    ctx.out.json(&serde_json::Value::Array(doc));
    let brief: Vec<String> = [("stored on", stored), ("unchanged on", unchanged)]
        .into_iter()
        .filter(|(_, peers)| !peers.is_empty())
        .map(|(what, peers)| format!("{what} {}", peers.join(", ")))
        .collect();
    if !brief.is_empty() {
        ctx.out.brief(&format!("{name}: {}", brief.join("; ")));
    }
    Ok(all_ok.into())
}

/// Finds FILE (a name in the served folder, else a path), opens it and
/// gets its manifest (cached for served files).
async fn open_local(arg: &str, served: &Path) -> anyhow::Result<(FsFile, Entry)> {
    let has_separator = arg.contains('/') || arg.contains(std::path::MAIN_SEPARATOR);
    if !has_separator && served.join(arg).is_file() {
        let name = FileName::new(arg).with_context(|| format!("cannot upload {arg:?}"))?;
        let catalog = Catalog::new(FsStore::new(served));
        let entry = catalog.by_name(&name).await?;
        let (file, _) = catalog.store().open(&name).await?;
        return Ok((file, entry));
    }
    let path = PathBuf::from(arg);
    if !path.is_file() {
        if has_separator || path.exists() {
            anyhow::bail!("{arg} is not a file");
        }
        let shown = if served.is_relative() { format!("./{}", served.display()) } else { served.display().to_string() };
        anyhow::bail!("no file {arg:?} in {shown} or the current folder");
    }
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let name = FileName::new(base)
        .with_context(|| format!("cannot upload {}: peers would refuse its name {base:?}", path.display()))?;
    let (file, manifest) = FsStore::open_path(path).await?;
    let info = FileInfo { name, size: manifest.size(), hash: manifest.root() };
    Ok((file, Entry { info, manifest: Arc::new(manifest) }))
}

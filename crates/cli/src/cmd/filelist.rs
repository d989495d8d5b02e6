//! `p2p filelist PEER...`

use p2p_core::client::Session;
use p2p_core::protocol::FileInfo;
use p2p_core::runtime::Runtime;
use p2p_core::units;
use p2p_transport_tcp::TcpTransport;
use serde_json::json;

use super::{client_config, interrupted, targets, until_interrupted};
use crate::args::Filelist;
use crate::output::{self, describe};
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Filelist) -> anyhow::Result<Status> {
    let targets = targets(ctx, &args.peers)?;
    let config = client_config(args.timeout);
    let rt = &ctx.rt;
    let asked = until_interrupted(rt, async {
        let tasks: Vec<_> = targets
            .iter()
            .map(|t| {
                t.as_ref().ok().map(|t| {
                    let (rt2, config, addr) = (rt.clone(), config.clone(), t.addr.clone());
                    rt.spawn(async move {
                        let mut s = Session::connect(&TcpTransport, &rt2, &addr, &config).await?;
                        let files = s.list().await?;
                        s.close().await;
                        Ok::<_, p2p_core::client::ClientError>(files)
                    })
                })
            })
            .collect();
        let mut results = Vec::new();
        for (t, task) in targets.iter().zip(tasks) {
            results.push(match (t, task) {
                (Ok(_), Some(task)) => task.await.map_err(|e| describe(&e)),
                (Err(e), _) => Err(e.clone()),
                (Ok(_), None) => Err("not asked".into()),
            });
        }
        results
    });
    let Some(results) = asked else { interrupted() };

    let mut all_ok = true;
    let mut doc = Vec::new();
    for (arg, (target, result)) in args.peers.iter().zip(targets.iter().zip(results)) {
        let label = target.as_ref().map_or(arg.clone(), |t| t.label.clone());
        match result {
            Ok(files) => {
                if let Ok(t) = target {
                    print_table(ctx, &t.display(), &files);
                }
                doc.push(json!({ "peer": label, "files": files.iter().map(file_json).collect::<Vec<_>>() }));
            }
            Err(e) => {
                all_ok = false;
                match target {
                    Ok(t) => output::error(&format!("{}: {e}", t.display())),
                    Err(_) => output::error(&e),
                }
                doc.push(json!({ "peer": label, "error": e }));
            }
        }
    }
    ctx.out.json(&serde_json::Value::Array(doc));
    Ok(all_ok.into())
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

//! `p2p download NAME PEER... [--output DIR]`

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use p2p_core::catalog::Catalog;
use p2p_core::download::{DownloadConfig, DownloadError, Outcome, Progress, SourceSpec, download};
use p2p_core::name::FileName;
use p2p_core::runtime::{Runtime, Time};
use p2p_core::units;
use p2p_host::FsStore;
use serde_json::json;

use super::{client_config, client_net, interrupted, report_unresolved, targets, until_interrupted};
use crate::args::Download;
use crate::output::{self, transfer};
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, args: Download) -> anyhow::Result<Status> {
    let name = FileName::new(&args.name).with_context(|| format!("cannot download {:?}", args.name))?;
    let targets = targets(ctx, &args.peers)?;
    let resolved_all = report_unresolved(&targets);
    let sources: Vec<SourceSpec> =
        targets.iter().flatten().map(|t| SourceSpec { label: t.label.clone(), addr: t.addr.clone() }).collect();
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from("served_files"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("cannot open {}", dir.display()))?;
    let path = dir.join(name.as_str());

    let failed_json =
        |error: &str| json!({ "name": name.as_str(), "path": path.display().to_string(), "error": error });
    if sources.is_empty() {
        ctx.out.json(&failed_json("no usable peer"));
        return Ok(Status::Failed);
    }

    let rt = &ctx.rt;
    let catalog = Catalog::new(FsStore::new(&dir));
    let (net, id) = client_net(ctx, &targets)?;
    let config =
        DownloadConfig { client: client_config(args.timeout, &id), overwrite: args.overwrite, ..Default::default() };
    let mut bar = Bar::new(ctx.out.progress(), name.to_string(), rt.now());
    let started = rt.now();
    let result =
        until_interrupted(rt, download(&net, rt, &catalog, &name, &sources, &config, |p| bar.update(rt.now(), p)));
    bar.clear();
    let Some(result) = result else { interrupted() };
    let took = rt.now() - started;

    let report = match result {
        Ok(r) => r,
        Err(e) => {
            for (peer, why) in e.reasons() {
                output::error(&format!("{}: {why}", shown(&targets, peer)));
            }
            let summary = match &e {
                DownloadError::NoSource { .. } => format!("{name}: no peer could provide it"),
                other => other.to_string(),
            };
            output::error(&summary);
            let sources: Vec<_> =
                e.reasons().iter().map(|(peer, why)| json!({ "peer": peer, "bytes": 0, "error": why.detail, "problem": why.kind.as_str() })).collect();
            let mut doc = failed_json(&summary);
            doc["sources"] = serde_json::Value::Array(sources);
            ctx.out.json(&doc);
            return Ok(Status::Failed);
        }
    };

    for s in &report.sources {
        if let Some(problem) = &s.problem {
            ctx.out.warn(&format!("{}: {problem}", shown(&targets, &s.label)));
        }
    }
    let info = &report.info;
    match report.outcome {
        Outcome::Downloaded => {
            let from: Vec<String> = report
                .sources
                .iter()
                .filter(|s| s.bytes > 0)
                .map(|s| format!("{} ({})", s.label, units::bytes(s.bytes)))
                .collect();
            let from = if from.is_empty() { "no bytes needed".to_string() } else { from.join(", ") };
            let fetched = info.size - report.resumed;
            ctx.out.line(&format!("downloaded {name}: {} from {from}", transfer(fetched, took)));
            if report.resumed > 0 {
                ctx.out.line(&format!(
                    "  resumed: {} of {} were already here from an earlier try, verified again",
                    units::bytes(report.resumed),
                    units::bytes(info.size)
                ));
            }
        }
        Outcome::AlreadyPresent => {
            ctx.out.line(&format!("{name}: already in {} with the same content; nothing to fetch", dir.display()));
        }
    }
    ctx.out.line(&format!("  saved as {}", path.display()));
    ctx.out.line(&format!("  blake3 {}", info.hash));
    let ids: Vec<String> =
        report.sources.iter().filter_map(|s| s.identity.map(|fp| format!("{} {}", s.label, fp.short()))).collect();
    if ids.is_empty() {
        ctx.out.line(&format!("  over {}", report.transport));
    } else {
        ctx.out.line(&format!("  over {}: {}", report.transport, ids.join(", ")));
    }
    let status = match report.outcome {
        Outcome::Downloaded => "downloaded",
        Outcome::AlreadyPresent => "unchanged",
    };
    let sources: Vec<_> = report
        .sources
        .iter()
        .map(|s| {
            let mut v = json!({ "peer": s.label, "bytes": s.bytes });
            let via = super::Via { transport: report.transport, identity: s.identity };
            via.annotate(&mut v);
            if let Some(p) = &s.problem {
                v["error"] = json!(p.detail);
                v["problem"] = json!(p.kind.as_str());
            }
            v
        })
        .collect();
    ctx.out.json(&json!({
        "name": name.as_str(),
        "status": status,
        "hash": info.hash.to_string(),
        "size": info.size,
        "resumed": report.resumed,
        "path": path.display().to_string(),
        "sources": sources,
    }));
    Ok(resolved_all.into())
}

/// "peer1 (127.0.0.1:5000)" for a source label.
fn shown(targets: &[Result<crate::peers::Target, String>], label: &str) -> String {
    targets.iter().flatten().find(|t| t.label == label).map_or_else(|| label.to_string(), |t| t.display())
}

/// A one-line progress display on stderr, redrawn at most ten times a
/// second, only on a terminal.
struct Bar {
    on: bool,
    name: String,
    start: Time,
    last: Option<Time>,
    drawn: bool,
}

impl Bar {
    fn new(on: bool, name: String, start: Time) -> Self {
        Self { on, name, start, last: None, drawn: false }
    }

    fn update(&mut self, now: Time, p: Progress) {
        if !self.on || p.size == 0 || self.last.is_some_and(|t| now - t < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(now);
        let secs = (now - self.start).as_secs_f64().max(0.001);
        let pct = p.done as f64 * 100.0 / p.size as f64;
        let rate = (p.done as f64 / secs) as u64;
        let eta = if rate > 0 { format!(", {}s left", (p.size - p.done) / rate.max(1)) } else { String::new() };
        let line = format!(
            "\r{}: {pct:5.1}% of {} at {}/s from {} peer{}{eta}\x1b[K",
            self.name,
            units::bytes(p.size),
            units::bytes(rate),
            p.active,
            if p.active == 1 { "" } else { "s" }
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes()).and_then(|()| err.flush());
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
        }
    }
}

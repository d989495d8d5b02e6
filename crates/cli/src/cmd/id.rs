//! `p2p id`

use serde_json::json;

use crate::args::Id;
use crate::config::{FILE_NAME, Loaded};
use crate::{Context, Status};

pub(crate) fn run(ctx: &Context, _args: Id) -> anyhow::Result<Status> {
    let Some(config) = Loaded::find(ctx.config.as_deref())? else {
        anyhow::bail!("no identity here: no {FILE_NAME} in this folder (run `p2p init`, or pass --config FILE)");
    };
    let fp = config.identity()?.fingerprint();
    ctx.out.json(&json!({ "id": config.config.id, "fingerprint": fp.to_string() }));
    ctx.out.line(&format!("{} {fp}", config.config.id));
    Ok(Status::Ok)
}

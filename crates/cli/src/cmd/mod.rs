//! The subcommands, one module each, and what they share.

mod download;
mod filelist;
mod id;
mod init;
mod peers;
mod serve;
mod shell;
mod tracker;
mod upload;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures_lite::StreamExt;
use p2p_core::client::{ClientConfig, ClientError, Session};
use p2p_core::protocol::FileInfo;
use p2p_core::runtime::Runtime;
use p2p_core::transport::Fingerprint;
use p2p_host::SmolRuntime;

use crate::args::{Cli, Command};
use crate::config::Loaded;
use crate::net::{self, Choice, Net, NetStream};
use crate::output::{self, Output, Sink};
use crate::peers::{Target, resolve};
use crate::settings::PeerList;
use crate::{Context, Status, UsageError};

/// Most `--threads`.
const MAX_THREADS: usize = 256;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<Status> {
    // The thread that runs the command runs tasks too: N threads are N - 1
    // workers. One thread costs no wake-up between threads, which is what
    // a machine running dozens of peers on two cores runs short of; more
    // move a single large transfer faster.
    let workers = match cli.threads {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).max(1),
        Some(n @ 1..=MAX_THREADS) => n - 1,
        Some(n) => return Err(UsageError(format!("--threads {n}: expected 1 to {MAX_THREADS}")).into()),
    };
    let rt = SmolRuntime::new(workers);
    let globals = Globals {
        json: cli.json,
        quiet: cli.quiet,
        settings: cli.settings,
        config: cli.config,
        transport: cli.transport,
        ca: cli.ca,
    };
    match cli.command {
        Command::Shell(args) => shell::run(rt, &globals, args),
        command => {
            let ctx = context(rt, &globals, &command, Sink::Std, Cancel::Signals);
            execute(&ctx, command)
        }
    }
}

/// The options given before the subcommand: they hold for every command
/// the process runs (the shell runs many).
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    pub(crate) settings: Option<PathBuf>,
    pub(crate) config: Option<PathBuf>,
    pub(crate) transport: Option<Choice>,
    pub(crate) ca: Option<PathBuf>,
}

/// The context `command` runs in: its own options, else the global ones.
pub(crate) fn context(rt: SmolRuntime, globals: &Globals, command: &Command, sink: Sink, cancel: Cancel) -> Context {
    let (json, quiet, settings, transport, ca) = match command {
        Command::Init(a) => (a.json, false, None, None, None),
        Command::Id(a) => (a.json, false, None, None, None),
        Command::Serve(a) => (a.json, a.quiet, a.settings.clone(), a.transport, a.ca.clone()),
        Command::Filelist(a) => (a.json, a.quiet, a.settings.clone(), a.transport, a.ca.clone()),
        Command::Upload(a) => (a.json, a.quiet, a.settings.clone(), a.transport, a.ca.clone()),
        Command::Download(a) => (a.json, a.quiet, a.settings.clone(), a.transport, a.ca.clone()),
        Command::Tracker(a) => (a.json, a.quiet, a.settings.clone(), a.transport, a.ca.clone()),
        Command::Peers(a) => (a.json, a.quiet, a.settings.clone(), a.transport, a.ca.clone()),
        Command::Shell(_) => (false, false, None, None, None),
    };
    Context {
        rt,
        out: Output { json: globals.json || json, quiet: globals.quiet || quiet, brief: false, sink },
        settings: settings.or_else(|| globals.settings.clone()),
        config: globals.config.clone(),
        transport: transport.or(globals.transport).unwrap_or(Choice::Auto),
        ca: ca.or_else(|| globals.ca.clone()),
        cancel,
        listings: None,
    }
}

/// Runs one command in `ctx`.
pub(crate) fn execute(ctx: &Context, command: Command) -> anyhow::Result<Status> {
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Id(a) => id::run(ctx, a),
        Command::Serve(a) => serve::run(ctx, a),
        Command::Filelist(a) => filelist::run(ctx, a),
        Command::Upload(a) => upload::run(ctx, a),
        Command::Download(a) => download::run(ctx, a),
        Command::Tracker(a) => tracker::run(ctx, a),
        Command::Peers(a) => peers::run(ctx, a),
        Command::Shell(_) => Err(UsageError("the shell does not run inside itself".into()).into()),
    }
}

/// What stops a running command before it is done.
#[derive(Debug, Clone)]
pub(crate) enum Cancel {
    /// Ctrl-C or SIGTERM: a one-shot command, which then exits with 130.
    Signals,
    /// A message on this channel, or its closing: the shell's commands.
    /// The shell sends one on Ctrl-C to the command in the foreground, and
    /// closes a background job's channel to cancel it.
    On(async_channel::Receiver<()>),
}

impl Cancel {
    /// Completes when the command should stop.
    pub(crate) async fn requested(&self) {
        match self {
            Cancel::Signals => interrupt().await,
            // A message and a closed channel both mean "stop".
            Cancel::On(rx) => {
                let _ = rx.recv().await;
            }
        }
    }
}

/// The files one peer listed, reported to the shell.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    /// The peer as named on the command line (its id, or `host:port`).
    pub(crate) peer: String,
    pub(crate) names: Vec<String>,
}

/// Tells the shell (if this runs in one) which files `peer` lists.
pub(crate) fn report_listing(ctx: &Context, peer: &str, files: &[FileInfo]) {
    if let Some(tx) = &ctx.listings {
        let names = files.iter().map(|f| f.name.as_str().to_owned()).collect();
        // The shell stopped listening only when it is ending.
        let _ = tx.send(Listing { peer: peer.to_owned(), names });
    }
}

/// The index to announce to or ask: `explicit` (--tracker), else the
/// `tracker` of p2p.ron; an id from the peer list or host:port.
pub(crate) fn tracker_target(ctx: &Context, explicit: Option<&str>) -> anyhow::Result<Option<Target>> {
    let from_config = Loaded::find(ctx.config.as_deref())?.and_then(|c| c.config.tracker);
    let Some(arg) = explicit.map(str::to_owned).or(from_config) else { return Ok(None) };
    let list = PeerList::find(ctx.settings.as_deref())?;
    Ok(Some(resolve(&arg, list.as_ref()).map_err(|e| UsageError(format!("--tracker: {e}")))?))
}

/// This peer's served folder: `served` in p2p.ron (or config.json's
/// shared_files_directory), else ./served_files.
pub(crate) fn served_dir(ctx: &Context) -> anyhow::Result<PathBuf> {
    let config = Loaded::find(ctx.config.as_deref())?;
    Ok(config.and_then(|c| c.config.served.as_ref().map(|p| c.resolve(p))).unwrap_or_else(|| PathBuf::from(SERVED)))
}

/// Where downloads land: `downloads` in p2p.ron (or config.json's
/// downloads_directory), else the served folder.
pub(crate) fn downloads_dir(ctx: &Context) -> anyhow::Result<PathBuf> {
    let config = Loaded::find(ctx.config.as_deref())?;
    match config.and_then(|c| c.config.downloads.as_ref().map(|p| c.resolve(p))) {
        Some(d) => Ok(d),
        None => served_dir(ctx),
    }
}

/// The served folder when nothing says otherwise, as the original tool.
pub(crate) const SERVED: &str = "served_files";

/// What a command says when the index it was given serves files instead.
pub(crate) const NOT_INDEX: &str = "not an index (it serves files: name it as a PEER instead)";

/// A question to the index, on a session.
pub(crate) type Question<'s, O> = std::pin::Pin<Box<dyn Future<Output = Result<O, ClientError>> + 's>>;

/// Asks the index (`--tracker` or the config's) one question. When it
/// cannot be asked, says why (in JSON too) and gives the status to end
/// with; otherwise the index, the answer and how it was reached.
pub(crate) fn ask_index<O>(
    ctx: &Context,
    tracker: Option<&str>,
    timeout_secs: u64,
    question: impl for<'s> FnOnce(&'s mut Session<NetStream, SmolRuntime>) -> Question<'s, O>,
) -> anyhow::Result<Result<(Target, O, Via), Status>> {
    let index = require_tracker(ctx, tracker)?;
    let (net, id) = client_net(ctx, &[Ok(index.clone())])?;
    let config = client_config(timeout_secs, &id);
    let asked = until_cancelled(ctx, async {
        let mut s = Session::connect(&net, &ctx.rt, &index.addr, &config).await.map_err(|e| output::describe(&e))?;
        if !s.is_index() {
            return Err(NOT_INDEX.to_owned());
        }
        let answer = question(&mut s).await.map_err(|e| output::describe(&e))?;
        let via = Via::of(&s);
        s.close().await;
        Ok::<_, String>((answer, via))
    });
    Ok(match asked {
        None => Err(Status::Cancelled),
        Some(Ok((answer, via))) => Ok((index, answer, via)),
        Some(Err(e)) => {
            ctx.out.error(&format!("{}: {e}", index.display()));
            ctx.out.json(&serde_json::json!({ "index": index.label, "error": e }));
            Err(Status::Failed)
        }
    })
}

/// The index for a command that names no peer, or a usage error saying
/// how to name one.
pub(crate) fn require_tracker(ctx: &Context, explicit: Option<&str>) -> anyhow::Result<Target> {
    tracker_target(ctx, explicit)?.ok_or_else(|| {
        UsageError(
            "name at least one PEER (an id from peer_settings.txt, or host:port), or an index to ask: \
             --tracker ADDR, or tracker in p2p.ron"
                .into(),
        )
        .into()
    })
}

/// The peers named on the command line, each resolved or with the reason
/// it could not be.
pub(crate) fn targets(ctx: &Context, args: &[String]) -> anyhow::Result<Vec<Result<Target, String>>> {
    if args.is_empty() {
        return Err(UsageError("name at least one PEER (an id from peer_settings.txt, or host:port)".into()).into());
    }
    let list = PeerList::find(ctx.settings.as_deref())?;
    Ok(args.iter().map(|a| resolve(a, list.as_ref())).collect())
}

/// The transport for a one-shot command, and this peer's id to announce.
pub(crate) fn client_net(ctx: &Context, targets: &[Result<Target, String>]) -> anyhow::Result<(Net, String)> {
    net::check_ca(ctx.ca.as_ref())?;
    let config = Loaded::find(ctx.config.as_deref())?;
    let net = net::for_client(ctx.transport, config.as_ref(), ctx.ca.as_ref(), targets)?;
    let id = config.map(|c| c.config.id).unwrap_or_default();
    Ok((net, id))
}

/// How a connection to a peer was made: the transport and, over TLS, the
/// peer's fingerprint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Via {
    pub(crate) transport: &'static str,
    pub(crate) identity: Option<Fingerprint>,
}

impl Via {
    /// How `session` was made.
    pub(crate) fn of(session: &Session<NetStream, SmolRuntime>) -> Self {
        Via { transport: session.transport(), identity: session.identity() }
    }

    /// "tls 1a2b3c4d5e6f" or "tcp".
    pub(crate) fn short(&self) -> String {
        match self.identity {
            Some(fp) => format!("{} {}", self.transport, fp.short()),
            None => self.transport.to_string(),
        }
    }

    /// Adds `transport` (and `fingerprint`) to a JSON object.
    pub(crate) fn annotate(&self, v: &mut serde_json::Value) {
        v["transport"] = self.transport.into();
        if let Some(fp) = self.identity {
            v["fingerprint"] = fp.to_string().into();
        }
    }
}

/// Opens a session with every resolved target at once and runs `op` on
/// it. Results come in the order of `targets`; a target that could not be
/// resolved keeps its reason. `None` if the command was cancelled.
pub(crate) fn with_each_peer<T, F, Fut>(
    ctx: &Context,
    net: &Net,
    targets: &[Result<Target, String>],
    config: &ClientConfig,
    op: F,
) -> Option<Vec<Result<(T, Via), String>>>
where
    T: Send + 'static,
    F: Fn(Session<NetStream, SmolRuntime>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let rt = &ctx.rt;
    let run = async {
        let tasks: Vec<_> = targets
            .iter()
            .map(|t| {
                let t = t.as_ref().ok()?;
                let (rt2, config, addr, net) = (rt.clone(), config.clone(), t.addr.clone(), net.clone());
                let op = op.clone();
                Some(rt.spawn(async move {
                    let session = Session::connect(&net, &rt2, &addr, &config).await?;
                    let via = Via { transport: session.transport(), identity: session.identity() };
                    Ok((op(session).await?, via))
                }))
            })
            .collect();
        let mut results = Vec::new();
        for (t, task) in targets.iter().zip(tasks) {
            results.push(match (t, task) {
                (Ok(_), Some(task)) => task.await.map_err(|e| output::describe(&e)),
                (Err(e), _) => Err(e.clone()),
                (Ok(_), None) => Err("not asked".into()),
            });
        }
        results
    };
    until_cancelled(ctx, run)
}

/// How a server's first line names its transport: "tcp", or "tls,
/// fingerprint …".
pub(crate) fn transport_note(fingerprint: Option<Fingerprint>) -> String {
    match fingerprint {
        Some(fp) => format!("tls, fingerprint {fp}"),
        None => "tcp".to_string(),
    }
}

/// Connection settings for the one-shot commands; `id` is announced to
/// peers (empty without an identity).
pub(crate) fn client_config(timeout_secs: u64, id: &str) -> ClientConfig {
    ClientConfig::with_timeout(id, Duration::from_secs(timeout_secs.max(1)))
}

/// Completes on Ctrl-C or SIGTERM (never, if signals cannot be watched).
/// The signals are watched from this call on, not from the first poll: a
/// server calls it before it binds, so that a signal sent once its port
/// answers stops it cleanly rather than killing it before it has said
/// where it listens.
pub(crate) fn interrupt() -> impl Future<Output = ()> {
    let signals = async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]);
    async move {
        match signals {
            Ok(mut signals) => {
                let _ = signals.next().await;
            }
            Err(e) => {
                tracing::warn!("cannot watch for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs `fut` on this thread; if the command is cancelled first (see
/// [`Cancel`]), drops it instead, which removes partial uploads and leaves
/// a download's partial file for the next try, and returns `None`: the
/// command then returns [`Status::Cancelled`].
pub(crate) fn until_cancelled<F: Future>(ctx: &Context, fut: F) -> Option<F::Output> {
    ctx.rt.block_on(futures_lite::future::or(async { Some(fut.await) }, async {
        ctx.cancel.requested().await;
        None
    }))
}

/// Reports peers that could not be resolved; returns whether all could.
pub(crate) fn report_unresolved(out: &Output, targets: &[Result<Target, String>]) -> bool {
    let mut ok = true;
    for t in targets {
        if let Err(e) = t {
            out.error(e);
            ok = false;
        }
    }
    ok
}

//! `p2p`: share folders between machines you control.
//!
//! One-shot commands (`filelist`, `upload`, `download`) and the peer
//! server (`serve`). Each subcommand lives in its own module under `cmd/`.

mod args;
mod cmd;
mod config;
mod net;
mod output;
mod peers;
mod progress;
mod settings;
mod watch;

use std::process::ExitCode;

use argh::FromArgs;
use args::{Cli, Command};
use output::Output;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Every requested operation succeeded.
    Ok,
    /// At least one failed (each failure was reported).
    Failed,
}

/// A command line that cannot be run as given (exit status 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&["p2p"], strs.get(1..).unwrap_or_default()) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}\nRun p2p --help for more information.", early.output);
                    ExitCode::from(2)
                }
            };
        }
    };
    let level = match &cli.command {
        Command::Serve(a) if !(a.quiet || cli.quiet) => "info",
        Command::Tracker(a) if !(a.quiet || cli.quiet) => "info",
        _ => "warn",
    };
    init_logging(level);
    match cmd::run(cli) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Failed) => ExitCode::from(1),
        Err(e) => {
            output::error(&format!("{e:#}"));
            if e.is::<UsageError>() {
                eprintln!("Run p2p --help for more information.");
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Logs go to stderr. `serve` logs a line per transfer; the one-shot
/// commands only warnings. `P2P_LOG` (e.g. `debug`) overrides.
fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("P2P_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
}

impl From<bool> for Status {
    fn from(all_ok: bool) -> Self {
        if all_ok { Status::Ok } else { Status::Failed }
    }
}

/// Settings shared by the subcommands.
pub(crate) struct Context {
    pub(crate) rt: p2p_host::SmolRuntime,
    pub(crate) out: Output,
    /// `--settings`.
    pub(crate) settings: Option<std::path::PathBuf>,
    /// `--config`.
    pub(crate) config: Option<std::path::PathBuf>,
    /// `--transport`.
    pub(crate) transport: net::Choice,
    /// `--ca`.
    pub(crate) ca: Option<std::path::PathBuf>,
}

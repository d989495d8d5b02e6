//! `p2p`: share folders between machines you control.
//!
//! One-shot commands (`filelist`, `upload`, `download`), the peer server
//! (`serve`) and an interactive prompt that runs the one-shot commands
//! (`shell`). Each subcommand lives in its own module under `cmd/`.

mod args;
mod cmd;
mod config;
mod hybrid;
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
    /// Stopped before it was done (Ctrl-C, or `cancel` in the shell).
    /// Whatever it was writing was dropped, and with it any partial
    /// upload; a download keeps what arrived for the next try.
    Cancelled,
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
    // The shell sets up logging itself: on a terminal, log lines must not
    // be written over the line being edited.
    if !matches!(cli.command, Command::Shell(_)) {
        init_logging(level, std::io::stderr, std::io::IsTerminal::is_terminal(&std::io::stderr()));
    }
    match cmd::run(cli) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Failed) => ExitCode::from(1),
        Ok(Status::Cancelled) => {
            // 130, as shells expect of a command stopped by Ctrl-C.
            eprintln!("interrupted");
            ExitCode::from(130)
        }
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

/// Logs go to stderr (or where the shell says). `serve` logs a line per
/// transfer; the other commands only warnings. `P2P_LOG` (e.g. `debug`)
/// overrides.
pub(crate) fn init_logging<W>(default: &str, writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("P2P_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_writer(writer).with_target(false).with_ansi(ansi).with_env_filter(filter).init();
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
    /// What stops the command early.
    pub(crate) cancel: cmd::Cancel,
    /// Where the files that peers list are reported (the shell completes
    /// names from them); `None` outside the shell.
    pub(crate) listings: Option<std::sync::mpsc::Sender<cmd::Listing>>,
}

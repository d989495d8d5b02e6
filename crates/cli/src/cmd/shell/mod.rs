//! `p2p shell`: a prompt that runs the one-shot commands (`filelist`,
//! `upload`, `download`), as both original tools were driven from a
//! prompt, with the original `#FILELIST`/`#UPLOAD`/`#DOWNLOAD` syntax.
//!
//! On a terminal it is interactive ([`interactive`]: rustyline, history,
//! completion); with its input from a pipe or a file it runs a script
//! ([`script`]: one result line per command, a failing exit status when
//! any command failed).
//!
//! How commands run. The one-shot commands are plain functions that block
//! on the runtime (`ctx.rt.block_on`). A foreground command runs on the
//! shell's own thread, as it would in its own process; a background job
//! (`… &`) runs on a thread of its own. All of them share one runtime,
//! whose worker threads run every command's tasks, and each thread that
//! blocks on it helps run them too. Each command gets its own [`Context`]:
//! the options, where its output goes (the terminal for the foreground,
//! a buffer for a job, printed when the job ends), and what cancels it.
//!
//! Cancelling. The shell watches SIGINT for its whole life, so Ctrl-C
//! never ends it: at the prompt the terminal is in raw mode and Ctrl-C is
//! a key that clears the line; while a command runs, each SIGINT becomes
//! a message on a channel that the foreground command's [`Cancel`] waits
//! on. A background job waits on a channel of its own, closed by `cancel
//! N` or when the shell ends. A cancelled command drops what it was doing
//! and returns [`Status::Cancelled`]: an upload's partial file goes, a
//! download's stays for the next try.

mod complete;
mod help;
mod interactive;
mod jobs;
mod parse;
mod script;

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

use futures_lite::StreamExt;
use p2p_core::runtime::{Runtime, Task};
use p2p_host::SmolRuntime;

use super::{Cancel, Globals, Listing};
use crate::args::{Command, Shell};
use crate::output::{self, Captured, Sink};
use crate::{Context, Status};
use jobs::Jobs;
use parse::Builtin;

/// How long the shell, when it ends, waits for cancelled jobs to wind
/// down (they drop their transfers at once; this only bounds a stuck one).
const WIND_DOWN: Duration = Duration::from_secs(5);

pub(crate) fn run(rt: SmolRuntime, globals: &Globals, args: Shell) -> anyhow::Result<Status> {
    let template = Template { rt, globals: globals.clone(), brief: false, listings: None };
    if std::io::stdin().is_terminal() { interactive::run(template, args.history) } else { script::run(template) }
}

/// How a command the shell ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    Ok,
    /// It failed, and said why.
    Failed,
    Cancelled,
}

impl Ended {
    /// The word `jobs` shows.
    fn word(self) -> &'static str {
        match self {
            Ended::Ok => "done",
            Ended::Failed => "failed",
            Ended::Cancelled => "cancelled",
        }
    }
}

/// What each command's [`Context`] is made from.
#[derive(Clone)]
pub(super) struct Template {
    rt: SmolRuntime,
    globals: Globals,
    /// Scripts: one result line per command.
    brief: bool,
    /// Where filelist reports what peers list (interactive completion).
    listings: Option<mpsc::Sender<Listing>>,
}

impl Template {
    fn context(&self, command: &Command, sink: Sink, cancel: Cancel) -> Context {
        let mut ctx = super::context(self.rt.clone(), &self.globals, command, sink, cancel);
        if self.brief {
            ctx.out.brief = true;
            ctx.out.quiet = true;
        }
        ctx.listings = self.listings.clone();
        ctx
    }
}

/// A background job's results, handed to the mode that shows them.
pub(super) struct Report {
    pub(super) id: u32,
    pub(super) text: String,
    pub(super) ended: Ended,
    /// What the command said, in order.
    pub(super) lines: Vec<Captured>,
}

/// What the interactive prompt and the script reader share: how commands
/// are made and run, Ctrl-C, and the background jobs.
pub(super) struct Runner {
    template: Template,
    interrupts: Interrupts,
    jobs: Jobs,
}

impl Runner {
    fn new(template: Template) -> Self {
        let interrupts = Interrupts::watch(&template.rt);
        Self { template, interrupts, jobs: Jobs::default() }
    }

    /// Runs `command` on this thread, with its output on the terminal;
    /// Ctrl-C cancels it.
    fn foreground(&self, command: Command) -> Ended {
        self.interrupts.forget();
        let resumable = matches!(command, Command::Download(_));
        let ctx = self.template.context(&command, Sink::Std, self.interrupts.cancel());
        let ended = execute(&ctx, command);
        if ended == Ended::Cancelled {
            if resumable {
                eprintln!("cancelled (what arrived is kept: the same download again resumes it)");
            } else {
                eprintln!("cancelled");
            }
        }
        ended
    }

    /// Starts `command` on a thread of its own, with its output kept;
    /// `announce` shows it when the job ends. Returns the job's number.
    fn background(
        &mut self,
        command: Command,
        text: String,
        announce: impl FnOnce(Report) + Send + 'static,
    ) -> std::io::Result<u32> {
        let template = self.template.clone();
        let shown = text.clone();
        self.jobs.start(text, move |id, cancel| {
            let (tx, rx) = mpsc::channel();
            let ctx = template.context(&command, Sink::Capture(tx), cancel);
            let ended = execute(&ctx, command);
            // Every sender is gone with the context: the lines are all in.
            drop(ctx);
            announce(Report { id, text: shown, ended, lines: rx.try_iter().collect() });
            ended
        })
    }

    /// Waits until every background job has ended, or Ctrl-C. Returns
    /// false on Ctrl-C (the jobs go on).
    fn wait(&mut self) -> bool {
        self.interrupts.forget();
        let all = self.jobs.all_ended();
        let interrupted = self.interrupts.rx.clone();
        let finished = self.template.rt.block_on(futures_lite::future::or(
            async {
                all.await;
                true
            },
            async {
                let _ = interrupted.recv().await;
                false
            },
        ));
        self.jobs.refresh();
        finished
    }

    /// Cancels every job still running and gives them a moment to wind
    /// down, as the shell ends.
    fn end(&mut self) {
        self.jobs.cancel_all();
        let all = self.jobs.all_ended();
        let rt = &self.template.rt;
        rt.block_on(futures_lite::future::or(all, rt.sleep(WIND_DOWN)));
    }

    /// Runs one of the shell's own commands but `exit` (which each mode
    /// handles its own way). Returns false if it failed.
    fn builtin(&mut self, builtin: Builtin) -> bool {
        match builtin {
            Builtin::Help(None) => {
                output::stdout(help::OVERVIEW.trim_end());
                true
            }
            Builtin::Help(Some(topic)) => match help::topic(&topic) {
                Ok(text) => {
                    output::stdout(text.trim_end());
                    true
                }
                Err(e) => {
                    output::error(&e);
                    false
                }
            },
            Builtin::Jobs => {
                let lines = self.jobs.list();
                if lines.is_empty() {
                    output::stdout("no jobs");
                }
                lines.iter().for_each(|l| output::stdout(l));
                true
            }
            Builtin::Wait => {
                if !self.wait() {
                    eprintln!("stopped waiting; the jobs go on (`jobs` lists them)");
                }
                true
            }
            Builtin::Cancel(id) => match self.jobs.cancel(id) {
                Ok(()) => true,
                Err(e) => {
                    output::error(&e);
                    false
                }
            },
            Builtin::Exit => true,
        }
    }
}

/// Runs `command` in `ctx`; an error it returns is reported where its
/// other lines go.
fn execute(ctx: &Context, command: Command) -> Ended {
    match super::execute(ctx, command) {
        Ok(Status::Ok) => Ended::Ok,
        Ok(Status::Failed) => Ended::Failed,
        Ok(Status::Cancelled) => Ended::Cancelled,
        Err(e) => {
            ctx.out.error(&format!("{e:#}"));
            Ended::Failed
        }
    }
}

/// Ctrl-C as the shell sees it: each SIGINT is a message on `rx`.
/// Watching it for the shell's whole life is what keeps Ctrl-C from ending
/// the shell.
struct Interrupts {
    rx: async_channel::Receiver<()>,
    /// Keeps the channel open (a closed one would cancel every command)
    /// even if signals cannot be watched.
    _tx: async_channel::Sender<()>,
    _watch: Option<Task<()>>,
}

impl Interrupts {
    fn watch(rt: &SmolRuntime) -> Self {
        let (tx, rx) = async_channel::unbounded();
        let watch = match async_signal::Signals::new([async_signal::Signal::Int]) {
            Ok(mut signals) => {
                let tx = tx.clone();
                Some(rt.spawn(async move {
                    while signals.next().await.is_some() {
                        if tx.send(()).await.is_err() {
                            break;
                        }
                    }
                }))
            }
            Err(e) => {
                tracing::warn!("cannot watch for Ctrl-C ({e}): it will end the shell instead of a command");
                None
            }
        };
        Self { rx, _tx: tx, _watch: watch }
    }

    /// What cancels the foreground command.
    fn cancel(&self) -> Cancel {
        Cancel::On(self.rx.clone())
    }

    /// Forgets Ctrl-Cs pressed while no command ran, so that they do not
    /// cancel the next one.
    fn forget(&self) {
        while self.rx.try_recv().is_ok() {}
    }
}

//! `p2p shell < script.txt`: commands from a pipe or a file. No prompt, no
//! colours, no progress; each command prints one result line on stdout
//! and its errors on stderr. The exit status says whether every command
//! succeeded.

use std::io::{BufRead, Write};

use super::parse::{self, Builtin, Line};
use super::{Ended, Report, Runner, Template};
use crate::Status;
use crate::output::{self, Captured};

pub(super) fn run(mut template: Template) -> anyhow::Result<Status> {
    crate::init_logging("warn", std::io::stderr, false);
    template.brief = true;
    let mut runner = Runner::new(template);
    let lines = read_lines();
    let mut failed = false;
    let mut number = 0usize;
    loop {
        // Ctrl-C while waiting for input stops the script too.
        let interrupted = runner.interrupts.rx.clone();
        let next =
            runner.template.rt.block_on(futures_lite::future::or(async { Some(lines.recv().await.ok()) }, async {
                let _ = interrupted.recv().await;
                None
            }));
        let line = match next {
            None => return Ok(stop(&mut runner)),
            Some(None) => break,
            Some(Some(line)) => line,
        };
        number += 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                output::error(&format!("line {number}: {e}"));
                failed = true;
                continue;
            }
        };
        match parse::parse(&line) {
            Err(e) => {
                output::error(&format!("line {number}: {e}"));
                failed = true;
            }
            Ok(Line::Nothing) => {}
            Ok(Line::Show(text)) => output::stdout(text.trim_end()),
            Ok(Line::Run { command, background: false, .. }) => match runner.foreground(*command) {
                Ended::Ok => {}
                Ended::Failed => failed = true,
                // Only Ctrl-C cancels a script's command: it ends the script.
                Ended::Cancelled => return Ok(stop(&mut runner)),
            },
            Ok(Line::Run { command, background: true, text }) => {
                if let Err(e) = runner.background(*command, text, print) {
                    output::error(&format!("line {number}: cannot start a job: {e}"));
                    failed = true;
                }
            }
            Ok(Line::Builtin(Builtin::Exit)) => break,
            Ok(Line::Builtin(Builtin::Wait)) => {
                if !runner.wait() {
                    return Ok(stop(&mut runner));
                }
            }
            Ok(Line::Builtin(b)) => failed |= !runner.builtin(b),
        }
    }
    // The background jobs are part of the script: their results too.
    if !runner.wait() {
        return Ok(stop(&mut runner));
    }
    failed |= runner.jobs.failures() > 0;
    Ok(if failed { Status::Failed } else { Status::Ok })
}

/// Ctrl-C: the jobs are cancelled and the script ends (status 130).
fn stop(runner: &mut Runner) -> Status {
    runner.end();
    Status::Cancelled
}

/// A background job's lines, as they would have been in the foreground.
fn print(report: Report) {
    for line in report.lines {
        match line {
            Captured::Out(text) => output::stdout(&text),
            Captured::Err(text) => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }
}

/// Reads standard input on a thread of its own, so that Ctrl-C can stop a
/// script that waits for input. Each line, or why it could not be read.
fn read_lines() -> async_channel::Receiver<Result<String, String>> {
    let (tx, rx) = async_channel::bounded(16);
    let spawned = std::thread::Builder::new().name("p2p-shell-input".into()).spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let line = match input.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => String::from_utf8(std::mem::take(&mut buf))
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|_| "not UTF-8 text; skipped".to_string()),
                Err(e) => Err(format!("cannot read standard input: {e}")),
            };
            let fatal = line.as_ref().is_err_and(|e| e.starts_with("cannot read"));
            if tx.send_blocking(line).is_err() || fatal {
                break;
            }
        }
    });
    if let Err(e) = spawned {
        output::error(&format!("cannot read standard input: {e}"));
    }
    rx
}

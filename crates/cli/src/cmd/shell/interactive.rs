//! The prompt on a terminal: rustyline for editing, history and
//! completion; its external printer for whatever must appear while a line
//! is being edited (a background job's results, log lines), so that they
//! never garble it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use anyhow::Context as _;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor, ExternalPrinter};

use super::complete::Completion;
use super::parse::{self, Builtin, Line};
use super::{Report, Runner, Template};
use crate::Status;
use crate::output::{self, Captured};

const PROMPT: &str = "p2p> ";

/// The printer all output that is not the foreground command's goes
/// through. rustyline prints it above the line being edited, or straight
/// to the terminal while no line is.
type Printer = Arc<Mutex<Box<dyn ExternalPrinter + Send>>>;

pub(super) fn run(mut template: Template, history: Option<PathBuf>) -> anyhow::Result<Status> {
    let config = Config::builder()
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .max_history_size(1000)?
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor: Editor<Completion, FileHistory> =
        Editor::with_config(config).context("cannot set up the terminal for the shell")?;
    let printer: Option<Printer> = match editor.create_external_printer() {
        Ok(p) => Some(Arc::new(Mutex::new(Box::new(p)))),
        // Output is not a terminal (`p2p shell > log`): plain lines will do.
        Err(_) => None,
    };
    match &printer {
        Some(p) => crate::init_logging("warn", LogWriter(p.clone()), true),
        None => crate::init_logging("warn", std::io::stderr, false),
    }
    let (listings, heard) = mpsc::channel();
    template.listings = Some(listings);
    editor.set_helper(Some(Completion::new(template.globals.settings.clone(), heard)));
    let history = History::open(&mut editor, history);
    let mut runner = Runner::new(template);

    // `exit` with jobs running says so once; a second one cancels them.
    let mut warned = false;
    loop {
        let line = match editor.readline(PROMPT) {
            Ok(line) => line,
            // Ctrl-C at the prompt: the line is dropped, the prompt stays.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => {
                if leave(&mut runner, &mut warned) {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e).context("cannot read from the terminal"),
        };
        history.add(&mut editor, &line);
        let parsed = parse::parse(&line);
        if !matches!(parsed, Ok(Line::Builtin(Builtin::Exit))) {
            warned = false;
        }
        match parsed {
            Err(e) => output::error(&e),
            Ok(Line::Nothing) => {}
            Ok(Line::Show(text)) => output::stdout(text.trim_end()),
            Ok(Line::Run { command, background: false, .. }) => {
                runner.foreground(*command);
            }
            Ok(Line::Run { command, background: true, text }) => {
                let announce = announcer(&mut editor, printer.is_some());
                match runner.background(*command, text.clone(), announce) {
                    Ok(id) => output::stdout(&format!("[{id}] {text}")),
                    Err(e) => output::error(&format!("cannot start a job: {e}")),
                }
            }
            Ok(Line::Builtin(Builtin::Exit)) => {
                if leave(&mut runner, &mut warned) {
                    break;
                }
            }
            Ok(Line::Builtin(b)) => {
                runner.builtin(b);
            }
        }
    }
    runner.end();
    Ok(Status::Ok)
}

/// Whether the shell may end now: not while jobs run, unless asked twice.
fn leave(runner: &mut Runner, warned: &mut bool) -> bool {
    let running = runner.jobs.running();
    if running.is_empty() || *warned {
        return true;
    }
    *warned = true;
    let what = if running.len() == 1 { "1 job is" } else { "jobs are" };
    output::stdout(&format!(
        "{what} still running ({}): `wait` for {}, or exit again to cancel {}",
        running.join(", "),
        if running.len() == 1 { "it" } else { "them" },
        if running.len() == 1 { "it" } else { "them" },
    ));
    false
}

/// Shows a background job's results when it ends: a header line, then
/// what the command said.
fn announcer(editor: &mut Editor<Completion, FileHistory>, terminal: bool) -> impl FnOnce(Report) + Send + 'static {
    let printer = if terminal { editor.create_external_printer().ok() } else { None };
    move |report: Report| {
        let mut text = format!("[{}] {}  {}", report.id, report.ended.word(), report.text);
        for line in &report.lines {
            let (Captured::Out(l) | Captured::Err(l)) = line;
            text.push('\n');
            text.push_str(l);
        }
        text.push('\n');
        match printer {
            Some(mut p) => {
                // The terminal is gone if this fails: nowhere left to say it.
                let _ = p.print(text);
            }
            None => {
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
        }
    }
}

/// The history file: loaded at start, each line appended as it is run.
struct History {
    path: Option<PathBuf>,
}

impl History {
    fn open(editor: &mut Editor<Completion, FileHistory>, path: Option<PathBuf>) -> Self {
        let path = path.or_else(default_path);
        if let Some(p) = &path
            && p.exists()
            && let Err(e) = editor.load_history(p)
        {
            tracing::warn!("cannot read the history in {}: {e}", p.display());
        }
        Self { path }
    }

    fn add(&self, editor: &mut Editor<Completion, FileHistory>, line: &str) {
        if line.trim().is_empty() || !matches!(editor.add_history_entry(line), Ok(true)) {
            return;
        }
        let Some(path) = &self.path else { return };
        let saved = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
        .and_then(|()| editor.append_history(path).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            tracing::warn!("cannot save the history in {}: {e}", path.display());
        }
    }
}

/// `.p2p/shell_history` in a peer's folder (one holding served_files/ or
/// p2p.ron), so that each peer keeps its own; else the user's state folder.
fn default_path() -> Option<PathBuf> {
    let here = Path::new(".");
    if here.join("served_files").is_dir() || here.join(crate::config::FILE_NAME).is_file() {
        return Some(PathBuf::from(".p2p").join("shell_history"));
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let state = std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| std::env::var_os("HOME").and_then(absolute).map(|h| h.join(".local").join("state")))?;
    Some(state.join("p2p").join("shell_history"))
}

/// Log lines (warnings) through the printer, a whole line at a time.
struct LogWriter(Printer);

struct LogLine {
    printer: Printer,
    buf: Vec<u8>,
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'w self) -> LogLine {
        LogLine { printer: self.0.clone(), buf: Vec::new() }
    }
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        // A poisoned lock only means another log line panicked midway.
        let mut printer = self.printer.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = printer.print(text);
    }
}

//! Writing results: tables for people, JSON for scripts, one line per
//! failure on stderr. A closed stdout (`p2p filelist | head`) is not an
//! error.
//!
//! A command writes through its [`Output`], never to stdout or stderr
//! directly, so that the shell can run it in the background and keep what
//! it says for later (a [`Sink::Capture`]) instead of printing over the
//! line being edited.

use std::io::{self, IsTerminal, Write};
use std::sync::mpsc;
use std::time::Duration;

use p2p_core::client::ClientError;
use p2p_core::units;

/// Where and how to print.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) quiet: bool,
    /// One line per command (the shell's scripts): a command prints its
    /// one-line summary and nothing else on stdout. Set with `quiet`.
    pub(crate) brief: bool,
    pub(crate) sink: Sink,
}

/// Where the lines go.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// The process's stdout and stderr.
    Std,
    /// Kept, in order, for whoever runs the command (a background job).
    Capture(mpsc::Sender<Captured>),
}

/// A line a command said while its output was captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Captured {
    Out(String),
    Err(String),
}

impl Output {
    /// A line for people on stdout (nothing in JSON or quiet mode).
    pub(crate) fn line(&self, text: &str) {
        if !self.json && !self.quiet {
            self.out(text);
        }
    }

    /// A command's final result line on stdout: printed in quiet mode too
    /// (not in JSON mode).
    pub(crate) fn result(&self, text: &str) {
        if !self.json {
            self.out(text);
        }
    }

    /// A command's whole result in one line, printed in brief mode only,
    /// for commands whose result line would otherwise be a table or a line
    /// per peer.
    pub(crate) fn brief(&self, text: &str) {
        if self.brief && !self.json {
            self.out(text);
        }
    }

    /// A JSON document on stdout.
    pub(crate) fn json(&self, value: &serde_json::Value) {
        if self.json {
            self.out(&value.to_string());
        }
    }

    /// A warning on stderr (not in quiet mode).
    pub(crate) fn warn(&self, text: &str) {
        if !self.quiet {
            self.err(&format!("warning: {text}"));
        }
    }

    /// One failure, on stderr.
    pub(crate) fn error(&self, text: &str) {
        self.err(&format!("error: {text}"));
    }

    /// Whether to draw live progress on stderr: on a terminal, and only
    /// for a command whose output is not being kept for later.
    pub(crate) fn progress(&self) -> bool {
        !self.quiet && !self.json && matches!(self.sink, Sink::Std) && io::stderr().is_terminal()
    }

    fn out(&self, text: &str) {
        match &self.sink {
            Sink::Std => stdout(text),
            // The receiver is gone only once the job's results were
            // reported: nobody is left to tell.
            Sink::Capture(tx) => {
                let _ = tx.send(Captured::Out(text.to_owned()));
            }
        }
    }

    fn err(&self, text: &str) {
        match &self.sink {
            Sink::Std => eprintln!("{text}"),
            Sink::Capture(tx) => {
                let _ = tx.send(Captured::Err(text.to_owned()));
            }
        }
    }
}

/// One failure, on stderr.
pub(crate) fn error(text: &str) {
    eprintln!("error: {text}");
}

/// A line on stdout.
pub(crate) fn stdout(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        // The reader went away (`| head`): nothing more to say.
        std::process::exit(0);
    }
}

/// A client error, worded for people.
pub(crate) fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Connect { addr, source } => match source.kind() {
            io::ErrorKind::ConnectionRefused => {
                format!("cannot connect to {addr}: connection refused (is the peer running?)")
            }
            io::ErrorKind::TimedOut => format!("cannot connect to {addr}: timed out"),
            _ => format!("cannot connect to {addr}: {source}"),
        },
        other => {
            let text = other.to_string();
            // Over TLS 1.3 a client learns that the server refused its
            // certificate only at its first read, as a bare alert.
            match text.find("received fatal alert: ") {
                Some(i) if text.contains("CertificateExpired") => {
                    format!("the peer refused the TLS handshake ({}): {}", &text[i..], p2p_transport_tls::CERT_DATES)
                }
                Some(i) => format!("the peer refused the TLS handshake ({}); see its log for why", &text[i..]),
                None => text,
            }
        }
    }
}

/// "1.2 GiB in 3.4s (360 MiB/s)".
pub(crate) fn transfer(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    // A rate over a blink is noise.
    if secs < 0.05 {
        return format!("{} in {secs:.2}s", units::bytes(bytes));
    }
    format!("{} in {secs:.2}s ({}/s)", units::bytes(bytes), units::bytes((bytes as f64 / secs) as u64))
}

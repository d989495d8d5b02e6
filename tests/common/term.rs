//! A pseudo-terminal to drive `p2p shell` as a person would: p2p runs
//! with the terminal as its controlling tty (raw mode at the prompt,
//! Ctrl-C a signal while a command runs), and what it draws is read back
//! as a screen through a terminal emulator (vt100), so a transcript holds
//! what a person would see, not the escape sequences that drew it.
//!
//! Every wait has a deadline and fails the test with the screen in hand.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::P2P;

/// Large enough that a test's transcript never scrolls or wraps.
const ROWS: u16 = 200;
const COLS: u16 = 250;

/// Longest a test waits for the screen to show something.
const DEADLINE: Duration = Duration::from_secs(30);

pub const PROMPT: &str = "p2p>";

pub struct Term {
    writer: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    output: mpsc::Receiver<Vec<u8>>,
    parser: vt100::Parser,
    _master: Box<dyn MasterPty + Send>,
}

impl Term {
    /// Runs `p2p ARGS` in `dir` on a new terminal.
    pub fn spawn(dir: &Path, args: &[&str]) -> Term {
        let pair = native_pty_system()
            .openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 })
            .expect("a pseudo-terminal");
        let mut cmd = CommandBuilder::new(P2P);
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("TERM", "xterm-256color");
        cmd.env("P2P_LOG", "warn");
        let child = pair.slave.spawn_command(cmd).expect("p2p starts on the terminal");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Term {
            writer,
            child,
            output,
            parser: vt100::Parser::new(ROWS.try_into().unwrap(), COLS.try_into().unwrap(), 0),
            _master: pair.master,
        }
    }

    /// Types `keys` (control characters included).
    pub fn keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Types `line` and Enter, and waits for the prompt to come back.
    pub fn run(&mut self, line: &str) {
        let prompts = self.prompts();
        self.keys(&format!("{line}\r"));
        self.wait_prompt(prompts + 1, line);
    }

    /// Waits until the screen shows prompt number `n` (counting the lines
    /// that start with it), with the cursor on it.
    pub fn wait_prompt(&mut self, n: usize, what: &str) {
        self.wait(&format!("the prompt after {what:?}"), |t| t.prompts() == n && t.last_line() == PROMPT);
    }

    /// Presses Ctrl-C.
    pub fn ctrl_c(&mut self) {
        self.keys("\x03");
    }

    /// Waits until `cond` holds of the terminal, or fails the test.
    pub fn wait(&mut self, what: &str, cond: impl Fn(&Term) -> bool) {
        let start = Instant::now();
        loop {
            while let Ok(bytes) = self.output.try_recv() {
                self.parser.process(&bytes);
            }
            if cond(self) {
                return;
            }
            let left = DEADLINE.checked_sub(start.elapsed());
            match left.map(|l| self.output.recv_timeout(l)) {
                Some(Ok(bytes)) => self.parser.process(&bytes),
                Some(Err(mpsc::RecvTimeoutError::Disconnected)) if !cond(self) => {
                    panic!("the terminal closed before {what}; screen:\n{}", self.screen())
                }
                Some(Err(mpsc::RecvTimeoutError::Disconnected)) => return,
                _ => panic!("no {what} within {DEADLINE:?}; screen:\n{}", self.screen()),
            }
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for(&mut self, text: &str) {
        self.wait(&format!("{text:?}"), |t| t.screen().contains(text));
    }

    /// The screen's text, without trailing blank lines.
    pub fn screen(&self) -> String {
        let contents = self.parser.screen().contents();
        let lines: Vec<&str> = contents.lines().map(str::trim_end).collect();
        let end = lines.iter().rposition(|l| !l.is_empty()).map_or(0, |i| i + 1);
        lines[..end].join("\n") + "\n"
    }

    /// The last line with text on it.
    pub fn last_line(&self) -> String {
        self.screen().lines().last().unwrap_or_default().to_string()
    }

    fn prompts(&self) -> usize {
        self.screen().lines().filter(|l| l.starts_with(PROMPT)).count()
    }

    /// Waits for p2p to end; its exit status.
    pub fn exit_status(&mut self) -> u32 {
        let start = Instant::now();
        loop {
            while let Ok(bytes) = self.output.try_recv() {
                self.parser.process(&bytes);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // What it wrote last may still be on its way: read until
                // the terminal reports its end.
                while let Ok(bytes) = self.output.recv_timeout(DEADLINE.saturating_sub(start.elapsed())) {
                    self.parser.process(&bytes);
                }
                return status.exit_code();
            }
            assert!(start.elapsed() < DEADLINE, "p2p shell did not end; screen:\n{}", self.screen());
            // The child's end has no event to wait on here; poll it.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

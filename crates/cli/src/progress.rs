//! Live progress on a terminal, drawn by indicatif on stderr: a bar per
//! download (bytes, rate, time left, sources in use) and, for a command
//! that fetches many files, a line for the whole of it. Nothing is drawn
//! when stderr is not a terminal, with `-q` or with `--json`, so the
//! output of scripts never holds progress.

use std::io;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use p2p_core::download::Progress;
use p2p_core::units;

/// Files smaller than this get no bar of their own among many (it would
/// only flash).
const SMALL: u64 = 4 << 20;

/// Columns the bars leave free at the right edge. indicatif pads a bar to
/// the terminal's width and leaves the cursor there; the terminal's echo
/// of Ctrl-C (`^C`) then wrapped to a line of its own, indicatif's final
/// clear erased that line instead of the bar, and the bar stayed on the
/// screen with "interrupted" (or the shell's "cancelled") after it.
const ROOM_FOR_CTRL_C: u16 = 3;

/// Where the bars are drawn.
pub(crate) struct Board {
    multi: MultiProgress,
    on: bool,
    total: Option<Total>,
}

/// The line for a whole command of many files.
struct Total {
    bar: ProgressBar,
    bytes: u64,
    started: Instant,
}

impl Board {
    /// Bars on stderr if `on`, else a board that draws nothing.
    pub(crate) fn new(on: bool) -> Self {
        let target = if on {
            ProgressDrawTarget::term_like(Box::new(Stderr(console::Term::stderr())))
        } else {
            ProgressDrawTarget::hidden()
        };
        Self { multi: MultiProgress::with_draw_target(target), on, total: None }
    }

    /// Adds the line for a command of `files` files.
    pub(crate) fn total(&mut self, files: u64) {
        if !self.on {
            return;
        }
        let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(files).with_style(style).with_prefix("total"));
        bar.enable_steady_tick(Duration::from_millis(250));
        self.total = Some(Total { bar, bytes: 0, started: Instant::now() });
    }

    /// One more file of the command is over, having fetched `bytes`.
    pub(crate) fn file_done(&mut self, bytes: u64) {
        if let Some(t) = &mut self.total {
            t.bytes += bytes;
            let secs = t.started.elapsed().as_secs_f64().max(0.001);
            t.bar.set_message(format!(
                "{} at {}/s",
                units::bytes(t.bytes),
                units::bytes((t.bytes as f64 / secs) as u64)
            ));
            t.bar.inc(1);
        }
    }

    /// A bar for one file's download. With `small_too`, a file of any size
    /// gets one (a single download); else only large files do.
    pub(crate) fn file(&self, label: &str, small_too: bool) -> FileBar {
        FileBar {
            multi: self.on.then(|| self.multi.clone()),
            bar: None,
            label: label.to_owned(),
            min: if small_too { 1 } else { SMALL },
        }
    }

    /// Runs `f` (which prints) with the bars out of the way.
    pub(crate) fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.on { self.multi.suspend(f) } else { f() }
    }

    /// Removes every bar.
    pub(crate) fn clear(&mut self) {
        if let Some(t) = self.total.take() {
            t.bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The bar of one download, shown once its size is known.
pub(crate) struct FileBar {
    multi: Option<MultiProgress>,
    bar: Option<ProgressBar>,
    label: String,
    min: u64,
}

impl FileBar {
    /// The download got this far.
    pub(crate) fn update(&mut self, p: Progress) {
        let Some(multi) = &self.multi else { return };
        if self.bar.is_none() && p.size >= self.min {
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, {eta} left, {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            // Starts where an earlier try left off, so that the rate counts
            // only what this run fetches.
            let bar = ProgressBar::new(p.size).with_style(style).with_prefix(self.label.clone()).with_position(p.done);
            self.bar = Some(multi.add(bar));
        }
        if let Some(bar) = &self.bar {
            bar.set_position(p.done);
            bar.set_message(format!("{} peer{}", p.active, if p.active == 1 { "" } else { "s" }));
        }
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(&bar);
            }
        }
    }
}

/// stderr as the bars see it: a little narrower than it is.
#[derive(Debug)]
struct Stderr(console::Term);

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(ROOM_FOR_CTRL_C).max(1)
    }

    fn height(&self) -> u16 {
        self.0.size().0
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

//! Progress reporting shared by the long-running subcommands (`demo`,
//! `replay`, `bench`, `run --input`, `submit --wait`).
//!
//! Progress always goes to stderr, so that stdout (and `--json` output in
//! particular) stays machine-readable. When stderr is a terminal it is an
//! [`indicatif`] bar redrawn in place; otherwise (a pipe, a log file, CI) it
//! is a plain line at most once per [`PLAIN_INTERVAL`], plus one at the end,
//! so logs stay short and readable.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain (non-terminal) progress line is written at most.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(1);

/// A progress report on stderr: a bar on a terminal, periodic lines elsewhere.
pub struct Progress {
    label: String,
    total: Option<u64>,
    sink: Sink,
}

/// Where the progress is drawn.
enum Sink {
    /// An in-place bar on a terminal.
    Bar(ProgressBar),
    /// Plain lines; the time and position of the last one written.
    Lines(Mutex<PlainState>),
}

/// What the plain-line reporter remembers between updates.
struct PlainState {
    last_line: Option<Instant>,
    position: u64,
    message: String,
}

impl Progress {
    /// Progress over `total` steps (or an open-ended spinner with `None`),
    /// labelled `label` (for example `"replay fgd"`).
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        let sink = if std::io::stderr().is_terminal() {
            Sink::Bar(terminal_bar(label, total))
        } else {
            Sink::Lines(Mutex::new(PlainState {
                last_line: None,
                position: 0,
                message: String::new(),
            }))
        };
        Progress {
            label: label.to_string(),
            total,
            sink,
        }
    }

    /// Moves the progress to `position` steps done, with a short status
    /// `message` (counts, rates) beside it.
    pub fn update(&self, position: u64, message: &str) {
        match &self.sink {
            Sink::Bar(bar) => {
                bar.set_position(position);
                bar.set_message(message.to_string());
            }
            Sink::Lines(state) => {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                state.position = position;
                state.message = message.to_string();
                let due = state
                    .last_line
                    .is_none_or(|last| last.elapsed() >= PLAIN_INTERVAL);
                if due {
                    state.last_line = Some(Instant::now());
                    eprintln!("{}", self.plain_line(position, message));
                }
            }
        }
    }

    /// Ends the progress: the bar is cleared, or a last plain line says
    /// where it stopped.
    pub fn finish(&self) {
        match &self.sink {
            Sink::Bar(bar) => bar.finish_and_clear(),
            Sink::Lines(state) => {
                let state = state.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!("{} (done)", self.plain_line(state.position, &state.message));
            }
        }
    }

    /// One plain progress line: `label: position/total message`.
    fn plain_line(&self, position: u64, message: &str) -> String {
        let count = match self.total {
            Some(total) => format!("{position}/{total}"),
            None => position.to_string(),
        };
        let mut line = format!("{}: {count}", self.label);
        if !message.is_empty() {
            line.push(' ');
            line.push_str(message);
        }
        line
    }
}

/// An indicatif bar (or spinner without a total) drawn on stderr.
fn terminal_bar(label: &str, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{prefix} {spinner} [{elapsed_precise}] {pos} {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Runs `work` while an open-ended progress report labelled `label` shows
/// that it is still going (a spinner on a terminal, a line with the elapsed
/// time every [`PLAIN_INTERVAL`] elsewhere), for steps that cannot report
/// their own position. Returns what `work` returns.
pub fn spin_while<T>(label: &str, work: impl FnOnce() -> T) -> T {
    let progress = Progress::new(label, None);
    let started = Instant::now();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let result = std::thread::scope(|scope| {
        let progress = &progress;
        scope.spawn(move || loop {
            progress.update(started.elapsed().as_secs(), "s elapsed");
            match stopped.recv_timeout(PLAIN_INTERVAL / 4) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        });
        let result = work();
        drop(stop);
        result
    });
    progress.finish();
    result
}

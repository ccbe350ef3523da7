//! Progress bars for long commands: on stderr, and only when stderr is a
//! terminal.
//!
//! Piped or redirected, a command prints exactly what it printed before
//! there were bars: results on stdout, errors and logs on stderr, no escape
//! codes. Only the binary's own [`App::run_from`](super::App::run_from)
//! draws; [`App::execute`](super::App::execute), which tests and embedders
//! drive, never does, whatever its stderr is (it prints nothing).
//!
//! indicatif's `ProgressDrawTarget::stderr()` already hides itself when
//! stderr is not a terminal; the check is made here as well, explicitly,
//! so that the rule does not rest on a library default.
//!
//! Log lines and bars share stderr: the log writer ([`LogWriter`]) hides
//! the bars while it writes a line and redraws them after, so neither
//! overwrites the other.

use std::borrow::Cow;
use std::io::{IsTerminal as _, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ops::progress::Progress;

/// The terminal's bars, set once the binary found stderr to be a terminal.
static TERMINAL: OnceLock<MultiProgress> = OnceLock::new();

/// Whether a command's bars are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bars {
    draw: bool,
}

impl Bars {
    /// Never drawn.
    pub(super) const HIDDEN: Bars = Bars { draw: false };

    /// Drawn on stderr when stderr is a terminal, hidden otherwise.
    pub(super) fn on_stderr_terminal() -> Bars {
        Bars::when(std::io::stderr().is_terminal())
    }

    fn when(terminal: bool) -> Bars {
        if terminal {
            TERMINAL.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        }
        Bars { draw: terminal }
    }

    fn add(self, bar: ProgressBar) -> ProgressBar {
        match TERMINAL.get() {
            Some(terminal) if self.draw => terminal.add(bar),
            _ => bar,
        }
    }

    /// A bar counting items, "`label` 120/1000 [=====>    ] 3s"; its length
    /// comes with [`Progress::start`].
    pub(super) fn counter(self, label: &'static str) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(
            ProgressStyle::with_template("{prefix} {pos}/{len} [{wide_bar}] {elapsed} (eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        Bar(self.add(bar))
    }

    /// A bar over a file's bytes, with a message (what was sent so far).
    pub(super) fn bytes(self, total: u64) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
            .with_style(
                ProgressStyle::with_template(
                    "{bytes}/{total_bytes} [{wide_bar}] {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        Bar(self.add(bar))
    }

    /// A spinner with a message, for work of unknown length.
    pub(super) fn spinner(self, message: impl Into<Cow<'static, str>>) -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()).with_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        let bar = self.add(bar);
        if self.draw {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        Bar(bar)
    }
}

/// One bar; cleared from the terminal when dropped.
#[derive(Debug)]
pub(super) struct Bar(ProgressBar);

impl Bar {
    pub(super) fn set_position(&self, pos: u64) {
        self.0.set_position(pos);
    }

    pub(super) fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        self.0.set_message(message);
    }

    /// Whether nothing is drawn.
    #[cfg(test)]
    fn is_hidden(&self) -> bool {
        self.0.is_hidden()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
        if let Some(terminal) = TERMINAL.get() {
            terminal.remove(&self.0);
        }
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

/// stderr for log lines, hiding the bars while a line is written.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match TERMINAL.get() {
            Some(terminal) => terminal
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_off_a_terminal_draw_nothing() {
        for bars in [Bars::HIDDEN, Bars::when(false)] {
            let bar = bars.counter("replayed");
            bar.start(10);
            bar.advance(3);
            assert!(bar.is_hidden());
            assert!(bars.bytes(100).is_hidden());
            assert!(bars.spinner("purging").is_hidden());
        }
    }

    #[test]
    fn the_binary_draws_only_when_stderr_is_a_terminal() {
        // Under `cargo test` stderr may or may not be a terminal; either way
        // the decision follows it.
        let bars = Bars::on_stderr_terminal();
        assert_eq!(bars.draw, std::io::stderr().is_terminal());
    }
}

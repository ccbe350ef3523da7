//! Logging setup: quiet by default, RUST_LOG or `--log-level` to change it.

use tracing_subscriber::EnvFilter;

use super::{Cli, Command};

/// The default filter: warnings, without lapin's channel-close errors and
/// its own recovery messages (the framework reports connection trouble itself,
/// with what to do; lapin would also log a close racing a closing channel
/// at shutdown as an error), and without lapin's warning for every returned
/// (unroutable) message, which prints the whole message, body and headers
/// included: the publisher reports the return itself, without the body.
const QUIET: &str =
    "warn,lapin::channel=off,lapin::channels=off,lapin::io_loop=off,lapin::returned_messages=off";

/// Added for `run`: the worker's start, stop and reconnect lines, but not the
/// per-delivery span (a cost on every message; `RUST_LOG=info` turns it on).
const RUN: &str = "worker_core=info,worker_core::middleware::trace=warn";

/// The log filter for a command line: `--log-level` if given, else
/// `RUST_LOG` if set, else `warn` without lapin's channel-close errors
/// (with `worker_core=info` added for `run`, so that start, stop and
/// reconnect lines show).
///
/// ```
/// # use worker_operator::cli::{log_filter, App};
/// let cli = App::new("w").try_parse_from(["w", "--log-level", "debug", "status"]).unwrap();
/// assert_eq!(log_filter(&cli, None), "debug");
/// let cli = App::new("w").try_parse_from(["w", "run"]).unwrap();
/// assert_eq!(
///     log_filter(&cli, None),
///     "warn,lapin::channel=off,lapin::channels=off,lapin::io_loop=off,lapin::returned_messages=off,worker_core=info,worker_core::middleware::trace=warn"
/// );
/// assert_eq!(log_filter(&cli, Some("trace")), "trace");
/// ```
pub fn log_filter(cli: &Cli, rust_log: Option<&str>) -> String {
    if let Some(level) = &cli.global.log_level {
        return level.clone();
    }
    if let Some(env) = rust_log.filter(|v| !v.trim().is_empty()) {
        return env.to_owned();
    }
    // lapin logs every channel the broker closes as an error, including the
    // 404 and 406 replies that `status` and `topology check` provoke on
    // purpose; the framework reports the ones that matter itself.
    match cli.command {
        Command::Run(_) => format!("{QUIET},{RUN}"),
        _ => QUIET.to_owned(),
    }
}

/// The filter for `directives`, or an error saying what to write instead.
fn env_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives).map_err(|e| {
        format!("invalid log filter {directives:?} ({e}); try `info`, `debug` or `warn,worker_core=debug`")
    })
}

/// Installs a stderr subscriber with the filter; keeps an existing one.
pub(super) fn init(cli: &Cli) -> Result<(), String> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = env_filter(&log_filter(cli, rust_log.as_deref()))?;
    // A binary that set up tracing itself keeps its subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| super::progress::LogWriter)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Everything the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_default_filters_never_log_a_returned_message_body() {
        for args in [["w", "run"], ["w", "status"]] {
            let cli = super::super::App::new("w")
                .ignore_env()
                .try_parse_from(args)
                .unwrap();
            let out = Captured::default();
            let writer = out.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(env_filter(&log_filter(&cli, None)).unwrap())
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                // What lapin logs for a basic.return.
                tracing::warn!(target: "lapin::returned_messages", message = "BODY-4711", "Server returned us a message");
                tracing::warn!(target: "worker_core::publisher", "a warning that shows");
            });
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert!(text.contains("a warning that shows"), "{args:?}: {text}");
            assert!(!text.contains("BODY-4711"), "{args:?}: {text}");
        }
    }
}

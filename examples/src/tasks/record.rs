//! `demo.record`: the fixture task the reliability suite and the benchmarks drive.
//!
//! Payload `{"id": string, "fail": n, "permanent": bool, "panic": bool, "sleep_ms": n}`
//! (plus `abort`, an extension for crash-loop tests). It sleeps `sleep_ms`,
//! then aborts the process if `abort`, panics if `panic`, fails permanently if
//! `permanent`, fails transiently while the attempt number is at most
//! `fail`, and otherwise appends `<id>\t<attempt>\n` to the file named by
//! `DEMO_RECORD_FILE` (if set) and succeeds. Every run, whatever its
//! outcome, first appends the same line to the file named by
//! `DEMO_RUNS_FILE` (if set), so a test can count runs against the budget.
//!
//! Retries: 2 in-process attempts, delay tiers from `DEMO_RETRY_TIERS`
//! (comma-separated durations, default `1s,5s`), 5 attempts in all. Each
//! attempt may run for `DEMO_RECORD_TIMEOUT` (a duration; unset: no limit).
//! It is written by hand (not with `#[task]`) because its tiers and timeout
//! come from the environment.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use worker_core::{parse_duration, RetryPolicy, Task, TaskContext, TaskError, TaskOptions};

/// The environment variable naming the record file.
pub const RECORD_FILE_ENV: &str = "DEMO_RECORD_FILE";
/// The environment variable naming the file of every handler run.
pub const RUNS_FILE_ENV: &str = "DEMO_RUNS_FILE";
/// The environment variable with the delay tiers.
pub const RETRY_TIERS_ENV: &str = "DEMO_RETRY_TIERS";
/// The environment variable with the per-attempt timeout.
pub const TIMEOUT_ENV: &str = "DEMO_RECORD_TIMEOUT";
/// The default delay tiers.
pub const DEFAULT_TIERS: &str = "1s,5s";

/// The fixture payload: the testkit's scripted job.
pub type RecordJob = worker_testkit::fixture::ScriptedJob;

/// The `demo.record` task.
#[derive(Debug)]
pub struct Record {
    /// Successful runs.
    record: Appender,
    /// Every run.
    runs: Appender,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            record: Appender::new(RECORD_FILE_ENV),
            runs: Appender::new(RUNS_FILE_ENV),
        }
    }
}

/// Appends `<id>\t<attempt>` lines to the file an environment variable
/// names (nothing when it is unset), opened on first use.
#[derive(Debug)]
struct Appender {
    env: &'static str,
    file: Mutex<Option<std::fs::File>>,
}

impl Appender {
    fn new(env: &'static str) -> Appender {
        Appender {
            env,
            file: Mutex::new(None),
        }
    }

    fn append(&self, id: &str, attempt: u32) -> std::io::Result<()> {
        let Some(path) = std::env::var_os(self.env) else {
            return Ok(());
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            *file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            );
        }
        let f = file.as_mut().expect("opened above");
        f.write_all(format!("{id}\t{attempt}\n").as_bytes())?;
        f.flush()
    }
}

impl Record {
    /// Parses a tier list such as `1s,5s`.
    pub fn parse_tiers(text: &str) -> Result<Vec<Duration>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(parse_duration)
            .collect()
    }

    fn tiers() -> Vec<Duration> {
        let text = std::env::var(RETRY_TIERS_ENV).unwrap_or_else(|_| DEFAULT_TIERS.to_owned());
        Record::parse_tiers(&text).unwrap_or_else(|e| {
            tracing::error!("{RETRY_TIERS_ENV}: {e}; using {DEFAULT_TIERS}");
            Record::parse_tiers(DEFAULT_TIERS).unwrap_or_default()
        })
    }

    fn timeout() -> Option<Duration> {
        let text = std::env::var(TIMEOUT_ENV).ok()?;
        parse_duration(&text)
            .map_err(|e| tracing::error!("{TIMEOUT_ENV}: {e}; running without a timeout"))
            .ok()
    }
}

impl Task for Record {
    type Payload = RecordJob;
    const NAME: &'static str = "demo.record";
    const QUEUE: &'static str = "demo.record";

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::default()
                .in_process(2)
                .tiers(Record::tiers())
                .max_attempts(5),
            timeout: Record::timeout(),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, job: RecordJob) -> Result<(), TaskError> {
        self.runs.append(&job.id, ctx.attempt())?;
        job.act(ctx.attempt()).await?;
        self.record.append(&job.id, ctx.attempt())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_lists_parse_and_reject_garbage() {
        assert_eq!(
            Record::parse_tiers("1s, 5s").unwrap(),
            vec![Duration::from_secs(1), Duration::from_secs(5)]
        );
        assert!(Record::parse_tiers("1s,soon").is_err());
    }
}

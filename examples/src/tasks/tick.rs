//! `demo.tick`: a periodic task. The demo worker schedules it every
//! `DEMO_TICK_EVERY` (default `1s`, `off` for none); each run appends
//! `tick<TAB><scheduled time in RFC 3339>` to `DEMO_RECORD_FILE` (if set),
//! so a test can count the ticks by their scheduled time.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use worker_core::headers::SCHEDULED_AT;
use worker_core::schedule::Periodic;
use worker_core::{parse_duration, Task, TaskContext, TaskError};

use super::record::RECORD_FILE_ENV;

/// The environment variable with the period.
pub const TICK_EVERY_ENV: &str = "DEMO_TICK_EVERY";
/// The default period.
pub const DEFAULT_TICK_EVERY: &str = "1s";

/// The `demo.tick` task (its payload is unused).
#[derive(Debug, Default)]
pub struct Tick;

impl Tick {
    /// The periodic entry, every `DEMO_TICK_EVERY`; `None` when it is `off`.
    pub fn entry() -> Result<Option<Periodic>, String> {
        let text = std::env::var(TICK_EVERY_ENV).unwrap_or_else(|_| DEFAULT_TICK_EVERY.to_owned());
        if text == "off" {
            return Ok(None);
        }
        let every = parse_duration(&text).map_err(|e| format!("{TICK_EVERY_ENV}: {e}"))?;
        Periodic::every::<Tick>(every, &())
            .map(Some)
            .map_err(|e| format!("{TICK_EVERY_ENV}: {e}"))
    }
}

impl Task for Tick {
    type Payload = ();
    const NAME: &'static str = "demo.tick";
    const QUEUE: &'static str = "demo.tick";

    async fn run(&self, ctx: TaskContext, (): ()) -> Result<(), TaskError> {
        let Some(secs) = ctx.headers().get_count(SCHEDULED_AT) else {
            return Err(TaskError::permanent("demo.tick without rw-scheduled-at"));
        };
        let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
        tracing::info!(scheduled = %at, "tick");
        let Some(path) = std::env::var_os(RECORD_FILE_ENV) else {
            return Ok(());
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(format!("tick\t{at}\n").as_bytes())?;
        Ok(())
    }
}

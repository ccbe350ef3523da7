//! Periodic tasks: one scheduler among all the workers, elected by RabbitMQ.
//!
//! A [`Periodic`] entry says which task to enqueue, with which payload, how
//! often ([`every`], or a [`cron`] pattern in a time zone) and what to do
//! with ticks missed while no process was scheduling ([`Missed`]). Every
//! worker with an entry takes part in that entry's election ([`leader`]);
//! the one that wins runs the entry's scheduler, which
//! enqueues each tick once, with its scheduled time and a deterministic
//! message id (`tick:<entry>:<unix seconds>`), and records the last tick
//! it enqueued in a one-message queue per entry so that the next scheduler
//! carries on from there.

pub mod cron;
pub mod every;
pub mod leader;
pub(crate) mod scheduler;
pub mod status;

pub use scheduler::last_tick_queue;

use std::sync::Arc;
use std::time::Duration;

use crate::duration::format_duration;
use crate::error::Error;
use crate::task::Task;

/// What the scheduler does with ticks that passed while nobody scheduled
/// (a failover, every worker stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Enqueue each missed tick, late, with its own scheduled time (at
    /// most [`MAX_CATCH_UP`] of them; older ones are skipped and logged).
    #[default]
    Fire,
    /// Skip them: carry on with the next tick to come.
    Skip,
}

impl Missed {
    /// `fire` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Fire => "fire",
            Missed::Skip => "skip",
        }
    }
}

/// When an entry's ticks fall.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every so many whole seconds, aligned to the Unix epoch.
    Every(Duration),
    /// A cron pattern in a time zone.
    Cron(Arc<cron::CronSchedule>),
}

impl Schedule {
    /// The first tick strictly after `secs` (Unix seconds).
    pub fn next_after(&self, secs: u64) -> Option<u64> {
        match self {
            Schedule::Every(every) => Some(every::tick_after(secs, every.as_secs())),
            Schedule::Cron(cron) => cron.next_after(secs),
        }
    }
}

impl std::fmt::Display for Schedule {
    /// `every=5m`, or `cron="0 9 * * *" tz=Europe/Paris`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(every) => write!(f, "every={}", format_duration(*every)),
            Schedule::Cron(cron) => write!(f, "cron={:?} tz={}", cron.pattern(), cron.zone()),
        }
    }
}

/// The most missed ticks of one entry a new scheduler enqueues.
pub const MAX_CATCH_UP: u64 = 100;

/// One periodic entry: a task, its payload, its period and its catch-up policy.
#[derive(Debug, Clone)]
pub struct Periodic {
    pub(crate) id: String,
    pub(crate) task: &'static str,
    pub(crate) queue: &'static str,
    pub(crate) schedule: Schedule,
    pub(crate) missed: Missed,
    pub(crate) payload: serde_json::Value,
}

impl Periodic {
    /// Enqueues task `T` with `payload` every `every` (whole seconds, at
    /// least one), on ticks aligned to the Unix epoch, so that every
    /// worker computes the same ones. The entry's id is the task's name;
    /// give each entry of one task its own with [`id`](Periodic::id).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # use worker_core::schedule::{Missed, Periodic};
    /// # struct Report;
    /// # impl Task for Report {
    /// #     type Payload = String;
    /// #     const NAME: &'static str = "report";
    /// #     const QUEUE: &'static str = "reports";
    /// #     async fn run(&self, _: TaskContext, _: String) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let hourly = Periodic::every::<Report>(Duration::from_secs(3600), &"sales".to_owned())
    ///     .unwrap()
    ///     .id("report.sales")
    ///     .missed(Missed::Skip);
    /// # let _ = hourly;
    /// ```
    pub fn every<T: Task>(every: Duration, payload: &T::Payload) -> Result<Periodic, Error> {
        if every < Duration::from_secs(1) || every.subsec_nanos() != 0 {
            return Err(Error::Config(format!(
                "periodic task {}: the period must be whole seconds, at least 1s (got {every:?})",
                T::NAME
            )));
        }
        let payload = encode::<T>(payload)?;
        Ok(Periodic::new::<T>(Schedule::Every(every), payload))
    }

    /// Enqueues task `T` with `payload` on the ticks of a cron pattern (5
    /// fields, or 6 with seconds first) read in the IANA zone `tz` (UTC
    /// when `None`); see [`cron::CronSchedule`].
    pub fn cron<T: Task>(
        pattern: &str,
        tz: Option<&str>,
        payload: &T::Payload,
    ) -> Result<Periodic, Error> {
        let schedule = cron::CronSchedule::parse(pattern, tz)
            .map_err(|e| Error::Config(format!("periodic task {}: {e}", T::NAME)))?;
        let payload = encode::<T>(payload)?;
        Ok(Periodic::new::<T>(
            Schedule::Cron(Arc::new(schedule)),
            payload,
        ))
    }

    fn new<T: Task>(schedule: Schedule, payload: serde_json::Value) -> Periodic {
        Periodic {
            id: T::NAME.to_owned(),
            task: T::NAME,
            queue: T::QUEUE,
            schedule,
            missed: Missed::default(),
            payload,
        }
    }

    /// The entry `#[task(every = "...")]` or `#[task(cron = "...", tz =
    /// "...")]` declares, with `missed`: the payload's default value, the
    /// task's name as the id. `None`, logged, when the payload cannot be
    /// encoded or the zone is not in this machine's time zone database.
    pub fn declared<T: Task>(when: Declared, missed: Missed) -> Option<Periodic>
    where
        T::Payload: Default,
    {
        let payload = T::Payload::default();
        let entry = match when {
            Declared::Every(every) => Periodic::every::<T>(every, &payload),
            Declared::Cron(pattern, tz) => Periodic::cron::<T>(pattern, tz, &payload),
        };
        match entry {
            Ok(entry) => Some(entry.missed(missed)),
            Err(e) => {
                tracing::error!(task = T::NAME, error = %e, "periodic task not scheduled: {e}");
                None
            }
        }
    }

    /// Names the entry (its message ids and its last-tick queue use it).
    pub fn id(mut self, id: impl Into<String>) -> Periodic {
        self.id = id.into();
        self
    }

    /// Sets what happens to missed ticks.
    pub fn missed(mut self, missed: Missed) -> Periodic {
        self.missed = missed;
        self
    }

    /// The entry's id.
    pub fn entry_id(&self) -> &str {
        &self.id
    }

    /// The task it enqueues.
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// When its ticks fall.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// What happens to its missed ticks.
    pub fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// The message id of the tick scheduled at `secs` (Unix seconds).
    pub fn tick_id(&self, secs: u64) -> String {
        format!("tick:{}:{secs}", self.id)
    }
}

/// What `#[task]` declares: `every`, or `cron` with an optional `tz`.
#[derive(Debug, Clone, Copy)]
pub enum Declared {
    /// `every = "5m"`.
    Every(Duration),
    /// `cron = "..."`, `tz = "..."`.
    Cron(&'static str, Option<&'static str>),
}

fn encode<T: Task>(payload: &T::Payload) -> Result<serde_json::Value, Error> {
    serde_json::to_value(payload).map_err(|e| {
        Error::Config(format!(
            "periodic task {}: cannot encode its payload: {e}",
            T::NAME
        ))
    })
}

//! A task's queue names, computed once from its name, queue and options.

use std::sync::Arc;
use std::time::Duration;

use crate::duration::format_duration;
use crate::task::TaskOptions;

/// A registered task's name, queue names and options, computed once.
#[derive(Debug)]
pub struct TaskSpec {
    /// The task name.
    pub name: &'static str,
    /// The work queue.
    pub queue: Arc<str>,
    /// The parking queue.
    pub parking: String,
    /// Where deliveries returned unsettled run alone (see the quarantine layer).
    pub quarantine: String,
    /// Delay tiers with their wait queue names, shortest first.
    pub tiers: Vec<(Duration, String)>,
    /// The options.
    pub options: TaskOptions,
}

impl TaskSpec {
    /// Computes queue names for a task.
    pub fn new(name: &'static str, queue: &str, options: TaskOptions) -> TaskSpec {
        TaskSpec {
            name,
            queue: Arc::from(queue),
            parking: parking_queue(queue),
            quarantine: format!("{queue}.quarantine"),
            tiers: options
                .retry
                .tiers
                .iter()
                .map(|d| (*d, tier_queue(queue, *d)))
                .collect(),
            options,
        }
    }

    /// The wait queue of a tier.
    pub fn tier_queue(&self, tier: Duration) -> Option<&str> {
        self.tiers
            .iter()
            .find(|(d, _)| *d == tier)
            .map(|(_, q)| q.as_str())
    }
}

/// `<queue>.parking`.
pub fn parking_queue(queue: &str) -> String {
    format!("{queue}.parking")
}

/// `<queue>.retry.<delay>`, for example `emails.retry.10s`.
pub fn tier_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", format_duration(delay))
}

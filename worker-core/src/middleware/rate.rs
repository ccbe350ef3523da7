//! Paces the starts of a task's handler to its `rate` option.
//!
//! The limit is per process: all deliveries of a task in one worker process
//! share one limiter (kept in the [`Runtime`](crate::__testkit::Runtime),
//! keyed by task name), and each process has its own. Starts are spaced
//! evenly, one every `per / count`, with no burst: the first start is
//! immediate, and each later one reserves the next free slot.
//!
//! A delivery waiting for its slot has been taken from the broker and
//! holds one of the task's prefetch (and concurrency) slots while it waits;
//! with `prefetch = 100` and `rate = "2/s"`, the last delivery taken waits
//! about 50 s. Keep the prefetch near what the rate starts in a few
//! seconds. A stopping worker stops waiting at once and gives the delivery
//! back to the broker uncharged ([`Outcome::NotStarted`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tower::Service;

use super::{config_layer, job_service_header, take_ready, Job, JobService, Outcome};
use crate::task::Rate;

/// The start limiters of one process, one per task with a `rate`.
#[derive(Debug, Default)]
pub struct RateLimiters {
    by_task: Mutex<HashMap<&'static str, Arc<Mutex<Slots>>>>,
}

/// The next free start time of one task.
#[derive(Debug)]
struct Slots {
    rate: Rate,
    next: Option<Instant>,
}

impl RateLimiters {
    /// Reserves the next start of `task` at `rate` and returns when it is
    /// (now, if the task is idle). The caller waits until then.
    pub fn reserve(&self, task: &'static str, rate: Rate) -> Instant {
        let slots = {
            let mut by_task = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
            by_task
                .entry(task)
                .or_insert_with(|| Arc::new(Mutex::new(Slots { rate, next: None })))
                .clone()
        };
        let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
        // A changed rate (a new registration) starts afresh.
        if slots.rate != rate {
            *slots = Slots { rate, next: None };
        }
        let now = Instant::now();
        let at = slots.next.map_or(now, |next| next.max(now));
        slots.next = Some(at + rate.interval());
        at
    }
}

/// Waits for the task's next start slot before calling the inner service,
/// when the task has a `rate` (passes through otherwise).
///
/// In [`default_stack`](super::default_stack) it sits inside retry, so that
/// every attempt in process is a start and waits for a slot, and outside
/// timeout, so that the wait does not count against the attempt's time.
#[derive(Debug, Clone, Default)]
pub struct RateLayer;

config_layer!(RateLayer => RateLimit);

impl<S: JobService> Service<Job> for RateLimit<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let Some(rate) = job.spec().options.rate else {
            return Box::pin(self.inner.call(job));
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let runtime = job.runtime().clone();
            let at = runtime.rates.reserve(job.spec().name, rate);
            if at > Instant::now() {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = runtime.shutdown.triggered() => {
                        tracing::debug!(task = job.spec().name, "stopping: returning a delivery that waited for its rate slot");
                        return Ok(Outcome::NotStarted);
                    }
                }
            }
            inner.call(job).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_by_the_interval_and_shared_by_task() {
        let limiters = RateLimiters::default();
        let rate = Rate::per_second(2);
        let start = Instant::now();
        let slots: Vec<_> = (0..4)
            .map(|_| limiters.reserve("a", rate) - start)
            .collect();
        assert_eq!(
            slots,
            [0, 500, 1000, 1500].map(Duration::from_millis).to_vec()
        );
        // Another task has its own limiter.
        assert_eq!(limiters.reserve("b", rate), start);
        // An idle task does not save up a burst.
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        assert_eq!(limiters.reserve("a", rate), now);
        assert_eq!(
            limiters.reserve("a", rate),
            now + Duration::from_millis(500)
        );
    }
}

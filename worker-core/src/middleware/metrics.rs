//! Per-task counters, gauges and histograms through the `metrics` facade.
//!
//! Names (labels `task` and `queue`; outcomes also `outcome`):
//! - `rabbit_worker_deliveries_total`: deliveries taken;
//! - `rabbit_worker_outcomes_total`: what became of each delivery, once per
//!   delivery: `ack`, `discard`, `redeliver`, `park`, `quarantine`,
//!   `requeue`, `dead-letter`; and `retry`, once per in-process retry (an
//!   attempt that failed and runs again in this process, counted by
//!   [`RetryLayer`](super::RetryLayer));
//! - `rabbit_worker_handler_seconds`: time from taking a delivery to its outcome;
//! - `rabbit_worker_in_flight`: deliveries being handled now;
//! - `rabbit_worker_publish_confirm_seconds` (from the publisher): confirm
//!   latency, labelled with the published message's task (`type`) and queue.
//!
//! Handles are registered once per task, so the hot path does no label work.

use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use tower::Service;

use super::{config_layer, job_service_header, Job, JobService};

const OUTCOMES: [&str; 7] = [
    "ack",
    "discard",
    "dead-letter",
    "redeliver",
    "park",
    "quarantine",
    "requeue",
];

/// Records deliveries, outcomes, durations and in-flight work for one task.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    handles: Arc<Handles>,
}

#[derive(Debug)]
struct Handles {
    deliveries: Counter,
    in_flight: Gauge,
    duration: Histogram,
    outcomes: [Counter; 7],
}

impl MetricsLayer {
    /// Registers the handles for a task and queue.
    pub fn new(task: &'static str, queue: &str) -> Self {
        let queue = queue.to_owned();
        let labels = [("task", task.to_owned()), ("queue", queue.clone())];
        let outcomes = OUTCOMES.map(|outcome| {
            metrics::counter!(
                "rabbit_worker_outcomes_total",
                "task" => task,
                "queue" => queue.clone(),
                "outcome" => outcome
            )
        });
        MetricsLayer {
            handles: Arc::new(Handles {
                deliveries: metrics::counter!("rabbit_worker_deliveries_total", &labels),
                in_flight: metrics::gauge!("rabbit_worker_in_flight", &labels),
                duration: metrics::histogram!("rabbit_worker_handler_seconds", &labels),
                outcomes,
            }),
        }
    }
}

config_layer!(MetricsLayer => Metrics);

impl<S: JobService> Service<Job> for Metrics<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let handles = self.config.handles.clone();
        handles.deliveries.increment(1);
        handles.in_flight.increment(1.0);
        let started = Instant::now();
        let fut = self.inner.call(job);
        Box::pin(async move {
            let _in_flight = InFlight(&handles.in_flight);
            let outcome = fut.await?;
            handles.duration.record(started.elapsed().as_secs_f64());
            let index = OUTCOMES
                .iter()
                .position(|o| *o == outcome.as_str())
                .unwrap_or(0);
            handles.outcomes[index].increment(1);
            Ok(outcome)
        })
    }
}

/// Lowers the in-flight gauge even when the future is dropped.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

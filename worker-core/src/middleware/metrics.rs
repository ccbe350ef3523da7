//! Per-task counters, gauges and histograms through the `metrics` facade.
//!
//! Names (labels `task` and `queue`; outcomes also `outcome`):
//! - `rabbit_worker_deliveries_total`: deliveries taken;
//! - `rabbit_worker_outcomes_total`: what became of each delivery, once per
//!   delivery: `ack`, `discard`, `redeliver`, `park`, `quarantine`,
//!   `requeue`, `return`, `dead-letter`; and `retry`, once per in-process retry (an
//!   attempt that failed and runs again in this process, counted by
//!   [`RetryLayer`](super::RetryLayer));
//! - `rabbit_worker_handler_seconds`: time from taking a delivery to its outcome;
//! - `rabbit_worker_in_flight`: deliveries being handled now;
//! - `rabbit_worker_publish_confirm_seconds` (from the publisher): confirm
//!   latency, labelled with the published message's task (`type`) and queue.
//!
//! Label values come only from the names of registered tasks and their
//! queues (a task's parking, quarantine and delay-tier queues included):
//! anything else, such as the `type` of a message for an unknown task, is
//! `unknown`, so a producer cannot grow the number of series.
//!
//! Handles are registered once per task, so the hot path does no label work.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use tower::Service;

use super::{config_layer, job_service_header, Job, JobService, Outcome};

/// The `outcome` label values, in the order of [`slot`].
const OUTCOMES: [&str; 8] = [
    "ack",
    "discard",
    "dead-letter",
    "redeliver",
    "park",
    "quarantine",
    "requeue",
    "return",
];

/// Where an outcome is counted in [`OUTCOMES`] (exhaustive: a new outcome
/// must be given its own counter).
fn slot(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Succeeded => 0,
        Outcome::Discarded(_) => 1,
        Outcome::Failed(_) => 2,
        Outcome::Redelivered { .. } => 3,
        Outcome::Parked { .. } => 4,
        Outcome::Quarantined { .. } => 5,
        Outcome::Requeue => 6,
        Outcome::NotStarted => 7,
    }
}

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
    outcomes: [Counter; 8],
}

/// The value of a label that is not a registered name.
pub(crate) const UNKNOWN_LABEL: &str = "unknown";

/// Task and queue names seen by [`MetricsLayer::new`].
#[derive(Default)]
struct Known {
    tasks: BTreeSet<&'static str>,
    queues: BTreeSet<String>,
}

impl Known {
    fn get() -> &'static RwLock<Known> {
        static KNOWN: OnceLock<RwLock<Known>> = OnceLock::new();
        KNOWN.get_or_init(RwLock::default)
    }

    fn task(&self, name: Option<&str>) -> &'static str {
        name.and_then(|n| self.tasks.get(n).copied())
            .unwrap_or(UNKNOWN_LABEL)
    }

    /// A registered queue, or one of the queues the framework derives from it.
    fn queue(&self, name: &str) -> String {
        let derived = |q: &String| {
            name.strip_prefix(q.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| {
                    matches!(rest, "parking" | "quarantine") || rest.starts_with("retry.")
                })
        };
        if self.queues.contains(name) || self.queues.iter().any(derived) {
            name.to_owned()
        } else {
            UNKNOWN_LABEL.to_owned()
        }
    }
}

/// Records a publisher confirm's latency under
/// `rabbit_worker_publish_confirm_seconds`, labelled with the message's
/// task (`type`) and queue when they are registered names, else `unknown`.
pub(crate) fn record_publish_confirm(kind: Option<&str>, queue: &str, seconds: f64) {
    let (task, queue) = {
        let known = Known::get().read().unwrap_or_else(|e| e.into_inner());
        (known.task(kind), known.queue(queue))
    };
    metrics::histogram!(crate::metric_names::PUBLISH_CONFIRM_SECONDS, "task" => task, "queue" => queue)
        .record(seconds);
}

impl MetricsLayer {
    /// Registers the handles for a task and queue (and makes both names
    /// valid label values).
    pub fn new(task: &'static str, queue: &str) -> Self {
        {
            let mut known = Known::get().write().unwrap_or_else(|e| e.into_inner());
            known.tasks.insert(task);
            known.queues.insert(queue.to_owned());
        }
        let queue = queue.to_owned();
        let labels = [("task", task.to_owned()), ("queue", queue.clone())];
        let outcomes = OUTCOMES.map(|outcome| {
            metrics::counter!(
                crate::metric_names::OUTCOMES,
                "task" => task,
                "queue" => queue.clone(),
                "outcome" => outcome
            )
        });
        MetricsLayer {
            handles: Arc::new(Handles {
                deliveries: metrics::counter!(crate::metric_names::DELIVERIES, &labels),
                in_flight: metrics::gauge!(crate::metric_names::IN_FLIGHT, &labels),
                duration: metrics::histogram!(crate::metric_names::HANDLER_SECONDS, &labels),
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
            handles.outcomes[slot(&outcome)].increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every outcome is counted under its own name: a delivery given back
    /// uncharged (`NotStarted`, at a stop or while waiting for a rate slot)
    /// was counted as `ack`.
    #[test]
    fn each_outcome_is_counted_under_its_own_name() {
        let outcomes = [
            Outcome::Succeeded,
            Outcome::Discarded("stale".into()),
            Outcome::Failed(crate::middleware::Failure::new(
                crate::FailureKind::Permanent,
                crate::middleware::FailureCause::Handler,
                "no",
                1,
            )),
            Outcome::Redelivered {
                tier: std::time::Duration::from_secs(1),
                attempt: 1,
            },
            Outcome::Parked {
                reason: "permanent",
                attempt: 1,
            },
            Outcome::Quarantined { attempts: 1 },
            Outcome::Requeue,
            Outcome::NotStarted,
        ];
        for outcome in &outcomes {
            assert_eq!(OUTCOMES[slot(outcome)], outcome.as_str(), "{outcome:?}");
        }
        assert_eq!(OUTCOMES[slot(&Outcome::NotStarted)], "return");
    }

    #[test]
    fn message_types_never_become_label_values() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let _layer = MetricsLayer::new("metrics.labels.task", "metrics.labels.q");
            for i in 0..5_000 {
                let kind = format!("order-{i}");
                record_publish_confirm(Some(&kind), "metrics.labels.q.parking", 0.001);
                record_publish_confirm(Some("metrics.labels.task"), &format!("reply-{i}"), 0.001);
            }
            record_publish_confirm(Some("metrics.labels.task"), "metrics.labels.q", 0.001);
            record_publish_confirm(None, "metrics.labels.q.retry.5s", 0.001);
        });
        let text = handle.render();
        let series: BTreeSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("rabbit_worker_publish_confirm_seconds_count"))
            .collect();
        assert_eq!(series.len(), 4, "{series:#?}");
        for expected in [
            r#"task="unknown",queue="metrics.labels.q.parking""#,
            r#"task="metrics.labels.task",queue="unknown""#,
            r#"task="metrics.labels.task",queue="metrics.labels.q""#,
            r#"task="unknown",queue="metrics.labels.q.retry.5s""#,
        ] {
            assert!(
                series.iter().any(|s| s.contains(expected)),
                "{expected}: {series:#?}"
            );
        }
    }
}

//! An attempt that runs past the task's timeout is a transient failure.

use std::time::Duration;

use tower::Service;

use super::{config_layer, job_service_header, Failure, FailureCause, Job, JobService, Outcome};
use crate::duration::format_duration;
use crate::task::FailureKind;

/// Bounds each attempt by the task's `timeout` option and by what is
/// left of the delivery's hold budget ([`Job::hold_left`]), whichever ends
/// first (no bound when neither is set).
///
/// The handler's future is dropped when time runs out, which cancels it at
/// its next `.await`. Either way the attempt is a transient failure with
/// cause [`FailureCause::Timeout`]; the message says which bound it hit.
#[derive(Debug, Clone, Default)]
pub struct TimeoutLayer;

config_layer!(TimeoutLayer => Timeout);

/// Which bound an attempt runs under.
enum Bound {
    /// The task's `timeout` option.
    Task(Duration),
    /// The rest of the delivery's hold budget.
    Hold(Duration),
}

impl Bound {
    /// The nearer of the task's timeout and the hold budget's rest.
    fn of(job: &Job) -> Option<Bound> {
        match (job.spec().options.timeout, job.hold_left()) {
            (Some(task), Some(hold)) if hold < task => Some(Bound::Hold(hold)),
            (Some(task), _) => Some(Bound::Task(task)),
            (None, Some(hold)) => Some(Bound::Hold(hold)),
            (None, None) => None,
        }
    }

    fn limit(&self) -> Duration {
        match self {
            Bound::Task(d) | Bound::Hold(d) => *d,
        }
    }

    fn message(&self) -> String {
        match self {
            Bound::Task(d) => format!("handler timed out after {}", format_duration(*d)),
            Bound::Hold(_) => "handler still running at the end of the delivery's hold budget \
                 (4/5 of the broker's consumer timeout, WorkerConfig::consumer_timeout); \
                 cut short so the broker does not time the consumer out"
                .to_owned(),
        }
    }
}

impl<S: JobService> Service<Job> for Timeout<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let bound = Bound::of(&job);
        let attempt = job.attempt();
        let fut = self.inner.call(job);
        Box::pin(async move {
            let Some(bound) = bound else {
                return fut.await;
            };
            match tokio::time::timeout(bound.limit(), fut).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Outcome::Failed(Failure::new(
                    FailureKind::Transient,
                    FailureCause::Timeout,
                    bound.message(),
                    attempt,
                ))),
            }
        })
    }
}

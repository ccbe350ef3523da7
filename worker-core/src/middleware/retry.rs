//! A few short in-process retries of transient failures.
//!
//! Why so few? An in-process sleep holds a prefetch slot and counts against
//! the broker's consumer ack timeout; long waits belong on the broker (see
//! [`RedeliverLayer`](super::RedeliverLayer)). A handler's `retry_after`
//! longer than the backoff cap skips the in-process retries for that reason.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tower::{Service, ServiceExt};

use super::{config_layer, job_service_header, take_ready, Job, JobService, Outcome};
use crate::task::FailureKind;

/// Retries transient failures up to the task's `in_process_attempts`, with its backoff.
///
/// Stops early when the message reached `max_attempts` or the worker is
/// shutting down; the failure then goes up the stack.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    rng: Arc<Mutex<StdRng>>,
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer {
            rng: Arc::new(Mutex::new(StdRng::from_os_rng())),
        }
    }
}

impl RetryLayer {
    /// A layer whose jitter comes from a seeded generator (for reproducible tests).
    pub fn seeded(seed: u64) -> Self {
        RetryLayer {
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }
}

config_layer!(RetryLayer => Retry);

impl<S: JobService> Service<Job> for Retry<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let rng = self.config.rng.clone();
        Box::pin(async move {
            let mut job = job;
            loop {
                let outcome = inner.ready().await?.call(job.clone()).await?;
                let Outcome::Failed(failure) = &outcome else {
                    return Ok(outcome);
                };
                let policy = &job.spec().options.retry;
                let runtime = job.runtime();
                let may_retry = failure.kind == FailureKind::Transient
                    && job.tries_here() < policy.in_process_attempts
                    && job.attempt() < policy.max_attempts
                    && !runtime.shutdown.is_triggered();
                if !may_retry {
                    return Ok(outcome);
                }
                let delay = match failure.retry_after {
                    Some(wait) if wait > policy.backoff.max => return Ok(outcome),
                    Some(wait) => wait.max(policy.backoff.min),
                    None => {
                        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                        policy.backoff.delay(job.tries_here(), &mut *rng)
                    }
                };
                tracing::debug!(attempt = job.attempt(), ?delay, error = %failure.message, "retrying in process");
                metrics::counter!(
                    "rabbit_worker_outcomes_total",
                    "task" => job.spec().name,
                    "queue" => job.spec().queue.to_string(),
                    "outcome" => "retry",
                )
                .increment(1);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = runtime.shutdown.triggered() => return Ok(outcome),
                }
                job = job.next_attempt();
            }
        })
    }
}

//! Runs the failure policy after every failed attempt, and carries out its
//! in-process retries (see [`policy`](super::policy) for the rules).

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tower::{Service, ServiceExt};

use super::policy::{after_failure, Progress, Step};
use super::{config_layer, job_service_header, take_ready, Job, JobService, Outcome};

/// Asks the failure policy what follows each failed attempt: it runs the
/// handler again here after the step's delay, or records the step on the
/// failure (`Failure::next`) for the outer layers to carry out.
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
                let Outcome::Failed(mut failure) = outcome else {
                    return Ok(outcome);
                };
                let policy = &job.spec().options.retry;
                let decide = |progress| {
                    let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                    after_failure(&failure, progress, policy, &mut *rng)
                };
                let step = decide(job.progress());
                let Step::RetryHere { after } = step else {
                    failure.next = Some(step);
                    return Ok(Outcome::Failed(failure));
                };
                if job.hold_left().is_some_and(|left| left <= after) {
                    // The hold budget ends before the retry would start: no
                    // more runs here; the policy says where it waits.
                    let progress = Progress {
                        stopping: true,
                        ..job.progress()
                    };
                    failure.next = Some(decide(progress));
                    return Ok(Outcome::Failed(failure));
                }
                tracing::debug!(attempt = job.attempt(), ?after, error = %failure.message, "retrying in process");
                metrics::counter!(
                    crate::metric_names::OUTCOMES,
                    "task" => job.spec().name,
                    "queue" => job.spec().queue.to_string(),
                    "outcome" => "retry",
                )
                .increment(1);
                tokio::select! {
                    () = tokio::time::sleep(after) => {}
                    () = job.runtime().shutdown.triggered() => {
                        // Stopping: no more runs here; the policy says where it waits.
                        failure.next = Some(decide(job.progress()));
                        return Ok(Outcome::Failed(failure));
                    }
                }
                job = job.next_attempt();
            }
        })
    }
}

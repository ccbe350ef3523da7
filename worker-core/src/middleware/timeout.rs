//! An attempt that runs past the task's timeout is a transient failure.

use tower::Service;

use super::{config_layer, job_service_header, Failure, FailureCause, Job, JobService, Outcome};
use crate::duration::format_duration;
use crate::task::FailureKind;

/// Bounds each attempt by the task's `timeout` option (no bound when `None`).
///
/// The handler's future is dropped when time runs out, which cancels it at
/// its next `.await`.
#[derive(Debug, Clone, Default)]
pub struct TimeoutLayer;

config_layer!(TimeoutLayer => Timeout);

impl<S: JobService> Service<Job> for Timeout<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let limit = job.spec().options.timeout;
        let attempt = job.attempt();
        let fut = self.inner.call(job);
        Box::pin(async move {
            let Some(limit) = limit else {
                return fut.await;
            };
            match tokio::time::timeout(limit, fut).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Outcome::Failed(Failure::new(
                    FailureKind::Transient,
                    FailureCause::Timeout,
                    format!("handler timed out after {}", format_duration(limit)),
                    attempt,
                ))),
            }
        })
    }
}

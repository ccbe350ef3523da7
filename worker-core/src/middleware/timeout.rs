//! An attempt that runs past the task's timeout is a transient failure.

use futures_util::future::BoxFuture;
use tower::Service;

use super::{always_ready, config_layer, Failure, FailureCause, Handled, Job, JobService, Outcome};
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
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Handled>;

    always_ready!();

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

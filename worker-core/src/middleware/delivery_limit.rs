//! Messages past their attempt budget are parked without running the handler.

use futures_util::future::{self, FutureExt};
use tower::Service;

use super::policy::{admit, Step};
use super::{config_layer, job_service_header, Failure, FailureCause, Job, JobService, Outcome};
use crate::task::FailureKind;

/// Carries out the policy's `delivery-limit` park before a run: a delivery
/// whose attempt number (our header, the work queue's `x-death`
/// rejections and the quorum `x-delivery-count`) is past the task's
/// `max_attempts` fails permanently with [`FailureCause::DeliveryLimit`]
/// and the inner service is not called.
///
/// This is what ends a crash loop: a message whose handler kills the
/// process is returned unsettled each time, its `x-delivery-count` grows,
/// and once it passes the limit it is parked before the handler runs again.
#[derive(Debug, Clone, Default)]
pub struct DeliveryLimitLayer;

config_layer!(DeliveryLimitLayer => DeliveryLimit);

impl<S: JobService> Service<Job> for DeliveryLimit<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let max = job.spec().options.retry.max_attempts;
        let Step::Park { reason } = admit(job.arrival(), &job.spec().options.retry) else {
            return self.inner.call(job).boxed();
        };
        let s = job.attempts().sources;
        let message = format!(
            "attempt {} exceeds the task's limit of {max} attempts ({} recorded by retries, {} broker rejections, {} unsettled deliveries)",
            job.attempt(),
            s.recorded,
            s.dead_lettered,
            s.returned
        );
        tracing::warn!(%message, "parking without running the handler");
        let mut failure = Failure::new(
            FailureKind::Permanent,
            FailureCause::DeliveryLimit,
            message,
            job.attempt().saturating_sub(1),
        );
        failure.next = Some(Step::Park { reason });
        future::ready(Ok(Outcome::Failed(failure))).boxed()
    }
}

//! Final failures go to the parking queue, where a person can list and replay them.

use tower::Service;

use super::{config_layer, job_service_header, Failure, Job, JobService, Outcome};
use crate::headers::{self, truncate_utf8, Headers};
use crate::host::{hostname, now_secs};
use crate::message::Outgoing;

/// Longest error message kept in a header; headers must fit the broker's frame size.
pub(crate) const MAX_ERROR_BYTES: usize = 2048;

/// Parks every [`Outcome::Failed`] the inner service returns.
///
/// The parked copy keeps the original body and properties (but for a
/// per-message `expiration`, which would let it vanish from parking) and
/// adds failure headers: task, reason, error kind and message, attempts,
/// first and last failure time, original exchange, routing key and queue,
/// and host. Only after the broker confirms the copy is the original acked;
/// if the copy cannot be published the original is rejected without
/// requeue, and the work queue's dead-letter route still takes it to parking.
#[derive(Debug, Clone, Default)]
pub struct ParkLayer;

config_layer!(ParkLayer => Park);

impl<S: JobService> Service<Job> for Park<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let fut = self.inner.call(job.clone());
        Box::pin(async move {
            match fut.await? {
                Outcome::Failed(failure) => Ok(park(&job, &failure).await),
                other => Ok(other),
            }
        })
    }
}

/// Publishes a parked copy of the job's delivery and reports the outcome.
///
/// [`Outcome::Parked`] once the copy is confirmed, otherwise
/// [`Outcome::Failed`] (settled as reject without requeue).
pub async fn park(job: &Job, failure: &Failure) -> Outcome {
    let delivery = job.delivery();
    let spec = job.spec();
    let reason = failure.park_reason();
    let expiration = delivery.properties.expiration().map(str::to_owned);
    let mut properties = delivery.properties.without_expiration();
    let headers = properties.headers_mut();
    stamp_failure(headers, job, failure);
    headers
        .insert(headers::PARK_TASK, spec.name)
        .insert(headers::PARK_REASON, reason)
        .insert(headers::ORIGINAL_EXCHANGE, delivery.exchange.as_str())
        .insert(headers::ORIGINAL_ROUTING_KEY, delivery.routing_key.as_str())
        .insert(headers::ORIGINAL_QUEUE, &*spec.queue)
        .insert(headers::PARK_HOST, hostname());
    if let Some(exp) = expiration {
        headers.insert("rw-original-expiration", exp);
    }
    let copy = Outgoing::to_queue(&spec.parking, properties, delivery.body.clone());
    match job.transport().publish(copy).await {
        Ok(()) => {
            tracing::warn!(
                task = spec.name,
                reason,
                attempt = failure.attempt,
                error = %failure.message,
                "message parked in {}",
                spec.parking
            );
            Outcome::Parked {
                reason,
                attempt: failure.attempt,
            }
        }
        Err(e) => {
            tracing::error!(task = spec.name, error = %e, "could not park message; rejecting it to the queue's dead-letter route");
            Outcome::Failed(failure.clone())
        }
    }
}

/// Records the attempts made so far on a copy.
pub(crate) fn stamp_attempts(headers: &mut Headers, attempts: u32) {
    headers.insert(headers::ATTEMPTS, attempts);
}

/// Writes the failure headers shared by parked and redelivered copies.
pub(crate) fn stamp_failure(headers: &mut Headers, job: &Job, failure: &Failure) {
    let now = now_secs();
    stamp_attempts(headers, failure.attempt);
    headers
        .insert(headers::ERROR_KIND, failure.cause.as_str())
        .insert(
            headers::ERROR_MESSAGE,
            truncate_utf8(&failure.message, MAX_ERROR_BYTES),
        )
        .insert(headers::FIRST_FAILURE, job.first_failure().unwrap_or(now))
        .insert(headers::LAST_FAILURE, now);
}

//! Final failures go to the parking queue, where a person can list and replay them.

use tower::Service;

use super::policy::Step;
use super::{
    config_layer, job_service_header, return_after_backoff, Failure, Job, JobService, Outcome,
};
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
/// and host. Only after the broker confirms the copy is the original acked.
///
/// If the copy cannot be published (the parking queue deleted, or full),
/// the delivery goes back to its queue with a charged requeue after the
/// task's backoff, never to the work queue's dead-letter route, which leads
/// to the same broken parking queue and, on a classic queue, would drop it.
/// The worker says so loudly: an error log, the
/// `rabbit_worker_parking_unavailable` gauge and `/readyz` answering 503,
/// until a parking copy of that task goes through again.
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
/// [`Outcome::Requeue`] after the task's backoff.
pub async fn park(job: &Job, failure: &Failure) -> Outcome {
    let delivery = job.delivery();
    let spec = job.spec();
    let reason = match failure.next {
        Some(Step::Park { reason }) => reason,
        _ => failure.park_reason(),
    };
    let copy = Outgoing::copy_of(delivery, &spec.parking, |headers| {
        stamp_failure(headers, job, failure);
        headers
            .insert(headers::PARK_TASK, parked_task(job))
            .insert(headers::PARK_REASON, reason)
            .insert(headers::ORIGINAL_EXCHANGE, delivery.exchange.as_str())
            .insert(headers::ORIGINAL_ROUTING_KEY, delivery.routing_key.as_str())
            .insert(headers::ORIGINAL_QUEUE, &*spec.queue)
            .insert(headers::PARK_HOST, hostname());
    });
    match job.transport().publish(copy).await {
        Ok(()) => {
            job.runtime().health.set_parking_ok(spec.name, true);
            job.reply_slot().note_failure(&failure.message);
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
            job.runtime().health.set_parking_ok(spec.name, false);
            tracing::error!(task = spec.name, error = %e, "could not park a message in {}: it goes back to {} and the worker reports unready until parking works again; check that the parking queue exists and is not full (`topology check`)", spec.parking, spec.queue);
            return_after_backoff(job).await
        }
    }
}

/// Records the attempts made so far on a copy.
/// The task a parked message is filed under: the registered task whose
/// queue it came from, or for a message naming a task no worker registered,
/// the name it gave (`unknown` when it gave none), so that `parked list`
/// shows what the producer meant.
fn parked_task(job: &Job) -> &str {
    match job.unknown_task() {
        Some("") => "unknown",
        Some(named) => named,
        None => job.spec().name,
    }
}

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

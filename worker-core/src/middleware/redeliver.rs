//! Transient failures that outlast the in-process retries wait on the broker.
//!
//! The copy goes to the wait queue of a delay tier (`<queue>.retry.<delay>`),
//! whose fixed TTL dead-letters it back to the work queue. One TTL per queue,
//! because RabbitMQ only expires messages at the head of a queue.

use std::time::Duration;

use tower::Service;

use super::park::stamp_failure;
use super::policy::{admit, Step, MAX_DELAY};
use super::{config_layer, job_service_header, return_after_backoff, Job, JobService, Outcome};
use crate::headers::{Headers, NOT_BEFORE, REDELIVERIES};
use crate::host::now_secs;
use crate::message::Outgoing;

/// Carries out the policy's `Wait` steps: a copy to the tier's wait queue,
/// confirmed, then the original is acked.
///
/// After a failure (the step the retry layer recorded on it), the copy
/// records the attempts made so far, the failure, one more trip through the
/// tiers and, when the handler asked to wait longer than the tier,
/// `rw-not-before`. Before a run, a delivery that came back before its
/// `rw-not-before` goes to a tier again without running and without being
/// charged an attempt.
///
/// The copy keeps body and properties but what [`Outgoing::copy_of`]
/// drops. If it cannot be published, the delivery goes back to its queue
/// with a charged requeue after the task's backoff (see
/// [`Outcome::Requeue`]). Waits longer than [`MAX_DELAY`] were cut to it by
/// the policy; the cut is logged and counted
/// (`rabbit_worker_delay_clamped_total`) here.
#[derive(Debug, Clone, Default)]
pub struct RedeliverLayer;

config_layer!(RedeliverLayer => Redeliver);

impl<S: JobService> Service<Job> for Redeliver<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        if let Step::Wait {
            tier,
            charged: false,
            ..
        } = admit(job.arrival(), &job.spec().options.retry)
        {
            return Box::pin(async move { Ok(wait_again(&job, tier).await) });
        }
        let fut = self.inner.call(job.clone());
        Box::pin(async move {
            let outcome = fut.await?;
            let Outcome::Failed(failure) = &outcome else {
                return Ok(outcome);
            };
            let Some(Step::Wait {
                tier, not_before, ..
            }) = failure.next
            else {
                return Ok(outcome);
            };
            if failure.retry_after.is_some_and(|asked| asked > MAX_DELAY) {
                count_cut(&job, failure.retry_after.unwrap_or_default());
            }
            let redeliveries = job.attempts().redeliveries;
            let due =
                not_before.map(|wait| now_secs().saturating_add(wait.as_secs_f64().ceil() as u64));
            let sent = send_to_tier(&job, tier, |headers| {
                stamp_failure(headers, &job, failure);
                headers.insert(REDELIVERIES, redeliveries.saturating_add(1));
                match due {
                    Some(at) => headers.insert(NOT_BEFORE, at),
                    None => {
                        headers.remove(NOT_BEFORE);
                        headers
                    }
                };
            })
            .await;
            match sent {
                Some(()) => {
                    tracing::info!(task = job.spec().name, attempt = failure.attempt, error = %failure.message, "redelivering through {}", tier_name(&job, tier));
                    Ok(Outcome::Redelivered {
                        tier,
                        attempt: failure.attempt,
                    })
                }
                None => Ok(return_after_backoff(&job).await),
            }
        })
    }
}

/// Logs and counts a wait cut to [`MAX_DELAY`].
fn count_cut(job: &Job, asked: Duration) {
    tracing::warn!(
        task = job.spec().name,
        ?asked,
        "a retry delay beyond the maximum of {MAX_DELAY:?} was cut to it"
    );
    metrics::counter!(crate::metric_names::DELAY_CLAMPED, "task" => job.spec().name).increment(1);
}

/// Sends a delivery that came back too early to `tier` again, unchanged
/// but for the broker's `x-` headers and an `rw-not-before` beyond
/// [`MAX_DELAY`], which is cut (so that a cut one stays cut): it has not
/// run, so no attempt is charged.
async fn wait_again(job: &Job, tier: Duration) -> Outcome {
    let attempt = job.attempt().saturating_sub(1);
    let latest = now_secs().saturating_add(MAX_DELAY.as_secs());
    let stamp = |headers: &mut Headers| {
        if let Some(due) = headers.get_count(NOT_BEFORE).filter(|due| *due > latest) {
            count_cut(job, Duration::from_secs(due.saturating_sub(now_secs())));
            headers.insert(NOT_BEFORE, latest);
        }
    };
    match send_to_tier(job, tier, stamp).await {
        Some(()) => {
            tracing::debug!(
                task = job.spec().name,
                "not due yet; waiting again in {}",
                tier_name(job, tier)
            );
            Outcome::Redelivered { tier, attempt }
        }
        None => return_after_backoff(job).await,
    }
}

fn tier_name(job: &Job, tier: Duration) -> &str {
    job.spec().tier_queue(tier).unwrap_or("?")
}

/// Publishes a copy of the job's delivery to the wait queue of `tier`, with
/// `stamp` applied to its headers. `None` (logged) when it could not be
/// published: the caller returns the delivery, as the failure was transient
/// and a publishing problem is no reason to park.
async fn send_to_tier(job: &Job, tier: Duration, stamp: impl FnOnce(&mut Headers)) -> Option<()> {
    let spec = job.spec();
    let queue = spec.tier_queue(tier)?;
    let copy = Outgoing::copy_of(job.delivery(), queue, stamp);
    match job.transport().publish(copy).await {
        Ok(()) => Some(()),
        Err(e) => {
            tracing::error!(task = spec.name, error = %e, "could not publish to delay tier {queue}; returning the delivery");
            None
        }
    }
}

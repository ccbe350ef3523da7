//! Transient failures that outlast the in-process retries wait on the broker.
//!
//! The copy goes to the wait queue of a delay tier (`<queue>.retry.<delay>`),
//! whose fixed TTL dead-letters it back to the work queue. One TTL per queue,
//! because RabbitMQ only expires messages at the head of a queue.

use std::time::Duration;

use tower::Service;

use super::park::stamp_failure;
use super::{config_layer, job_service_header, return_after_backoff, Job, JobService, Outcome};
use crate::headers::{Headers, NOT_BEFORE, REDELIVERIES};
use crate::host::now_secs;
use crate::message::Outgoing;
use crate::task::FailureKind;

/// Sends transient failures to the next delay tier, confirmed, then acks.
///
/// The copy keeps body and properties, drops every `x-` header (the broker
/// owns them, and the attempt count now lives in `rw-attempts`), and records
/// the attempts made so far. A failure that used up `max_attempts`, or a
/// task without tiers, passes up unchanged (to be parked). If the copy
/// cannot be published, the delivery goes back to its queue with a charged
/// requeue after the task's backoff (see [`Outcome::Requeue`]).
///
/// A `retry_after` longer than the longest tier is honoured too: the copy
/// carries `rw-not-before`, and a delivery that comes back before that time
/// goes to a tier again without running and without being charged an
/// attempt. No message waits longer than [`MAX_DELAY`] that way: a longer
/// `retry_after`, or an `rw-not-before` further away (a producer can set
/// one), is cut to it, logged and counted
/// (`rabbit_worker_delay_clamped_total`), so nothing cycles through the
/// tiers forever.
#[derive(Debug, Clone, Default)]
pub struct RedeliverLayer;

/// The longest a message waits for a `retry_after` or `rw-not-before`:
/// seven days.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// `wait` cut to [`MAX_DELAY`], logging and counting a cut.
fn clamped(job: &Job, wait: Duration) -> Duration {
    if wait <= MAX_DELAY {
        return wait;
    }
    tracing::warn!(
        task = job.spec().name,
        ?wait,
        "a retry delay beyond the maximum of {MAX_DELAY:?} was cut to it"
    );
    metrics::counter!("rabbit_worker_delay_clamped_total", "task" => job.spec().name).increment(1);
    MAX_DELAY
}

config_layer!(RedeliverLayer => Redeliver);

impl<S: JobService> Service<Job> for Redeliver<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        if let Some((left, tier)) = still_waiting(&job) {
            return Box::pin(async move { Ok(wait_again(&job, left, tier).await) });
        }
        let fut = self.inner.call(job.clone());
        Box::pin(async move {
            let outcome = fut.await?;
            let Outcome::Failed(failure) = &outcome else {
                return Ok(outcome);
            };
            let spec = job.spec();
            let policy = &spec.options.retry;
            if failure.kind != FailureKind::Transient || failure.attempt >= policy.max_attempts {
                return Ok(outcome);
            }
            let redeliveries = job.attempts().redeliveries;
            let retry_after = failure.retry_after.map(|wait| clamped(&job, wait));
            let tier = match retry_after {
                Some(wait) => policy.tier_at_least(wait),
                None => policy.tier_for(redeliveries),
            };
            let Some(tier) = tier.filter(|t| spec.tier_queue(*t).is_some()) else {
                return Ok(outcome);
            };
            let not_before = retry_after
                .filter(|wait| *wait > tier)
                .map(|wait| now_secs().saturating_add(wait.as_secs_f64().ceil() as u64));
            let sent = send_to_tier(&job, tier, |headers| {
                stamp_failure(headers, &job, failure);
                headers.insert(REDELIVERIES, redeliveries.saturating_add(1));
                if let Some(at) = not_before {
                    headers.insert(NOT_BEFORE, at);
                } else if headers.contains(NOT_BEFORE) {
                    headers.remove(NOT_BEFORE);
                }
            })
            .await;
            if sent.is_some() {
                tracing::info!(task = spec.name, attempt = failure.attempt, error = %failure.message, "redelivering through {}", tier_name(&job, tier));
            }
            match sent {
                Some(()) => Ok(Outcome::Redelivered {
                    tier,
                    attempt: failure.attempt,
                }),
                None => Ok(return_after_backoff(&job).await),
            }
        })
    }
}

/// How long the delivery must still wait and the tier to wait in, when it
/// carries an `rw-not-before` in the future and the task has tiers.
fn still_waiting(job: &Job) -> Option<(Duration, Duration)> {
    let not_before = job.delivery().properties.headers().get_count(NOT_BEFORE)?;
    let left = not_before.checked_sub(now_secs()).filter(|s| *s > 0)?;
    let left = clamped(job, Duration::from_secs(left));
    let tier = job.spec().options.retry.tier_at_least(left)?;
    Some((left, tier))
}

/// Sends a delivery that came back too early to `tier` again, unchanged
/// but for the broker's `x-` headers and its `rw-not-before` (rewritten, so
/// that a cut one stays cut): it has not run, so no attempt is charged.
async fn wait_again(job: &Job, left: Duration, tier: Duration) -> Outcome {
    let attempt = job.attempt().saturating_sub(1);
    let latest = now_secs().saturating_add(MAX_DELAY.as_secs());
    let stamp = |headers: &mut Headers| {
        if let Some(due) = headers.get_count(NOT_BEFORE).filter(|due| *due > latest) {
            tracing::debug!(task = job.spec().name, due, "rw-not-before cut to {latest}");
            headers.insert(NOT_BEFORE, latest);
        }
    };
    match send_to_tier(job, tier, stamp).await {
        Some(()) => {
            tracing::debug!(
                task = job.spec().name,
                ?left,
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
/// the broker's `x-` headers dropped and `stamp` applied to the rest.
/// `None` (logged) when it could not be published: the caller requeues, as
/// the failure was transient and a publishing problem is no reason to park.
async fn send_to_tier(job: &Job, tier: Duration, stamp: impl FnOnce(&mut Headers)) -> Option<()> {
    let spec = job.spec();
    let queue = spec.tier_queue(tier)?;
    let delivery = job.delivery();
    let mut properties = delivery.properties.for_copy();
    let headers = properties.headers_mut();
    headers.retain(|name| !name.starts_with("x-"));
    stamp(headers);
    let copy = Outgoing::to_queue(queue, properties, delivery.body.clone());
    match job.transport().publish(copy).await {
        Ok(()) => Some(()),
        Err(e) => {
            tracing::error!(task = spec.name, error = %e, "could not publish to delay tier {queue}; requeueing");
            None
        }
    }
}

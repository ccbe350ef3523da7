//! Transient failures that outlast the in-process retries wait on the broker.
//!
//! The copy goes to the wait queue of a delay tier (`<queue>.retry.<delay>`),
//! whose fixed TTL dead-letters it back to the work queue. One TTL per queue,
//! because RabbitMQ only expires messages at the head of a queue.

use tower::Service;

use super::park::stamp_failure;
use super::{config_layer, job_service_header, Job, JobService, Outcome};
use crate::headers::REDELIVERIES;
use crate::message::Outgoing;
use crate::task::FailureKind;

/// Sends transient failures to the next delay tier, confirmed, then acks.
///
/// The copy keeps body and properties, drops every `x-` header (the broker
/// owns them, and the attempt count now lives in `rw-attempts`), and records
/// the attempts made so far. A failure that used up `max_attempts`, or a
/// task without tiers, passes up unchanged (to be parked). If the copy
/// cannot be published, the delivery is requeued (`nack(requeue = true)`).
#[derive(Debug, Clone, Default)]
pub struct RedeliverLayer;

config_layer!(RedeliverLayer => Redeliver);

impl<S: JobService> Service<Job> for Redeliver<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
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
            let tier = match failure.retry_after {
                Some(wait) => policy.tier_at_least(wait),
                None => policy.tier_for(redeliveries),
            };
            let Some((tier, queue)) = tier.and_then(|t| spec.tier_queue(t).map(|q| (t, q))) else {
                return Ok(outcome);
            };
            let delivery = job.delivery();
            let mut properties = delivery.properties.without_expiration();
            let headers = properties.headers_mut();
            headers.retain(|name| !name.starts_with("x-"));
            stamp_failure(headers, &job, failure);
            headers.insert(REDELIVERIES, redeliveries.saturating_add(1));
            let copy = Outgoing::to_queue(queue, properties, delivery.body.clone());
            match job.transport().publish(copy).await {
                Ok(()) => {
                    tracing::info!(task = spec.name, attempt = failure.attempt, error = %failure.message, "redelivering through {queue}");
                    Ok(Outcome::Redelivered {
                        tier,
                        attempt: failure.attempt,
                    })
                }
                Err(e) => {
                    // The failure was transient: give the message back to the
                    // broker rather than park it for a publishing problem.
                    tracing::error!(task = spec.name, error = %e, "could not publish to delay tier {queue}; requeueing");
                    Ok(Outcome::Requeue)
                }
            }
        })
    }
}

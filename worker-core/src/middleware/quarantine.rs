//! Deliveries that came back unsettled are run alone, in a queue of their own.
//!
//! Why? When a handler kills the process (an abort, an out-of-memory kill,
//! a segfault in a C library), every delivery the channel held goes back to
//! the queue, and the quorum queue counts a delivery against *each* of them.
//! The innocent neighbours of the crashing message come back together with
//! it, crash with it again, and after a few rounds they would all be parked
//! by the delivery limit. So a delivery that was returned unsettled (a
//! quorum `x-delivery-count` of 1 or more; the `redelivered` flag on a
//! classic queue) is not run where it stands: a copy goes to `<queue>.quarantine`,
//! which the worker consumes with a prefetch of 1 and one handler at a
//! time. There a crashing message only takes itself down, its count grows,
//! and the delivery limit parks it; its neighbours run alone and succeed.

use futures_util::future::{BoxFuture, FutureExt};
use tower::Service;

use super::park::stamp_attempts;
use super::{always_ready, config_layer, Handled, Job, JobService, Outcome};
use crate::message::Outgoing;
use crate::task::QueueType;

/// Moves returned deliveries to the task's quarantine queue (confirmed, then
/// acked); every other delivery passes through. If the copy cannot be
/// published, the delivery is run where it is.
///
/// The copy records the returns as attempts (`rw-attempts`): the quorum
/// count, or one for a classic queue's redelivery.
#[derive(Debug, Clone, Default)]
pub struct QuarantineLayer;

config_layer!(QuarantineLayer => Quarantine);

impl<S: JobService> Service<Job> for Quarantine<S> {
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Handled>;

    always_ready!();

    fn call(&mut self, job: Job) -> Self::Future {
        let spec = job.spec();
        let classic = spec.options.queue_type == QueueType::Classic;
        let returned = if classic {
            job.delivery().redelivered
        } else {
            job.attempts().sources.returned > 0
        };
        if !returned {
            return self.inner.call(job).boxed();
        }
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let spec = job.spec();
            let previous = job
                .attempt()
                .saturating_sub(1)
                .saturating_add(u32::from(spec.options.queue_type == QueueType::Classic));
            let delivery = job.delivery();
            let mut properties = delivery.properties.without_expiration();
            let headers = properties.headers_mut();
            headers.retain(|name| !name.starts_with("x-"));
            stamp_attempts(headers, previous);
            let copy = Outgoing::to_queue(&spec.quarantine, properties, delivery.body.clone());
            match job.transport().publish(copy).await {
                Ok(()) => {
                    tracing::info!(
                        task = spec.name,
                        attempts = previous,
                        "delivery came back unsettled; running it alone in {}",
                        spec.quarantine
                    );
                    Ok(Outcome::Quarantined { attempts: previous })
                }
                Err(e) => {
                    tracing::warn!(task = spec.name, error = %e, "could not quarantine a returned delivery; running it here");
                    inner.call(job).await
                }
            }
        })
    }
}

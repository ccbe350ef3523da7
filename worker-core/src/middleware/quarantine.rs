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
//! Deliveries returned by a broker restart or a lost connection, which
//! never started, are not charged an attempt for it.

use futures_util::future::FutureExt;
use tower::Service;

use super::park::stamp_attempts;
use super::policy::{admit, Step};
use super::{config_layer, job_service_header, take_ready, Job, JobService, Outcome};
use crate::message::Outgoing;

/// Moves returned deliveries to the task's quarantine queue (confirmed, then
/// acked); every other delivery passes through. If the copy cannot be
/// published, the delivery is run where it is.
///
/// Returns from the work queue are not charged as attempts (the delivery
/// may never have started); returns from the quarantine queue are, since
/// the message ran alone: by the quorum queue's own count, or, on a
/// classic queue, by a fresh copy with one more attempt in `rw-attempts`.
#[derive(Debug, Clone, Default)]
pub struct QuarantineLayer;

config_layer!(QuarantineLayer => Quarantine);

impl<S: JobService> Service<Job> for Quarantine<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let Step::Quarantine { attempts: recorded } =
            admit(job.arrival(), &job.spec().options.retry)
        else {
            return self.inner.call(job).boxed();
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let spec = job.spec();
            let copy = Outgoing::copy_of(job.delivery(), &spec.quarantine, |headers| {
                stamp_attempts(headers, recorded);
            });
            match job.transport().publish(copy).await {
                Ok(()) => {
                    tracing::info!(
                        task = spec.name,
                        attempts = recorded,
                        "delivery came back unsettled; running it alone in {}",
                        spec.quarantine
                    );
                    Ok(Outcome::Quarantined { attempts: recorded })
                }
                Err(e) => {
                    tracing::warn!(task = spec.name, error = %e, "could not quarantine a returned delivery; running it here");
                    inner.call(job).await
                }
            }
        })
    }
}

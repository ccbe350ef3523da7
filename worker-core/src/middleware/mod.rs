//! The middleware between a decoded delivery and its settlement.
//!
//! Each concern is a tower [`Layer`](tower::Layer) and
//! [`tower::Service`] of its own, usable alone in a custom stack.
//! Every layer takes a [`Job`] and answers an [`Outcome`]; the stack never
//! returns an error, it decides what becomes of the delivery, and the
//! worker settles the delivery once from that decision.
//!
//! [`default_stack`] builds the order the worker runs, outermost first:
//!
//! 1. [`TraceLayer`]: one span per delivery.
//! 2. [`MetricsLayer`]: deliveries, outcomes, durations, in-flight.
//! 3. [`ParkLayer`]: failures that are final go to the parking queue.
//! 4. [`DeliveryLimitLayer`]: messages past their attempts park without running.
//! 5. [`QuarantineLayer`]: deliveries returned unsettled run alone elsewhere.
//! 6. [`RedeliverLayer`]: transient failures wait in a broker-side delay tier.
//! 7. [`RetryLayer`]: a few short in-process retries with backoff.
//! 8. [`TimeoutLayer`]: an attempt running too long is a transient failure.
//! 9. [`CatchPanicLayer`]: a panic is a transient failure.
//! 10. user layers, then the handler ([`HandlerService`]).

mod catch_panic;
mod delivery_limit;
mod handler;
mod job;
pub(crate) mod metrics;
mod park;
pub mod policy;
mod quarantine;
mod rate;
mod redeliver;
mod retry;
mod stack;
mod timeout;
mod trace;

pub use catch_panic::{CatchPanic, CatchPanicLayer};
pub use delivery_limit::{DeliveryLimit, DeliveryLimitLayer};
pub use handler::HandlerService;
pub use job::{Failure, FailureCause, Handled, Job, Outcome};
pub use metrics::{Metrics, MetricsLayer};
pub use park::{park, Park, ParkLayer};
pub use policy::MAX_DELAY;
pub use quarantine::{Quarantine, QuarantineLayer};
pub use rate::{RateLayer, RateLimit, RateLimiters};
pub use redeliver::{Redeliver, RedeliverLayer};
pub use retry::{Retry, RetryLayer};
pub use stack::{default_stack, BoxJobService};
pub use timeout::{Timeout, TimeoutLayer};
pub use trace::{Trace, TraceLayer};

use std::convert::Infallible;

use tower::Service;

/// A service the stack can wrap: takes a [`Job`], answers an [`Outcome`], never fails.
pub trait JobService:
    Service<Job, Response = Outcome, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> JobService for S where
    S: Service<Job, Response = Outcome, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Implements `Layer` for a config struct whose service is `{ inner, config }`.
macro_rules! config_layer {
    ($layer:ident => $service:ident) => {
        impl<S> tower::Layer<S> for $layer {
            type Service = $service<S>;

            fn layer(&self, inner: S) -> $service<S> {
                $service {
                    inner,
                    config: self.clone(),
                }
            }
        }

        /// The service made by its layer.
        #[derive(Debug, Clone)]
        pub struct $service<S> {
            inner: S,
            #[allow(dead_code)]
            config: $layer,
        }
    };
}
pub(crate) use config_layer;

/// The associated types and `poll_ready` every job layer's service shares:
/// it answers an [`Outcome`] through a boxed future, never fails, and is
/// ready when its inner service is.
macro_rules! job_service_header {
    () => {
        type Response = $crate::middleware::Outcome;
        type Error = std::convert::Infallible;
        type Future = futures_util::future::BoxFuture<'static, $crate::middleware::Handled>;

        fn poll_ready(
            &mut self,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
            self.inner.poll_ready(cx)
        }
    };
}
pub(crate) use job_service_header;

/// Takes the inner service that `poll_ready` made ready, leaving a clone in
/// its place: a layer that calls its inner service from inside its future
/// must call the instance that was made ready (tower's `ConcurrencyLimit`
/// or `Buffer` panic otherwise), and must make it ready again before every
/// further call ([`tower::ServiceExt::ready`]).
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let fresh = inner.clone();
    std::mem::replace(inner, fresh)
}

/// The outcome for a delivery whose copy (to a delay tier or parking)
/// could not be published: back to its queue with a charged requeue
/// ([`Outcome::Requeue`], a `basic.reject` that every broker version counts
/// toward the delivery limit, and that the attempt count reads back as a
/// return), after the task's backoff for this attempt, so that a broken
/// queue costs a bounded number of slow round trips and never a hot loop.
/// A stopping worker returns it at once.
pub(crate) async fn return_after_backoff(job: &Job) -> Outcome {
    let delay = job
        .spec()
        .options
        .retry
        .backoff
        .delay(job.attempt(), &mut rand::rng());
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = job.runtime().shutdown.triggered() => {}
    }
    Outcome::Requeue
}

//! The default middleware stack, built by one function for the worker and the testkit alike.

use std::convert::Infallible;

use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use super::{
    CatchPanicLayer, DeliveryLimitLayer, Job, MetricsLayer, Outcome, ParkLayer, QuarantineLayer,
    RateLayer, RedeliverLayer, RetryLayer, TimeoutLayer, TraceLayer,
};
use crate::topology::TaskSpec;

/// A type-erased job service, as the worker stores one per task.
pub type BoxJobService = BoxCloneSyncService<Job, Outcome, Infallible>;

/// Wraps `handler` (the task's [`HandlerService`](super::HandlerService),
/// possibly inside user layers) in the default layers, outermost first:
/// trace, metrics, park, delivery limit, quarantine, redeliver, retry,
/// rate, timeout, catch panic.
///
/// Rate sits where it paces handler starts and nothing else: inside trace
/// and metrics (a delivery's span and its handler time include the wait
/// for a slot), inside park, delivery limit, quarantine and redeliver (a
/// delivery that will not run takes no slot), inside retry (each attempt
/// in process is a start and waits for its own slot), and outside timeout
/// (the wait does not count against the attempt's time limit).
///
/// `retry` is passed in so tests can seed its jitter.
pub fn default_stack(spec: &TaskSpec, retry: RetryLayer, handler: BoxJobService) -> BoxJobService {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(TraceLayer)
            .layer(MetricsLayer::new(spec.name, &spec.queue))
            .layer(ParkLayer)
            .layer(DeliveryLimitLayer)
            .layer(QuarantineLayer)
            .layer(RedeliverLayer)
            .layer(retry)
            .layer(RateLayer)
            .layer(TimeoutLayer)
            .layer(CatchPanicLayer)
            .service(handler),
    )
}

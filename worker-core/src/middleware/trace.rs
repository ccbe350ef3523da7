//! One tracing span per delivery.

use tower::Service;
use tracing::Instrument;

use super::{config_layer, job_service_header, Job, JobService};

/// Wraps each delivery in an `info` span named `delivery` with the task,
/// queue, message id, correlation id, attempt and redelivered flag, and logs
/// the outcome at `debug`. Logs from the handler carry those fields.
#[derive(Debug, Clone, Default)]
pub struct TraceLayer;

config_layer!(TraceLayer => Trace);

impl<S: JobService> Service<Job> for Trace<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let delivery = job.delivery();
        let props = &delivery.properties;
        let span = tracing::info_span!(
            "delivery",
            task = job.spec().name,
            queue = &*job.spec().queue,
            message_id = props.message_id().unwrap_or(""),
            correlation_id = props.correlation_id().unwrap_or(""),
            attempt = job.attempt(),
            redelivered = delivery.redelivered,
        );
        #[cfg(feature = "otel")]
        crate::trace_context::continue_in(&span, props.headers());
        let fut = self.inner.call(job);
        Box::pin(
            async move {
                let outcome = fut.await?;
                tracing::debug!(outcome = outcome.as_str(), "delivery handled");
                Ok(outcome)
            }
            .instrument(span),
        )
    }
}

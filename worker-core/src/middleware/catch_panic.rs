//! A panicking handler becomes a transient failure; the worker keeps running.

use std::panic::AssertUnwindSafe;

use futures_util::future::FutureExt;
use tower::Service;

use super::{config_layer, job_service_header, Failure, FailureCause, Job, JobService, Outcome};
use crate::task::FailureKind;

/// Turns panics of the inner service into [`Outcome::Failed`] with cause [`FailureCause::Panic`].
#[derive(Debug, Clone, Default)]
pub struct CatchPanicLayer;

config_layer!(CatchPanicLayer => CatchPanic);

impl<S: JobService> Service<Job> for CatchPanic<S> {
    job_service_header!();

    fn call(&mut self, job: Job) -> Self::Future {
        let attempt = job.attempt();
        // A service may panic while making its future, not only while it runs.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(job)));
        Box::pin(async move {
            let caught = match called {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            caught.unwrap_or_else(|panic| {
                let message = panic_message(panic.as_ref());
                tracing::warn!(%message, attempt, "handler panicked");
                Ok(Outcome::Failed(Failure::new(
                    FailureKind::Transient,
                    FailureCause::Panic,
                    format!("handler panicked: {message}"),
                    attempt,
                )))
            })
        })
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

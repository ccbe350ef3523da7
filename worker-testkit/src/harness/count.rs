//! A tower service that records each call of the handler service.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tower::Service;
use worker_core::{Job, Outcome};

use super::report::{HandlerRun, RunEnd};

/// The runs of one harness run, shared between the service clones the
/// retry layer makes.
#[derive(Debug, Clone)]
pub(crate) struct RunLog {
    runs: Arc<Mutex<Vec<Entry>>>,
    origin: Instant,
}

#[derive(Debug)]
struct Entry {
    attempt: u32,
    started_at: Instant,
    ended: Option<RunEnd>,
}

impl RunLog {
    /// A log whose times count from now (on tokio's clock, paused or not).
    pub(crate) fn new() -> Self {
        RunLog {
            runs: Arc::default(),
            origin: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, attempt: u32) -> usize {
        let mut runs = self.lock();
        runs.push(Entry {
            attempt,
            started_at: Instant::now(),
            ended: None,
        });
        runs.len() - 1
    }

    fn end(&self, index: usize, end: RunEnd) {
        if let Some(entry) = self.lock().get_mut(index) {
            entry.ended.get_or_insert(end);
        }
    }

    /// The runs so far; one still in flight reads as cancelled.
    pub(crate) fn runs(&self) -> Vec<HandlerRun> {
        self.lock()
            .iter()
            .map(|e| HandlerRun {
                attempt: e.attempt,
                started_at: e.started_at.duration_since(self.origin),
                ended: e.ended.clone().unwrap_or(RunEnd::Cancelled),
            })
            .collect()
    }
}

/// Wraps the handler service (where user layers go, inside the default
/// stack) and records every call: attempt number, start time and how it
/// ended, including panics and cancellations by the timeout layer.
#[derive(Debug, Clone)]
pub(crate) struct CountRuns<S> {
    inner: S,
    log: RunLog,
}

impl<S> CountRuns<S> {
    pub(crate) fn new(inner: S, log: RunLog) -> Self {
        CountRuns { inner, log }
    }
}

impl<S> Service<Job> for CountRuns<S>
where
    S: Service<Job, Response = Outcome, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, job: Job) -> Self::Future {
        let index = self.log.start(job.attempt());
        let guard = EndGuard {
            log: self.log.clone(),
            index,
        };
        let fut = self.inner.call(job);
        Box::pin(async move {
            let outcome = fut.await?;
            guard
                .log
                .end(guard.index, RunEnd::Returned(outcome.clone()));
            Ok(outcome)
        })
    }
}

/// Marks a run that never returned: unwound by a panic, or dropped (the
/// timeout layer drops the handler's future when time runs out).
struct EndGuard {
    log: RunLog,
    index: usize,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let end = if std::thread::panicking() {
            RunEnd::Panicked
        } else {
            RunEnd::Cancelled
        };
        // `end` keeps the first ending recorded, so a returned run stays returned.
        self.log.end(self.index, end);
    }
}

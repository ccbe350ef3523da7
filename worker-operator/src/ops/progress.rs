//! How long operations say how far they got, without knowing who listens.
//!
//! The operations here stay free of terminal concerns: they report to a
//! [`Progress`] the caller hands them. The command line passes one that
//! draws a bar on a terminal; a library caller passes [`NoProgress`] or its
//! own (a log line every thousand messages, a metric, a test's counter).

use std::sync::atomic::{AtomicU64, Ordering};

/// Receives the progress of an operation that goes through many items.
///
/// Calls come from the task running the operation, between its broker
/// calls: keep them cheap and never block.
pub trait Progress: Send + Sync {
    /// The operation starts and expects to go through `total` items (a
    /// queue's depth when it started, for example).
    fn start(&self, total: u64) {
        let _ = total;
    }

    /// `n` more items were gone through.
    fn advance(&self, n: u64);
}

/// Ignores the progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: u64) {}
}

/// Counts what it is told; for tests and simple polling.
///
/// ```
/// use worker_operator::ops::progress::{Counter, Progress};
///
/// let counter = Counter::default();
/// counter.start(3);
/// counter.advance(1);
/// counter.advance(1);
/// assert_eq!((counter.done(), counter.total()), (2, 3));
/// ```
#[derive(Debug, Default)]
pub struct Counter {
    total: AtomicU64,
    done: AtomicU64,
}

impl Counter {
    /// Items gone through so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The total announced by the last [`Progress::start`].
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

impl Progress for Counter {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

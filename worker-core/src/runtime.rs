//! Things shared by every delivery of a worker: publisher, state, shutdown and health.

use std::sync::Arc;

use tokio::sync::watch;

use crate::publisher::Publisher;
use crate::task::StateMap;

/// Tells whether the worker is stopping.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Triggers a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    /// A signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// A signal that never fires (for tests and tools).
    pub fn never() -> Shutdown {
        let (_, rx) = watch::channel(false);
        Shutdown { rx }
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown begins.
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            // The trigger is gone without firing: shutdown can never begin.
            std::future::pending::<()>().await;
        }
    }
}

impl ShutdownTrigger {
    /// Begins shutdown.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

/// Whether the worker can do its job: consuming, with every parking queue
/// taking copies. Drives `/readyz` through [`subscribe`](Health::subscribe).
#[derive(Debug)]
pub struct Health {
    consuming: std::sync::atomic::AtomicBool,
    /// Tasks whose last parking copy failed.
    parking_broken: std::sync::Mutex<std::collections::BTreeSet<&'static str>>,
    ready: watch::Sender<bool>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            consuming: std::sync::atomic::AtomicBool::new(false),
            parking_broken: std::sync::Mutex::default(),
            ready: watch::Sender::new(false),
        }
    }
}

impl Health {
    /// Follows readiness: consuming and no parking queue broken.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Whether the worker is ready now.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Every consumer started (`true`) or one was lost (`false`).
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming
            .store(consuming, std::sync::atomic::Ordering::SeqCst);
        self.update();
    }

    /// Records whether `task`'s last parking copy was confirmed; a broken
    /// parking queue makes the worker unready and sets
    /// `rabbit_worker_parking_unavailable` for the task until a copy goes
    /// through again.
    pub fn set_parking_ok(&self, task: &'static str, ok: bool) {
        let changed = {
            let mut broken = self
                .parking_broken
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if ok {
                broken.remove(task)
            } else {
                broken.insert(task)
            }
        };
        if changed {
            metrics::gauge!(crate::metric_names::PARKING_UNAVAILABLE, "task" => task).set(if ok {
                0.0
            } else {
                1.0
            });
            self.update();
        }
    }

    fn update(&self) {
        let parking_ok = self
            .parking_broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        let ready = parking_ok && self.consuming.load(std::sync::atomic::Ordering::SeqCst);
        self.ready
            .send_if_modified(|now| std::mem::replace(now, ready) != ready);
    }
}

/// Worker-wide values every delivery can reach.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Publishes follow-up tasks.
    pub publisher: Publisher,
    /// Shared application state.
    pub state: Arc<StateMap>,
    /// The worker's stop signal.
    pub shutdown: Shutdown,
    /// Readiness, which deliveries affect when parking fails.
    pub health: Arc<Health>,
    /// One start limiter per rate-limited task, shared by all its
    /// deliveries in this process.
    pub rates: Arc<crate::middleware::RateLimiters>,
    /// One circuit breaker per task with a `breaker` option, shared by its
    /// consumers in this process.
    pub breakers: Arc<crate::breaker::Breakers>,
    /// How long one delivery may be held before the worker settles it
    /// itself ([`hold_budget`](crate::task::hold_budget) of the broker's
    /// consumer timeout); `None`: no bound.
    pub hold_limit: Option<std::time::Duration>,
}

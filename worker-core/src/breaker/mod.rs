//! A circuit breaker per task that pauses consumption while something
//! downstream is broken (MassTransit's kill switch is the model).
//!
//! # Why pause consuming instead of failing fast
//!
//! When a task's database or API is down, every delivery fails, is retried,
//! waits in a tier and eventually parks: attempts are spent on an outage
//! that is nobody's message's fault. With `breaker = "50%/20"` the worker
//! instead stops taking that task's messages once at least half of the last
//! 20 counted outcomes failed. The messages stay in the broker, uncharged;
//! other tasks keep consuming.
//!
//! # What counts
//!
//! Only outcomes that say something downstream is broken count as
//! failures: a retryable error, a timeout, a panic, a retry copy that could
//! not be published ([`Verdict::of`]). A permanent error, an undecodable or
//! too large body, an unknown task are the message's fault: they count as
//! neither, so poison cannot trip the breaker. Successes (and discards)
//! count as successes. One delivery is one outcome, whatever its in-process
//! retries.
//!
//! # The states
//!
//! - **closed**: consuming; each counted outcome enters the sliding window.
//! - **open**: the consumer of the work queue (and of its quarantine) is
//!   cancelled with `basic.cancel`, so the broker keeps the backlog.
//!   Deliveries already prefetched but not started go back with
//!   `basic.nack(requeue = true)`, as on a clean stop: the broker counts
//!   that as a delivery on quorum queues (`x-delivery-count`, 3.10 and
//!   4.0), but the framework's attempt count (`rw-attempts`) is not
//!   charged. Handlers already running finish and settle normally; their
//!   outcomes no longer change the state. Open lasts the cool-down
//!   (`breaker_cooldown`, 30 s by default).
//! - **half-open**: exactly one message is taken with `basic.get` and run
//!   as the probe. `basic.get` takes one message and no more (a consumer
//!   would be sent up to its prefetch), and answers at once when the queue
//!   is empty. Success closes the breaker and consuming resumes; failure
//!   opens it again for a fresh cool-down; an empty queue closes it; a
//!   probe at fault (neither) lets the next message probe.
//!
//! Each change is logged once (WARN when opening, INFO otherwise) with the
//! reason and what happens next, and exported as
//! `rabbit_worker_breaker_state{task}` (0 closed, 1 half-open, 2 open) and
//! `rabbit_worker_breaker_transitions_total{task,to}`. `/readyz` lists the
//! state of every breaker, and stays `200` while one is open: the process
//! is healthy, restarting it would not help.
//!
//! A breaker pauses a whole queue, so a task with a breaker must have its
//! queue to itself (the worker refuses to start otherwise). Its state is
//! per process: each worker process trips and probes on its own outcomes.

mod circuit;
pub(crate) mod parse;

pub use circuit::{Admit, Transition};
pub use parse::MAX_WINDOW;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::metric_names::{BREAKER_STATE, BREAKER_TRANSITIONS};
use crate::middleware::{FailureCause, Outcome};
use crate::task::FailureKind;
use crate::topology::TaskSpec;
use circuit::Circuit;

/// The cool-down when `breaker_cooldown` is not given.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// When a task's breaker trips, and how long it stays open.
///
/// Trips once at least `percent` % of the last `window` counted outcomes
/// failed (and `window` were seen since the breaker last closed);
/// `"5 in a row"` is 100 % of the last 5.
///
/// ```
/// use std::time::Duration;
/// use worker_core::BreakerPolicy;
///
/// let policy: BreakerPolicy = "50%/20".parse().unwrap();
/// assert_eq!((policy.percent, policy.window), (50, 20));
/// assert_eq!(policy.cooldown, Duration::from_secs(30));
/// assert_eq!(BreakerPolicy::in_a_row(5).to_string(), "5 in a row");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// The share of failures that trips it, 1 to 100.
    pub percent: u8,
    /// How many counted outcomes it looks back over, 1 to [`MAX_WINDOW`].
    pub window: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl BreakerPolicy {
    /// Trips once `percent` % (clamped to 1..=100) of the last `window`
    /// (clamped to 1..=[`MAX_WINDOW`]) outcomes failed.
    pub fn share(percent: u8, window: u32) -> BreakerPolicy {
        BreakerPolicy {
            percent: percent.clamp(1, 100),
            window: window.clamp(1, MAX_WINDOW),
            cooldown: DEFAULT_COOLDOWN,
        }
    }

    /// Trips after `n` failures in a row.
    pub fn in_a_row(n: u32) -> BreakerPolicy {
        BreakerPolicy::share(100, n)
    }

    /// With this cool-down (at least one millisecond).
    #[must_use]
    pub fn cooldown(self, cooldown: Duration) -> BreakerPolicy {
        BreakerPolicy {
            cooldown: cooldown.max(Duration::from_millis(1)),
            ..self
        }
    }
}

impl std::str::FromStr for BreakerPolicy {
    type Err = String;

    /// `"50%/20"` or `"5 in a row"` (see [`parse_breaker`](crate::parse_breaker)),
    /// with the default cool-down.
    fn from_str(text: &str) -> Result<BreakerPolicy, String> {
        parse::parse_breaker(text).map(|(percent, window)| BreakerPolicy::share(percent, window))
    }
}

impl std::fmt::Display for BreakerPolicy {
    /// The rule as `#[task]` takes it: `50%/20` or `5 in a row`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.percent == 100 {
            write!(f, "{} in a row", self.window)
        } else {
            write!(f, "{}%/{}", self.percent, self.window)
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Consuming.
    Closed,
    /// One probe message is being tried.
    HalfOpen,
    /// Not consuming until the cool-down is over.
    Open,
}

impl BreakerState {
    /// `closed`, `half-open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }

    /// The value of `rabbit_worker_breaker_state`: 0, 1 or 2.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// What one delivery's outcome says about the task's downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It worked.
    Success,
    /// Something the handler depends on is broken: a transient failure.
    Failure,
    /// The message was at fault (permanent, undecodable, too large,
    /// unknown task), or nothing ran: not counted.
    Neither,
}

impl Verdict {
    /// Classifies an outcome (see the module docs).
    pub fn of(outcome: &Outcome) -> Verdict {
        match outcome {
            Outcome::Succeeded | Outcome::Discarded(_) => Verdict::Success,
            // A retry copy waits in a tier: the attempt failed transiently.
            Outcome::Redelivered { .. } => Verdict::Failure,
            Outcome::Parked { reason, .. } if *reason == "exhausted" => Verdict::Failure,
            Outcome::Failed(failure)
                if failure.kind == FailureKind::Transient
                    && matches!(
                        failure.cause,
                        FailureCause::Handler | FailureCause::Panic | FailureCause::Timeout
                    ) =>
            {
                Verdict::Failure
            }
            // A copy that could not be published (or a reply that could not
            // be sent) goes back charged: the broker side is failing.
            Outcome::Requeue => Verdict::Failure,
            _ => Verdict::Neither,
        }
    }
}

/// One task's breaker in one process, shared by its consumers (and the
/// testkit's harness): counts outcomes, decides, logs and exports each
/// change once, and tells waiting consumers about it.
#[derive(Debug)]
pub struct Breaker {
    task: &'static str,
    queue: Arc<str>,
    policy: BreakerPolicy,
    circuit: Mutex<Circuit>,
    state: watch::Sender<BreakerState>,
}

impl Breaker {
    /// A closed breaker for `task` on `queue`.
    pub fn new(task: &'static str, queue: Arc<str>, policy: BreakerPolicy) -> Breaker {
        metrics::gauge!(BREAKER_STATE, "task" => task).set(BreakerState::Closed.gauge());
        Breaker {
            task,
            queue,
            policy,
            circuit: Mutex::new(Circuit::new(policy)),
            state: watch::Sender::new(BreakerState::Closed),
        }
    }

    /// The task's name.
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// The rule and cool-down.
    pub fn policy(&self) -> BreakerPolicy {
        self.policy
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        *self.state.borrow()
    }

    /// Follows the state.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.state.subscribe()
    }

    /// Counts the outcome of a delivery consumed while closed.
    pub fn record(&self, outcome: &Outcome) {
        let t = self.with(|c| c.record(Verdict::of(outcome), Instant::now()));
        self.apply(t);
    }

    /// What a consumer may do now (see [`Admit`]); `may_probe` is false for
    /// a consumer that waits for the breaker to close without probing.
    pub fn admit(&self, may_probe: bool) -> Admit {
        let (admit, t) = self.with(|c| c.admit(Instant::now(), may_probe));
        self.apply(t);
        admit
    }

    /// Reports the probe's outcome.
    pub fn probe_done(&self, outcome: &Outcome) {
        let t = self.with(|c| c.probe_done(Verdict::of(outcome), Instant::now()));
        self.apply(t);
    }

    /// Reports that the queue was empty when the probe was due.
    pub fn probe_found_nothing(&self) {
        let t = self.with(Circuit::probe_found_nothing);
        self.apply(t);
    }

    /// Reports that the probe did not finish (its channel was lost).
    pub fn probe_abandoned(&self) {
        self.with(Circuit::probe_abandoned);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Circuit) -> R) -> R {
        f(&mut self.circuit.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Logs, exports and announces a change, once.
    fn apply(&self, transition: Option<Transition>) {
        let Some(Transition { to, reason }) = transition else {
            return;
        };
        let (task, queue) = (self.task, &*self.queue);
        let cooldown = crate::format_duration(self.policy.cooldown);
        match to {
            BreakerState::Open => tracing::warn!(
                task, queue, reason = %reason,
                "circuit breaker open: stopped consuming {queue}; its messages stay in the queue, one probe in {cooldown}"
            ),
            BreakerState::HalfOpen => tracing::info!(
                task, queue, reason = %reason,
                "circuit breaker half-open: taking one message from {queue} as a probe"
            ),
            BreakerState::Closed => tracing::info!(
                task, queue, reason = %reason,
                "circuit breaker closed: consuming {queue} again"
            ),
        }
        metrics::gauge!(BREAKER_STATE, "task" => task).set(to.gauge());
        metrics::counter!(BREAKER_TRANSITIONS, "task" => task, "to" => to.as_str()).increment(1);
        self.state.send_replace(to);
    }
}

/// The breakers of one process, one per task with a `breaker` option.
#[derive(Debug, Default)]
pub struct Breakers {
    by_task: Mutex<BTreeMap<&'static str, Arc<Breaker>>>,
}

impl Breakers {
    /// The breaker of `spec`'s task, made on first use; `None` when the task
    /// has no `breaker` option.
    pub fn get(&self, spec: &TaskSpec) -> Option<Arc<Breaker>> {
        let policy = spec.options.breaker?;
        let mut by_task = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        let breaker = by_task
            .entry(spec.name)
            .or_insert_with(|| Arc::new(Breaker::new(spec.name, spec.queue.clone(), policy)));
        Some(breaker.clone())
    }

    /// Every breaker's task and state, by task name.
    pub fn states(&self) -> Vec<(&'static str, BreakerState)> {
        let by_task = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        by_task.iter().map(|(task, b)| (*task, b.state())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(kind: FailureKind, cause: FailureCause) -> Outcome {
        Outcome::Failed(crate::middleware::Failure::new(kind, cause, "x", 1))
    }

    #[test]
    fn only_what_says_a_dependency_is_broken_counts_as_a_failure() {
        let cases = [
            (Outcome::Succeeded, Verdict::Success),
            (Outcome::Discarded("dup".into()), Verdict::Success),
            (
                failed(FailureKind::Transient, FailureCause::Timeout),
                Verdict::Failure,
            ),
            (Outcome::Requeue, Verdict::Failure),
            (
                failed(FailureKind::Permanent, FailureCause::Handler),
                Verdict::Neither,
            ),
            // A delivery given back because the worker stopped before its
            // handler started says nothing about the task's dependencies.
            (Outcome::NotStarted, Verdict::Neither),
        ];
        for (outcome, verdict) in cases {
            assert_eq!(Verdict::of(&outcome), verdict, "{}", outcome.as_str());
        }
    }
}

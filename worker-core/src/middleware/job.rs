//! The request and response types every layer shares.

use std::sync::Arc;
use std::time::Duration;

use super::policy::{Arrival, Progress, Step};
use crate::headers::{Attempts, FIRST_FAILURE, NOT_BEFORE};
use crate::host::now_secs;
use crate::message::Delivery;
use crate::runtime::Runtime;
use crate::task::{FailureKind, TaskError};
use crate::task::{QueueType, ReplySlot};
use crate::topology::TaskSpec;
use crate::transport::Transport;

/// One delivery on its way through the middleware stack.
///
/// Cheap to clone (the delivery and everything shared sit behind `Arc`s),
/// so the retry layer can run the inner stack again.
#[derive(Clone)]
pub struct Job {
    shared: Arc<JobShared>,
    attempt: u32,
    tries_here: u32,
}

struct JobShared {
    delivery: Arc<Delivery>,
    spec: Arc<TaskSpec>,
    transport: Arc<dyn Transport>,
    runtime: Arc<Runtime>,
    attempts: Attempts,
    first_failure: Option<u64>,
    unknown_task: Option<String>,
    quarantined: bool,
    reply: ReplySlot,
    /// When the worker took the delivery: the start of its hold budget.
    taken: tokio::time::Instant,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("task", &self.shared.spec.name)
            .field("tag", &self.shared.delivery.tag)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job for a delivery of the task described by `spec`.
    pub fn new(
        delivery: Arc<Delivery>,
        spec: Arc<TaskSpec>,
        transport: Arc<dyn Transport>,
        runtime: Arc<Runtime>,
    ) -> Job {
        let headers = delivery.properties.headers();
        let attempts = Attempts::read(headers, &spec.queue);
        let first_failure = headers.get_u64(FIRST_FAILURE);
        // Our quarantine copies go through the default exchange to the
        // quarantine queue. A return from there counts as an attempt: the
        // message ran alone. A return from the work queue does not: it may
        // have sat unstarted in a prefetch window (the quarantine layer moves
        // it to run alone instead).
        let quarantined = delivery.exchange.is_empty() && delivery.routing_key == spec.quarantine;
        let attempt = if quarantined {
            attempts.current()
        } else {
            attempts.runs().saturating_add(1)
        };
        Job {
            attempt,
            tries_here: 1,
            shared: Arc::new(JobShared {
                delivery,
                spec,
                transport,
                runtime,
                attempts,
                first_failure,
                unknown_task: None,
                quarantined,
                reply: ReplySlot::default(),
                taken: tokio::time::Instant::now(),
            }),
        }
    }

    /// Marks the job as carrying a task name no task on this queue has
    /// (the dispatch does, on a fresh job); the handler service then parks
    /// it with reason `unknown-task`.
    pub(crate) fn with_unknown_task(mut self, name: String) -> Job {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.unknown_task = Some(name);
        }
        self
    }

    /// The delivery.
    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.shared.delivery
    }

    /// The task's registration.
    pub fn spec(&self) -> &Arc<TaskSpec> {
        &self.shared.spec
    }

    /// The transport that settles and publishes.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.shared.transport
    }

    /// Worker-wide things: publisher, shared state, shutdown signal.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.shared.runtime
    }

    /// The counts read from the delivery's headers.
    pub fn attempts(&self) -> Attempts {
        self.shared.attempts
    }

    /// What is left of the delivery's hold budget
    /// ([`Runtime::hold_limit`], counted from when the worker took the
    /// delivery); `None` when the worker sets no bound.
    pub fn hold_left(&self) -> Option<Duration> {
        let limit = self.shared.runtime.hold_limit?;
        Some(limit.saturating_sub(self.shared.taken.elapsed()))
    }

    /// The 1-based number of the attempt about to run (or that just ran).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Runs of the handler within this delivery so far, this one included.
    pub fn tries_here(&self) -> u32 {
        self.tries_here
    }

    /// The job for the next in-process attempt.
    pub fn next_attempt(&self) -> Job {
        Job {
            shared: self.shared.clone(),
            attempt: self.attempt.saturating_add(1),
            tries_here: self.tries_here + 1,
        }
    }

    /// When this message first failed (seconds since the epoch), if it did before.
    pub fn first_failure(&self) -> Option<u64> {
        self.shared.first_failure
    }

    /// Whether the delivery comes from the task's quarantine queue.
    pub fn from_quarantine(&self) -> bool {
        self.shared.quarantined
    }

    /// Whether the broker returned this delivery unsettled before (a quorum
    /// `x-delivery-count` above 0, or a classic queue's `redelivered` flag).
    pub fn was_returned(&self) -> bool {
        match self.shared.spec.options.queue_type {
            crate::task::QueueType::Classic => self.shared.delivery.redelivered,
            crate::task::QueueType::Quorum => self.shared.attempts.sources.returned > 0,
        }
    }

    /// Where the delivery stands as it arrives, for [`admit`](super::policy::admit).
    pub fn arrival(&self) -> Arrival {
        let not_due_for = self
            .delivery()
            .properties
            .headers()
            .get_count(NOT_BEFORE)
            .and_then(|due| due.checked_sub(now_secs()))
            .filter(|left| *left > 0)
            .map(Duration::from_secs);
        Arrival {
            attempt: self.attempt,
            from_quarantine: self.shared.quarantined,
            returned: self.was_returned(),
            classic: self.shared.spec.options.queue_type == QueueType::Classic,
            not_due_for,
        }
    }

    /// Where the delivery stands after a failed run, for
    /// [`after_failure`](super::policy::after_failure).
    pub fn progress(&self) -> Progress {
        Progress {
            tries_here: self.tries_here,
            redeliveries: self.shared.attempts.redeliveries,
            stopping: self.shared.runtime.shutdown.is_triggered(),
        }
    }

    /// Where the handler's value waits for the reply to a call (see
    /// [`rpc::reply`](crate::rpc::reply)).
    pub fn reply_slot(&self) -> &ReplySlot {
        &self.shared.reply
    }

    /// The unregistered task name this delivery carries, if any.
    pub fn unknown_task(&self) -> Option<&str> {
        self.shared.unknown_task.as_deref()
    }
}

/// Why an attempt failed, beyond what the handler said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureCause {
    /// The handler returned an error.
    Handler,
    /// The handler panicked.
    Panic,
    /// The handler ran past the task's timeout.
    Timeout,
    /// The body could not be decoded into the payload type.
    Decode,
    /// The body is larger than the task accepts.
    TooLarge,
    /// The message names a task this worker does not have.
    UnknownTask,
    /// The handler needs shared state the worker was not given.
    MissingState,
    /// The message had used up its attempts before this delivery.
    DeliveryLimit,
}

impl FailureCause {
    /// A short stable name for headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Handler => "handler",
            FailureCause::Panic => "panic",
            FailureCause::Timeout => "timeout",
            FailureCause::Decode => "undecodable",
            FailureCause::TooLarge => "too-large",
            FailureCause::UnknownTask => "unknown-task",
            FailureCause::MissingState => "missing-state",
            FailureCause::DeliveryLimit => "delivery-limit",
        }
    }
}

/// A failed attempt, classified.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What happens next.
    pub kind: FailureKind,
    /// Where it came from.
    pub cause: FailureCause,
    /// The message for people.
    pub message: String,
    /// A wait the handler asked for.
    pub retry_after: Option<Duration>,
    /// The attempt that failed.
    pub attempt: u32,
    /// What the failure policy decided for it (set by the retry layer);
    /// `None` until then, which the park layer treats as "park".
    pub next: Option<Step>,
}

impl Failure {
    /// A failure of attempt `attempt` with a resolved kind.
    pub fn new(
        kind: FailureKind,
        cause: FailureCause,
        message: impl Into<String>,
        attempt: u32,
    ) -> Failure {
        Failure {
            kind,
            cause,
            message: message.into(),
            retry_after: None,
            attempt,
            next: None,
        }
    }

    /// Classifies a handler's error with the task's default for unclassified errors.
    pub fn from_task_error(err: &TaskError, unclassified: FailureKind, attempt: u32) -> Failure {
        Failure {
            kind: err.kind_or(unclassified),
            cause: FailureCause::Handler,
            message: err.message().to_owned(),
            retry_after: err.retry_delay(),
            attempt,
            next: None,
        }
    }

    /// The `rw-park-reason` this failure parks with.
    pub fn park_reason(&self) -> &'static str {
        match (self.kind, self.cause) {
            (_, FailureCause::DeliveryLimit) => "delivery-limit",
            (FailureKind::Transient, _) => "exhausted",
            (_, FailureCause::Handler) => "permanent",
            (_, cause) => cause.as_str(),
        }
    }
}

/// What became of a delivery; the worker settles it accordingly.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded: ack.
    Succeeded,
    /// The handler discarded the message: ack, counted apart.
    Discarded(String),
    /// Failed and not yet dealt with. Settled as `reject(requeue = false)`,
    /// so the work queue's dead-letter target (parking) takes it.
    Failed(Failure),
    /// A copy waits in a delay tier (confirmed): ack.
    Redelivered {
        /// The tier's delay.
        tier: Duration,
        /// The attempt that failed.
        attempt: u32,
    },
    /// A copy sits in the parking queue (confirmed): ack.
    Parked {
        /// The park reason header value.
        reason: &'static str,
        /// The attempt that failed.
        attempt: u32,
    },
    /// A copy waits in the quarantine queue (confirmed): ack.
    Quarantined {
        /// Attempts recorded on the copy.
        attempts: u32,
    },
    /// Give the delivery back to the broker untouched, charged:
    /// `reject(requeue = true)`, which every broker version counts toward
    /// the delivery limit.
    Requeue,
    /// The handler never started (the worker stopped first): give the
    /// delivery back uncharged, `nack(requeue = true)`, as a clean stop
    /// returns what it prefetched.
    NotStarted,
}

impl Outcome {
    /// A short stable name for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "ack",
            Outcome::Discarded(_) => "discard",
            Outcome::Failed(_) => "dead-letter",
            Outcome::Redelivered { .. } => "redeliver",
            Outcome::Parked { .. } => "park",
            Outcome::Quarantined { .. } => "quarantine",
            Outcome::Requeue => "requeue",
            Outcome::NotStarted => "return",
        }
    }
}

/// Result type of every layer: the stack never errors, it decides.
pub type Handled = Result<Outcome, std::convert::Infallible>;

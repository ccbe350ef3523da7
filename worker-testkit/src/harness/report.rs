//! What one run of the harness did.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use worker_core::headers::{ATTEMPTS, ERROR_KIND, ERROR_MESSAGE, PARK_REASON};
use worker_core::rpc::Reply;
use worker_core::transport::SettleError;
use worker_core::worker::Settlement;
use worker_core::{CallError, Failure, FailureCause, Headers, Outcome};

use crate::mock::{Event, Published};

/// How one call of the handler service ended.
///
/// ```
/// # use worker_core::{Task, TaskContext, TaskError};
/// # struct Flaky;
/// # impl Task for Flaky {
/// #     type Payload = u32;
/// #     const NAME: &'static str = "flaky";
/// #     const QUEUE: &'static str = "flaky";
/// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
/// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use worker_core::Outcome;
/// use worker_testkit::RunEnd;
///
/// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
/// assert!(matches!(report.runs()[0].ended, RunEnd::Returned(Outcome::Succeeded)));
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RunEnd {
    /// It returned this outcome (success, discard, or a classified failure).
    Returned(Outcome),
    /// It panicked (the catch-panic layer turned that into a transient failure).
    Panicked,
    /// Its future was dropped before it finished: the task's timeout ran out.
    Cancelled,
}

/// One call of the handler service during a harness run.
///
/// ```
/// use std::time::Duration;
/// use worker_core::Outcome;
/// use worker_testkit::{HandlerRun, RunEnd};
///
/// let run = HandlerRun {
///     attempt: 1,
///     started_at: Duration::ZERO,
///     ended: RunEnd::Returned(Outcome::Succeeded),
/// };
/// assert!(run.reached_handler());
/// ```
#[derive(Debug, Clone)]
pub struct HandlerRun {
    /// The attempt number the run carried (1 for a message's first run).
    pub attempt: u32,
    /// When it started, counted from the start of the harness run on
    /// tokio's clock (which a paused test advances without waiting).
    pub started_at: Duration,
    /// How it ended.
    pub ended: RunEnd,
}

impl HandlerRun {
    /// Whether the task's `run` was called: false when the handler service
    /// refused the delivery before that (body too large, undecodable,
    /// unknown task, missing state).
    ///
    /// ```
    /// use std::time::Duration;
    /// use worker_core::{Failure, FailureCause, FailureKind, Outcome};
    /// use worker_testkit::{HandlerRun, RunEnd};
    ///
    /// let bad_json = Failure::new(FailureKind::Permanent, FailureCause::Decode, "eof", 1);
    /// let run = HandlerRun {
    ///     attempt: 1,
    ///     started_at: Duration::ZERO,
    ///     ended: RunEnd::Returned(Outcome::Failed(bad_json)),
    /// };
    /// assert!(!run.reached_handler());
    /// ```
    pub fn reached_handler(&self) -> bool {
        !matches!(
            &self.ended,
            RunEnd::Returned(Outcome::Failed(f)) if matches!(
                f.cause,
                FailureCause::Decode
                    | FailureCause::TooLarge
                    | FailureCause::UnknownTask
                    | FailureCause::MissingState
            )
        )
    }
}

/// A copy the stack published to the parking queue, with its failure headers read out.
///
/// ```
/// # use worker_core::{Task, TaskContext, TaskError};
/// # struct Flaky;
/// # impl Task for Flaky {
/// #     type Payload = u32;
/// #     const NAME: &'static str = "flaky";
/// #     const QUEUE: &'static str = "flaky";
/// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
/// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use worker_core::RetryPolicy;
///
/// let harness = worker_testkit::Harness::new(Flaky).retry(RetryPolicy::none());
/// let parked = harness.run_payload(&0).await.parked().expect("parked");
/// assert_eq!(parked.reason, "exhausted");
/// assert_eq!(parked.error_kind, "handler");
/// assert_eq!(parked.message.routing_key, "flaky.parking");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ParkedCopy {
    /// `rw-park-reason`: `permanent`, `exhausted`, `delivery-limit`,
    /// `undecodable`, `too-large`, `unknown-task`, ...
    pub reason: String,
    /// `rw-attempts`: the attempt that failed last.
    pub attempts: u32,
    /// `rw-error-kind`: where the last failure came from (`handler`, `panic`, `timeout`, ...).
    pub error_kind: String,
    /// `rw-error-message`: the last failure's message.
    pub error_message: String,
    /// The whole message as published.
    pub message: Published,
}

impl ParkedCopy {
    /// All headers of the parked copy (the original's and the failure headers).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::RetryPolicy;
    ///
    /// let harness = worker_testkit::Harness::new(Flaky).retry(RetryPolicy::none());
    /// let parked = harness.run_payload(&0).await.parked().unwrap();
    /// assert_eq!(parked.headers().get_str("rw-park-task").as_deref(), Some("flaky"));
    /// # }
    /// ```
    pub fn headers(&self) -> &Headers {
        self.message.headers()
    }

    /// The parked body (the original body, unchanged).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::RetryPolicy;
    ///
    /// let harness = worker_testkit::Harness::new(Flaky).retry(RetryPolicy::none());
    /// let parked = harness.run_payload(&0).await.parked().unwrap();
    /// assert_eq!(parked.body(), b"0");
    /// # }
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }
}

/// What happened to one delivery run through the [`Harness`](crate::Harness):
/// the stack's outcome, the settlement sent, each handler run, and every
/// event the mock channel recorded meanwhile.
///
/// The accessors read like the questions a test asks. `Display` prints a
/// summary, handy as an assertion message: `assert!(report.acked(), "{report}")`.
///
/// ```
/// # use worker_core::{Task, TaskContext, TaskError};
/// # struct Flaky;
/// # impl Task for Flaky {
/// #     type Payload = u32;
/// #     const NAME: &'static str = "flaky";
/// #     const QUEUE: &'static str = "flaky";
/// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
/// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
/// assert!(report.acked(), "{report}");
/// assert_eq!(report.handler_runs(), 3, "{report}");
/// # }
/// ```
#[derive(Debug)]
pub struct Report {
    pub(crate) tag: u64,
    pub(crate) outcome: Outcome,
    pub(crate) settlement: Settlement,
    pub(crate) settle_error: Option<SettleError>,
    pub(crate) runs: Vec<HandlerRun>,
    pub(crate) events: Vec<Event>,
    pub(crate) elapsed: Duration,
    pub(crate) parking: String,
    pub(crate) tiers: Vec<(Duration, String)>,
    pub(crate) reply_to: Option<String>,
}

impl Report {
    /// The delivery tag that was settled.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert_eq!(report.tag(), 1);
    /// # }
    /// ```
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The outcome the middleware stack decided.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::Outcome;
    ///
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert!(matches!(report.outcome(), Outcome::Succeeded));
    /// # }
    /// ```
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The settlement sent for the delivery, as the worker chooses it.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::worker::Settlement;
    ///
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// // a confirmed copy waits in a delay tier, so the original is acked
    /// assert_eq!(report.settlement(), Settlement::Ack);
    /// # }
    /// ```
    pub fn settlement(&self) -> Settlement {
        self.settlement
    }

    /// The error the transport gave when settling, if any.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert!(report.settle_error().is_none());
    /// # }
    /// ```
    pub fn settle_error(&self) -> Option<&SettleError> {
        self.settle_error.as_ref()
    }

    /// Every call of the handler service, in order.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// let attempts: Vec<u32> = report.runs().iter().map(|r| r.attempt).collect();
    /// assert_eq!(attempts, [1, 2, 3]);
    /// # }
    /// ```
    pub fn runs(&self) -> &[HandlerRun] {
        &self.runs
    }

    /// How many times the task's `run` was called (refused input, such as
    /// an undecodable body, does not count).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_testkit::{DeliveryBuilder, Harness};
    ///
    /// let harness = Harness::new(Flaky);
    /// assert_eq!(harness.run_payload(&0).await.handler_runs(), 3);
    /// let garbage = DeliveryBuilder::raw(&b"{"[..]).build();
    /// assert_eq!(harness.run(garbage).await.handler_runs(), 0);
    /// # }
    /// ```
    pub fn handler_runs(&self) -> u32 {
        count(self.runs.iter().filter(|r| r.reached_handler()).count())
    }

    /// In-process retries made: calls of the handler service after the first.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// assert_eq!(report.retried_in_process(), 2);
    /// # }
    /// ```
    pub fn retried_in_process(&self) -> u32 {
        count(self.runs.len().saturating_sub(1))
    }

    /// The waits between the starts of consecutive runs, on tokio's clock.
    /// When the handler returns at once, these are the backoff delays.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// let delays = report.backoff_delays();
    /// assert_eq!(delays.len(), 2);
    /// // the default backoff: 200 ms to 5 s
    /// assert!(delays.iter().all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_secs(5)));
    /// # }
    /// ```
    pub fn backoff_delays(&self) -> Vec<Duration> {
        self.runs
            .windows(2)
            .map(|w| w[1].started_at.saturating_sub(w[0].started_at))
            .collect()
    }

    /// Time from the start of the run to its settlement, on tokio's clock.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// assert_eq!(report.elapsed(), report.backoff_delays().iter().sum::<Duration>());
    /// # }
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Whether the delivery was acked (for success, discard, or a confirmed
    /// copy in a delay tier or parking).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert!(report.acked());
    /// # }
    /// ```
    pub fn acked(&self) -> bool {
        self.settlement == Settlement::Ack && self.settle_error.is_none()
    }

    /// Whether the handler succeeded.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert!(report.succeeded());
    /// # }
    /// ```
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Outcome::Succeeded)
    }

    /// The handler's message, when it discarded the delivery.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert_eq!(report.discarded(), None);
    /// # }
    /// ```
    pub fn discarded(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Discarded(message) => Some(message),
            _ => None,
        }
    }

    /// Whether the delivery was given back, charged, with
    /// `reject(requeue = true)` (a copy it needed could not be published).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let harness = worker_testkit::Harness::new(Flaky);
    /// harness.mock().fail_publishes_to("flaky.retry.1s");
    /// let report = harness.run_payload(&0).await;
    /// assert!(report.requeued());
    /// # }
    /// ```
    pub fn requeued(&self) -> bool {
        self.settlement == Settlement::Requeue
    }

    /// The failure, when the delivery was rejected to the work queue's
    /// dead-letter target: only a stack without the park layer does that;
    /// with it, a parked copy that cannot be published returns the
    /// delivery to its queue instead.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::RetryPolicy;
    ///
    /// let harness = worker_testkit::Harness::new(Flaky).retry(RetryPolicy::none());
    /// harness.mock().fail_publishes_to("flaky.parking");
    /// let report = harness.run_payload(&0).await;
    /// assert!(report.dead_lettered().is_none());
    /// assert!(report.requeued());
    /// harness.mock().assert_rejected_requeue(1);
    /// # }
    /// ```
    pub fn dead_lettered(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// The delay tier a copy was sent to and the `rw-attempts` it carries.
    ///
    /// # Panics
    ///
    /// When the outcome says "redelivered" but no copy reached the tier's
    /// queue: the stack broke its promise, and the panic shows the record.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// // three in-process attempts, then the first default tier
    /// assert_eq!(report.redelivered_to(), Some((Duration::from_secs(1), 3)));
    /// # }
    /// ```
    pub fn redelivered_to(&self) -> Option<(Duration, u32)> {
        let Outcome::Redelivered { tier, .. } = self.outcome else {
            return None;
        };
        let copy = self.redelivered_copy().unwrap_or_else(|| {
            panic!("the outcome is a redelivery to the {tier:?} tier, but no copy was published to its queue\n{self}")
        });
        let attempts = copy.header_u64(ATTEMPTS).unwrap_or_else(|| {
            panic!("the copy in the {tier:?} tier has no {ATTEMPTS} header\n{self}")
        });
        Some((tier, u32::try_from(attempts).unwrap_or(u32::MAX)))
    }

    /// The copy published to a delay tier's queue, if any.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// let copy = report.redelivered_copy().unwrap();
    /// assert_eq!(copy.routing_key, "flaky.retry.1s");
    /// # }
    /// ```
    pub fn redelivered_copy(&self) -> Option<&Published> {
        self.published()
            .into_iter()
            .find(|p| p.exchange.is_empty() && self.tiers.iter().any(|(_, q)| *q == p.routing_key))
    }

    /// The copy in the parking queue, when the delivery was parked.
    ///
    /// # Panics
    ///
    /// When the outcome says "parked" but no copy reached the parking
    /// queue: the stack broke its promise, and the panic shows the record.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::RetryPolicy;
    ///
    /// let harness = worker_testkit::Harness::new(Flaky).retry(RetryPolicy::none());
    /// let parked = harness.run_payload(&0).await.parked().unwrap();
    /// assert_eq!((parked.reason.as_str(), parked.attempts), ("exhausted", 1));
    /// assert_eq!(parked.error_message, "down");
    /// # }
    /// ```
    pub fn parked(&self) -> Option<ParkedCopy> {
        if !matches!(self.outcome, Outcome::Parked { .. }) {
            return None;
        }
        let message = self
            .published_to(&self.parking)
            .into_iter()
            .next()
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "the outcome is parked, but nothing was published to {:?}\n{self}",
                    self.parking
                )
            });
        Some(ParkedCopy {
            reason: message.header_str(PARK_REASON).unwrap_or_default(),
            attempts: message
                .header_u64(ATTEMPTS)
                .map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX)),
            error_kind: message.header_str(ERROR_KIND).unwrap_or_default(),
            error_message: message.header_str(ERROR_MESSAGE).unwrap_or_default(),
            message,
        })
    }

    /// Every event the mock channel recorded during this run, in order.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_testkit::mock::Event;
    ///
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&1).await;
    /// assert_eq!(report.events(), [Event::Ack { tag: 1, multiple: false }]);
    /// # }
    /// ```
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The messages confirmed during this run: copies and enqueued follow-up tasks.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// assert_eq!(report.published().len(), 1);
    /// # }
    /// ```
    pub fn published(&self) -> Vec<&Published> {
        self.events.iter().filter_map(Event::published).collect()
    }

    /// The reply published to the delivery's `reply_to` during this run,
    /// if it was a call and the worker answered it.
    pub fn reply_message(&self) -> Option<&Published> {
        let reply_to = self.reply_to.as_deref()?;
        self.published()
            .into_iter()
            .find(|p| p.exchange.is_empty() && p.routing_key == reply_to)
    }

    /// What the caller receives, decoded as a caller decodes it: the
    /// handler's value, or the failure (`CallError::Failed`,
    /// `CallError::Parked`); `None` when no reply was published (not a
    /// call, or a request still on its way: waiting in a delay tier,
    /// quarantined, returned to its queue).
    ///
    /// ```
    /// use worker_core::{task, CallError, TaskError};
    ///
    /// #[task(queue = "cards")]
    /// async fn charge(cents: u64) -> Result<String, TaskError> {
    ///     if cents == 0 {
    ///         return Err(TaskError::permanent("nothing to charge"));
    ///     }
    ///     Ok(format!("receipt-{cents}"))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let harness = worker_testkit::Harness::new(Charge);
    /// let ok = harness.call(&250).await;
    /// assert_eq!(ok.reply::<String>().unwrap().unwrap(), "receipt-250");
    /// let failed = harness.call(&0).await;
    /// assert!(matches!(failed.reply::<String>(), Some(Err(CallError::Failed { .. }))));
    /// # }
    /// ```
    pub fn reply<O: DeserializeOwned>(&self) -> Option<Result<O, CallError>> {
        let message = self.reply_message()?;
        Some(Reply::new(&message.properties, message.body.clone()).decode())
    }

    /// The messages confirmed during this run with routing key `queue`.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Flaky;
    /// # impl Task for Flaky {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "flaky";
    /// #     const QUEUE: &'static str = "flaky";
    /// #     async fn run(&self, _: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n == 0 { Err(TaskError::transient("down")) } else { Ok(()) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Flaky).run_payload(&0).await;
    /// assert_eq!(report.published_to("flaky.retry.1s").len(), 1);
    /// assert!(report.published_to("flaky.parking").is_empty());
    /// # }
    /// ```
    pub fn published_to(&self, queue: &str) -> Vec<&Published> {
        self.published()
            .into_iter()
            .filter(|p| p.routing_key == queue)
            .collect()
    }

    /// The delayed enqueues (`enqueue_in`, `enqueue_at`) confirmed during
    /// this run for `queue`, with the delay each waits in the broker's
    /// delay ladder (whole seconds, rounded up). With a memory broker the
    /// delay runs on its manual clock instead (see `tests/memory_delay.rs`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Remind;
    /// # impl Task for Remind {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "remind";
    /// #     const QUEUE: &'static str = "remind";
    /// #     async fn run(&self, ctx: TaskContext, n: u32) -> Result<(), TaskError> {
    /// #         if n > 0 {
    /// #             ctx.publisher().enqueue_in::<Remind>(&(n - 1), Duration::from_secs(600)).await?;
    /// #         }
    /// #         Ok(())
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // The handler enqueues the next reminder ten minutes later.
    /// let report = worker_testkit::Harness::new(Remind).run_payload(&3).await;
    /// let delayed = report.delayed_to("remind");
    /// assert_eq!(delayed.len(), 1);
    /// assert_eq!(delayed[0].0, Duration::from_secs(600));
    /// assert_eq!(delayed[0].1.body.as_ref(), b"2");
    /// # }
    /// ```
    pub fn delayed_to(&self, queue: &str) -> Vec<(Duration, &Published)> {
        let entry = worker_core::topology::ladder::entry_exchange();
        self.published()
            .into_iter()
            .filter(|p| p.exchange == entry)
            .filter_map(|p| {
                let (delay, to) = worker_core::topology::ladder::read_route(&p.routing_key)?;
                (to == queue).then_some((delay, p))
            })
            .collect()
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "delivery {}: outcome {:?}, settled with {:?}{}",
            self.tag,
            self.outcome,
            self.settlement,
            match &self.settle_error {
                Some(e) => format!(" (failed: {e})"),
                None => String::new(),
            }
        )?;
        writeln!(f, "handler service called {} time(s):", self.runs.len())?;
        for r in &self.runs {
            let end = match &r.ended {
                RunEnd::Returned(Outcome::Succeeded) => "succeeded".to_owned(),
                RunEnd::Returned(Outcome::Discarded(m)) => format!("discarded ({m})"),
                RunEnd::Returned(Outcome::Failed(fl)) => format!(
                    "failed, {} ({}: {})",
                    fl.kind,
                    fl.cause.as_str(),
                    fl.message
                ),
                RunEnd::Returned(other) => format!("returned {}", other.as_str()),
                RunEnd::Panicked => "panicked".to_owned(),
                RunEnd::Cancelled => "cancelled (timed out)".to_owned(),
            };
            writeln!(f, "  attempt {} at +{:?}: {end}", r.attempt, r.started_at)?;
        }
        write!(f, "mock channel recorded {} event(s):", self.events.len())?;
        for (i, e) in self.events.iter().enumerate() {
            write!(f, "\n  [{}] {e}", i + 1)?;
        }
        Ok(())
    }
}

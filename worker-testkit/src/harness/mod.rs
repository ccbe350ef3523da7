//! Runs one task's handler through the worker's real middleware stack.
//!
//! The [`Harness`] builds the stack with
//! [`default_stack`](worker_core::middleware::default_stack), the very
//! function the worker calls, around the task's
//! [`HandlerService`](worker_core::middleware::HandlerService), over a
//! [mock channel](crate::mock). It then settles the delivery with
//! [`Settlement::for_outcome`] and [`Settlement::apply`], as the worker's
//! consumer does. Nothing is re-implemented, so a test that passes here
//! exercises the retry, redelivery, parking, timeout and panic handling
//! that production runs.
//!
//! # Time
//!
//! Backoff sleeps and timeouts use tokio's clock. Run tests with
//! `#[tokio::test(start_paused = true)]`: while everything waits on a
//! timer, the paused clock jumps straight to it, so a one-hour backoff
//! takes no wall-clock time, and the measured delays are exact.
//!
//! # Jitter
//!
//! The retry layer's jitter comes from [`RetryLayer::seeded`] (seed 0
//! unless [`Harness::seed`] says otherwise), so a run is reproducible.

mod count;
mod offer;
mod report;

pub use offer::Offer;
pub use report::{HandlerRun, ParkedCopy, Report, RunEnd};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use worker_core::__testkit::{
    check_state, dispatch, Health, Runtime, Shutdown, ShutdownTrigger, Tasks,
};
use worker_core::breaker::Breakers;
use worker_core::middleware::{
    default_stack, BoxJobService, HandlerService, RateLimiters, RetryLayer,
};
use worker_core::task::{hold_budget, StateMap, BROKER_ACK_TIMEOUT};
use worker_core::topology::TaskSpec;
use worker_core::transport::Transport;
use worker_core::{Delivery, Job, Publisher, RetryPolicy, Task, TaskOptions};

use self::count::{CountRuns, RunLog};

/// The `reply_to` of the calls [`Harness::call`] makes.
pub const HARNESS_REPLY_TO: &str = "amq.rabbitmq.reply-to.harness";
use crate::delivery::DeliveryBuilder;
use crate::mock::{self, MockHandle, MockTransport};

type WrapFn = dyn Fn(BoxJobService) -> BoxJobService + Send + Sync;

/// Runs deliveries of task `T` through the worker's default middleware
/// stack over a mock channel, and reports what happened.
///
/// ```
/// use std::time::Duration;
/// use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
/// use worker_testkit::Harness;
///
/// struct Flaky;
///
/// impl Task for Flaky {
///     type Payload = u32;
///     const NAME: &'static str = "flaky";
///     const QUEUE: &'static str = "flaky";
///
///     fn options(&self) -> TaskOptions {
///         TaskOptions {
///             retry: RetryPolicy::default().in_process(2).tiers([Duration::from_secs(10)]),
///             ..TaskOptions::default()
///         }
///     }
///
///     async fn run(&self, _ctx: TaskContext, _n: u32) -> Result<(), TaskError> {
///         Err(TaskError::transient("upstream is down"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let harness = Harness::new(Flaky);
/// let report = harness.run_payload(&1).await;
///
/// assert_eq!(report.handler_runs(), 2);
/// assert_eq!(report.redelivered_to(), Some((Duration::from_secs(10), 2)));
/// assert!(report.acked());
///
/// let copy = harness.mock().assert_published_to("flaky.retry.10s");
/// assert_eq!(copy.header_str("rw-error-message").as_deref(), Some("upstream is down"));
/// harness.mock().assert_acked(1);
/// harness.mock().assert_nothing_else();
/// # }
/// ```
pub struct Harness<T: Task> {
    task: Arc<T>,
    options: TaskOptions,
    state: StateMap,
    retry: RetryLayer,
    wrap: Option<Arc<WrapFn>>,
    transport: MockTransport,
    mock: MockHandle,
    trigger: Arc<ShutdownTrigger>,
    shutdown: Shutdown,
    health: Arc<Health>,
    /// The rate limiters, shared by every run of this harness like a
    /// worker process shares them between deliveries.
    rates: Arc<RateLimiters>,
    /// The circuit breakers, shared by every run of this harness like a
    /// worker process shares them between deliveries.
    breakers: Arc<Breakers>,
    /// The broker's consumer timeout the worker is told about.
    consumer_timeout: Duration,
    next_tag: AtomicU64,
}

impl<T: Task> fmt::Debug for Harness<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("task", &T::NAME)
            .field("queue", &T::QUEUE)
            .field("options", &self.options)
            .field("state", &self.state)
            .field("shutdown", &self.shutdown.is_triggered())
            .finish_non_exhaustive()
    }
}

impl<T: Task> Harness<T> {
    /// A harness for `task` with its own options, no shared state, a fresh
    /// mock channel and jitter seed 0.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop);
    /// assert_eq!(harness.parking_queue(), "noop.parking");
    /// ```
    pub fn new(task: T) -> Self {
        let options = task.options();
        let (transport, mock) = mock::pair();
        let (trigger, shutdown) = Shutdown::new();
        Harness {
            task: Arc::new(task),
            options,
            state: StateMap::default(),
            retry: RetryLayer::seeded(0),
            wrap: None,
            transport,
            mock,
            trigger: Arc::new(trigger),
            shutdown,
            health: Arc::new(Health::default()),
            rates: Arc::default(),
            breakers: Arc::default(),
            consumer_timeout: BROKER_ACK_TIMEOUT,
            next_tag: AtomicU64::new(1),
        }
    }

    /// Replaces the task's options.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError, TaskOptions};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop)
    ///     .options(TaskOptions { max_body_bytes: 1024, ..TaskOptions::default() });
    /// assert_eq!(harness.task_options().max_body_bytes, 1024);
    /// ```
    pub fn options(mut self, options: TaskOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the task's retry policy.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use worker_core::RetryPolicy;
    ///
    /// let harness = worker_testkit::Harness::new(Noop).retry(RetryPolicy::none());
    /// assert_eq!(harness.task_options().retry.max_attempts, 1);
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// Sets the task's per-attempt timeout.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use std::time::Duration;
    ///
    /// let harness = worker_testkit::Harness::new(Noop).timeout(Duration::from_secs(30));
    /// assert_eq!(harness.task_options().timeout, Some(Duration::from_secs(30)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Seeds the retry layer's jitter (the default seed is 0).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop).seed(42);
    /// # drop(harness);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.retry = RetryLayer::seeded(seed);
        self
    }

    /// The broker's consumer timeout, as `WorkerConfig::consumer_timeout`
    /// tells the worker (30 minutes by default): a delivery is held at
    /// most [`hold_budget`] of it before the worker settles it itself.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use std::time::Duration;
    /// let harness = worker_testkit::Harness::new(Noop).consumer_timeout(Duration::from_secs(60));
    /// # drop(harness);
    /// ```
    pub fn consumer_timeout(mut self, timeout: Duration) -> Self {
        self.consumer_timeout = timeout;
        self
    }

    /// Adds shared state of type `S`, as `Worker::state` does.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// struct Db(&'static str);
    /// let harness = worker_testkit::Harness::new(Noop).state(Db("sqlite::memory:"));
    /// # drop(harness);
    /// ```
    pub fn state<S: Send + Sync + 'static>(mut self, value: S) -> Self {
        self.state.insert(value);
        self
    }

    /// Replaces all shared state.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use worker_core::task::StateMap;
    ///
    /// let mut state = StateMap::default();
    /// state.insert(7u32);
    /// let harness = worker_testkit::Harness::new(Noop).state_map(state);
    /// # drop(harness);
    /// ```
    pub fn state_map(mut self, state: StateMap) -> Self {
        self.state = state;
        self
    }

    /// Wraps the handler in user middleware, as `Worker::wrap_handlers` does
    /// (inside the default stack, around the handler).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop).wrap_handler(|handler| handler);
    /// # drop(harness);
    /// ```
    pub fn wrap_handler(
        mut self,
        wrap: impl Fn(BoxJobService) -> BoxJobService + Send + Sync + 'static,
    ) -> Self {
        self.wrap = Some(Arc::new(wrap));
        self
    }

    /// The handle of the mock channel, to script failures and assert on
    /// everything recorded across runs.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop);
    /// harness.mock().fail_publishes_to("noop.parking");
    /// ```
    pub fn mock(&self) -> &MockHandle {
        &self.mock
    }

    /// The mock channel itself (the [`Transport`] the stack uses).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use worker_core::transport::Transport;
    ///
    /// let harness = worker_testkit::Harness::new(Noop);
    /// harness.transport().ack(99, false).await.unwrap();
    /// harness.mock().assert_acked(99);
    /// # }
    /// ```
    pub fn transport(&self) -> &MockTransport {
        &self.transport
    }

    /// The trigger of the shutdown signal the stack watches. Hand it to a
    /// handler through [`state`](Self::state) or to a spawned task to stop
    /// the worker in the middle of a run.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop);
    /// let trigger = harness.shutdown_trigger();
    /// trigger.trigger();
    /// assert!(harness.is_shutting_down());
    /// ```
    pub fn shutdown_trigger(&self) -> Arc<ShutdownTrigger> {
        self.trigger.clone()
    }

    /// Begins shutdown now: the stack stops retrying in process.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop);
    /// harness.trigger_shutdown();
    /// assert!(harness.is_shutting_down());
    /// ```
    pub fn trigger_shutdown(&self) {
        self.trigger.trigger();
    }

    /// The readiness a worker running these deliveries would report
    /// (consuming is taken for granted here): `false` while the task's
    /// parking queue refuses copies.
    ///
    /// ```
    /// # struct T;
    /// # impl worker_core::Task for T {
    /// #     type Payload = u32;
    /// #     const NAME: &'static str = "t";
    /// #     const QUEUE: &'static str = "t";
    /// #     async fn run(&self, _: worker_core::TaskContext, _: u32) -> Result<(), worker_core::TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(T);
    /// assert!(harness.parking_ok());
    /// ```
    pub fn parking_ok(&self) -> bool {
        self.health.set_consuming(true);
        self.health.is_ready()
    }

    /// Whether shutdown has begun.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop);
    /// assert!(!harness.is_shutting_down());
    /// ```
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_triggered()
    }

    /// The options the stack runs with.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let harness = worker_testkit::Harness::new(Noop);
    /// assert_eq!(harness.task_options().retry.in_process_attempts, 3);
    /// ```
    pub fn task_options(&self) -> &TaskOptions {
        &self.options
    }

    /// The task's registration as the worker computes it (queue names, options).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let spec = worker_testkit::Harness::new(Noop).spec();
    /// assert_eq!(spec.tiers[0].1, "noop.retry.1s");
    /// ```
    pub fn spec(&self) -> TaskSpec {
        TaskSpec::new(T::NAME, T::QUEUE, self.options.clone())
    }

    /// The parking queue's name.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// assert_eq!(worker_testkit::Harness::new(Noop).parking_queue(), "noop.parking");
    /// ```
    pub fn parking_queue(&self) -> String {
        worker_core::topology::parking_queue(T::QUEUE)
    }

    /// The wait queue of a delay tier, for example `emails.retry.10s`.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use std::time::Duration;
    ///
    /// let harness = worker_testkit::Harness::new(Noop);
    /// assert_eq!(harness.tier_queue(Duration::from_secs(60)), "noop.retry.1m");
    /// ```
    pub fn tier_queue(&self, tier: Duration) -> String {
        worker_core::topology::tier_queue(T::QUEUE, tier)
    }

    /// The [`Job`] the worker would build for `delivery`, over the mock
    /// channel and this harness's state and shutdown signal. Use it to
    /// drive a single layer, or a stack of your own.
    ///
    /// A `type` property naming another task marks the job as an unknown
    /// task, the way the worker does for a queue that serves only `T`.
    ///
    /// # Panics
    ///
    /// When the task needs shared state the harness was not given (the
    /// worker refuses to start in that case).
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use worker_testkit::DeliveryBuilder;
    ///
    /// let harness = worker_testkit::Harness::new(Noop);
    /// let job = harness.job(DeliveryBuilder::json(&()).attempts(2).build());
    /// assert_eq!(job.attempt(), 3);
    /// let stray = harness.job(DeliveryBuilder::json(&()).task("other").build());
    /// assert_eq!(stray.unknown_task(), Some("other"));
    /// ```
    pub fn job(&self, delivery: Delivery) -> Job {
        let spec = Arc::new(self.spec());
        let stack = default_stack(&spec, self.retry.clone(), self.handler(RunLog::new()));
        let (transport, runtime) = self.runtime();
        Tasks::one(spec, stack)
            .job(Arc::new(delivery), transport, runtime)
            .0
    }

    /// The transport and runtime a worker would give this task's deliveries,
    /// after the worker's check that the task's shared state is there.
    fn runtime(&self) -> (Arc<dyn Transport>, Arc<Runtime>) {
        if let Err(e) = check_state(T::NAME, &self.task.required_state(), &self.state) {
            panic!("{e} (on the harness: Harness::state(...))");
        }
        let transport: Arc<dyn Transport> = Arc::new(self.transport.clone());
        let runtime = Arc::new(Runtime {
            publisher: Publisher::from_transport(transport.clone()),
            state: Arc::new(self.state.clone()),
            shutdown: self.shutdown.clone(),
            health: self.health.clone(),
            rates: self.rates.clone(),
            breakers: self.breakers.clone(),
            hold_limit: Some(hold_budget(self.consumer_timeout)),
        });
        (transport, runtime)
    }

    /// The task's handler service, counting runs into `log`, inside the
    /// user's layers.
    fn handler(&self, log: RunLog) -> BoxJobService {
        let handler: BoxJobService =
            BoxCloneSyncService::new(CountRuns::new(HandlerService::new(self.task.clone()), log));
        match &self.wrap {
            Some(wrap) => wrap(handler),
            None => handler,
        }
    }

    /// Runs one delivery through the default stack and settles it, like the
    /// worker's consumer; returns what happened.
    ///
    /// The report's events are those recorded while this call ran; run
    /// deliveries one at a time to keep them apart.
    ///
    /// # Panics
    ///
    /// When the task needs shared state the harness was not given.
    ///
    /// ```
    /// use worker_core::{Task, TaskContext, TaskError};
    /// use worker_testkit::{DeliveryBuilder, Harness};
    ///
    /// struct Strict;
    /// impl Task for Strict {
    ///     type Payload = u32;
    ///     const NAME: &'static str = "strict";
    ///     const QUEUE: &'static str = "strict";
    ///     async fn run(&self, _: TaskContext, _: u32) -> Result<(), TaskError> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let harness = Harness::new(Strict);
    /// let report = harness.run(DeliveryBuilder::raw(&b"\"nope\""[..]).tag(5).build()).await;
    /// let parked = report.parked().expect("parked");
    /// assert_eq!(parked.reason, "undecodable");
    /// assert_eq!(report.handler_runs(), 0);
    /// harness.mock().assert_acked(5);
    /// # }
    /// ```
    pub async fn run(&self, delivery: Delivery) -> Report {
        let spec = Arc::new(self.spec());
        let tag = delivery.tag;
        let reply_to = delivery.properties.reply_to().map(str::to_owned);
        let log = RunLog::new();
        let stack = default_stack(&spec, self.retry.clone(), self.handler(log.clone()));
        let tasks = Tasks::one(spec.clone(), stack);
        let (transport, runtime) = self.runtime();

        let first_event = self.mock.len();
        let started = Instant::now();
        let (outcome, settlement) = dispatch(&tasks, Arc::new(delivery), transport, runtime).await;
        let settle_error = settlement.apply(&self.transport, tag).await.err();
        Report {
            tag,
            outcome,
            settlement,
            settle_error,
            runs: log.runs(),
            events: self.mock.events_since(first_event),
            elapsed: started.elapsed(),
            parking: spec.parking.clone(),
            tiers: spec.tiers.clone(),
            reply_to,
        }
    }

    /// Runs a call of the task with `payload`, as [`RpcClient`](worker_core::RpcClient)
    /// sends one (with `reply_to` and a `correlation_id`): the report's
    /// [`reply`](Report::reply) is what the caller would receive.
    ///
    /// # Panics
    ///
    /// When the task needs shared state the harness was not given.
    ///
    /// ```
    /// use worker_core::{task, TaskError};
    ///
    /// #[task(queue = "sums")]
    /// async fn add(pair: (u32, u32)) -> Result<u32, TaskError> {
    ///     Ok(pair.0 + pair.1)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = worker_testkit::Harness::new(Add).call(&(2, 3)).await;
    /// assert_eq!(report.reply::<u32>().unwrap().unwrap(), 5);
    /// assert!(report.acked());
    /// # }
    /// ```
    pub async fn call(&self, payload: &T::Payload) -> Report {
        let tag = self.next_tag();
        let delivery = DeliveryBuilder::for_task::<T>(payload)
            .tag(tag)
            .reply_to(HARNESS_REPLY_TO)
            .correlation_id(&format!("harness-call-{tag}"))
            .build();
        self.run(delivery).await
    }

    /// Runs a delivery of `payload` as the task's publisher would send it
    /// (see [`DeliveryBuilder::for_task`]), with the next free tag (1, 2, ...).
    ///
    /// # Panics
    ///
    /// When the task needs shared state the harness was not given.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError};
    /// # struct Noop;
    /// # impl Task for Noop {
    /// #     type Payload = ();
    /// #     const NAME: &'static str = "noop";
    /// #     const QUEUE: &'static str = "noop";
    /// #     async fn run(&self, _: TaskContext, _: ()) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let harness = worker_testkit::Harness::new(Noop);
    /// assert_eq!(harness.run_payload(&()).await.tag(), 1);
    /// assert_eq!(harness.run_payload(&()).await.tag(), 2);
    /// harness.mock().assert_acked(1);
    /// harness.mock().assert_acked(2);
    /// # }
    /// ```
    pub async fn run_payload(&self, payload: &T::Payload) -> Report {
        let tag = self.next_tag();
        self.run(DeliveryBuilder::for_task::<T>(payload).tag(tag).build())
            .await
    }

    /// The next free delivery tag (1, 2, ...).
    fn next_tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }
}

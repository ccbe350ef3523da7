//! The worker: register tasks, declare topology, consume, settle, stop, reconnect.

mod consumer;
pub mod depth;
pub(crate) mod dispatch;
use dispatch::{check_state, Tasks};
mod lapin_transport;
mod settle;
mod settler;
mod signal;

pub use settle::Settlement;
pub use signal::stop_signal;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;

use consumer::{consume, QueueGroup, Session};

use crate::breaker::Breakers;
use crate::connection::{ConnectionConfig, Connector};
use crate::error::{redact_url, Error};
use crate::middleware::{default_stack, BoxJobService, HandlerService, RetryLayer};
use crate::publisher::Publisher;
use crate::runtime::{Health, Runtime, Shutdown, ShutdownTrigger};
use crate::task::{hold_budget, StateMap, Task, BROKER_ACK_TIMEOUT};
use crate::topology::declare_all;
use crate::topology::TaskSpec;

/// How the worker stops and reconnects.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long in-flight handlers may run after a stop signal.
    pub grace_period: Duration,
    /// Pause after the last acks were confirmed by a round trip, before the
    /// channel closes (works around quorum queues dropping acks that race a close).
    pub settle_wait: Duration,
    /// Declare queues and bindings at start and after each reconnect.
    pub declare_topology: bool,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How often to sample the depth of every consumed task's queues into
    /// `rabbit_worker_queue_messages` and `rabbit_worker_queue_consumers`
    /// (one passive `queue.declare` per queue; see [`depth`]); `None`
    /// turns the sampling off.
    pub depth_interval: Option<Duration>,
    /// The broker's consumer timeout (RabbitMQ's `consumer_timeout`, 30
    /// minutes by default): how long it lets a consumer hold a delivery
    /// unacknowledged. The worker settles a delivery itself within
    /// [`hold_budget`] of it (an attempt still running then is cut short as
    /// timed out and charged), and the elected scheduler hands its token
    /// back and takes it again at a third of it, so the broker never times
    /// the worker out. Set it to the broker's value when that is not the
    /// default.
    pub consumer_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            grace_period: Duration::from_secs(30),
            settle_wait: Duration::from_millis(200),
            declare_topology: true,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            depth_interval: Some(Duration::from_secs(15)),
            consumer_timeout: BROKER_ACK_TIMEOUT,
        }
    }
}

type WrapFn = Arc<dyn Fn(BoxJobService) -> BoxJobService + Send + Sync>;

struct Registration {
    spec: Arc<TaskSpec>,
    handler: BoxJobService,
    required_state: Vec<(std::any::TypeId, &'static str)>,
    check: PayloadCheck,
}

/// Decodes a body into a task's payload type and throws the value away.
type PayloadCheck = fn(Option<&str>, &[u8]) -> Result<(), crate::codec::DecodeError>;

/// Runs registered tasks.
///
/// ```no_run
/// # use worker_core::{Task, TaskContext, TaskError, Worker};
/// # struct SendEmail;
/// # impl Task for SendEmail {
/// #     type Payload = String;
/// #     const NAME: &'static str = "send_email";
/// #     const QUEUE: &'static str = "emails";
/// #     async fn run(&self, _: TaskContext, _: String) -> Result<(), TaskError> { Ok(()) }
/// # }
/// # async fn demo() -> Result<(), worker_core::Error> {
/// Worker::from_env()
///     .register(SendEmail)
///     .run() // until SIGINT or SIGTERM
///     .await
/// # }
/// ```
pub struct Worker {
    connector: Connector,
    publisher: Publisher,
    registrations: Vec<Registration>,
    state: StateMap,
    config: WorkerConfig,
    wrap: Option<WrapFn>,
    retry: RetryLayer,
    only_queues: Option<Vec<String>>,
    prefetch_override: Option<u16>,
    concurrency_override: Option<usize>,
    periodic: Vec<crate::schedule::Periodic>,
    breakers: Arc<Breakers>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("connector", &self.connector)
            .field(
                "tasks",
                &self
                    .registrations
                    .iter()
                    .map(|r| r.spec.name)
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker on a connector (shared with its publisher).
    pub fn new(connector: Connector) -> Self {
        Worker {
            publisher: Publisher::new(connector.clone()),
            connector,
            registrations: Vec::new(),
            state: StateMap::default(),
            config: WorkerConfig::default(),
            wrap: None,
            retry: RetryLayer::default(),
            only_queues: None,
            prefetch_override: None,
            concurrency_override: None,
            periodic: Vec::new(),
            breakers: Arc::default(),
        }
    }

    /// A worker for `AMQP_URL` (or the local default).
    pub fn from_env() -> Self {
        Worker::new(Connector::new(ConnectionConfig::from_env()))
    }

    /// Registers a task.
    pub fn register<T: Task>(mut self, task: T) -> Self {
        let options = task.options();
        if options.timeout.is_some_and(|t| t > BROKER_ACK_TIMEOUT) {
            tracing::warn!(
                task = T::NAME,
                "timeout exceeds RabbitMQ's default 30-minute consumer ack timeout; the broker may close the channel first (raise consumer_timeout or lower the task timeout)"
            );
        }
        if let Some(entry) = task.periodic() {
            self.periodic.push(entry);
        }
        let required_state = task.required_state();
        let spec = Arc::new(TaskSpec::new(T::NAME, T::QUEUE, options));
        let handler = BoxCloneSyncService::new(HandlerService::new(Arc::new(task)));
        let check: PayloadCheck =
            |content_type, body| crate::codec::decode::<T::Payload>(content_type, body).map(|_| ());
        self.registrations.push(Registration {
            spec,
            handler,
            required_state,
            check,
        });
        self
    }

    /// Adds a periodic entry: while this worker runs it takes part in the
    /// election of the one process that enqueues the ticks (see
    /// [`crate::schedule`]). The entry's task need not be registered here,
    /// but its queue must exist (a worker of that task declared it):
    /// ticks are published as mandatory messages.
    pub fn periodic(mut self, entry: crate::schedule::Periodic) -> Self {
        self.periodic.push(entry);
        self
    }

    /// The periodic entries added with [`periodic`](Worker::periodic).
    pub fn periodic_entries(&self) -> &[crate::schedule::Periodic] {
        &self.periodic
    }

    /// Checks that `body` decodes into the payload type of the task named
    /// `task` (JSON when `content_type` is `None`), without publishing
    /// anything; `None` when no such task is registered.
    ///
    /// ```
    /// # use worker_core::{Task, TaskContext, TaskError, Worker};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Email { to: String }
    /// # struct SendEmail;
    /// # impl Task for SendEmail {
    /// #     type Payload = Email;
    /// #     const NAME: &'static str = "send_email";
    /// #     const QUEUE: &'static str = "emails";
    /// #     async fn run(&self, _: TaskContext, _: Email) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// let worker = Worker::from_env().register(SendEmail);
    /// assert!(matches!(worker.check_payload("send_email", None, br#"{"to":"a@b"}"#), Some(Ok(()))));
    /// assert!(matches!(worker.check_payload("send_email", None, br#"{"too":1}"#), Some(Err(_))));
    /// assert!(worker.check_payload("nope", None, b"{}").is_none());
    /// ```
    pub fn check_payload(
        &self,
        task: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<Result<(), crate::codec::DecodeError>> {
        self.registrations
            .iter()
            .find(|r| r.spec.name == task)
            .map(|r| (r.check)(content_type, body))
    }

    /// The connector shared by this worker's consumers and publisher.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Uses this prefetch for every queue instead of each task's own
    /// (quorum queues still cap it at 2000).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch_override = Some(prefetch);
        self
    }

    /// Runs at most this many handlers at once per queue instead of each
    /// task's own concurrency.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency_override = Some(concurrency);
        self
    }

    /// Adds shared state handlers can take as `State<T>`.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Replaces the stop and reconnect settings.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Wraps every task's handler in user middleware (a rate limit, a
    /// circuit breaker), inside the default stack.
    pub fn wrap_handlers(
        mut self,
        wrap: impl Fn(BoxJobService) -> BoxJobService + Send + Sync + 'static,
    ) -> Self {
        self.wrap = Some(Arc::new(wrap));
        self
    }

    /// Uses this retry layer (for example [`RetryLayer::seeded`]).
    pub fn retry_layer(mut self, retry: RetryLayer) -> Self {
        self.retry = retry;
        self
    }

    /// Consumes only these queues (by queue or task name).
    pub fn only(mut self, names: Vec<String>) -> Self {
        self.only_queues = Some(names);
        self
    }

    /// The publisher sharing this worker's connection.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The circuit breakers of this worker's tasks (those with a `breaker`
    /// option), for showing their states (`/readyz` lists them).
    pub fn breakers(&self) -> Arc<Breakers> {
        self.breakers.clone()
    }

    /// The registered tasks' specs.
    pub fn specs(&self) -> Vec<Arc<TaskSpec>> {
        self.registrations.iter().map(|r| r.spec.clone()).collect()
    }

    /// Declares every registered task's queues and bindings, without consuming.
    pub async fn declare_topology(&self) -> Result<(), Error> {
        let conn = self.connector.connection().await?;
        declare_all(&conn, &self.specs(), self.connector.capabilities()).await
    }

    /// Runs until SIGINT or SIGTERM, then stops cleanly.
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(stop_signal()).await
    }

    /// Runs until `stop` resolves, then stops cleanly.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), Error> {
        let running = self.start().await?;
        let mut failed = running.join_result.clone();
        tokio::select! {
            () = stop => {}
            _ = failed.wait_for(Option::is_some) => {}
        }
        running.shutdown().await
    }

    /// Connects, declares topology and starts consuming in the background.
    pub async fn start(self) -> Result<RunningWorker, Error> {
        for r in &self.registrations {
            check_state(r.spec.name, &r.required_state, &self.state)?;
        }
        let groups = self.groups()?;
        if groups.is_empty() {
            return Err(Error::Config(
                "no tasks to consume: register tasks (or check the --queue/--task filter)".into(),
            ));
        }
        let specs: Vec<Arc<TaskSpec>> = self.registrations.iter().map(|r| r.spec.clone()).collect();
        // One attempt now, so that what retrying cannot fix (refused
        // access, a topology that differs) fails `start` at once. A broker
        // that is not up yet, or a connection lost while declaring, is not
        // such a failure: the supervisor keeps trying, and declares the
        // topology when it first connects.
        let first_try = async {
            let conn = self.connector.connection().await?;
            if self.config.declare_topology {
                declare_all(&conn, &specs, self.connector.capabilities()).await?;
            }
            Ok::<_, Error>(())
        };
        let declared = match first_try.await {
            Ok(()) => true,
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "could not connect to RabbitMQ and declare the topology yet; the worker keeps trying, and declares and starts consuming once connected");
                false
            }
        };
        let (trigger, shutdown) = Shutdown::new();
        let runtime = Arc::new(Runtime {
            publisher: self.publisher.clone(),
            state: Arc::new(self.state),
            shutdown: shutdown.clone(),
            health: Arc::new(Health::default()),
            rates: Arc::default(),
            breakers: self.breakers.clone(),
            hold_limit: Some(hold_budget(self.config.consumer_timeout)),
        });
        let ready = runtime.health.subscribe();
        let schedulers = self
            .periodic
            .into_iter()
            .map(|entry| {
                let scheduler = crate::schedule::scheduler::Scheduler {
                    connector: self.connector.clone(),
                    publisher: self.publisher.clone(),
                    entry,
                    shutdown: shutdown.clone(),
                    token_refresh: self.config.consumer_timeout / 3,
                };
                tokio::spawn(scheduler.run())
            })
            .collect();
        let (result_tx, join_result) = watch::channel(None);
        let supervisor = Supervisor {
            connector: self.connector.clone(),
            publisher: self.publisher.clone(),
            groups: Arc::new(groups),
            specs,
            runtime,
            config: self.config,
            shutdown,
            declared,
        };
        let handle = tokio::spawn(async move {
            let result = supervisor.run().await;
            let _ = result_tx.send(Some(result.as_ref().map(|_| ()).map_err(|e| e.to_string())));
            result
        });
        Ok(RunningWorker {
            trigger,
            handle,
            schedulers,
            ready,
            join_result,
            connector: self.connector,
        })
    }

    fn groups(&self) -> Result<Vec<QueueGroup>, Error> {
        let mut by_queue: BTreeMap<Arc<str>, QueueGroup> = BTreeMap::new();
        for r in &self.registrations {
            if let Some(only) = &self.only_queues {
                if !only
                    .iter()
                    .any(|n| n == r.spec.name || **n == *r.spec.queue)
                {
                    continue;
                }
            }
            let o = &r.spec.options;
            let concurrency = self.concurrency_override.unwrap_or(o.concurrency);
            let asked = self.prefetch_override.or(o.prefetch);
            let prefetch = o.resolved_prefetch(asked, concurrency);
            if let Some(asked) = asked.filter(|a| *a > prefetch) {
                tracing::warn!(
                    task = r.spec.name,
                    prefetch = asked,
                    "quorum queues cap prefetch at 2000; using 2000"
                );
            }
            let handler = match &self.wrap {
                Some(wrap) => wrap(r.handler.clone()),
                None => r.handler.clone(),
            };
            let svc = default_stack(&r.spec, self.retry.clone(), handler);
            let group = by_queue
                .entry(r.spec.queue.clone())
                .or_insert_with(|| QueueGroup {
                    queue: r.spec.queue.clone(),
                    prefetch,
                    concurrency,
                    tasks: Arc::new(Tasks::empty()),
                    breaker: self.breakers.get(&r.spec),
                });
            let tasks = Arc::get_mut(&mut group.tasks).expect("not shared while grouping");
            if let Some(first) = tasks.specs().next() {
                let f = &first.options;
                if f.queue_type != o.queue_type
                    || f.retry.tiers != o.retry.tiers
                    || f.retry.max_attempts != o.retry.max_attempts
                {
                    return Err(Error::Config(format!(
                        "tasks {} and {} share queue {} but differ in queue type, delay tiers or max attempts; give them the same queue options or separate queues",
                        first.name, r.spec.name, r.spec.queue
                    )));
                }
            }
            tasks.push(r.spec.clone(), svc);
            if let (Some(breaker), true) = (
                tasks.specs().find(|s| s.options.breaker.is_some()),
                tasks.specs().nth(1).is_some(),
            ) {
                return Err(Error::Config(format!(
                    "task {} has a circuit breaker, which pauses its whole queue {}, but other tasks share that queue; give task {} its own queue",
                    breaker.name, r.spec.queue, breaker.name
                )));
            }
        }
        Ok(by_queue.into_values().collect())
    }
}

/// A worker running in the background.
#[derive(Debug)]
pub struct RunningWorker {
    trigger: ShutdownTrigger,
    handle: tokio::task::JoinHandle<Result<(), Error>>,
    /// Each periodic entry's election and terms.
    schedulers: Vec<tokio::task::JoinHandle<()>>,
    ready: watch::Receiver<bool>,
    join_result: watch::Receiver<Option<Result<(), String>>>,
    connector: Connector,
}

impl RunningWorker {
    /// Whether every consumer is connected and consuming.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// A receiver that follows readiness.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Resolves when the worker stopped on its own, which only a fatal
    /// error does (a topology mismatch found while reconnecting, for
    /// example); [`shutdown`](RunningWorker::shutdown) then returns that error.
    pub async fn finished(&self) {
        let mut result = self.join_result.clone();
        let _ = result.wait_for(Option::is_some).await;
    }

    /// Stops cleanly: stop consuming, finish in-flight work within the grace
    /// period, return unstarted deliveries, close channels and connection.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.trigger.trigger();
        for scheduler in self.schedulers {
            let _ = scheduler.await;
        }
        let result = match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(Error::WorkerFailed(e.to_string())),
        };
        self.connector.close().await;
        result
    }
}

struct Supervisor {
    connector: Connector,
    publisher: Publisher,
    groups: Arc<Vec<QueueGroup>>,
    specs: Vec<Arc<TaskSpec>>,
    runtime: Arc<Runtime>,
    config: WorkerConfig,
    shutdown: Shutdown,
    /// Whether `start` already declared the topology on its connection.
    declared: bool,
}

impl Supervisor {
    /// Runs the sessions, and the depth sampler beside them (on its own
    /// task, so that it never holds up consuming), until shutdown or a
    /// fatal error.
    async fn run(self) -> Result<(), Error> {
        let sampler = self.config.depth_interval.map(|interval| {
            let mut specs: Vec<Arc<TaskSpec>> = Vec::new();
            for spec in self.groups.iter().flat_map(|g| g.tasks.specs()) {
                if !specs.iter().any(|s| Arc::ptr_eq(s, spec)) {
                    specs.push(spec.clone());
                }
            }
            let (trigger, stop) = Shutdown::new();
            let connector = self.connector.clone();
            let task = tokio::spawn(depth::run(connector, specs, interval, stop));
            (trigger, task)
        });
        let result = self.run_sessions().await;
        if let Some((trigger, mut task)) = sampler {
            trigger.trigger();
            // It closes its channel; the connection closes right after.
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        result
    }

    async fn run_sessions(&self) -> Result<(), Error> {
        let mut failures: u32 = 0;
        let mut first = true;
        loop {
            if self.shutdown.is_triggered() {
                return Ok(());
            }
            let session = async {
                let conn = self.connector.connection().await?;
                // Declared again on every reconnect: the broker may have
                // lost queues (a node reset) while we were away.
                if !(first && self.declared) && self.config.declare_topology {
                    declare_all(&conn, &self.specs, self.connector.capabilities()).await?;
                }
                Ok::<_, Error>(conn)
            };
            let conn = match session.await {
                Ok(conn) => conn,
                Err(e) if e.is_fatal() => {
                    tracing::error!(error = %e, "giving up: retrying cannot fix this");
                    return Err(e);
                }
                Err(e) => {
                    failures += 1;
                    self.pause(failures, Some(&e)).await;
                    continue;
                }
            };
            if !first {
                tracing::info!("reconnected; consuming again");
            } else if !self.declared {
                tracing::info!("connected to RabbitMQ");
            }
            first = false;
            let (session_trigger, session_stop) = Shutdown::new();
            let (consuming_tx, mut consuming) = tokio::sync::mpsc::unbounded_channel();
            let mut consumers = JoinSet::new();
            for index in 0..self.groups.len() {
                for source in self.groups[index].sources() {
                    let groups = self.groups.clone();
                    let conn = conn.clone();
                    let session = Session {
                        runtime: self.runtime.clone(),
                        publisher: self.publisher.clone(),
                        config: self.config.clone(),
                        stop: session_stop.clone(),
                        consuming: consuming_tx.clone(),
                    };
                    consumers.spawn(async move {
                        consume(&conn, &groups[index], &source, session).await
                    });
                }
            }
            // Ready once every consumer's basic.consume was confirmed.
            let expected = consumers.len();
            let mut confirmed = 0;
            let lost = loop {
                tokio::select! {
                    () = self.shutdown.triggered() => break None,
                    Some(()) = consuming.recv(), if confirmed < expected => {
                        confirmed += 1;
                        if confirmed == expected {
                            self.runtime.health.set_consuming(true);
                        }
                    }
                    Some(done) = consumers.join_next() => {
                        break Some(match done {
                            Ok(Ok(())) => Error::ConsumerStopped("a consumer ended".into()),
                            Ok(Err(e)) => e,
                            Err(e) => Error::ConsumerStopped(format!("a consumer task failed: {e}")),
                        });
                    }
                }
            };
            self.runtime.health.set_consuming(false);
            session_trigger.trigger();
            while consumers.join_next().await.is_some() {}
            match lost {
                None => return Ok(()),
                Some(e) => {
                    failures = 1;
                    tracing::warn!(error = %e, "lost the broker connection or a channel; reconnecting");
                    self.pause(failures, None).await;
                }
            }
        }
    }

    /// Waits before the next reconnect attempt (capped exponential backoff
    /// with jitter), returning early on shutdown. `error` is the failed
    /// connection attempt, logged on the first and every power-of-two
    /// failure; `None` after a lost session, which was logged already.
    async fn pause(&self, failures: u32, error: Option<&Error>) {
        let exp = failures.saturating_sub(1).min(16);
        let base = self
            .config
            .reconnect_min
            .saturating_mul(1u32 << exp)
            .min(self.config.reconnect_max);
        let delay = base
            .mul_f64(rand::rng().random_range(0.5..=1.0))
            .max(self.config.reconnect_min);
        let urls: Vec<String> = self
            .connector
            .config()
            .urls
            .iter()
            .map(|u| redact_url(u))
            .collect();
        match error {
            Some(error) if failures.is_power_of_two() => {
                tracing::warn!(error = %error, ?urls, attempt = failures, ?delay, "cannot reach RabbitMQ; retrying");
            }
            Some(_) => {}
            None => tracing::debug!(?urls, ?delay, "reconnecting after a pause"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.triggered() => {}
        }
    }
}

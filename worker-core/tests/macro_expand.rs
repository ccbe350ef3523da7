//! Run-time checks of what `#[task]` generates: names, options, required
//! state, and how `run` passes the context, the state and the payload.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use worker_core::task::StateMap;
use worker_core::transport::{SettleError, Transport};
use worker_core::{
    task, Delivery, Error, ExchangeKind, FailureKind, Outgoing, Properties, Publisher, QueueType,
    State, Task, TaskContext, TaskError, TaskOptions,
};

/// A transport that accepts everything and keeps nothing.
struct NullTransport;

impl Transport for NullTransport {
    fn ack(&self, _tag: u64, _multiple: bool) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async { Ok(()) })
    }

    fn nack(
        &self,
        _tag: u64,
        _multiple: bool,
        _requeue: bool,
    ) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async { Ok(()) })
    }

    fn reject(&self, _tag: u64, _requeue: bool) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async { Ok(()) })
    }

    fn publish(&self, _message: Outgoing) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

fn context<T: Task>(attempt: u32, state: StateMap) -> TaskContext {
    let delivery = Delivery {
        tag: 7,
        exchange: String::new(),
        routing_key: T::QUEUE.to_owned(),
        redelivered: attempt > 1,
        properties: Properties::default()
            .with_message_id("msg-1")
            .expect("short id"),
        body: b"{}".to_vec().into(),
    };
    TaskContext::new(
        T::NAME,
        Arc::from(T::QUEUE),
        Arc::new(delivery),
        attempt,
        Publisher::from_transport(Arc::new(NullTransport)),
        Arc::new(state),
    )
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Email {
    to: String,
}

thread_local! {
    /// What the handlers saw, for the assertions. Per thread: tests run in
    /// parallel, each on its own thread, and `block_on` stays on it.
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn seen() -> Vec<String> {
    SEEN.with(RefCell::take)
}

fn record(line: String) {
    SEEN.with(|s| s.borrow_mut().push(line));
}

#[task(queue = "emails", retries = 5, backoff = "1s..10m", timeout = "30s")]
async fn send_email(ctx: TaskContext, email: Email) -> Result<(), TaskError> {
    record(format!(
        "{} attempt {} id {:?} to {}",
        ctx.task_name(),
        ctx.attempt(),
        ctx.message_id(),
        email.to
    ));
    if email.to.is_empty() {
        return Err(TaskError::permanent("no recipient"));
    }
    Ok(())
}

#[test]
fn names_default_to_the_module_path_and_queue_is_given() {
    assert_eq!(SendEmail::NAME, "macro_expand::send_email");
    assert_eq!(SendEmail::QUEUE, "emails");
}

#[test]
fn options_are_applied_over_the_defaults() {
    let options = SendEmail.options();
    let defaults = TaskOptions::default();
    assert_eq!(options.retry.max_attempts, 6);
    assert_eq!(options.retry.backoff.min, Duration::from_secs(1));
    assert_eq!(options.retry.backoff.max, Duration::from_secs(600));
    assert_eq!(options.retry.backoff.factor, defaults.retry.backoff.factor);
    assert_eq!(options.retry.backoff.jitter, defaults.retry.backoff.jitter);
    assert_eq!(options.timeout, Some(Duration::from_secs(30)));
    assert_eq!(
        options.retry.in_process_attempts,
        defaults.retry.in_process_attempts
    );
    assert_eq!(options.retry.tiers, defaults.retry.tiers);
    assert_eq!(options.prefetch, defaults.prefetch);
    assert_eq!(options.concurrency, defaults.concurrency);
    assert_eq!(options.queue_type, QueueType::Quorum);
    assert_eq!(options.unclassified, FailureKind::Transient);
    assert_eq!(options.max_body_bytes, defaults.max_body_bytes);
    assert!(options.binding.is_none());
    assert!(SendEmail.required_state().is_empty());
}

#[test]
fn run_passes_the_context_and_the_payload() {
    let email = Email {
        to: "ada@example.com".into(),
    };
    let ctx = context::<SendEmail>(2, StateMap::default());
    block_on(SendEmail.run(ctx, email)).expect("handler succeeds");
    assert_eq!(
        seen(),
        ["macro_expand::send_email attempt 2 id Some(\"msg-1\") to ada@example.com"]
    );
}

#[test]
fn run_returns_the_handlers_error() {
    let ctx = context::<SendEmail>(1, StateMap::default());
    let err = block_on(SendEmail.run(ctx, Email { to: String::new() })).unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Permanent));
    assert_eq!(err.message(), "no recipient");
    seen();
}

#[test]
fn the_function_is_still_callable() {
    let ctx = context::<SendEmail>(1, StateMap::default());
    block_on(send_email(ctx, Email { to: "x@y".into() })).unwrap();
    assert_eq!(seen().len(), 1);
}

struct Db {
    url: String,
}

struct Clock(u64);

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
}

/// Handles orders.
#[task(
    name = "orders.placed",
    exchange = "orders",
    exchange_type = "topic",
    routing_keys = ["order.created", "order.*.paid"],
    unclassified = "permanent"
)]
async fn on_order(db: State<Db>, order: Order, clock: State<Clock>) -> Result<(), std::io::Error> {
    record(format!("{} order {} at {}", db.url, order.id, clock.0 .0));
    if order.id == 0 {
        return Err(std::io::Error::other("order zero"));
    }
    Ok(())
}

fn full_state() -> StateMap {
    let mut state = StateMap::default();
    state.insert(Db {
        url: "postgres://db".into(),
    });
    state.insert(Clock(42));
    state
}

#[test]
fn explicit_name_is_also_the_default_queue() {
    assert_eq!(OnOrder::NAME, "orders.placed");
    assert_eq!(OnOrder::QUEUE, "orders.placed");
}

#[test]
fn topic_binding_and_unclassified() {
    let options = OnOrder.options();
    assert_eq!(options.unclassified, FailureKind::Permanent);
    let binding = options.binding.expect("a binding");
    assert_eq!(binding.exchange, "orders");
    assert_eq!(binding.kind, ExchangeKind::Topic);
    assert_eq!(
        binding.routing_keys,
        [
            Cow::Borrowed("order.created"),
            Cow::Borrowed("order.*.paid")
        ]
    );
    assert!(binding.match_headers.is_empty());
}

#[test]
fn required_state_lists_every_state_argument_in_order() {
    let required = OnOrder.required_state();
    assert_eq!(
        required,
        [(TypeId::of::<Db>(), "Db"), (TypeId::of::<Clock>(), "Clock")]
    );
}

#[test]
fn run_passes_state_and_converts_foreign_errors() {
    let ctx = context::<OnOrder>(1, full_state());
    block_on(OnOrder.run(ctx, Order { id: 9 })).unwrap();
    assert_eq!(seen(), ["postgres://db order 9 at 42"]);

    let ctx = context::<OnOrder>(1, full_state());
    let err = block_on(OnOrder.run(ctx, Order { id: 0 })).unwrap_err();
    // An `io::Error` is unclassified: the task's `unclassified` option decides.
    assert_eq!(err.kind(), None);
    assert_eq!(err.message(), "order zero");
    assert!(err.source().is_some());
    seen();
}

#[test]
fn missing_state_is_a_permanent_error_naming_the_type() {
    let mut state = StateMap::default();
    state.insert(Db {
        url: "postgres://db".into(),
    });
    let ctx = context::<OnOrder>(1, state);
    let err = block_on(OnOrder.run(ctx, Order { id: 1 })).unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Permanent));
    assert!(err.message().contains("`orders.placed`"), "{err}");
    assert!(err.message().contains("`Clock`"), "{err}");
    assert!(err.message().contains("Worker::state"), "{err}");
    assert!(seen().is_empty(), "the handler must not run");
}

/// No payload, no context: the payload type is `()`.
#[task(
    queue = "reports",
    max_attempts = 1,
    in_process = 1,
    tiers = [],
    prefetch = 5000,
    concurrency = 2,
    queue_type = "classic",
    max_body = 1024
)]
pub(crate) async fn nightly_report() -> Result<(), TaskError> {
    record("report".to_owned());
    Ok(())
}

#[test]
fn payload_defaults_to_unit_and_classic_options_apply() {
    let _: <NightlyReport as Task>::Payload = ();
    let options = NightlyReport.options();
    assert_eq!(options.retry.max_attempts, 1);
    assert_eq!(options.retry.in_process_attempts, 1);
    assert!(options.retry.tiers.is_empty());
    assert_eq!(options.prefetch, Some(5000));
    assert_eq!(options.concurrency, 2);
    assert_eq!(options.queue_type, QueueType::Classic);
    assert_eq!(options.max_body_bytes, 1024);

    let ctx = context::<NightlyReport>(1, StateMap::default());
    block_on(NightlyReport.run(ctx, ())).unwrap();
    assert_eq!(seen(), ["report"]);
}

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    format: String,
}

#[task(
    queue = "render",
    exchange = "documents",
    exchange_type = "headers",
    match_headers = { "format" = "pdf", "lang" = "en" },
    match_all = false,
    tiers = ["5s", "1m", "1h"]
)]
async fn render(ctx: TaskContext, doc: Document, db: State<Db>) -> Result<(), TaskError> {
    record(format!("{} {} {}", ctx.queue(), doc.format, db.url));
    Ok(())
}

#[test]
fn headers_binding_and_tiers() {
    let options = Render.options();
    assert_eq!(
        options.retry.tiers,
        [
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(3600)
        ]
    );
    let binding = options.binding.expect("a binding");
    assert_eq!(binding.exchange, "documents");
    assert_eq!(binding.kind, ExchangeKind::Headers);
    assert!(binding.routing_keys.is_empty());
    assert_eq!(
        binding.match_headers,
        [
            (Cow::Borrowed("format"), Cow::Borrowed("pdf")),
            (Cow::Borrowed("lang"), Cow::Borrowed("en"))
        ]
    );
    assert!(!binding.match_all);
    assert_eq!(Render.required_state(), [(TypeId::of::<Db>(), "Db")]);

    let ctx = context::<Render>(1, full_state());
    block_on(Render.run(
        ctx,
        Document {
            format: "pdf".into(),
        },
    ))
    .unwrap();
    assert_eq!(seen(), ["render pdf postgres://db"]);
}

#[task(queue = "audit", exchange = "events")]
async fn audit(event: String) -> Result<(), TaskError> {
    record(event);
    Ok(())
}

#[test]
fn direct_exchange_binds_with_the_queue_name() {
    let binding = Audit.options().binding.expect("a binding");
    assert_eq!(binding.kind, ExchangeKind::Direct);
    assert_eq!(binding.routing_keys, [Cow::Borrowed("audit")]);
    assert!(binding.match_all);
}

#[test]
fn enqueue_goes_through_the_publisher() {
    let publisher = Publisher::from_transport(Arc::new(NullTransport));
    let id = block_on(Audit::enqueue(&publisher, &"login".to_owned())).unwrap();
    assert!(!id.is_empty());
}

mod nested {
    use worker_core::{task, TaskError};

    #[task]
    pub(super) async fn ping() -> Result<(), TaskError> {
        Ok(())
    }
}

#[test]
fn defaults_without_options() {
    assert_eq!(nested::Ping::NAME, "macro_expand::nested::ping");
    assert_eq!(nested::Ping::QUEUE, nested::Ping::NAME);
    let options = nested::Ping.options();
    assert_eq!(
        options.retry.max_attempts,
        TaskOptions::default().retry.max_attempts
    );
    assert!(options.binding.is_none());
}

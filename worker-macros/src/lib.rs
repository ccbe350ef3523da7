//! The `#[task]` attribute macro of `worker-core`.
//!
//! Use it through `worker_core::task`; this crate only holds the macro.
//! [`macro@task`] documents every option.
//!
//! The options are parsed in `attr/parse.rs` and checked in `attr/check.rs`
//! (the model both share is in `attr/mod.rs`); the generated code is in
//! `expand.rs`.
//! Durations and breaker rules are checked with `worker-core`'s own
//! `duration.rs` and `breaker/parse.rs`, compiled into this crate as well
//! (through the symlinks in `src/shared`, which `cargo package` turns into
//! copies), so the attribute accepts exactly what the runtime accepts.

mod attr;
mod expand;

// `format_duration` is not needed here, and the module is private.
#[allow(dead_code, unreachable_pub)]
#[path = "shared/duration.rs"]
mod duration;

// The circuit breaker's rule, read as the runtime reads it.
#[allow(dead_code, unreachable_pub)]
#[path = "shared/breaker_rule.rs"]
mod breaker_rule;

use proc_macro::TokenStream;

/// Turns an `async fn` into a task: a unit struct implementing `worker_core::Task`.
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use worker_core::{task, Task, TaskContext, TaskError};
///
/// #[derive(Serialize, Deserialize)]
/// struct Email { to: String, subject: String }
///
/// #[task(queue = "emails", retries = 5, backoff = "1s..10m", timeout = "30s")]
/// async fn send_email(ctx: TaskContext, email: Email) -> Result<(), TaskError> {
///     println!("attempt {} for {}", ctx.attempt(), email.to);
///     Ok(())
/// }
///
/// # async fn demo(publisher: worker_core::Publisher) -> Result<(), worker_core::Error> {
/// // The function is untouched: call it directly in unit tests.
/// // The generated `SendEmail` is what the worker runs:
/// assert_eq!(SendEmail::QUEUE, "emails");
/// let worker = worker_core::Worker::from_env().register(SendEmail);
/// // ... and what producers enqueue:
/// let id = SendEmail::enqueue(&publisher, &Email { to: "a@b.c".into(), subject: "hi".into() }).await?;
/// # Ok(()) }
/// ```
///
/// # What it generates
///
/// For `async fn send_email`, next to the function (which stays exactly as
/// written):
///
/// - `struct SendEmail;`, named in PascalCase after the function (or as
///   `type_name` says), with the function's visibility, its `#[cfg]`
///   attributes and its documentation;
/// - `impl Task for SendEmail`: `Payload` is the payload argument's type,
///   `NAME` and `QUEUE` come from the options, `options()` applies the
///   options over `TaskOptions::default()`, `required_state()` lists every
///   `State<T>` argument, and `run()` calls the function;
/// - `impl Callable for SendEmail`: `Output` is `T` of the return type
///   `Result<T, E>` (`()` here);
/// - `SendEmail::enqueue(&publisher, &payload)`, a shortcut for
///   `publisher.enqueue::<SendEmail>(&payload)` that returns the message id;
/// - `SendEmail::call(&client, &payload)`, a call awaiting the handler's
///   value over direct reply-to (`worker_core::rpc`): set a timeout with
///   `.timeout(d)`, then `.await` a `Result<T, CallError>`.
///
/// # The function
///
/// It must be a free `async fn`: not generic, no `self`, not `const`,
/// `unsafe` or `extern`. Its arguments, in any order, are recognised by the
/// last segment of their type:
///
/// | argument | receives |
/// | --- | --- |
/// | `TaskContext` (at most once) | the delivery's context: attempt, ids, headers, a correlated publisher |
/// | `State<T>` (any number) | shared state added with `Worker::state(value)`; the worker refuses to start without it, and `run()` fails permanently if it is missing anyway |
/// | anything else (at most one) | the payload, deserialized from the message body; with no such argument the payload is `()` |
///
/// It returns `Result<T, E>` where `E` converts into `TaskError`:
/// `TaskError` itself, or any `std::error::Error + Send + Sync + 'static`
/// (classified by the `unclassified` option). `T` is `()`, or a value a
/// caller receives (`T: Serialize`, sent as JSON to the request's
/// `reply_to` once the handler succeeded; messages without `reply_to`
/// ignore it). Aliases written as `Result<T>` (`std::io::Result<()>`) work
/// too. The generated type must not be named like the payload or the
/// return type (`async fn quote(..) -> Result<Quote, _>`): that is one
/// error suggesting `type_name`.
///
/// # Options
///
/// All optional, each at most once, separated by commas.
///
/// | option | default | meaning |
/// | --- | --- | --- |
/// | `name = "emails.send"` | `concat!(module_path!(), "::", "send_email")` | the task's name, stored in each message's `type` property |
/// | `queue = "emails"` | the name | the work queue |
/// | `type_name = "ChargeTask"` | the function's name in PascalCase | the name of the generated task type; needed when that would be the payload type's name, as for `async fn charge(c: Charge)` |
/// | `retries = 5` | 9 (10 attempts) | retries after the first attempt: `max_attempts = retries + 1` |
/// | `max_attempts = 6` | 10 | handler runs allowed over the message's life before it is parked; not together with `retries` |
/// | `in_process = 3` | 3 | attempts per delivery, in process, before the message goes to a delay tier (1 = none in process) |
/// | `backoff = "200ms..5s"` | `"200ms..5s"` | the wait between in-process attempts: exponential from MIN to MAX, with jitter |
/// | `tiers = ["1s", "10s", "1m"]` | 1s, 10s, 1m, 10m, 1h | the broker-side delay tiers, shortest first; `tiers = []` for none |
/// | `timeout = "30s"` | none | the longest one attempt may run; every attempt also ends with the delivery's hold budget, 4/5 of the broker's consumer timeout (`WorkerConfig::consumer_timeout`, 30 minutes by default) |
/// | `rate = "100/s"` | none | the most handler starts per second (`/s`) or minute (`/m`) **in one worker process**, evenly spaced; N processes start up to N times as many, so give each the fleet's limit divided by N. A delivery waiting for its start holds its prefetch slot |
/// | `breaker = "50%/20"` | none | a circuit breaker: stop consuming the task's queue once at least 50% of the last 20 counted outcomes failed (`"5 in a row"`: the last 5 all failed). Transient failures, timeouts and panics count as failures; permanent failures and bad payloads count as neither. The messages stay in the broker; after the cool-down one probe runs, and success resumes consuming. The task must have its queue to itself |
/// | `breaker_cooldown = "30s"` | `"30s"` | how long the breaker stays open before its probe (only with `breaker`) |
/// | `prefetch = 50` | twice `concurrency` | broker prefetch: 1..=2000 for quorum queues, 1..=65535 for classic. Above the concurrency, a handler that finishes finds its next delivery waiting; deliveries prefetched but not started when the worker stops go back to the broker, so tasks with long handlers may prefer `prefetch` equal to `concurrency` |
/// | `concurrency = 8` | 100 | handlers of this task running at once (>= 1) |
/// | `queue_type = "classic"` | `"quorum"` | `"quorum"` or `"classic"` |
/// | `unclassified = "permanent"` | `"transient"` | how errors converted with `?` are treated: `"transient"` retries, `"permanent"` parks at once |
/// | `max_body = 1048576` | 16 MiB | the largest body, in bytes, accepted for decoding |
/// | `priority = 10` | none | a priority queue: messages enqueued with a higher priority (`EnqueueOptions::with_priority`) run first. 1..=255, the highest priority of a classic queue (`x-max-priority`); on a quorum queue it needs RabbitMQ 4.0+ (4.0 to 4.2: two levels, 5 and above is high, served two to one before normal; 4.3: 32 strict levels, 31 and above served as 31) and is refused when the worker declares it on 3.x |
/// | `max_length = 10000` | none | the most ready messages in the work queue (`x-max-length`) |
/// | `max_length_bytes = 104857600` | none | the most bytes of ready bodies in the work queue (`x-max-length-bytes`) |
/// | `overflow = "drop-head"` | `"reject-publish"` | with `max_length` or `max_length_bytes`: `"reject-publish"` makes an enqueue to a full queue fail (`Error::Nacked`); `"drop-head"` parks the oldest message (reason `maxlen`) to make room, classic queues only. A classic queue with a limit needs `"drop-head"` or `tiers = []` (retries coming back from a tier into a full classic queue would be dropped) |
/// | `message_ttl = "10m"` | none | how long a message may wait in the work queue; then it is parked (reason `expired`). At most 49d |
/// | `exchange = "orders"` | none | also bind the queue to this durable exchange |
/// | `exchange_type = "topic"` | `"direct"` | `"direct"`, `"topic"`, `"fanout"` or `"headers"`; needs `exchange` |
/// | `routing_keys = ["order.created", "order.*.paid"]` | the queue name (direct) | binding keys or patterns; needed for topic; not for fanout or headers |
/// | `match_headers = { "format" = "pdf" }` | none | headers exchanges only (and needed there): header values to match |
/// | `match_all = false` | `true` | headers exchanges only: all headers must match (`x-match: all`) or any (`any`) |
/// | `every = "5m"` | none | a periodic task: one message (the payload type's `Default`) every interval, in whole seconds (at least `1s`), ticks aligned to the Unix epoch; exactly one worker process enqueues each tick; not together with `cron` |
/// | `cron = "0 30 9 * * Mon-Fri"` | none | a periodic task on a cron schedule: 5 fields, or 6 with seconds first (croner's syntax); not together with `every` |
/// | `tz = "Europe/Paris"` | UTC | the IANA time zone `cron` is read in (only with `cron`) |
/// | `missed = "skip"` | `"fire"` | with `every` or `cron`, after no process scheduled for a while: `"fire"` enqueues the missed ticks late (the 100 most recent), `"skip"` goes on with the next one |
/// | `crate = "my_app::worker_core"` | `"::worker_core"` | the path to `worker_core`, when it is re-exported under another name |
///
/// Durations are a whole number and a unit: `250ms`, `30s`, `5m`, `1h`,
/// `2d`. They, and every other value, are checked at compile time.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use worker_core::{task, State, TaskContext, TaskError};
/// # #[derive(Serialize, Deserialize)] struct Order { id: u64 }
/// # #[derive(Serialize, Deserialize)] struct Document { id: u64 }
/// # #[derive(Serialize, Deserialize)] struct Image { id: u64 }
/// # struct Db;
/// # impl Db { fn save(&self, _: &Order) -> Result<(), std::io::Error> { Ok(()) } }
/// # #[derive(Debug)] struct ImageError;
/// # impl std::fmt::Display for ImageError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("bad image") }
/// # }
/// # impl std::error::Error for ImageError {}
/// // A topic binding: the queue also receives `order.created` and every
/// // `order.<id>.paid` published to the `orders` exchange.
/// #[task(queue = "orders", exchange = "orders", exchange_type = "topic",
///        routing_keys = ["order.created", "order.*.paid"])]
/// async fn on_order(order: Order, db: State<Db>) -> Result<(), std::io::Error> {
///     db.save(&order)
/// }
///
/// // A headers binding: messages whose `format` header is `pdf`.
/// #[task(queue = "pdf-render", exchange = "documents", exchange_type = "headers",
///        match_headers = { "format" = "pdf" })]
/// async fn render_pdf(doc: Document) -> Result<(), TaskError> { Ok(()) }
///
/// // Retries only in process, no delay tiers, bad input parked at once.
/// #[task(queue = "thumbs", max_attempts = 3, in_process = 3, tiers = [],
///        unclassified = "permanent", concurrency = 4, prefetch = 8)]
/// async fn thumbnail(ctx: TaskContext, image: Image) -> Result<(), ImageError> { Ok(()) }
/// ```
///
/// # Errors
///
/// Mistakes are reported at the token to fix, all at once, and the function
/// is still emitted so that the rest of the crate keeps compiling:
///
/// ```text
/// error: unknown option `retires` (did you mean `retries`?); expected one of: name, queue, ...
///  --> src/tasks.rs:3:26
///   |
/// 3 | #[task(queue = "emails", retires = 5)]
///   |                          ^^^^^^^
/// ```
///
/// Among others: a missing `async`, generic parameters, a `self` receiver,
/// two payload arguments, a return type other than `Result<(), E>`, unknown
/// or duplicate options, invalid durations, a backoff whose minimum exceeds
/// its maximum, `retries` with `max_attempts`, `routing_keys` on a fanout or
/// headers exchange or without `exchange`, unknown `queue_type` values, and
/// a task type that would be named like its payload type:
///
/// ```text
/// error: the task type generated for `charge` would be named `Charge`, like its payload type `Charge`; rename the function (for example `charge_task`) or name the task type with `type_name = "ChargeTask"`
///   --> src/billing.rs:10:10
///    |
/// 10 | async fn charge(ctx: TaskContext, c: Charge) -> Result<(), TaskError> {
///    |          ^^^^^^
/// ```
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(attr.into(), item.into()).into()
}

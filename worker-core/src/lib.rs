//! The runtime of a RabbitMQ task worker.
//!
//! Write a handler as a plain `async fn`, mark it with [`macro@task`], register it
//! with a [`Worker`] and run. The framework consumes with manual acks and
//! prefetch, decodes typed payloads, retries with backoff in process and
//! through broker-side delay tiers, parks poison messages, enforces
//! timeouts, survives panics, and stops cleanly.
//!
//! # Start here
//!
//! 1. **Write a task**: an `async fn(TaskContext, Payload) -> Result<(), TaskError>`
//!    under [`#[task(queue = "...")]`](macro@task) (or `Result<T, TaskError>`
//!    to return a value to a caller, see [`rpc`]). [`TaskError`] says what a
//!    failure means (transient, permanent, retry after, discard);
//!    [`TaskOptions`] and [`RetryPolicy`] hold what the attribute sets.
//! 2. **Run it**: `worker_operator::App::new("name").register(MyTask).run()`
//!    (the `worker-operator` crate) gives a worker binary with `run`,
//!    `enqueue`, `parked`, `topology` and `status`; or build a [`Worker`]
//!    yourself and call [`Worker::run`].
//! 3. **Enqueue**: [`Publisher::enqueue`] (confirmed), or
//!    [`TaskContext::enqueue`] from inside a handler.
//! 4. **Test it**: `worker_testkit::Harness` runs a delivery through this
//!    crate's own dispatch and middleware on a mock channel and a paused
//!    clock, and reports what happened (acked, retried, parked, ...).
//!
//! What happens to a failure is decided in one place,
//! [`middleware::policy`]; what the broker does differently by version is
//! in [`broker::Capabilities`]. `ARCHITECTURE.md` in the repository is the
//! map of the rest.
//!
//! Modules, from the wire inwards: [`connection`] and [`broker`] (reaching
//! RabbitMQ, and what its version does), [`transport`] (the seam a
//! delivery is settled through), [`worker`] (consume, dispatch, settle,
//! stop), [`middleware`] (from a delivery to its outcome), [`mod@task`]
//! (the user's handlers), [`message`], [`headers`] and [`codec`] (reading
//! messages), [`publisher`] (confirmed publishing), [`rpc`] (request/reply
//! over direct reply-to) and [`topology`] (queues and bindings).
//!
//! The operator surface, the command line, operations on parked messages
//! and queues, the HTTP endpoint for metrics and probes and the web
//! dashboard, is the `worker-operator` crate, built on this one: this
//! crate compiles without clap, axum, hyper or askama.
//!
//! # Features
//!
//! - `msgpack`: the MessagePack codec.
//! - `otel`: W3C trace context across the queue ([`trace_context`]):
//!   `enqueue` injects `traceparent`, the worker continues the trace in
//!   each delivery's span.

// docs.rs (`--cfg docsrs`, nightly) marks what each feature gates.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod breaker;
pub mod broker;
pub mod codec;
pub mod connection;
mod duration;
pub mod error;
pub mod headers;
mod host;
pub mod message;
pub mod metric_names;
pub mod middleware;
pub mod publisher;
pub mod rpc;
mod runtime;
pub mod schedule;
pub mod task;
pub mod topology;
#[cfg(feature = "otel")]
pub mod trace_context;
pub mod transport;
pub mod worker;

pub use backoff::Backoff;
pub use breaker::parse::parse_breaker;
pub use breaker::{BreakerPolicy, BreakerState};
pub use connection::{ConnectionConfig, Connector};
pub use duration::{format_duration, parse_duration, parse_rate};
pub use error::{redact_url, Error};
pub use headers::{Attempts, DeathReason, HeaderValue, Headers, XDeath, MAX_HEADER_DEPTH};
pub use message::{Delivery, Outgoing, Properties};
pub use middleware::{Failure, FailureCause, Job, Outcome};
pub use publisher::{BatchOutcome, EnqueueOptions, Publisher};
pub use rpc::{Call, CallError, RpcClient};
pub use task::{
    Callable, ExchangeBinding, ExchangeKind, FailureKind, Overflow, QueueLimits, QueueType, Rate,
    RetryPolicy, State, Task, TaskContext, TaskError, TaskOptions,
};
pub use worker::Worker;
pub use worker_macros::task;

/// Internals that `worker-testkit` needs so that its harness runs exactly
/// what the worker runs (the dispatch, the runtime a delivery sees). Not
/// part of the API: hidden from the docs, with no stability promise.
#[doc(hidden)]
pub mod __testkit {
    pub use crate::runtime::{Health, Runtime, Shutdown, ShutdownTrigger};
    pub use crate::worker::dispatch::{check_state, dispatch, Tasks};
}

/// Internals of this crate that `worker-operator` builds its operator
/// surface on: reply codes of broker errors, declaring one planned queue,
/// lapin conversions. For worker-operator only: not part of the API,
/// hidden from the docs, with no stability promise.
#[doc(hidden)]
pub mod __operator {
    pub use crate::error::{
        reply_code, reply_text, ACCESS_REFUSED, CERTIFICATE_HINT, NOT_FOUND, PRECONDITION_FAILED,
    };
    pub use crate::host::hostname;
    pub use crate::topology::{declare_queue, lapin_kind, open_channel};

    /// A replayed copy's trace context: `trace_context::replay_context`
    /// with the `otel` feature of this crate, nothing without it (so a
    /// replay follows this crate's features, whatever else is built).
    pub fn replay_context(headers: &mut crate::Headers) {
        #[cfg(feature = "otel")]
        crate::trace_context::replay_context(headers);
        #[cfg(not(feature = "otel"))]
        let _ = headers;
    }

    /// A delivery of lapin's as this crate's [`Delivery`](crate::Delivery).
    pub fn delivery_from_lapin(d: lapin::message::Delivery) -> crate::Delivery {
        crate::Delivery::from_lapin(d)
    }
}

//! Request/reply: a caller awaits a task's result over RabbitMQ's direct
//! reply-to.
//!
//! A task may return a value (`Result<T, TaskError>` with `T: Serialize`;
//! `()` replies `null`). A caller sends the task's message with
//! `reply_to = amq.rabbitmq.reply-to` and a fresh `correlation_id`
//! ([`RpcClient`], [`Call`]); the worker runs it like any other delivery
//! and, after the handler succeeded, publishes the JSON value to the
//! default exchange with the request's `reply_to` as the routing key and
//! its `correlation_id` copied ([`reply::answer`]). Only then is the request
//! acked. A request parked or failed for good gets a failure reply instead
//! ([`REPLY_STATUS`](crate::headers::REPLY_STATUS) `failed` or `parked`),
//! so that the caller does not wait for its timeout; a transient failure
//! retries as usual and the reply follows the eventual success.
//!
//! Why direct reply-to and not a reply queue per caller: no queue to
//! declare or clean up, and the broker routes the reply straight to the
//! caller's channel. Its limits, which the design accepts:
//!
//! - a reply reaches the caller only while the caller's channel is open: a
//!   caller that gave up (timed out, restarted) never sees it, and the
//!   broker drops it silently. The request itself is not lost: it ran.
//! - replies are not published `mandatory`: RabbitMQ 3.10 and 4.0 return
//!   every mandatory publish to a direct reply-to name as `NO_ROUTE`, even
//!   the ones they delivered, and from 4.2 none, not even one whose caller
//!   is gone (`Capabilities::mandatory_direct_reply_returned`, pinned by
//!   `tests/broker_versions.rs` and `tests/broker_rpc.rs`): on no version
//!   can `basic.return` tell a gone caller from a present one.
//!
//! Any AMQP client can call a task (publish its message with the task's
//! name in the `type` property, `reply_to` and `correlation_id`) and any
//! AMQP client can serve a call made with [`RpcClient`] (reply with the
//! JSON value to `reply_to`, `correlation_id` copied; a reply without
//! [`REPLY_STATUS`](crate::headers::REPLY_STATUS) is a success).

mod call;
mod client;
mod error;
pub mod reply;

pub use call::{Call, Reply, DEFAULT_CALL_TIMEOUT};
pub use client::RpcClient;
pub use error::CallError;

/// The pseudo-queue of RabbitMQ's direct reply-to: a caller consumes it
/// (no-ack) and names it in `reply_to` on the same channel.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

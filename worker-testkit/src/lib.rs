//! Test kit for `worker-core` tasks: unit tests need no broker, flow tests
//! can use an in-memory one, fault tests a private RabbitMQ node.
//!
//! The pieces:
//!
//! - [`mock`]: a recording mock of the broker channel
//!   ([`Transport`](worker_core::transport::Transport)). `mock::pair()`
//!   gives the channel and a [`MockHandle`] that scripts failures ("the next
//!   two publishes fail", "publishes to the parking queue fail") and asserts
//!   on every ack, nack, reject and publish, failing with the list of what
//!   did happen.
//! - [`DeliveryBuilder`]: deliveries as the broker hands them over, with a
//!   typed or raw body, ids, task name, headers, `x-death` history,
//!   `x-delivery-count` and the redelivered flag.
//! - [`Harness`]: runs one task's handler through the worker's real
//!   middleware stack (the same
//!   [`default_stack`](worker_core::middleware::default_stack) function) and
//!   settles the delivery the way the worker does, then returns a
//!   [`Report`]: outcome, settlement, every handler run, copies sent to
//!   delay tiers or parking.
//! - [`memory`]: an in-memory broker speaking AMQP 0-9-1 on a loopback port,
//!   so a whole worker runs against it by URL, with a clock the test
//!   advances; a differential suite checks it against RabbitMQ.
//! - [`node`]: a private RabbitMQ node on free ports, to stop, restart or
//!   kill under a running worker.
//! - [`raw`]: messages lapin cannot send (headers nested thousands of
//!   levels deep), published as raw AMQP frames.
//! - [`broker`]: connect to the real broker of an integration test
//!   (`AMQP_URL`), read queue depths, drain and delete queues, read headers.
//! - [`wait`]: await an effect with a deadline
//!   ([`wait::eventually`]) instead of sleeping for a guessed time.
//! - [`skip`]: skip a test for what the machine lacks, visibly, and never
//!   under CI.
//!
//! Tests run on tokio's paused clock (`#[tokio::test(start_paused = true)]`),
//! so backoff sleeps, delay tiers and timeouts of any length finish at once
//! and deterministically; jitter is seeded.
//!
//! # Example
//!
//! A task that fails while its upstream is down, tested end to end: two
//! quick in-process tries, then a copy waits in the 10-second delay tier;
//! when the broker brings the copy back and the upstream is still down, the
//! message has used its attempts and is parked.
//!
//! ```
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//!
//! use serde::{Deserialize, Serialize};
//! use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
//! use worker_testkit::{DeliveryBuilder, Harness};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Invoice {
//!     id: u64,
//! }
//!
//! struct Upstream {
//!     up: AtomicBool,
//! }
//!
//! struct SendInvoice;
//!
//! impl Task for SendInvoice {
//!     type Payload = Invoice;
//!     const NAME: &'static str = "invoices.send";
//!     const QUEUE: &'static str = "invoices";
//!
//!     fn options(&self) -> TaskOptions {
//!         TaskOptions {
//!             retry: RetryPolicy::default()
//!                 .in_process(2)
//!                 .tiers([Duration::from_secs(10)])
//!                 .max_attempts(3),
//!             ..TaskOptions::default()
//!         }
//!     }
//!
//!     async fn run(&self, ctx: TaskContext, invoice: Invoice) -> Result<(), TaskError> {
//!         let upstream = ctx.state::<Upstream>().expect("upstream state");
//!         if !upstream.up.load(Ordering::SeqCst) {
//!             return Err(TaskError::transient(format!("cannot send invoice {}", invoice.id)));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // In a test file: #[tokio::test(start_paused = true)] async fn ...() { ... }
//! let harness = Harness::new(SendInvoice).state(Upstream { up: AtomicBool::new(false) });
//!
//! // First delivery: attempts 1 and 2 in process, then the 10 s tier.
//! let delivery = DeliveryBuilder::for_task::<SendInvoice>(&Invoice { id: 7 })
//!     .tag(1)
//!     .correlation_id("order-7")
//!     .build();
//! let report = harness.run(delivery).await;
//! assert_eq!(report.handler_runs(), 2, "{report}");
//! assert_eq!(report.redelivered_to(), Some((Duration::from_secs(10), 2)));
//! let copy = harness.mock().assert_published_to("invoices.retry.10s");
//! harness.mock().assert_acked(1);
//!
//! // The broker brings the copy back after the tier's TTL: attempt 3 of 3 fails too.
//! let back = DeliveryBuilder::returned_from_tier(&copy, "invoices").tag(2).build();
//! let report = harness.run(back).await;
//! let parked = report.parked().expect("parked after the last attempt");
//! assert_eq!(parked.reason, "exhausted");
//! assert_eq!(parked.attempts, 3);
//! assert_eq!(parked.error_message, "cannot send invoice 7");
//! assert_eq!(parked.body(), br#"{"id":7}"#);
//! assert_eq!(parked.message.properties.correlation_id(), Some("order-7"));
//!
//! harness.mock().assert_published_to("invoices.parking");
//! harness.mock().assert_acked(2);
//! harness.mock().assert_nothing_else();
//! # }
//! ```

// docs.rs (`--cfg docsrs`, nightly) marks what each feature gates.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod broker;
pub mod fixture;
/// The in-memory broker, from [`worker_devbroker`] (its own crate, so that
/// the development broker's binary and the quickstart use it too).
pub use worker_devbroker as memory;
pub mod mock;
pub mod node;
pub mod raw;
pub mod skip;
pub mod wait;

mod delivery;
mod harness;

pub use delivery::DeliveryBuilder;
pub use harness::{HandlerRun, Harness, Offer, ParkedCopy, Report, RunEnd, HARNESS_REPLY_TO};
pub use mock::{MockHandle, MockTransport};

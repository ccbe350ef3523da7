//! Helpers for integration tests against a real RabbitMQ (AMQP_URL, default
//! local guest): the testkit's broker helpers and its deadline wait.
#![allow(dead_code, unreachable_pub, missing_docs)]

/// Awaits a condition with a deadline (not every test binary that includes
/// this module uses it).
#[allow(unused_imports)]
pub use worker_testkit::wait::eventually;

/// Connecting, inspecting and cleaning up the test broker.
#[allow(unused_imports)]
pub use worker_testkit::broker::*;

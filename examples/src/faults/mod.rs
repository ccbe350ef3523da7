//! Fault scenarios: the demo worker under kills, stops, broker faults and
//! poison messages, each ending with an exact [`Account`] of what became of
//! every message.
//!
//! Each scenario runs in a private vhost of the broker at `AMQP_URL` (or
//! on private nodes), drives `demo-worker` child processes and the
//! `demo.record` fixture task, and reads what was handled from the
//! fixture's record file. `cargo test -p examples --test faults` runs them;
//! RELIABILITY.md has the figures.

mod account;
pub(crate) mod broker;
mod demo;
mod scenarios;

pub use account::{Account, Record};
pub use broker::{rabbitmqctl, Vhost};
pub use demo::{sibling_demo_worker, DemoConfig, DemoProcess};
pub use scenarios::*;

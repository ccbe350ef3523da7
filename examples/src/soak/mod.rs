//! The chaos soak: a fleet of demo workers over a mixed workload while a
//! seeded schedule of faults strikes every few seconds, ending with an
//! exact account of every message.
//!
//! - [`schedule`]: the faults, a pure function of the seed.
//! - [`workload`]: the messages (most succeed; some fail once or twice,
//!   always fail, panic, are undecodable or outlast their timeout) and
//!   what must become of each.
//! - [`proxy`]: the TCP proxy between workers and broker that cuts and
//!   stalls the network.
//! - [`target`]: the broker under test (a private node, a private
//!   cluster, or a running broker) and its faults.
//! - [`fleet`]: the worker processes, restarted after kills and stops,
//!   their memory sampled.
//! - [`publish`]: confirmed publishing during the chaos.
//! - [`soak`] runs it all and returns a [`SoakReport`]; the `soak` binary
//!   and `tests/soak.rs` call it. RELIABILITY.md has the figures.

pub mod fleet;
pub mod proxy;
pub mod publish;
pub mod schedule;
pub mod target;
pub mod workload;

mod report;
mod run;

pub use report::{SoakReport, RSS_BOUND_KIB};
pub use run::{soak, SoakOptions};
pub use schedule::{FaultKind, Schedule, ScheduleOptions};
pub use target::BrokerChoice;

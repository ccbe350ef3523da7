//! Example tasks and the demo worker.
//!
//! - [`tasks::email`]: an email task whose provider fails transiently;
//! - [`tasks::orders`]: order events routed through a topic exchange, with shared state;
//! - [`tasks::images`]: a slow task bounded by a timeout;
//! - [`tasks::record`]: `demo.record`, the fixture the reliability suite and the benchmarks drive.
//!
//! Binaries: `demo-worker` (the CLI over all of these) and `quickstart`
//! (an end-to-end run that exits by itself).

pub mod bench;
pub mod faults;
pub mod soak;
pub mod tasks;

//! The operator surface of a [worker-core](worker_core) worker: a command
//! line for the worker binary, operations on parked messages, queue depths
//! and topology, the HTTP endpoint for metrics and probes, and a web
//! dashboard.
//!
//! worker-core is the library (tasks, middleware, worker, publisher); this
//! crate is built on it and never the other way round. A program that only
//! needs the library (its own `main` around [`worker_core::Worker`])
//! depends on worker-core alone and compiles none of clap, axum, hyper,
//! askama or the Prometheus exporter.
//!
//! # Start here
//!
//! Hand your tasks to [`App`] in `main`:
//!
//! ```no_run
//! use worker_core::{task, TaskContext, TaskError};
//!
//! #[task(queue = "emails")]
//! async fn send_email(_ctx: TaskContext, to: String) -> Result<(), TaskError> {
//!     # let _ = to;
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     // mailer run | enqueue | parked list/show/replay/purge | topology | status | dashboard
//!     worker_operator::App::new("mailer").register(SendEmail).run()
//! }
//! ```
//!
//! Modules: [`cli`] (the command line and its [exit codes](cli::exit)),
//! [`ops`] (the operations behind it, usable without the command line),
//! [`http`] (`/metrics`, `/healthz`, `/readyz`) and [`dashboard`].
//!
//! This crate has no features of its own: worker-core's decide (with its
//! `otel`, `parked replay` starts a trace linked to the original's).

// docs.rs (`--cfg docsrs`, nightly) marks what each feature gates.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cli;
pub mod dashboard;
pub mod http;
pub mod ops;

pub use cli::App;

/// The README's Rust examples, compiled as doc tests so they cannot rot.
/// They use the command line, so they live in this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

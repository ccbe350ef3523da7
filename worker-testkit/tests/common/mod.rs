//! Tasks shared by the test files, written by hand against `worker_core::Task`.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use worker_core::backoff::Backoff;
use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};

/// The payload of the test tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Work {
    pub(crate) id: u64,
}

type Script = dyn Fn(TaskContext, Work) -> BoxFuture<'static, Result<(), TaskError>> + Send + Sync;

/// A task whose handler is a closure, so each test states its behaviour inline.
pub(crate) struct Scripted {
    script: Arc<Script>,
    options: TaskOptions,
}

impl Scripted {
    /// A task running `script` with `options`.
    pub(crate) fn new<F, Fut>(options: TaskOptions, script: F) -> Self
    where
        F: Fn(TaskContext, Work) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        Scripted {
            script: Arc::new(move |ctx, work| Box::pin(script(ctx, work))),
            options,
        }
    }
}

impl Task for Scripted {
    type Payload = Work;
    const NAME: &'static str = "work.do";
    const QUEUE: &'static str = "work";

    fn options(&self) -> TaskOptions {
        self.options.clone()
    }

    async fn run(&self, ctx: TaskContext, payload: Work) -> Result<(), TaskError> {
        (self.script)(ctx, payload).await
    }
}

/// A follow-up task enqueued from inside handlers.
pub(crate) struct Notify;

impl Task for Notify {
    type Payload = Work;
    const NAME: &'static str = "notify.send";
    const QUEUE: &'static str = "notify";

    async fn run(&self, _ctx: TaskContext, _payload: Work) -> Result<(), TaskError> {
        Ok(())
    }
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Options with the given retry shape and a small, fixed backoff.
pub(crate) fn retry_options(in_process: u32, tiers: &[u64], max_attempts: u32) -> TaskOptions {
    TaskOptions {
        retry: RetryPolicy::default()
            .in_process(in_process)
            .backoff(Backoff::new(millis(100), secs(2)))
            .tiers(tiers.iter().copied().map(secs))
            .max_attempts(max_attempts),
        ..TaskOptions::default()
    }
}

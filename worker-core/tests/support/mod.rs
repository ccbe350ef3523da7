//! Helpers for integration tests against a real RabbitMQ (AMQP_URL, default local guest).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::Channel;
use worker_core::{TaskContext, TaskError};

/// Awaits a condition with a deadline (the testkit's one helper; not
/// every test binary that includes this module uses it).
#[allow(unused_imports)]
pub use worker_testkit::wait::eventually;

/// Connecting, inspecting and cleaning up the test broker (the testkit's).
#[allow(unused_imports)]
pub use worker_testkit::broker::*;

/// A worker for the test broker that records into `recorder` and stops
/// within `grace` of a shutdown.
pub fn recording_worker(recorder: &Recorder, grace: Duration) -> worker_core::Worker {
    worker_core::Worker::from_env()
        .state(recorder.clone())
        .config(worker_core::worker::WorkerConfig {
            grace_period: grace,
            ..worker_core::worker::WorkerConfig::default()
        })
}

/// What handlers saw: id -> attempts seen.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<HashMap<String, Vec<u32>>>>,
    done: Arc<Mutex<HashMap<String, u32>>>,
}

impl Recorder {
    pub fn saw(&self, id: &str, attempt: u32) {
        self.seen
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push(attempt);
    }
    pub fn finished(&self, id: &str) {
        *self.done.lock().unwrap().entry(id.to_owned()).or_default() += 1;
    }
    pub fn attempts(&self, id: &str) -> Vec<u32> {
        self.seen
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
    /// Distinct ids whose handler succeeded.
    pub fn done_count(&self) -> usize {
        self.done.lock().unwrap().len()
    }
    /// Successful runs beyond the first, summed over ids.
    pub fn duplicates(&self) -> u32 {
        self.done.lock().unwrap().values().map(|n| n - 1).sum()
    }
    pub fn done_ids(&self) -> Vec<String> {
        self.done.lock().unwrap().keys().cloned().collect()
    }
}

/// The scripted payload the demo's fixture task also plays.
pub type Script = worker_testkit::fixture::ScriptedJob;

/// The scripted behaviour: sleep, then panic / fail permanently / fail
/// while attempt <= fail / succeed, recording what happened.
pub async fn run_script(ctx: TaskContext, s: Script) -> Result<(), TaskError> {
    let recorder = ctx
        .state::<Recorder>()
        .ok_or_else(|| TaskError::permanent("no recorder"))?;
    recorder.saw(&s.id, ctx.attempt());
    s.act(ctx.attempt()).await?;
    recorder.finished(&s.id);
    Ok(())
}

/// Declares a hand-written scripted task type with its own queue and options.
#[macro_export]
macro_rules! scripted_task {
    ($ty:ident, $queue:literal, $options:expr) => {
        struct $ty;
        impl worker_core::Task for $ty {
            type Payload = support::Script;
            const NAME: &'static str = $queue;
            const QUEUE: &'static str = $queue;
            fn options(&self) -> worker_core::TaskOptions {
                $options
            }
            async fn run(
                &self,
                ctx: worker_core::TaskContext,
                payload: support::Script,
            ) -> Result<(), worker_core::TaskError> {
                support::run_script(ctx, payload).await
            }
        }
    };
}

/// Gets one message from `queue`, polling until one arrives or `limit` passes.
pub async fn get_one(
    ch: &Channel,
    queue: &str,
    limit: Duration,
) -> lapin::message::BasicGetMessage {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            return m;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("no message arrived in {queue} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(queue, reason)` of each x-death entry of a raw message.
pub fn x_death(props: &lapin::BasicProperties) -> Vec<(String, String)> {
    use lapin::types::AMQPValue;
    let text = |v: Option<&AMQPValue>| match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        _ => String::new(),
    };
    let Some(AMQPValue::FieldArray(entries)) = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death"))
    else {
        return Vec::new();
    };
    entries
        .as_slice()
        .iter()
        .filter_map(|e| match e {
            AMQPValue::FieldTable(t) => {
                Some((text(t.inner().get("queue")), text(t.inner().get("reason"))))
            }
            _ => None,
        })
        .collect()
}

//! Helpers for integration tests against a real RabbitMQ (AMQP_URL, default local guest).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use worker_core::connection::default_url;
use worker_core::{TaskContext, TaskError};

/// Awaits a condition with a deadline (the testkit's one helper; not
/// every test binary that includes this module uses it).
#[allow(unused_imports)]
pub use worker_testkit::wait::eventually;

/// Connects to the test broker or fails with a message that says what to do.
pub async fn connect() -> Connection {
    let url = default_url();
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(c)) => c,
        other => panic!(
            "integration tests need RabbitMQ at {} ({:?}); start it (apt-get install rabbitmq-server && rabbitmq-server -detached) or set AMQP_URL",
            worker_core::redact_url(&url),
            other.map(|r| r.map(|_| ()))
        ),
    }
}

/// The test broker's URL with another login.
pub fn url_as(user: &str, password: &str) -> String {
    let url = default_url();
    let host = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
    format!("amqp://{user}:{password}@{host}")
}

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

/// What the test broker does, by the version it announces.
pub async fn capabilities() -> worker_core::broker::Capabilities {
    let uri: lapin::uri::AMQPUri = default_url().parse().expect("AMQP_URL parses");
    let version = worker_core::broker::probe_version(
        &uri,
        &lapin::tcp::OwnedTLSConfig::default(),
        Duration::from_secs(10),
    )
    .await
    .expect("the test broker announces its version");
    worker_core::broker::Capabilities::of(version)
}

pub async fn channel() -> (Connection, Channel) {
    let conn = connect().await;
    let ch = conn.create_channel().await.expect("channel");
    (conn, ch)
}

/// Deletes the given queues (ignoring ones that do not exist).
pub async fn delete_queues(names: &[&str]) {
    let (conn, _) = channel().await;
    for name in names {
        let ch = conn.create_channel().await.unwrap();
        let _ = ch
            .queue_delete((*name).into(), QueueDeleteOptions::default())
            .await;
    }
}

/// Messages ready in a queue.
pub async fn depth(conn: &Connection, queue: &str) -> u32 {
    ready_and_consumers(conn, queue).await.0
}

/// Messages ready in a queue and its consumers, by a passive declare.
pub async fn ready_and_consumers(conn: &Connection, queue: &str) -> (u32, u32) {
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("queue {queue} should exist: {e}"));
    (q.message_count(), q.consumer_count())
}

/// Takes every message from a queue (acking them).
pub async fn drain(conn: &Connection, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        out.push(m);
    }
    out
}

/// Waits until the worker's readiness is `ready` (every consumer confirmed,
/// or, for `false`, a consumer lost), failing the test with `what` after 20 s.
pub async fn readiness_becomes(
    readiness: &mut tokio::sync::watch::Receiver<bool>,
    ready: bool,
    what: &str,
) {
    tokio::time::timeout(
        Duration::from_secs(20),
        readiness.wait_for(|now| *now == ready),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting: {what}"))
    .expect("the worker's readiness channel closed");
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

/// Every queue a spec declares, for cleanup.
pub fn queue_names(queue: &str, tiers: &[Duration]) -> Vec<String> {
    let mut names = vec![
        queue.to_owned(),
        format!("{queue}.parking"),
        format!("{queue}.quarantine"),
    ];
    for t in tiers {
        names.push(worker_core::topology::tier_queue(queue, *t));
    }
    names
}

pub async fn reset(queue: &str, tiers: &[Duration]) {
    let names = queue_names(queue, tiers);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_queues(&refs).await;
}

/// A header of a raw lapin message as a string, for assertions.
pub fn header_str(props: &lapin::BasicProperties, name: &str) -> Option<String> {
    let table = props.headers().as_ref()?;
    match table.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        lapin::types::AMQPValue::ShortString(s) => Some(s.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub fn header_u64(props: &lapin::BasicProperties, name: &str) -> Option<u64> {
    let table = props.headers().as_ref()?;
    match table.inner().get(name)? {
        lapin::types::AMQPValue::LongLongInt(i) => u64::try_from(*i).ok(),
        lapin::types::AMQPValue::LongInt(i) => u64::try_from(*i).ok(),
        lapin::types::AMQPValue::LongUInt(i) => Some(u64::from(*i)),
        lapin::types::AMQPValue::Timestamp(i) => Some(*i),
        lapin::types::AMQPValue::ShortInt(i) => u64::try_from(*i).ok(),
        lapin::types::AMQPValue::ShortShortInt(i) => u64::try_from(*i).ok(),
        lapin::types::AMQPValue::ShortShortUInt(i) => Some(u64::from(*i)),
        lapin::types::AMQPValue::ShortUInt(i) => Some(u64::from(*i)),
        _ => None,
    }
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

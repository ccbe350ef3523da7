//! Talking to the broker under test: vhosts, publishing, inspecting queues.

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use worker_core::{ConnectionConfig, Connector, EnqueueOptions, Publisher, Task};

use crate::tasks::record::{Record, RecordJob};

/// Runs `rabbitmqctl` (as root the Debian wrapper reaches the local node).
pub fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl ({e}); install rabbitmq-server"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A private vhost on the local broker, deleted on drop, so scenarios can
/// use the fixed `demo.record` queue side by side.
#[derive(Debug)]
pub struct Vhost {
    name: String,
    base: String,
}

impl Vhost {
    /// Creates `faults-<random>` with full permissions for guest.
    pub fn create(base_url: &str) -> Result<Vhost, String> {
        let name = format!("faults-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])?;
        Ok(Vhost {
            name,
            base: base_url.trim_end_matches(|c| c != '/').trim_end_matches('/').to_owned(),
        })
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AMQP URL of the vhost.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// Opens a lapin connection or explains what is wrong.
pub(crate) async fn connect(url: &str) -> Result<Connection, String> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", worker_core::redact_url(url)))
}

/// Publishes fixture jobs with their id as message id, confirmed, in batches.
pub(crate) async fn publish_jobs(url: &str, jobs: &[RecordJob]) -> Result<Vec<String>, String> {
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url)));
    let mut ids = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(500) {
        let mut messages = Vec::with_capacity(chunk.len());
        for job in chunk {
            let (id, message) = publisher
                .task_message(
                    Record::NAME,
                    Record::QUEUE,
                    job,
                    EnqueueOptions {
                        message_id: Some(job.id.clone()),
                        ..EnqueueOptions::default()
                    },
                )
                .map_err(|e| e.to_string())?;
            ids.push(id);
            messages.push(message);
        }
        publisher
            .publish_batch(messages)
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some(c) = publisher.connector() {
        c.close().await;
    }
    Ok(ids)
}

/// Publishes raw bodies (undecodable on purpose) with the given ids.
pub(crate) async fn publish_raw(url: &str, items: &[(String, Vec<u8>)]) -> Result<(), String> {
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url)));
    let mut messages = Vec::new();
    for (id, body) in items {
        let (_, mut message) = publisher
            .task_message(
                Record::NAME,
                Record::QUEUE,
                &(),
                EnqueueOptions {
                    message_id: Some(id.clone()),
                    ..EnqueueOptions::default()
                },
            )
            .map_err(|e| e.to_string())?;
        message.body = body.clone().into();
        messages.push(message);
    }
    publisher.publish_batch(messages).await.map_err(|e| e.to_string())
}

/// Ready messages in a queue (0 when it does not exist).
pub(crate) async fn depth(conn: &Connection, queue: &str) -> usize {
    let Ok(ch) = conn.create_channel().await else {
        return 0;
    };
    let declared = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = ch.close(200, "bye".into()).await;
    declared.map_or(0, |q| q.message_count() as usize)
}

/// A message found in the parking queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// Its message id.
    pub id: String,
    /// `rw-park-reason`, or `broker:<x-death reason>` when the broker parked it.
    pub reason: String,
    /// `rw-attempts`, when the worker parked it.
    pub attempts: Option<u64>,
}

/// Takes every parked message, with its reason: from `rw-park-reason`, or
/// from the newest `x-death` entry when the broker parked it by dead-lettering.
pub(crate) async fn drain_parked(conn: &Connection, parking: &str) -> Vec<ParkedMessage> {
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    while let Ok(Some(m)) = ch.basic_get(parking.into(), BasicGetOptions::default()).await {
        let props = &m.delivery.properties;
        let id = props
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let headers = props.headers().clone().unwrap_or_default();
        let text = |v: Option<&AMQPValue>| match v {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            Some(AMQPValue::ShortString(s)) => Some(s.to_string()),
            _ => None,
        };
        let reason = text(headers.inner().get("rw-park-reason"))
            .or_else(|| match headers.inner().get("x-death") {
                Some(AMQPValue::FieldArray(a)) => a.as_slice().first().and_then(|e| match e {
                    AMQPValue::FieldTable(t) => text(t.inner().get("reason")).map(|r| format!("broker:{r}")),
                    _ => None,
                }),
                _ => None,
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let attempts = match headers.inner().get("rw-attempts") {
            Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let _ = m.delivery.acker.ack(BasicAckOptions::default()).await;
        out.push(ParkedMessage {
            id,
            reason,
            attempts,
        });
    }
    out
}

/// Awaits `cond`, polling every 100 ms, for at most `limit`; says whether it held.
pub(crate) async fn wait_for<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Helpers for integration tests against a real RabbitMQ: the broker at
//! `AMQP_URL` (default: local guest), as the test runner sets it per broker
//! version. Failing to reach it fails the test with what to do.

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use worker_core::connection::default_url;

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

/// A connection to the test broker and a channel on it.
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

/// Deletes every queue a task on `queue` with delay `tiers` declares.
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

/// A header of a raw lapin message as an unsigned integer (any width).
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

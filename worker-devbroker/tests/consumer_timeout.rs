//! The consumer timeout as each modelled version applies it, checked
//! against the same `Capabilities` facts that
//! `worker-core/tests/broker_consumer_timeout.rs` pins on real nodes:
//! before 4.3 the channel is closed and the delivery comes back counted;
//! from 4.3 a quorum consumer is cancelled, the channel stays open, the
//! delivery comes back with `x-acquired-count` only, and classic queues
//! have no timeout.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use worker_core::broker::{Capabilities, Version};
use worker_devbroker::MemoryBroker;

const TIMEOUT: Duration = Duration::from_secs(2);

/// What the timeout did to a consumer holding one delivery of a `kind`
/// queue, and the delivery's count headers when next taken.
struct Seen {
    channel_open: bool,
    cancelled: bool,
    timed_out: usize,
    delivery_count: Option<i64>,
    acquired_count: Option<i64>,
    /// The holder's channel after the timeout, to ack the stale tag on.
    holder: Channel,
}

fn count(props: &BasicProperties, name: &str) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        other => panic!("{name}: {other:?}"),
    }
}

async fn hold_one(broker: &MemoryBroker, conn: &Connection, kind: &str) -> Seen {
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("held.{kind}");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(queue.as_str().into(), durable, args)
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"held",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(matches!(consumer.next().await, Some(Ok(_))));

    // Held for less than the timeout: nothing happens.
    broker.clock().advance(TIMEOUT - Duration::from_millis(1));
    assert_eq!(broker.time_out_consumers(TIMEOUT), 0);
    broker.clock().advance(Duration::from_millis(1));
    let timed_out = broker.time_out_consumers(TIMEOUT);
    let event = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    let cancelled = matches!(event, Ok(None));
    let reader = conn.create_channel().await.unwrap();
    let back = reader
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap();
    let props = back.map(|m| m.delivery.properties.clone());
    Seen {
        channel_open: ch.status().connected(),
        cancelled,
        timed_out,
        delivery_count: props.as_ref().and_then(|p| count(p, "x-delivery-count")),
        acquired_count: props.as_ref().and_then(|p| count(p, "x-acquired-count")),
        holder: ch,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_times_consumers_out_as_capabilities_say() {
    for version in [
        Version::new(3, 10, 8),
        Version::new(4, 0, 5),
        Version::new(4, 3, 6),
    ] {
        let caps = Capabilities::of(version);
        let broker = MemoryBroker::start_as(version).await;
        let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
            .await
            .unwrap();

        let quorum = hold_one(&broker, &conn, "quorum").await;
        assert_eq!(quorum.timed_out, 1, "{version}");
        if caps.consumer_timeout_closes_channel() {
            assert!(!quorum.channel_open, "{version}: the channel is closed");
            assert_eq!(quorum.delivery_count, Some(1), "{version}");
        } else {
            assert!(quorum.channel_open, "{version}: the channel stays open");
            assert!(quorum.cancelled, "{version}: basic.cancel");
            assert_eq!(quorum.delivery_count, None, "{version}: uncounted");
            assert_eq!(quorum.acquired_count, Some(1), "{version}");
            // The stale tag is accepted, as RabbitMQ accepts it.
            quorum
                .holder
                .basic_ack(1, BasicAckOptions::default())
                .await
                .unwrap();
            // A round trip after the ack: had the ack closed the channel,
            // this would fail.
            quorum
                .holder
                .basic_qos(1, BasicQosOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{version}: the channel closed on the stale ack: {e}"));
            assert!(quorum.holder.status().connected(), "{version}");
        }

        let classic = hold_one(&broker, &conn, "classic").await;
        if caps.consumer_timeout_on_classic_queues() {
            assert_eq!(classic.timed_out, 1, "{version}");
            assert!(!classic.channel_open, "{version}");
        } else {
            assert_eq!(classic.timed_out, 0, "{version}: no timeout on classic");
            assert!(classic.channel_open && !classic.cancelled, "{version}");
        }
    }
}

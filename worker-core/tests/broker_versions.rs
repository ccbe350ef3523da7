//! The broker facts the framework acts on, pinned against the real broker.
//!
//! Each test reads what [`Capabilities`] says for the version the broker at
//! `AMQP_URL` announces, then makes the broker show it. The test runner
//! (`scripts/test-on-each-broker`) runs this file once on RabbitMQ 3.10
//! and once on 4.0, so every row of the capability table that differs
//! between them is seen on both.

mod support;

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use worker_core::broker::DeliveryLimit;

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes()))
}

async fn quorum(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) {
    support::delete_queues(&[name]).await;
    let mut args = vec![("x-queue-type", text("quorum"))];
    args.extend_from_slice(extra);
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        table(&args),
    )
    .await
    .unwrap();
}

/// Takes the message in `source`, rejects it without requeue, and returns
/// the copy the dead-letter route brought to `target`.
async fn reject_into(ch: &Channel, source: &str, target: &str) -> lapin::message::BasicGetMessage {
    let m = poll_get(ch, source).await.expect("published");
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    )
    .await
    .unwrap();
    support::get_one(ch, target, Duration::from_secs(5)).await
}

/// `target`, and `source` dead-lettering into it, with `extra` arguments.
async fn dead_letter_pair(ch: &Channel, source: &str, target: &str, extra: &[(&str, AMQPValue)]) {
    quorum(ch, target, &[]).await;
    let mut args = vec![
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(target)),
    ];
    args.extend_from_slice(extra);
    quorum(ch, source, &args).await;
}

async fn publish(ch: &Channel, queue: &str, headers: FieldTable) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        b"fact",
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Gets the message and returns it `rounds` times (nack or reject); the
/// number of deliveries seen, and the `x-delivery-count` of each.
async fn deliveries(ch: &Channel, queue: &str, rounds: u32, reject: bool) -> Vec<Option<i64>> {
    let mut counts = Vec::new();
    for _ in 0..rounds {
        let got = poll_get(ch, queue).await;
        let Some(m) = got else { break };
        counts.push(delivery_count(&m.delivery.properties));
        let tag = m.delivery.delivery_tag;
        if reject {
            ch.basic_reject(tag, BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        } else {
            ch.basic_nack(
                tag,
                BasicNackOptions {
                    requeue: true,
                    multiple: false,
                },
            )
            .await
            .unwrap();
        }
    }
    counts
}

/// A `basic.get`, retried for a moment: a quorum queue applies a requeue
/// through its log, so the message is briefly neither unacked nor ready.
async fn poll_get(ch: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let got = ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap();
        if got.is_some() || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn delivery_count(props: &BasicProperties) -> Option<i64> {
    match props.headers().as_ref()?.inner().get("x-delivery-count")? {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        other => panic!("x-delivery-count of an unexpected type: {other:?}"),
    }
}

#[tokio::test]
async fn the_runner_chose_the_broker_that_answers() {
    let caps = support::capabilities().await;
    let version = caps.version().expect("a version").to_string();
    if let Ok(label) = std::env::var("RABBIT_WORKER_TEST_BROKER") {
        assert!(
            version.starts_with(&format!("{label}.")),
            "the runner said RabbitMQ {label}, the broker says {version}"
        );
    }
}

#[tokio::test]
async fn the_default_delivery_limit_is_what_capabilities_say() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    let q = "facts.default-limit";
    quorum(&ch, q, &[]).await;
    publish(&ch, q, FieldTable::default()).await;
    let seen = deliveries(&ch, q, 25, false).await;
    match caps.default_delivery_limit() {
        DeliveryLimit::Unlimited => assert_eq!(seen.len(), 25, "{caps}: {seen:?}"),
        DeliveryLimit::Returns(n) => {
            assert_eq!(seen.len() as u32, caps.deliveries_allowed(n), "{caps}");
        }
    }
    support::delete_queues(&[q]).await;
}

#[tokio::test]
async fn the_unlimited_argument_keeps_a_message_through_every_return() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    let q = "facts.unlimited";
    let extra: Vec<(&str, AMQPValue)> = caps
        .unlimited_delivery_limit_argument()
        .map(|v| ("x-delivery-limit", AMQPValue::LongLongInt(v)))
        .into_iter()
        .collect();
    quorum(&ch, q, &extra).await;
    publish(&ch, q, FieldTable::default()).await;
    for reject in [false, true] {
        let seen = deliveries(&ch, q, 15, reject).await;
        assert_eq!(seen.len(), 15, "{caps}, reject={reject}: {seen:?}");
    }
    support::delete_queues(&[q]).await;
}

#[tokio::test]
async fn nack_and_reject_both_count_and_a_limit_allows_one_more_delivery() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    for reject in [false, true] {
        let q = "facts.limit-2";
        quorum(&ch, q, &[("x-delivery-limit", AMQPValue::LongLongInt(2))]).await;
        publish(&ch, q, FieldTable::default()).await;
        let seen = deliveries(&ch, q, 10, reject).await;
        let counts = caps.nack_requeue_counts() || reject;
        assert!(counts, "only 4.3+ stops counting nacks; this is {caps}");
        assert_eq!(
            seen.len() as u32,
            caps.deliveries_allowed(2),
            "{caps}, reject={reject}"
        );
        // The first basic.get shows a count of 0 on 3.10 and none on 4.0;
        // every return raises it by one.
        let first = if caps.delivery_count_on_first_get() {
            Some(0)
        } else {
            None
        };
        assert_eq!(seen, vec![first, Some(1), Some(2)], "{caps}");
        support::delete_queues(&[q]).await;
    }
}

#[tokio::test]
async fn a_client_set_x_death_is_merged_only_where_capabilities_say() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    let (source, target) = ("facts.xdeath.source", "facts.xdeath.target");
    dead_letter_pair(&ch, source, target, &[]).await;
    let forged = table(&[
        ("queue", text("somewhere-else")),
        ("reason", text("rejected")),
        ("count", AMQPValue::LongLongInt(7)),
        ("exchange", text("")),
        (
            "routing-keys",
            AMQPValue::FieldArray(FieldArray::from(vec![text("somewhere-else")])),
        ),
    ]);
    let headers = table(&[(
        "x-death",
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(forged)])),
    )]);
    publish(&ch, source, headers).await;
    let dead = reject_into(&ch, source, target).await;
    let queues: Vec<String> = support::x_death(&dead.delivery.properties)
        .into_iter()
        .map(|(queue, _)| queue)
        .collect();
    assert_eq!(
        queues[0], source,
        "{caps}: the broker's own entry comes first"
    );
    assert_eq!(
        queues.contains(&"somewhere-else".to_owned()),
        caps.interprets_client_x_death(),
        "{caps}: {queues:?}"
    );
    support::delete_queues(&[source, target]).await;
}

#[tokio::test]
async fn at_least_once_dead_lettering_delivers_a_rejected_message() {
    let caps = support::capabilities().await;
    assert!(caps.at_least_once_dead_lettering());
    let (_conn, ch) = support::channel().await;
    let (source, target) = ("facts.alo.source", "facts.alo.target");
    let at_least_once = [
        ("x-dead-letter-strategy", text("at-least-once")),
        ("x-overflow", text("reject-publish")),
    ];
    dead_letter_pair(&ch, source, target, &at_least_once).await;
    publish(&ch, source, FieldTable::default()).await;
    let dead = reject_into(&ch, source, target).await;
    assert_eq!(&dead.delivery.data[..], b"fact");
    support::delete_queues(&[source, target]).await;
}

#[tokio::test]
async fn quorum_priorities_and_their_threshold_are_what_capabilities_say() {
    use worker_core::broker::QUORUM_HIGH_PRIORITY;
    let caps = support::capabilities().await;
    let conn = support::connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = "facts.quorum-priorities";
    quorum(&ch, q, &[]).await;
    let below = QUORUM_HIGH_PRIORITY - 1;
    for priority in [0, below, QUORUM_HIGH_PRIORITY] {
        ch.basic_publish(
            "".into(),
            q.into(),
            BasicPublishOptions::default(),
            priority.to_string().as_bytes(),
            BasicProperties::default().with_priority(priority),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let mut order = Vec::new();
    while let Some(m) = poll_get(&ch, q).await {
        order.push(m.delivery.properties.priority().unwrap());
        m.delivery
            .acker
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
    }
    let expected = if caps.quorum_priorities() {
        // High first; just below the threshold is normal: first in, first out.
        [QUORUM_HIGH_PRIORITY, 0, below]
    } else {
        [0, below, QUORUM_HIGH_PRIORITY]
    };
    assert_eq!(order, expected, "{caps}");
    support::delete_queues(&[q]).await;

    // x-max-priority is refused by quorum queues on every version.
    let refused = ch
        .queue_declare(
            "facts.quorum-max-priority".into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            table(&[
                ("x-queue-type", text("quorum")),
                ("x-max-priority", AMQPValue::LongLongInt(5)),
            ]),
        )
        .await
        .expect_err("x-max-priority on a quorum queue");
    assert!(refused.to_string().contains("x-max-priority"), "{refused}");
}

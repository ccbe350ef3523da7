//! The broker facts the framework acts on, pinned against the real broker.
//!
//! Each test reads what [`Capabilities`] says for the version the broker at
//! `AMQP_URL` announces, then makes the broker show it. The test runner
//! (`scripts/test-on-each-broker`) runs this file once on each of RabbitMQ
//! 3.10, 4.0 and 4.3, so every row of the capability table that differs
//! between them is seen on each.

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

/// How a delivery goes back to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Give {
    Nack,
    Reject,
    /// The channel's connection closes while it holds the delivery, as
    /// when a worker crashes.
    ConnectionLoss,
}

/// The headers of each delivery, until the message stops coming or
/// `rounds` deliveries were seen.
async fn deliveries_by(ch: &Channel, queue: &str, rounds: u32, give: Give) -> Vec<Counts> {
    if give != Give::ConnectionLoss {
        return deliveries_counted(ch, queue, rounds, give == Give::Reject).await;
    }
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let conn = support::connect().await;
        let crashing = conn.create_channel().await.unwrap();
        let Some(m) = poll_get(&crashing, queue).await else {
            break;
        };
        seen.push(Counts::of(&m.delivery.properties));
        conn.close(200, "a crash".into()).await.unwrap();
    }
    seen
}

/// `x-delivery-count` and `x-acquired-count` of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    delivery: Option<i64>,
    acquired: Option<i64>,
}

impl Counts {
    fn of(props: &BasicProperties) -> Counts {
        Counts {
            delivery: count_header(props, "x-delivery-count"),
            acquired: count_header(props, "x-acquired-count"),
        }
    }
}

/// Gets the message and returns it `rounds` times (nack or reject); the
/// number of deliveries seen, and the `x-delivery-count` of each.
async fn deliveries(ch: &Channel, queue: &str, rounds: u32, reject: bool) -> Vec<Option<i64>> {
    deliveries_counted(ch, queue, rounds, reject)
        .await
        .into_iter()
        .map(|c| c.delivery)
        .collect()
}

async fn deliveries_counted(ch: &Channel, queue: &str, rounds: u32, reject: bool) -> Vec<Counts> {
    let mut counts = Vec::new();
    for _ in 0..rounds {
        let got = poll_get(ch, queue).await;
        let Some(m) = got else { break };
        counts.push(Counts::of(&m.delivery.properties));
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

fn count_header(props: &BasicProperties, name: &str) -> Option<i64> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        other => panic!("{name} of an unexpected type: {other:?}"),
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

/// A quorum queue declared without `x-delivery-limit`: the returns that
/// count (reject on every version, nack before 4.3) reach the default
/// limit; returns that do not count never do.
#[tokio::test]
async fn the_default_delivery_limit_is_what_capabilities_say() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    let q = "facts.default-limit";
    for reject in [false, true] {
        quorum(&ch, q, &[]).await;
        publish(&ch, q, FieldTable::default()).await;
        let seen = deliveries(&ch, q, 25, reject).await;
        let counts = reject || caps.nack_requeue_counts();
        match caps.default_delivery_limit() {
            DeliveryLimit::Returns(n) if counts => {
                assert_eq!(
                    seen.len() as u32,
                    caps.deliveries_allowed(n),
                    "{caps}, reject={reject}"
                );
            }
            _ => assert_eq!(seen.len(), 25, "{caps}, reject={reject}: {seen:?}"),
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

/// With `x-delivery-limit = 2`, each way a delivery goes back to a quorum
/// queue: whether it raises `x-delivery-count` (and so meets the limit
/// after `limit + 1` deliveries) and `x-acquired-count`, as capabilities say.
#[tokio::test]
async fn returns_count_toward_the_limit_as_capabilities_say() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    for give in [Give::Nack, Give::Reject, Give::ConnectionLoss] {
        let q = "facts.limit-2";
        quorum(&ch, q, &[("x-delivery-limit", AMQPValue::LongLongInt(2))]).await;
        publish(&ch, q, FieldTable::default()).await;
        let seen = deliveries_by(&ch, q, 8, give).await;
        let counts = match give {
            Give::Nack => caps.nack_requeue_counts(),
            Give::Reject => caps.reject_requeue_counts(),
            Give::ConnectionLoss => caps.connection_loss_counts(),
        };
        let rounds = if counts {
            caps.deliveries_allowed(2)
        } else {
            8
        };
        assert_eq!(seen.len() as u32, rounds, "{caps}, {give:?}: {seen:?}");
        // The first basic.get shows a count of 0 on 3.10 and none on 4.x;
        // every counted return raises it by one. Where the broker has
        // x-acquired-count, every return raises that.
        let first = caps.delivery_count_on_first_get().then_some(0);
        let expected: Vec<Counts> = (0..i64::from(rounds))
            .map(|n| Counts {
                delivery: match n {
                    0 => first,
                    _ if counts => Some(n),
                    _ => None,
                },
                acquired: (caps.acquired_count_header() && n > 0).then_some(n),
            })
            .collect();
        assert_eq!(seen, expected, "{caps}, {give:?}");
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
    let caps = support::capabilities().await;
    let conn = support::connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = "facts.quorum-priorities";
    quorum(&ch, q, &[]).await;
    // Each priority once, then 31 and 0 again: the levels they land in
    // (see Capabilities::quorum_priority_level) and the order within one.
    let published: [u8; 9] = [0, 4, 5, 6, 30, 31, 255, 31, 0];
    for priority in published {
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
    // Within a level, first in, first out on every version.
    for level in 0..caps.quorum_priority_levels() {
        let at = |ps: &[u8]| -> Vec<u8> {
            ps.iter()
                .copied()
                .filter(|p| caps.quorum_priority_level(*p) == level)
                .collect()
        };
        assert_eq!(at(&order), at(&published), "{caps}: level {level}");
    }
    match caps.quorum_priority_levels() {
        1 => assert_eq!(order, published, "{caps}: first in, first out"),
        // High before the backlog, not strictly.
        2 => assert_eq!(order[..3], [5, 6, 0], "{caps}: two high, then one normal"),
        levels => {
            assert_eq!(levels, 32, "{caps}");
            assert_eq!(
                order,
                [31, 255, 31, 30, 6, 5, 4, 0, 0],
                "{caps}: strict, 255 as 31"
            );
        }
    }
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

/// `basic.qos(global = true)` with a prefetch of 1 and two consumers on the
/// channel: honoured, the channel holds one unacked delivery; applied per
/// consumer (4.3), each consumer gets one.
#[tokio::test]
async fn global_qos_is_honoured_where_capabilities_say() {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    let queues = ["facts.global-qos.a", "facts.global-qos.b"];
    support::delete_queues(&queues).await;
    for q in queues {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        publish(&ch, q, FieldTable::default()).await;
    }
    let consuming = support::connect().await;
    let ch = consuming.create_channel().await.unwrap();
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .expect("accepted on every version");
    let mut consumers = Vec::new();
    for q in queues {
        consumers.push(
            ch.basic_consume(
                q.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap(),
        );
    }
    let merged = futures_util::stream::select_all(consumers);
    // Held: nothing is acked, so a second delivery comes only where the
    // limit is per consumer. Waiting a moment for one that must not come
    // is the only way to see that it does not.
    let window = Duration::from_secs(2);
    let got: Vec<_> = merged
        .take(2)
        .take_until(tokio::time::sleep(window))
        .collect::<Vec<_>>()
        .await;
    let expected = if caps.global_qos() { 1 } else { 2 };
    assert_eq!(got.len(), expected, "{caps}");
    drop(ch);
    consuming.close(200, "done".into()).await.unwrap();
    support::delete_queues(&queues).await;
}

/// A transient (non-durable) queue that is not exclusive is declared where
/// capabilities say, and refused elsewhere.
#[tokio::test]
async fn transient_shared_queues_are_accepted_where_capabilities_say() {
    let caps = support::capabilities().await;
    let (_conn, ch) = support::channel().await;
    let q = "facts.transient-shared";
    support::delete_queues(&[q]).await;
    let declared = ch
        .queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        declared.is_ok(),
        caps.transient_shared_queues(),
        "{caps}: {declared:?}"
    );
    support::delete_queues(&[q]).await;
}

/// A `mandatory` publish to a live caller's direct reply-to address is
/// delivered; whether it also comes back as `NO_ROUTE`, and whether one to a
/// caller that is gone does, is what capabilities say.
#[tokio::test]
async fn mandatory_direct_replies_come_back_where_capabilities_say() {
    use futures_util::StreamExt;
    use lapin::options::BasicConsumeOptions;
    let caps = support::capabilities().await;
    let expected = caps.mandatory_direct_reply_returned().then_some(312); // NO_ROUTE
    let probe = "facts.direct-reply.probe";
    for gone in [false, true] {
        let (conn, caller) = support::channel().await;
        let mut replies = caller
            .basic_consume(
                "amq.rabbitmq.reply-to".into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        // The caller's address, learnt the way a server learns it.
        support::delete_queues(&[probe]).await;
        caller
            .queue_declare(
                probe.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        caller
            .basic_publish(
                "".into(),
                probe.into(),
                BasicPublishOptions::default(),
                b"?",
                BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
            )
            .await
            .unwrap();
        let request = support::get_one(&caller, probe, Duration::from_secs(5)).await;
        let address = request.properties.reply_to().clone().unwrap();
        let server_conn = support::connect().await;
        if gone {
            caller.close(200, "gone".into()).await.unwrap();
        }
        let server = server_conn.create_channel().await.unwrap();
        server
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let confirmation = server
            .basic_publish(
                "".into(),
                address.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                b"hello",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirmation.is_ack(), "{caps}, gone={gone}");
        let returned = confirmation.take_message().map(|m| m.reply_code);
        assert_eq!(returned, expected, "{caps}, gone={gone}");
        if !gone {
            let delivered = tokio::time::timeout(Duration::from_secs(5), replies.next())
                .await
                .expect("delivered to the waiting caller")
                .unwrap()
                .unwrap();
            assert_eq!(&delivered.data[..], b"hello");
        }
        support::delete_queues(&[probe]).await;
        server_conn.close(200, "done".into()).await.unwrap();
        let _ = conn.close(200, "done".into()).await;
    }
}

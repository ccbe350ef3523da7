//! A broker fact seen through the operator tools: a parking queue left by
//! an older version of the framework, read by `topology check`, `status`
//! and `parked list` on each broker version (moved here from
//! worker-core's `broker_versions.rs` with the `ops` functions it reads
//! through).

mod support;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;
use worker_core::broker::DeliveryLimit;

async fn quorum(ch: &Channel, name: &str) {
    support::delete_queues(&[name]).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(&b"quorum"[..])),
    );
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();
}

/// A parking queue declared by an older version of the framework (no
/// `x-delivery-limit`) keeps working: the worker declares its topology
/// with a warning, `topology check` says what to do on 4.x, and listings
/// beyond 4.0's default limit lose nothing (messages are refreshed).
#[tokio::test]
async fn a_parking_queue_from_an_older_version_loses_nothing() {
    use std::sync::Arc;
    use worker_core::topology::TaskSpec;
    use worker_core::{Connector, TaskOptions};
    use worker_operator::ops::topology::Verdict;

    let caps = support::capabilities().await;
    let spec = Arc::new(TaskSpec::new(
        "facts.legacy",
        "facts.legacy",
        TaskOptions::default(),
    ));
    support::reset(&spec.queue, &spec.options.retry.tiers).await;
    let (conn, ch) = support::channel().await;
    quorum(&ch, &spec.parking).await;

    let connector = Connector::new(worker_core::ConnectionConfig::from_env());
    let live = connector.connection().await.unwrap();
    worker_core::topology::declare_all(&live, std::slice::from_ref(&spec), caps)
        .await
        .expect("an older parking queue is accepted");
    let report = worker_operator::ops::topology::check(&connector, std::slice::from_ref(&spec))
        .await
        .unwrap();
    let parking = report
        .items
        .iter()
        .find(|c| c.name == spec.parking)
        .unwrap();
    match caps.default_delivery_limit() {
        DeliveryLimit::Unlimited => assert_eq!(parking.verdict, Verdict::Matches, "{caps}"),
        DeliveryLimit::Returns(_) => {
            let Verdict::Differs(message) = &parking.verdict else {
                panic!("{caps}: {parking}");
            };
            assert!(message.contains("older version"), "{message}");
            assert!(message.contains("delivery-limit -1"), "{message}");
        }
    }

    // `status` shows the limit the broker applies: its default here.
    let status = worker_operator::ops::status::status(&connector, std::slice::from_ref(&spec))
        .await
        .unwrap();
    assert_eq!(
        status.tasks[0].parking.delivery_limit,
        Some(caps.default_delivery_limit()),
        "{caps}"
    );

    for i in 0..3 {
        let props = worker_core::Properties::default()
            .with_message_id(&format!("legacy-{i}"))
            .unwrap();
        worker_core::Publisher::new(connector.clone())
            .publish(worker_core::message::Outgoing::to_queue(
                &spec.parking,
                props,
                b"parked".to_vec(),
            ))
            .await
            .unwrap();
    }
    for round in 0..25 {
        let listing = worker_operator::ops::parked::list(
            &connector,
            &spec.parking,
            &worker_operator::ops::parked::Filter::default(),
            worker_operator::ops::parked::Page::first(100),
        )
        .await
        .unwrap();
        let mut ids: Vec<String> = listing
            .messages
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            ["legacy-0", "legacy-1", "legacy-2"],
            "{caps}, listing {round}"
        );
    }
    assert_eq!(support::depth(&conn, &spec.parking).await, 3);
    support::reset(&spec.queue, &spec.options.retry.tiers).await;
}

//! `x-single-active-consumer`, as the periodic scheduler's election uses
//! it: only the first consumer is served (and counted), and the next one
//! takes over when it leaves.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use worker_devbroker::MemoryBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_consumer_is_served_until_it_leaves() {
    let broker = MemoryBroker::start().await;
    let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare("elect".into(), QueueDeclareOptions::default(), args.clone())
        .await
        .unwrap();
    let first_ch = conn.create_channel().await.unwrap();
    let second_ch = conn.create_channel().await.unwrap();
    let consume = || BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut first = first_ch
        .basic_consume(
            "elect".into(),
            "first".into(),
            consume(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut second = second_ch
        .basic_consume(
            "elect".into(),
            "second".into(),
            consume(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let declared = ch
        .queue_declare(
            "elect".into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .unwrap();
    assert_eq!(
        declared.consumer_count(),
        1,
        "only the active consumer counts"
    );

    let publish = |body: &'static [u8]| {
        let ch = ch.clone();
        async move {
            ch.basic_publish(
                "".into(),
                "elect".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    for body in [b"a" as &[u8], b"b", b"c"] {
        publish(body).await;
    }
    for expected in [b"a" as &[u8], b"b", b"c"] {
        let got = tokio::time::timeout(Duration::from_secs(5), first.next())
            .await
            .expect("the first consumer is served")
            .unwrap()
            .unwrap();
        assert_eq!(got.data, expected);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), second.next())
            .await
            .is_err(),
        "the second consumer waits"
    );

    first_ch
        .basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish(b"d").await;
    let got = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .expect("the second consumer takes over")
        .unwrap()
        .unwrap();
    assert_eq!(got.data, b"d");
}

//! Request/reply on the in-memory broker: the unchanged worker and
//! `RpcClient` over its model of RabbitMQ's direct reply-to.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use worker_core::rpc::DIRECT_REPLY_TO;
use worker_core::worker::RunningWorker;
use worker_core::{task, CallError, ConnectionConfig, Connector, RpcClient, TaskError, Worker};
use worker_testkit::memory::MemoryBroker;
use worker_testkit::wait::eventually;

#[task(queue = "mem.rpc.double", in_process = 1, max_attempts = 1)]
async fn double(n: i64) -> Result<i64, TaskError> {
    if n < 0 {
        return Err(TaskError::permanent("negative"));
    }
    Ok(2 * n)
}

async fn serve(broker: &MemoryBroker) -> RunningWorker {
    let running = Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Double)
        .start()
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        running.readiness().wait_for(|r| *r),
    )
    .await
    .expect("consuming")
    .unwrap();
    running
}

#[tokio::test]
async fn calls_get_replies_and_failures_from_the_memory_broker() {
    let broker = MemoryBroker::start().await;
    let running = serve(&broker).await;
    let client = RpcClient::new(Connector::new(ConnectionConfig::new(broker.url())));
    let calls = (0..20).map(|n| {
        let client = &client;
        async move {
            let got = Double::call(client, &n)
                .timeout(Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(got, 2 * n);
        }
    });
    futures_util::future::join_all(calls).await;
    let err = Double::call(&client, &-1)
        .timeout(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Failed { message, .. } if message == "negative"),
        "{err:?}"
    );
    running.shutdown().await.unwrap();
    assert_eq!(
        broker.queue_depth("mem.rpc.double"),
        0,
        "every request acked"
    );
    assert_eq!(broker.queue_depth("mem.rpc.double.parking"), 1);
}

#[tokio::test]
async fn a_mandatory_reply_is_returned_even_when_delivered_as_on_rabbitmq() {
    let broker = MemoryBroker::start().await;
    let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let caller = conn.create_channel().await.unwrap();
    let mut replies = caller
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    caller
        .queue_declare(
            "mem.rpc.probe".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    caller
        .basic_publish(
            "".into(),
            "mem.rpc.probe".into(),
            BasicPublishOptions::default(),
            b"?",
            BasicProperties::default().with_reply_to(DIRECT_REPLY_TO.into()),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the request arrives", || {
        std::future::ready(broker.queue_depth("mem.rpc.probe") > 0)
    })
    .await;
    let request = &broker.messages("mem.rpc.probe")[0];
    let address = request.properties.reply_to().clone().unwrap();
    assert!(
        address.as_str().starts_with("amq.rabbitmq.reply-to."),
        "{address}"
    );

    let server = conn.create_channel().await.unwrap();
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
    assert!(confirmation.take_message().is_some(), "returned");
    let delivered = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .expect("and delivered")
        .unwrap()
        .unwrap();
    assert_eq!(&delivered.data[..], b"hello");
}

#[tokio::test]
async fn a_request_naming_direct_reply_to_needs_the_reply_consumer() {
    let broker = MemoryBroker::start().await;
    let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "mem.rpc.q".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let published = async {
        ch.basic_publish(
            "".into(),
            "mem.rpc.q".into(),
            BasicPublishOptions::default(),
            b"?",
            BasicProperties::default().with_reply_to(DIRECT_REPLY_TO.into()),
        )
        .await?
        .await
    }
    .await;
    assert!(published.is_err(), "the channel is closed: {published:?}");
    assert_eq!(broker.queue_depth("mem.rpc.q"), 0);
}

#[tokio::test]
async fn a_call_in_flight_when_the_broker_drops_its_clients_fails_and_the_next_call_reconnects() {
    let broker = MemoryBroker::start().await;
    // Declared by a worker that then stops: nobody answers the first call.
    serve(&broker).await.shutdown().await.unwrap();
    let client = RpcClient::new(Connector::new(ConnectionConfig::new(broker.url())));
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            Double::call(&client, &1)
                .timeout(Duration::from_secs(30))
                .await
        }
    });
    eventually(Duration::from_secs(5), "the request arrives", || {
        std::future::ready(broker.queue_depth("mem.rpc.double") > 0)
    })
    .await;
    assert!(broker.close_all_connections() > 0);
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends with the connection")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, CallError::ConnectionLost), "{err:?}");

    // The waiting request is answered by a worker; a new call opens a new
    // connection and channel.
    let running = serve(&broker).await;
    let got = Double::call(&client, &21)
        .timeout(Duration::from_secs(10))
        .await
        .expect("the client reconnects");
    assert_eq!(got, 42);
    running.shutdown().await.unwrap();
}

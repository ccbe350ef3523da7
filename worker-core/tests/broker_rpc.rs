//! Request/reply against a real RabbitMQ: calls over direct reply-to, the
//! worker's replies, and the broker's direct reply-to behaviour we rely on.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use worker_core::rpc::DIRECT_REPLY_TO;
use worker_core::worker::RunningWorker;
use worker_core::{
    task, CallError, ConnectionConfig, Connector, RpcClient, Task, TaskError, Worker,
};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct QuoteRequest {
    sku: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Quote {
    sku: String,
    cents: u64,
}

static PRICE_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(queue = "it.rpc.price", in_process = 1, max_attempts = 1)]
async fn price(req: QuoteRequest) -> Result<Quote, TaskError> {
    PRICE_RUNS.fetch_add(1, Ordering::SeqCst);
    match req.sku.as_str() {
        "" => Err(TaskError::permanent("no sku given")),
        "down" => Err(TaskError::transient("pricing is down")),
        _ => Ok(Quote {
            cents: 100 * req.sku.len() as u64,
            sku: req.sku,
        }),
    }
}

fn client() -> RpcClient {
    RpcClient::new(Connector::new(ConnectionConfig::from_env()))
}

fn request(sku: &str) -> QuoteRequest {
    QuoteRequest { sku: sku.into() }
}

/// A worker serving `Price` on a fresh queue, ready to consume.
async fn serve() -> RunningWorker {
    support::reset(<Price as Task>::QUEUE, &Price.options().retry.tiers).await;
    let running = Worker::from_env().register(Price).start().await.unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(&mut readiness, true, "consuming").await;
    running
}

#[tokio::test]
async fn rpc_on_one_broker() {
    // One worker serves every case: the cases share its queue and run in turn.
    let running = serve().await;
    a_call_gets_the_handlers_value().await;
    a_hundred_concurrent_calls_share_one_client().await;
    a_permanent_failure_fails_the_call_without_waiting_for_the_timeout().await;
    a_request_parked_after_its_attempts_is_reported_as_parked().await;
    a_request_is_acked_once_after_its_reply_and_runs_once().await;
    a_reply_to_a_caller_that_is_gone_loses_nothing().await;
    a_caller_with_its_own_reply_queue_gets_the_reply_there().await;
    running.shutdown().await.unwrap();
    support::reset(<Price as Task>::QUEUE, &Price.options().retry.tiers).await;
}

async fn a_call_gets_the_handlers_value() {
    let quote = Price::call(&client(), &request("abc"))
        .timeout(Duration::from_secs(10))
        .await
        .expect("a reply");
    assert_eq!(
        quote,
        Quote {
            sku: "abc".into(),
            cents: 300
        }
    );
}

async fn a_hundred_concurrent_calls_share_one_client() {
    let client = client();
    let calls = (0..100).map(|i| {
        let client = &client;
        async move {
            let sku = format!("sku-{i}");
            let quote = Price::call(client, &request(&sku))
                .timeout(Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}"));
            assert_eq!(quote.sku, sku, "each caller gets its own reply");
        }
    });
    futures_util::future::join_all(calls).await;
}

async fn a_permanent_failure_fails_the_call_without_waiting_for_the_timeout() {
    let conn = support::connect().await;
    let parking = format!("{}.parking", <Price as Task>::QUEUE);
    let before = support::depth(&conn, &parking).await;
    let started = Instant::now();
    let err = Price::call(&client(), &request(""))
        .timeout(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Failed { reason, message } if reason == "permanent" && message == "no sku given"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered, not timed out"
    );
    assert_eq!(
        support::depth(&conn, &parking).await,
        before + 1,
        "and parked"
    );
}

async fn a_request_parked_after_its_attempts_is_reported_as_parked() {
    let err = Price::call(&client(), &request("down"))
        .timeout(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Parked { reason, message } if reason == "exhausted" && message == "pricing is down"),
        "{err:?}"
    );
}

async fn a_request_is_acked_once_after_its_reply_and_runs_once() {
    let conn = support::connect().await;
    let runs = PRICE_RUNS.load(Ordering::SeqCst);
    Price::call(&client(), &request("once"))
        .timeout(Duration::from_secs(10))
        .await
        .unwrap();
    support::eventually(Duration::from_secs(10), "the request acked", || {
        let conn = &conn;
        async move { support::depth(conn, <Price as Task>::QUEUE).await == 0 }
    })
    .await;
    assert_eq!(PRICE_RUNS.load(Ordering::SeqCst), runs + 1);
}

/// A caller that gave up before the reply: the broker drops the reply
/// (it is not mandatory), the request is handled and acked all the same.
async fn a_reply_to_a_caller_that_is_gone_loses_nothing() {
    let conn = support::connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let runs = PRICE_RUNS.load(Ordering::SeqCst);
    let gone = format!("{DIRECT_REPLY_TO}.g1h2AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.gone");
    ch.basic_publish(
        "".into(),
        <Price as Task>::QUEUE.into(),
        BasicPublishOptions::default(),
        br#"{"sku":"gone"}"#,
        BasicProperties::default()
            .with_type(<Price as Task>::NAME.into())
            .with_reply_to(gone.as_str().into())
            .with_correlation_id("gone-1".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    support::eventually(Duration::from_secs(10), "the request handled", || async {
        PRICE_RUNS.load(Ordering::SeqCst) == runs + 1
    })
    .await;
    support::eventually(Duration::from_secs(10), "the request acked", || {
        let conn = &conn;
        async move { support::depth(conn, <Price as Task>::QUEUE).await == 0 }
    })
    .await;
}

/// The classic pattern before direct reply-to: the caller names a queue
/// of its own (here server-named and exclusive) in `reply_to`.
async fn a_caller_with_its_own_reply_queue_gets_the_reply_there() {
    let (_conn, ch) = support::channel().await;
    let queue = ch
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        <Price as Task>::QUEUE.into(),
        BasicPublishOptions::default(),
        br#"{"sku":"own"}"#,
        BasicProperties::default()
            .with_type(<Price as Task>::NAME.into())
            .with_reply_to(queue.name().clone())
            .with_correlation_id("own-1".into()),
    )
    .await
    .unwrap();
    let reply = support::get_one(&ch, queue.name().as_str(), Duration::from_secs(10)).await;
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("own-1")
    );
    assert_eq!(
        support::header_str(&reply.properties, "rw-reply-status").as_deref(),
        Some("ok")
    );
    let quote: Quote = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(quote.cents, 300);
}

#[tokio::test]
async fn a_call_nobody_answers_times_out_and_the_request_waits_in_its_queue() {
    let queue = "it.rpc.unserved";
    support::delete_queues(&[queue]).await;
    let (conn, ch) = support::channel().await;
    ch.queue_declare(queue.into(), Default::default(), FieldTable::default())
        .await
        .unwrap();

    #[task(queue = "it.rpc.unserved")]
    async fn unserved(n: u32) -> Result<u32, TaskError> {
        Ok(n)
    }
    let client = client();
    let started = Instant::now();
    let err = Unserved::call(&client, &1)
        .timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let request = support::get_one(&ch, queue, Duration::from_secs(5)).await;
    let reply_to = request.properties.reply_to().clone().unwrap();
    assert!(
        reply_to
            .as_str()
            .starts_with(&format!("{DIRECT_REPLY_TO}.")),
        "the broker names the caller's channel in reply_to: {reply_to}"
    );
    assert!(request.properties.correlation_id().is_some());

    // The client still works after a timeout.
    let err = Unserved::call(&client, &2)
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    drop(conn);
    support::delete_queues(&[queue]).await;
}

#[tokio::test]
async fn a_call_to_a_queue_that_does_not_exist_fails_at_once() {
    #[task(queue = "it.rpc.no-such-queue")]
    async fn nowhere(n: u32) -> Result<u32, TaskError> {
        Ok(n)
    }
    support::delete_queues(&["it.rpc.no-such-queue"]).await;
    let err = Nowhere::call(&client(), &1)
        .timeout(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Broker(worker_core::Error::Unroutable { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn calls_in_flight_when_the_connection_closes_fail_as_connection_lost() {
    let queue = "it.rpc.lost";
    support::delete_queues(&[queue]).await;
    let (_conn, ch) = support::channel().await;
    ch.queue_declare(queue.into(), Default::default(), FieldTable::default())
        .await
        .unwrap();

    #[task(queue = "it.rpc.lost")]
    async fn lost(n: u32) -> Result<u32, TaskError> {
        Ok(n)
    }
    let connector = Connector::new(ConnectionConfig::from_env());
    let client = RpcClient::new(connector.clone());
    let call = tokio::spawn({
        let client = client.clone();
        async move {
            Lost::call(&client, &1)
                .timeout(Duration::from_secs(30))
                .await
        }
    });
    support::get_one(&ch, queue, Duration::from_secs(10)).await;
    connector.close().await;
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends when the connection closes")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, CallError::ConnectionLost), "{err:?}");
    support::delete_queues(&[queue]).await;
}

/// Why replies are published without `mandatory`: before 4.2 the broker
/// returns every mandatory publish to a direct reply-to name as `NO_ROUTE`,
/// even one it delivered (seen on 3.10 and 4.0); from 4.2 it returns none,
/// not even one whose caller is gone (seen on 4.3, pinned with that case
/// in `broker_versions`). Either way `basic.return` says nothing about the
/// caller.
#[tokio::test]
async fn mandatory_direct_replies_are_delivered_and_returned_only_before_4_2() {
    let caps = support::capabilities().await;
    let (conn, caller) = support::channel().await;
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
    // Learn the caller's reply-to name the way a server does: from a request.
    let probe = "it.rpc.probe";
    support::delete_queues(&[probe]).await;
    caller
        .queue_declare(probe.into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    caller
        .basic_publish(
            "".into(),
            probe.into(),
            BasicPublishOptions::default(),
            b"?",
            BasicProperties::default().with_reply_to(DIRECT_REPLY_TO.into()),
        )
        .await
        .unwrap();
    let request = support::get_one(&caller, probe, Duration::from_secs(5)).await;
    let address = request.properties.reply_to().clone().unwrap();

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
    assert_eq!(
        confirmation.take_message().is_some(),
        caps.mandatory_direct_reply_returned(),
        "{caps}: returned as unroutable"
    );
    let delivered = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .expect("and delivered all the same")
        .unwrap()
        .unwrap();
    assert_eq!(&delivered.data[..], b"hello");
    support::delete_queues(&[probe]).await;
}

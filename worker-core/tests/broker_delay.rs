//! Delayed enqueue on the real broker: the delay ladder holds each message
//! for its delay and not less, hop by hop, and a delay survives a broker
//! restart (on a private node). Prints the lateness and hops it measured
//! (the figures in BENCHMARKS.md).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use worker_core::connection::default_url;
use worker_core::topology::ladder;
use worker_core::{ConnectionConfig, Connector, Publisher, Task, TaskContext, TaskError, Worker};
use worker_testkit::node::RabbitNode;

struct Later;

impl Task for Later {
    type Payload = u64;
    const NAME: &'static str = "broker-delay.later";
    const QUEUE: &'static str = "broker-delay.later";

    async fn run(&self, _: TaskContext, _: u64) -> Result<(), TaskError> {
        Ok(())
    }
}

/// One delayed message as it reached the work queue.
struct Arrival {
    /// Time from just before the publish to the arrival.
    after: Duration,
    /// Rungs it waited in, from its `x-death` (each an expiry).
    rungs: usize,
    due_at: bool,
}

/// Consumes `count` messages from the work queue at `url`, keyed by payload.
async fn arrivals(
    url: &str,
    count: usize,
    started: HashMap<u64, Instant>,
    limit: Duration,
) -> HashMap<u64, Arrival> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            Later::QUEUE.into(),
            "broker-delay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut out = HashMap::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < count {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let delivery = match next {
            Ok(Some(Ok(d))) => d,
            other => panic!(
                "only {} of {count} delayed messages arrived within {limit:?} ({:?})",
                out.len(),
                other.map(|o| o.map(|r| r.map(|_| ())))
            ),
        };
        let at = Instant::now();
        let id: u64 = serde_json::from_slice(&delivery.data).expect("a number");
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let deaths = match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
            _ => Vec::new(),
        };
        let mut rungs = 0;
        for death in &deaths {
            let AMQPValue::FieldTable(entry) = death else {
                panic!("x-death entry {death:?}")
            };
            let queue = match entry.inner().get("queue") {
                Some(AMQPValue::LongString(q)) => {
                    Some(String::from_utf8_lossy(q.as_bytes()).into_owned())
                }
                _ => None,
            };
            assert!(
                queue
                    .as_deref()
                    .is_some_and(|q| q.starts_with(ladder::PREFIX)),
                "waited in {queue:?}"
            );
            rungs += match entry.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n as usize,
                other => panic!("x-death count {other:?}"),
            };
        }
        out.insert(
            id,
            Arrival {
                after: at - started[&id],
                rungs,
                due_at: headers.inner().contains_key("rw-due-at"),
            },
        );
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

async fn purge(url: &str) {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    let _ = ch
        .queue_purge(Later::QUEUE.into(), QueuePurgeOptions::default())
        .await;
    let _ = conn.close(200, "purged".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_delay_holds_its_message_for_at_least_the_delay_and_one_rung_per_one_bit() {
    support::connect().await;
    let url = default_url();
    Worker::new(Connector::new(ConnectionConfig::new(url.clone())))
        .register(Later)
        .declare_topology()
        .await
        .expect("topology");
    purge(&url).await;
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url.clone())));
    // The first delayed enqueue declares the ladder: not part of the figures.
    publisher
        .enqueue_in::<Later>(&0, Duration::ZERO)
        .await
        .expect("confirmed");
    let delays: [u64; 7] = [1, 2, 3, 4, 5, 7, 12];
    let mut started = HashMap::from([(0, Instant::now())]);
    for secs in delays {
        started.insert(secs, Instant::now());
        publisher
            .enqueue_in::<Later>(&secs, Duration::from_secs(secs))
            .await
            .expect("confirmed");
    }
    let got = arrivals(&url, delays.len() + 1, started, Duration::from_secs(25)).await;
    assert_eq!(got[&0].rungs, 0, "a zero delay goes straight through");
    let broker = std::env::var("RABBIT_WORKER_TEST_BROKER").unwrap_or_default();
    for secs in delays {
        let a = &got[&secs];
        let delay = Duration::from_secs(secs);
        println!(
            "broker {broker} delay {secs}s hops {} late {:.0} ms",
            a.rungs,
            (a.after.as_secs_f64() - delay.as_secs_f64()) * 1000.0
        );
        assert!(
            a.after >= delay,
            "{secs}s arrived early, after {:?}",
            a.after
        );
        assert!(
            a.after < delay + Duration::from_secs(1),
            "{secs}s arrived {:?} late",
            a.after - delay
        );
        assert_eq!(a.rungs, secs.count_ones() as usize, "{secs}s");
        assert!(a.due_at, "rw-due-at on {secs}s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_survives_a_broker_restart() {
    let mut node = match RabbitNode::start().await {
        Ok(node) => node,
        Err(e) if e.is_not_installed() => {
            worker_testkit::skip::unless_ci(e);
            return;
        }
        Err(e) => panic!("cannot start a private RabbitMQ node: {e}"),
    };
    let url = node.url();
    Worker::new(Connector::new(ConnectionConfig::new(url.clone())))
        .register(Later)
        .declare_topology()
        .await
        .expect("topology");
    let connector = Connector::new(ConnectionConfig::new(url.clone()));
    let publisher = Publisher::new(connector.clone());
    // 6 s (4 + 2) waits out the restart in the ladder; 20 s (16 + 4) is
    // still waiting when the node is back.
    let started = Instant::now();
    for secs in [6_u64, 20] {
        publisher
            .enqueue_in::<Later>(&secs, Duration::from_secs(secs))
            .await
            .expect("confirmed");
    }
    connector.close().await;
    node.stop().await.expect("node stopped");
    node.start_again().await.expect("node started again");
    let back_after = started.elapsed();
    let got = arrivals(
        &url,
        2,
        HashMap::from([(6, started), (20, started)]),
        Duration::from_secs(40),
    )
    .await;
    for secs in [6_u64, 20] {
        let a = &got[&secs];
        println!(
            "restart: node back after {back_after:?}; delay {secs}s arrived after {:?}",
            a.after
        );
        assert!(a.after >= Duration::from_secs(secs), "{secs}s came early");
        assert_eq!(a.rungs, secs.count_ones() as usize);
    }
    assert!(
        got[&20].after < Duration::from_secs(21).max(back_after + Duration::from_secs(2)),
        "20s arrived after {:?}",
        got[&20].after
    );
}

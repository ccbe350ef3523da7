//! The broker's consumer timeout never has to fire: the worker settles a
//! delivery itself within its hold budget, and the elected scheduler hands
//! its token back and takes it again, on every broker version. Each test
//! runs a private node (from the leg's server) whose consumer timeout is
//! 2 s, checked every 500 ms (before 4.3 a channel checks it on its tick,
//! every 60 s by default); what the broker does when it fires differs by
//! version (before 4.3 it closes the channel, from 4.3 it cancels the
//! consumer and requeues the delivery uncharged).

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use worker_core::backoff::Backoff;
use worker_core::headers::{ATTEMPTS, ERROR_MESSAGE, PARK_REASON};
use worker_core::schedule::leader;
use worker_core::worker::WorkerConfig;
use worker_core::{
    ConnectionConfig, Connector, RetryPolicy, Task, TaskContext, TaskError, TaskOptions, Worker,
};
use worker_testkit::broker::{header_str, header_u64};
use worker_testkit::node::RabbitNode;

/// The private node's consumer timeout.
const CONSUMER_TIMEOUT: Duration = Duration::from_secs(2);

/// A private node whose consumer timeout is `timeout`, checked every
/// 500 ms; `None` (skipped) where no server is installed, outside CI.
async fn node_with_consumer_timeout(timeout: Duration) -> Option<RabbitNode> {
    let node = match RabbitNode::start().await {
        Ok(node) => node,
        Err(e) if e.is_not_installed() => {
            worker_testkit::skip::unless_ci(e);
            return None;
        }
        Err(e) => panic!("cannot start a private RabbitMQ node: {e}"),
    };
    let set = format!(
        "application:set_env(rabbit, consumer_timeout, {}), \
         application:set_env(rabbit, channel_tick_interval, 500).",
        timeout.as_millis()
    );
    let out = node
        .rabbitmqctl()
        .args(["eval", &set])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl eval: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(node)
}

/// What a consumer timeout did to a consumer holding one delivery.
#[derive(Debug, PartialEq, Eq)]
enum Fired {
    /// The broker closed the channel.
    ChannelClosed,
    /// The broker cancelled the consumer; the channel stayed open.
    ConsumerCancelled,
    /// Nothing, through three timeouts.
    Nothing,
}

/// Holds one delivery from a fresh `kind` queue unacked and reports what
/// the consumer timeout did, with the delivery's headers when it is next
/// taken from the queue (`None` if it never came back).
async fn hold_one(url: &str, kind: &str) -> (Fired, Option<lapin::BasicProperties>) {
    use futures_util::StreamExt;
    use lapin::options::{
        BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};

    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("a channel");
    let queue = format!("consumer-timeout.facts.{kind}");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .expect("queue.declare");
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"held",
        lapin::BasicProperties::default(),
    )
    .await
    .expect("publish");
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let first = consumer.next().await;
    assert!(
        matches!(first, Some(Ok(_))),
        "the first delivery: {first:?}"
    );
    let event = tokio::time::timeout(CONSUMER_TIMEOUT * 3, consumer.next()).await;
    let fired = if !ch.status().connected() {
        Fired::ChannelClosed
    } else {
        match event {
            Ok(None) => Fired::ConsumerCancelled,
            Err(_) => Fired::Nothing,
            Ok(other) => panic!("{kind}: an unexpected consumer event {other:?}"),
        }
    };
    // Nothing fired: the delivery is still with its consumer.
    let back = if fired == Fired::Nothing {
        None
    } else {
        let reader = conn.create_channel().await.expect("a second channel");
        let m = support::get_one(&reader, &queue, Duration::from_secs(5)).await;
        Some(m.delivery.properties.clone())
    };
    let _ = conn.close(200, "done".into()).await;
    (fired, back)
}

/// The broker facts the hold budget guards against, as `Capabilities`
/// says for the version: before 4.3 the consumer timeout closes the
/// channel on quorum and classic queues alike, and the quorum delivery
/// comes back counted; from 4.3 it cancels a quorum consumer (channel
/// open) and the delivery comes back with `x-acquired-count` but no
/// `x-delivery-count` (uncharged), and it does nothing on a classic queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_consumer_timeout_does_is_what_capabilities_say() {
    let Some(node) = node_with_consumer_timeout(CONSUMER_TIMEOUT).await else {
        return;
    };
    let connector = Connector::new(ConnectionConfig::new(node.url()));
    connector.connection().await.expect("connects");
    let caps = connector.capabilities();

    let (quorum, back) = hold_one(&node.url(), "quorum").await;
    let back = back.expect("the quorum delivery is back in its queue");
    if caps.consumer_timeout_closes_channel() {
        assert_eq!(quorum, Fired::ChannelClosed, "{caps}");
        assert_eq!(header_u64(&back, "x-delivery-count"), Some(1), "{caps}");
    } else {
        assert_eq!(quorum, Fired::ConsumerCancelled, "{caps}");
        assert_eq!(header_u64(&back, "x-delivery-count"), None, "{caps}");
        assert_eq!(header_u64(&back, "x-acquired-count"), Some(1), "{caps}");
    }

    let (classic, _) = hold_one(&node.url(), "classic").await;
    let expected = if caps.consumer_timeout_on_classic_queues() {
        Fired::ChannelClosed
    } else {
        Fired::Nothing
    };
    assert_eq!(classic, expected, "{caps}");
}

/// Never returns: a handler stuck on a call with no timeout of its own.
struct Hang;

impl Task for Hang {
    type Payload = u32;
    const NAME: &'static str = "consumer-timeout.hang";
    const QUEUE: &'static str = "consumer-timeout.hang";

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::default()
                .in_process(2)
                .backoff(Backoff::new(
                    Duration::from_millis(100),
                    Duration::from_millis(200),
                ))
                .tiers([Duration::from_secs(1)])
                .max_attempts(3),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, _: TaskContext, _: u32) -> Result<(), TaskError> {
        std::future::pending().await
    }
}

/// A handler that always hangs, on a task with no timeout, ends in parking
/// after exactly its three attempts, each cut at the hold budget (4/5 of
/// the consumer timeout the worker is told) and charged by the framework;
/// the broker never times the consumer out. Without the budget the broker
/// does, every 2 s: before 4.3 it closes the channel (and the message comes
/// back charged by the broker, parked for its delivery limit), on 4.3 it
/// requeues it uncharged and the handler would hang forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_always_hangs_is_parked_within_its_attempts_before_any_consumer_timeout() {
    let Some(node) = node_with_consumer_timeout(CONSUMER_TIMEOUT).await else {
        return;
    };
    let connector = Connector::new(ConnectionConfig::new(node.url()));
    let running = Worker::new(connector.clone())
        .config(WorkerConfig {
            consumer_timeout: CONSUMER_TIMEOUT,
            ..WorkerConfig::default()
        })
        .register(Hang)
        .start()
        .await
        .expect("the worker starts");
    worker_core::Publisher::new(connector.clone())
        .enqueue::<Hang>(&7)
        .await
        .expect("enqueued with a confirm");

    let conn = lapin::Connection::connect(&node.url(), lapin::ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = conn.create_channel().await.expect("a channel");
    let parking = format!("{}.parking", Hang::QUEUE);
    let parked = support::get_one(&ch, &parking, Duration::from_secs(30)).await;
    let props = &parked.delivery.properties;
    assert_eq!(header_str(props, PARK_REASON).as_deref(), Some("exhausted"));
    assert_eq!(header_u64(props, ATTEMPTS), Some(3));
    let error = header_str(props, ERROR_MESSAGE);
    assert!(
        error.as_deref().is_some_and(|m| m.contains("hold budget")),
        "{error:?}"
    );
    running.shutdown().await.expect("a clean stop");
}

/// Runs of [`HangOnce`] so far.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicU32>);

/// Hangs on its first run, succeeds on every later one.
struct HangOnce;

impl Task for HangOnce {
    type Payload = u32;
    const NAME: &'static str = "consumer-timeout.hang-once";
    const QUEUE: &'static str = "consumer-timeout.hang-once";

    async fn run(&self, ctx: TaskContext, _: u32) -> Result<(), TaskError> {
        let runs = ctx.state::<Runs>().expect("Runs state");
        if runs.0 .0.fetch_add(1, Ordering::SeqCst) == 0 {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// When the broker does time a consumer out (the worker was told a longer
/// consumer timeout than the broker's), the worker consumes again and the
/// message is handled: before 4.3 after the broker closed the channel, on
/// 4.3 after it cancelled the consumer with the channel still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_the_broker_times_out_consumes_again_and_the_message_is_handled() {
    let Some(node) = node_with_consumer_timeout(CONSUMER_TIMEOUT).await else {
        return;
    };
    let connector = Connector::new(ConnectionConfig::new(node.url()));
    let runs = Runs::default();
    let running = Worker::new(connector.clone())
        .config(WorkerConfig {
            consumer_timeout: Duration::from_secs(3600),
            grace_period: Duration::from_millis(200),
            reconnect_min: Duration::from_millis(50),
            ..WorkerConfig::default()
        })
        .register(HangOnce)
        .state(runs.clone())
        .start()
        .await
        .expect("the worker starts");
    worker_core::Publisher::new(connector.clone())
        .enqueue::<HangOnce>(&1)
        .await
        .expect("enqueued with a confirm");
    worker_testkit::wait::eventually(
        Duration::from_secs(30),
        "the message handled after the broker timed the consumer out",
        || {
            let n = runs.0.load(Ordering::SeqCst);
            async move { n >= 2 }
        },
    )
    .await;
    running.shutdown().await.expect("a clean stop");
}

/// The broker's consumer timeout never ends a term: the leader hands its
/// token back and takes it again well within the timeout, keeps it through
/// several timeouts, and another candidate never gets it. The control, on
/// an election queue of its own, hands nothing back: the broker times that
/// leader out (closing its channel before 4.3, cancelling its consumer on
/// 4.3) and the other candidate leads.
///
/// The control has its own queue because on 4.3.6 a quorum queue arms its
/// consumer-timeout timer only when the next expiry is earlier than the
/// last one it saw: after a run of hand backs the timer can stay unarmed
/// and a token held from then on is never timed out (harmless for the
/// worker, which never relies on the broker's timeout, but it would make
/// the control pass or fail by chance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_keeps_its_token_through_the_broker_s_consumer_timeout() {
    let Some(node) = node_with_consumer_timeout(CONSUMER_TIMEOUT).await else {
        return;
    };
    let mut election = two_candidates(&node, "broker-periodic.consumer-timeout").await;
    let kept = tokio::time::timeout(
        Duration::from_secs(8),
        election.lease.lost(Duration::from_millis(500)),
    )
    .await
    .is_err();
    assert!(kept, "the leader lost its token to the consumer timeout");
    assert!(election.lease.held(), "the leader's channel is still open");
    assert!(
        !election.candidate.is_finished(),
        "the other candidate got the token while the leader held it"
    );

    // The control: a lease that never hands its token back is timed out.
    let mut control = two_candidates(&node, "broker-periodic.consumer-timeout-control").await;
    let lost = tokio::time::timeout(
        Duration::from_secs(30),
        control.lease.lost(Duration::from_secs(3600)),
    )
    .await
    .is_ok();
    assert!(
        lost,
        "the broker's consumer timeout did not end a lease holding its token for 30 s"
    );
    let (next, _conn) = tokio::time::timeout(Duration::from_secs(30), control.candidate)
        .await
        .expect("the other candidate leads once the leader is timed out")
        .expect("the candidate's task")
        .expect("the candidate acquires the token");
    assert!(next.held());
}

/// The other candidate's election, its lease and the connection it holds.
type Candidate =
    tokio::task::JoinHandle<Result<(leader::Lease, Arc<lapin::Connection>), worker_core::Error>>;

/// The leader of an election queue (with the connection it holds) and
/// another candidate waiting on a second connection.
struct Election {
    lease: leader::Lease,
    _conn: Arc<lapin::Connection>,
    candidate: Candidate,
}

/// Starts an election for `queue`: the first candidate leads.
async fn two_candidates(node: &RabbitNode, queue: &'static str) -> Election {
    let leading = Connector::new(ConnectionConfig::new(node.url()));
    let conn = leading.connection().await.expect("connects");
    let lease = leader::acquire(&conn, leading.capabilities(), queue)
        .await
        .expect("the only candidate leads");
    let waiting = Connector::new(ConnectionConfig::new(node.url()));
    let other = waiting.connection().await.expect("connects");
    let caps = waiting.capabilities();
    let candidate = tokio::spawn(async move {
        leader::acquire(&other, caps, queue)
            .await
            .map(|lease| (lease, other))
    });
    Election {
        lease,
        _conn: conn,
        candidate,
    }
}

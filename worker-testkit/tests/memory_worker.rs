//! The real worker against the memory broker: handle, park, and redeliver
//! through a delay tier whose TTL runs on the broker's manual clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::worker::WorkerConfig;
use worker_core::{
    ConnectionConfig, Connector, DeathReason, Publisher, RetryPolicy, Task, TaskContext, TaskError,
    TaskOptions, Worker,
};
use worker_testkit::memory::MemoryBroker;
use worker_testkit::wait::eventually;

/// How long a test waits for the worker to act on the memory broker.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: String,
    /// `ok`, `permanent`, or `fail-once` (transient on the first attempt).
    mode: String,
}

impl Job {
    fn new(id: &str, mode: &str) -> Job {
        Job {
            id: id.to_owned(),
            mode: mode.to_owned(),
        }
    }
}

/// What the handler saw: id -> attempt numbers, and ids that succeeded.
#[derive(Clone, Default)]
struct Seen {
    attempts: Arc<Mutex<HashMap<String, Vec<u32>>>>,
    done: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn attempts(&self, id: &str) -> Vec<u32> {
        self.attempts
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn done(&self) -> Vec<String> {
        let mut d = self.done.lock().unwrap().clone();
        d.sort();
        d
    }
}

const TIER: Duration = Duration::from_secs(30);

struct Deliver;

impl Task for Deliver {
    type Payload = Job;
    const NAME: &'static str = "mem.deliver";
    const QUEUE: &'static str = "mem.deliver";

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::default()
                .in_process(1)
                .tiers([TIER])
                .max_attempts(3),
            prefetch: Some(10),
            concurrency: 4,
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, job: Job) -> Result<(), TaskError> {
        let seen = ctx.state::<Seen>().expect("Seen state");
        seen.attempts
            .lock()
            .unwrap()
            .entry(job.id.clone())
            .or_default()
            .push(ctx.attempt());
        match job.mode.as_str() {
            "permanent" => Err(TaskError::permanent(format!("{} cannot be done", job.id))),
            "fail-once" if ctx.attempt() == 1 => {
                Err(TaskError::transient(format!("{} failed once", job.id)))
            }
            _ => {
                seen.done.lock().unwrap().push(job.id);
                Ok(())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_handles_parks_and_redelivers_through_a_clock_driven_tier() {
    let broker = MemoryBroker::start().await;
    let seen = Seen::default();
    let worker = Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Deliver)
        .state(seen.clone())
        .config(WorkerConfig {
            grace_period: Duration::from_secs(5),
            settle_wait: Duration::from_millis(10),
            ..WorkerConfig::default()
        });
    let running = worker
        .start()
        .await
        .expect("the worker starts on the memory broker");
    let (queue, tier, parking) = (
        "mem.deliver",
        "mem.deliver.retry.30s",
        "mem.deliver.parking",
    );
    assert!(broker.has_queue(queue) && broker.has_queue(tier) && broker.has_queue(parking));
    eventually(WAIT, "the worker consumes", || {
        let n = broker.consumer_count(queue);
        async move { n == 1 }
    })
    .await;

    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(broker.url())));
    for job in [
        Job::new("a", "ok"),
        Job::new("b", "ok"),
        Job::new("c", "ok"),
        Job::new("poison", "permanent"),
        Job::new("flaky", "fail-once"),
    ] {
        publisher.enqueue::<Deliver>(&job).await.expect("confirmed");
    }

    eventually(
        WAIT,
        "ok jobs handled, poison parked, flaky waiting in the tier",
        || {
            let done = seen.done();
            let parked = broker.queue_depth(parking);
            let waiting = broker.queue_depth(tier);
            async move { done == ["a", "b", "c"] && parked == 1 && waiting == 1 }
        },
    )
    .await;
    assert_eq!(seen.attempts("poison"), [1]);
    assert_eq!(seen.attempts("flaky"), [1]);

    let parked = &broker.messages(parking)[0];
    assert_eq!(
        parked.header_str("rw-park-reason").as_deref(),
        Some("permanent")
    );
    assert_eq!(
        parked.header_str("rw-error-message").as_deref(),
        Some("poison cannot be done")
    );
    assert!(
        parked.body_str().contains("\"poison\""),
        "{}",
        parked.body_str()
    );

    // The tier's TTL runs on the broker clock: nothing happens until it moves.
    let waiting = &broker.messages(tier)[0];
    assert_eq!(waiting.expires_in, Some(TIER));
    broker.clock().advance(TIER - Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(broker.queue_depth(tier), 1, "not yet expired");
    assert_eq!(seen.attempts("flaky"), [1]);

    broker.clock().advance(Duration::from_secs(1));
    eventually(WAIT, "flaky handled on its second attempt", || {
        let attempts = seen.attempts("flaky");
        async move { attempts == [1, 2] }
    })
    .await;
    eventually(WAIT, "every queue settled", || {
        let settled = broker.queue_depth(queue) == 0
            && broker.unacked_count(queue) == 0
            && broker.queue_depth(tier) == 0;
        async move { settled }
    })
    .await;
    assert_eq!(seen.done(), ["a", "b", "c", "flaky"]);
    assert_eq!(broker.queue_depth(parking), 1);

    running.shutdown().await.expect("clean stop");
    assert_eq!(broker.consumer_count(queue), 0);
    assert_eq!(broker.queue_depth(queue), 0, "nothing returned on stop");
}

/// A worker of [`Deliver`] on `broker` that reconnects within 200 ms.
fn reconnecting_worker(broker: &MemoryBroker, seen: &Seen) -> Worker {
    Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Deliver)
        .state(seen.clone())
        .config(WorkerConfig {
            grace_period: Duration::from_secs(5),
            settle_wait: Duration::from_millis(10),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(200),
            ..WorkerConfig::default()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reconnects_after_the_broker_drops_every_connection() {
    let broker = MemoryBroker::start().await;
    let seen = Seen::default();
    let running = reconnecting_worker(&broker, &seen)
        .start()
        .await
        .expect("started");
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(broker.url())));
    publisher
        .enqueue::<Deliver>(&Job::new("before", "ok"))
        .await
        .unwrap();
    eventually(WAIT, "first job handled", || {
        let done = seen.done();
        async move { done == ["before"] }
    })
    .await;

    // Once the broker has the ack, nothing comes back after the drop.
    eventually(WAIT, "the ack reached the broker", || {
        let n = broker.unacked_count("mem.deliver");
        async move { n == 0 }
    })
    .await;
    assert_eq!(
        broker.close_all_connections(),
        2,
        "the worker's and the publisher's"
    );
    assert_eq!(broker.connection_count(), 0);
    eventually(WAIT, "the worker consumes again", || {
        let back = broker.consumer_count("mem.deliver") == 1;
        async move { back }
    })
    .await;
    publisher
        .enqueue::<Deliver>(&Job::new("after", "ok"))
        .await
        .expect("the publisher reconnects too");
    eventually(WAIT, "second job handled", || {
        let done = seen.done();
        async move { done == ["after", "before"] }
    })
    .await;
    running.shutdown().await.expect("clean stop");
}

/// A connection lost while `start` declares the topology is not a reason
/// to give up: `start` succeeds, and the worker declares and consumes once
/// it has reconnected (found by the cluster soak, where a node stopped
/// during a worker's start and the worker process exited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_while_start_declares_does_not_fail_start() {
    let broker = MemoryBroker::start().await;
    broker.drop_connection_at_next_queue_declare();
    let seen = Seen::default();
    let running = reconnecting_worker(&broker, &seen)
        .start()
        .await
        .expect("a lost connection during declaration is retried, not fatal");
    eventually(
        WAIT,
        "the worker declares and consumes after reconnecting",
        || {
            let back = broker.consumer_count("mem.deliver") == 1;
            async move { back }
        },
    )
    .await;
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(broker.url())));
    publisher
        .enqueue::<Deliver>(&Job::new("after", "ok"))
        .await
        .unwrap();
    eventually(WAIT, "the job is handled", || {
        let done = seen.done();
        async move { done == ["after"] }
    })
    .await;
    running.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn quorum_delivery_limit_parks_a_crash_loop_with_x_death() {
    // The broker side of the framework's crash-loop backstop, without a worker:
    // rejecting with requeue counts deliveries until the limit dead-letters it.
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicRejectOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let broker = MemoryBroker::start().await;
    let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("crash.parking".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare("crash".into(), durable, args)
        .await
        .unwrap();
    ch.queue_declare("crash.parking".into(), durable, FieldTable::default())
        .await
        .unwrap();
    broker.publish("", "crash", BasicProperties::default(), "boom");
    let mut consumer = ch
        .basic_consume(
            "crash".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let d = consumer.next().await.unwrap().unwrap();
        d.acker
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    eventually(WAIT, "dead-lettered after two deliveries", || {
        let n = broker.queue_depth("crash.parking");
        async move { n == 1 }
    })
    .await;
    let dead = &broker.messages("crash.parking")[0];
    let deaths = dead.x_death();
    assert_eq!(deaths.len(), 1);
    assert_eq!(deaths[0].reason, DeathReason::DeliveryLimit);
    assert_eq!(deaths[0].queue, "crash");
    assert_eq!(deaths[0].count, 1);
    assert_eq!(dead.header_i64("x-delivery-count"), None);
}

#[tokio::test]
async fn a_real_clock_broker_expires_by_wall_time() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let broker = MemoryBroker::start_with_real_clock().await;
    assert!(!broker.clock().is_manual());
    let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(50));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("later".into()),
    );
    ch.queue_declare("soon".into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    ch.queue_declare(
        "later".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "soon".into(),
            BasicPublishOptions::default(),
            b"tick",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());
    assert_eq!(broker.queue_depth("soon"), 1);
    eventually(WAIT, "expired by wall time", || {
        let moved = broker.queue_depth("soon") == 0 && broker.queue_depth("later") == 1;
        async move { moved }
    })
    .await;
    assert!(broker.clock().elapsed() >= Duration::from_millis(50));
    assert_eq!(
        broker.messages("later")[0].x_death()[0].reason,
        DeathReason::Expired
    );
}

/// Whether the guarded task's downstream is down.
#[derive(Clone, Default)]
struct Downstream(Arc<std::sync::atomic::AtomicBool>);

/// A task with a circuit breaker: fails transiently while its downstream
/// is down.
struct Guarded;

impl Task for Guarded {
    type Payload = String;
    const NAME: &'static str = "mem.guarded";
    const QUEUE: &'static str = "mem.guarded";

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none(),
            breaker: Some(worker_core::BreakerPolicy::in_a_row(2).cooldown(Duration::from_secs(1))),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, id: String) -> Result<(), TaskError> {
        let down = ctx.state::<Downstream>().expect("Downstream state");
        if down.0 .0.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(TaskError::transient("downstream is down"));
        }
        ctx.state::<Seen>()
            .expect("Seen state")
            .done
            .lock()
            .unwrap()
            .push(id);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_cancels_the_consumer_and_a_probe_resumes_it() {
    use worker_core::breaker::BreakerState;

    let broker = MemoryBroker::start().await;
    let (seen, down) = (Seen::default(), Downstream::default());
    down.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let worker = Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Guarded)
        .state(seen.clone())
        .state(down.clone())
        .config(WorkerConfig {
            settle_wait: Duration::from_millis(10),
            ..WorkerConfig::default()
        });
    let breaker = worker
        .breakers()
        .get(&worker.specs()[0])
        .expect("a breaker");
    let publisher = worker.publisher().clone();
    let running = worker.start().await.expect("the worker starts");
    let queue = Guarded::QUEUE;
    eventually(WAIT, "the worker consumes", || {
        let n = broker.consumer_count(queue);
        async move { n == 1 }
    })
    .await;

    for id in ["trip-1", "trip-2"] {
        publisher.enqueue::<Guarded>(&id.to_owned()).await.unwrap();
    }
    eventually(WAIT, "the breaker opens and cancels the consumer", || {
        let paused = breaker.state() == BreakerState::Open && broker.consumer_count(queue) == 0;
        async move { paused }
    })
    .await;
    for n in 0..5 {
        publisher
            .enqueue::<Guarded>(&format!("b-{n}"))
            .await
            .unwrap();
    }
    assert_eq!(
        broker.queue_depth(queue),
        5,
        "the backlog stays in the queue"
    );
    assert_eq!(broker.unacked_count(queue), 0, "and none was taken");
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "still within the cool-down"
    );

    down.0.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(
        WAIT,
        "the probe closed the breaker and the backlog drained",
        || {
            let done = seen.done().len() == 5 && broker.consumer_count(queue) == 1;
            async move { done }
        },
    )
    .await;
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(
        broker.queue_depth(&format!("{queue}.parking")),
        2,
        "the trips"
    );
    running.shutdown().await.unwrap();
}

/// A header table nested 15,000 levels, sent as raw frames: the memory
/// broker bounds it as it reads the frame (it would overflow its parser
/// otherwise), the worker's connection guard bounds it again, and the
/// message is parked as `undecodable` while the next one is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_nested_thousands_deep_is_parked_on_the_memory_broker() {
    let broker = MemoryBroker::start().await;
    let seen = Seen::default();
    let running = Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Deliver)
        .state(seen.clone())
        .start()
        .await
        .expect("the worker starts on the memory broker");
    let body = serde_json::to_vec(&Job::new("deep", "ok")).unwrap();
    let headers = worker_testkit::raw::nested_table(15_000);
    let deep = worker_testkit::raw::RawMessage {
        queue: Deliver::QUEUE,
        kind: Deliver::NAME,
        message_id: "deep",
        headers: &headers,
        body: &body,
    };
    worker_testkit::raw::publish_raw(&broker.url(), &deep)
        .await
        .expect("the memory broker takes the deep header");
    Publisher::new(Connector::new(ConnectionConfig::new(broker.url())))
        .enqueue::<Deliver>(&Job::new("after", "ok"))
        .await
        .unwrap();
    let parking = "mem.deliver.parking";
    eventually(
        WAIT,
        "the deep message parked, the next one handled",
        || {
            let (done, parked) = (seen.done(), broker.queue_depth(parking));
            async move { done == ["after"] && parked == 1 }
        },
    )
    .await;
    let parked = &broker.messages(parking)[0];
    assert_eq!(
        parked.header_str("rw-park-reason").as_deref(),
        Some("undecodable")
    );
    assert!(seen.attempts("deep").is_empty(), "the handler never ran");
    running.shutdown().await.unwrap();
}

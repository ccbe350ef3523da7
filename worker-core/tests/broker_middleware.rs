//! The middleware's promises against a real RabbitMQ.

mod support;

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use support::{header_str, header_u64, Recorder, Script};
use worker_core::worker::WorkerConfig;
use worker_core::{Backoff, Publisher, QueueType, RetryPolicy, Task, TaskOptions, Worker};

const T1: Duration = Duration::from_millis(50);
const T2: Duration = Duration::from_millis(100);

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_millis(20))
}

fn retrying(in_process: u32, tiers: &[Duration], max_attempts: u32) -> TaskOptions {
    TaskOptions {
        retry: RetryPolicy::default()
            .in_process(in_process)
            .backoff(fast_backoff())
            .tiers(tiers.iter().copied())
            .max_attempts(max_attempts),
        ..TaskOptions::default()
    }
}

scripted_task!(Flaky, "it.mw.flaky", retrying(3, &[], 3));
scripted_task!(Doomed, "it.mw.doomed", retrying(2, &[T1, T2], 5));
scripted_task!(Permanent, "it.mw.permanent", retrying(3, &[T1], 5));
scripted_task!(Panicky, "it.mw.panicky", retrying(2, &[], 2));
scripted_task!(
    Slow,
    "it.mw.slow",
    TaskOptions {
        timeout: Some(Duration::from_millis(100)),
        ..retrying(2, &[], 2)
    }
);
scripted_task!(
    Cycled,
    "it.mw.cycled",
    TaskOptions {
        queue_type: QueueType::Classic,
        ..retrying(1, &[], 10)
    }
);
scripted_task!(CrashLoop, "it.mw.crashloop", retrying(1, &[], 3));
scripted_task!(Returned, "it.mw.returned", retrying(1, &[], 3));

fn worker(recorder: &Recorder) -> Worker {
    support::recording_worker(recorder, Duration::from_secs(5))
}

async fn wait_parked(conn: &lapin::Connection, parking: &str, n: u32) {
    support::eventually(
        Duration::from_secs(20),
        &format!("{n} message(s) in {parking}"),
        || async move { support::depth(conn, parking).await >= n },
    )
    .await;
}

#[tokio::test]
async fn transient_twice_then_success_is_acked_once() {
    support::reset(Flaky::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder).register(Flaky).start().await.unwrap();
    let msg = Script {
        fail: 2,
        ..Script::ok("flaky")
    };
    Publisher::from_env().enqueue::<Flaky>(&msg).await.unwrap();
    support::eventually(Duration::from_secs(10), "success", || {
        let r = recorder.clone();
        async move { r.done_count() == 1 }
    })
    .await;
    running.shutdown().await.unwrap();
    let conn = support::connect().await;
    assert_eq!(recorder.attempts("flaky"), vec![1, 2, 3]);
    assert_eq!(recorder.duplicates(), 0);
    assert_eq!(support::depth(&conn, Flaky::QUEUE).await, 0);
    assert_eq!(support::depth(&conn, "it.mw.flaky.parking").await, 0);
}

#[tokio::test]
async fn always_failing_task_is_parked_after_exactly_max_attempts_with_headers() {
    support::reset(Doomed::QUEUE, &[T1, T2]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder).register(Doomed).start().await.unwrap();
    let msg = Script {
        fail: u32::MAX,
        ..Script::ok("doomed")
    };
    let id = Publisher::from_env().enqueue::<Doomed>(&msg).await.unwrap();
    let conn = support::connect().await;
    wait_parked(&conn, "it.mw.doomed.parking", 1).await;
    running.shutdown().await.unwrap();

    // 2 in process, tier 50ms, 2 in process, tier 100ms, 1 (the 5th) then parked.
    assert_eq!(recorder.attempts("doomed"), vec![1, 2, 3, 4, 5]);
    let parked = support::drain(&conn, "it.mw.doomed.parking").await;
    assert_eq!(parked.len(), 1);
    let d = &parked[0].delivery;
    let p = &d.properties;
    assert_eq!(
        p.message_id().as_ref().map(|s| s.as_str()),
        Some(id.as_str())
    );
    assert_eq!(
        header_str(p, "rw-park-reason").as_deref(),
        Some("exhausted")
    );
    assert_eq!(
        header_str(p, "rw-park-task").as_deref(),
        Some("it.mw.doomed")
    );
    assert_eq!(header_u64(p, "rw-attempts"), Some(5));
    assert_eq!(header_str(p, "rw-error-kind").as_deref(), Some("handler"));
    assert!(header_str(p, "rw-error-message")
        .unwrap()
        .contains("scripted failure 5"));
    assert_eq!(
        header_str(p, "rw-original-routing-key").as_deref(),
        Some("it.mw.doomed")
    );
    assert_eq!(
        header_str(p, "rw-original-queue").as_deref(),
        Some("it.mw.doomed")
    );
    assert!(header_str(p, "rw-park-host").is_some());
    let first = header_u64(p, "rw-first-failure").unwrap();
    let last = header_u64(p, "rw-last-failure").unwrap();
    assert!(first <= last && first > 1_600_000_000);
    assert_eq!(
        serde_json::from_slice::<Script>(&d.data).unwrap().id,
        "doomed",
        "body unchanged"
    );
    assert_eq!(support::depth(&conn, Doomed::QUEUE).await, 0);
}

#[tokio::test]
async fn permanent_error_is_parked_on_the_first_attempt() {
    support::reset(Permanent::QUEUE, &[T1]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder).register(Permanent).start().await.unwrap();
    let msg = Script {
        permanent: true,
        ..Script::ok("perm")
    };
    Publisher::from_env()
        .enqueue::<Permanent>(&msg)
        .await
        .unwrap();
    let conn = support::connect().await;
    wait_parked(&conn, "it.mw.permanent.parking", 1).await;
    running.shutdown().await.unwrap();
    assert_eq!(recorder.attempts("perm"), vec![1]);
    let parked = support::drain(&conn, "it.mw.permanent.parking").await;
    let p = &parked[0].delivery.properties;
    assert_eq!(
        header_str(p, "rw-park-reason").as_deref(),
        Some("permanent")
    );
    assert_eq!(header_u64(p, "rw-attempts"), Some(1));
}

#[tokio::test]
async fn panics_and_timeouts_are_retried_then_parked_while_others_are_served() {
    support::reset(Panicky::QUEUE, &[]).await;
    support::reset(Slow::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder)
        .register(Panicky)
        .register(Slow)
        .start()
        .await
        .unwrap();
    let publisher = Publisher::from_env();
    publisher
        .enqueue::<Panicky>(&Script {
            panic: true,
            ..Script::ok("boom")
        })
        .await
        .unwrap();
    publisher
        .enqueue::<Slow>(&Script {
            sleep_ms: 5_000,
            ..Script::ok("slow")
        })
        .await
        .unwrap();
    for i in 0..5 {
        publisher
            .enqueue::<Panicky>(&Script::ok(format!("fine-{i}")))
            .await
            .unwrap();
    }
    let conn = support::connect().await;
    wait_parked(&conn, "it.mw.panicky.parking", 1).await;
    wait_parked(&conn, "it.mw.slow.parking", 1).await;
    support::eventually(Duration::from_secs(10), "the healthy messages", || {
        let r = recorder.clone();
        async move { r.done_count() == 5 }
    })
    .await;
    running.shutdown().await.unwrap();

    assert_eq!(recorder.attempts("boom"), vec![1, 2]);
    assert_eq!(recorder.attempts("slow"), vec![1, 2]);
    let panicked = support::drain(&conn, "it.mw.panicky.parking").await;
    let p = &panicked[0].delivery.properties;
    assert_eq!(header_str(p, "rw-error-kind").as_deref(), Some("panic"));
    assert!(header_str(p, "rw-error-message")
        .unwrap()
        .contains("scripted panic for boom"));
    let slow = support::drain(&conn, "it.mw.slow.parking").await;
    let p = &slow[0].delivery.properties;
    assert_eq!(header_str(p, "rw-error-kind").as_deref(), Some("timeout"));
    assert!(header_str(p, "rw-error-message")
        .unwrap()
        .contains("timed out after 100ms"));
}

/// A message rejected out of the work queue twice and brought back by the
/// broker (dead-letter to a TTL queue, expiry back) starts at attempt 3.
#[tokio::test]
async fn broker_driven_dead_letter_cycle_is_counted_through_x_death() {
    let q = Cycled::QUEUE;
    let wait = "it.mw.cycled.wait";
    support::delete_queues(&[q, wait, "it.mw.cycled.parking", "it.mw.cycled.quarantine"]).await;
    let (conn, ch) = support::channel().await;
    let mut work_args = FieldTable::default();
    work_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    work_args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(wait.into()),
    );
    let mut wait_args = FieldTable::default();
    wait_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(30));
    wait_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    wait_args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(q.into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(q.into(), durable, work_args)
        .await
        .unwrap();
    ch.queue_declare(wait.into(), durable, wait_args)
        .await
        .unwrap();
    // The worker consumes the task's quarantine queue too.
    for side in ["it.mw.cycled.parking", "it.mw.cycled.quarantine"] {
        ch.queue_declare(side.into(), durable, FieldTable::default())
            .await
            .unwrap();
    }

    Publisher::from_env()
        .enqueue::<Cycled>(&Script::ok("cycled"))
        .await
        .unwrap();
    for _ in 0..2 {
        support::get_one(&ch, q, Duration::from_secs(10))
            .await
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    }

    let recorder = Recorder::default();
    let running = worker(&recorder)
        .config(WorkerConfig {
            declare_topology: false,
            ..WorkerConfig::default()
        })
        .register(Cycled)
        .start()
        .await
        .unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(&mut readiness, true, "consuming on the hand-made topology").await;
    support::eventually(Duration::from_secs(10), "handled after the cycle", || {
        let r = recorder.clone();
        async move { r.done_count() == 1 }
    })
    .await;
    assert!(*readiness.borrow(), "never lost a consumer");
    running.shutdown().await.unwrap();
    assert_eq!(recorder.attempts("cycled"), vec![3]);
    drop(conn);
}

/// Takes one message from `queue` on a connection of its own and closes
/// that connection without settling it: what the broker sees when a worker
/// crashes while it holds a delivery. Every supported version counts such
/// a return toward the delivery limit (`Capabilities::connection_loss_counts`,
/// pinned in `broker_versions`); a `basic.nack` would not do on 4.3, which
/// does not count nacks. Whether a message was there to take.
async fn crash_holding(queue: &str) -> bool {
    let conn = support::connect().await;
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap();
    conn.close(200, "a crash".into()).await.unwrap();
    got.is_some()
}

/// Deliveries returned without settlement (a consumer that crashes with
/// each) end in parking through the quorum queue's x-delivery-limit, on
/// every version: after `max_attempts + 1` crashes.
#[tokio::test]
async fn quorum_crash_loop_ends_in_parking_through_the_delivery_limit() {
    let caps = support::capabilities().await;
    assert!(caps.connection_loss_counts(), "{caps}");
    support::reset(CrashLoop::QUEUE, &[]).await;
    let recorder = Recorder::default();
    worker(&recorder)
        .register(CrashLoop)
        .declare_topology()
        .await
        .unwrap();
    Publisher::from_env()
        .enqueue::<CrashLoop>(&Script::ok("crash"))
        .await
        .unwrap();
    let (conn, _ch) = support::channel().await;
    let mut crashes = 0;
    while support::depth(&conn, "it.mw.crashloop.parking").await == 0 {
        if crash_holding(CrashLoop::QUEUE).await {
            crashes += 1;
        }
        assert!(crashes <= 10, "the broker never dead-lettered the message");
    }
    // x-delivery-limit = max_attempts = 3 allows 4 deliveries.
    assert_eq!(crashes, 4, "{caps}");
    let parked = support::drain(&conn, "it.mw.crashloop.parking").await;
    assert_eq!(
        support::x_death(&parked[0].delivery.properties),
        vec![(CrashLoop::QUEUE.to_owned(), "delivery_limit".to_owned())]
    );
}

/// A message returned unsettled from the work queue runs alone in the
/// quarantine queue without being charged an attempt; returned unsettled
/// from the quarantine queue past its attempts, it is parked by the
/// worker's delivery limit before the handler runs again.
#[tokio::test]
async fn returned_messages_run_alone_and_quarantine_returns_are_limited() {
    support::reset(Returned::QUEUE, &[]).await;
    let quarantine = "it.mw.returned.quarantine";
    let recorder = Recorder::default();
    worker(&recorder)
        .register(Returned)
        .declare_topology()
        .await
        .unwrap();
    let publisher = Publisher::from_env();
    publisher
        .enqueue::<Returned>(&Script::ok("from-work"))
        .await
        .unwrap();
    let (_, copy) = publisher
        .task_message(
            Returned::NAME,
            quarantine,
            &Script::ok("from-quarantine"),
            Default::default(),
        )
        .unwrap();
    publisher.publish(copy).await.unwrap();
    let (conn, _ch) = support::channel().await;
    // Each returned by a consumer that crashed holding it (counted on
    // every version, unlike a nack on 4.3).
    for queue in [Returned::QUEUE, quarantine, quarantine, quarantine] {
        support::eventually(Duration::from_secs(5), "a message to take", || async move {
            crash_holding(queue).await
        })
        .await;
    }
    let running = worker(&recorder).register(Returned).start().await.unwrap();
    wait_parked(&conn, "it.mw.returned.parking", 1).await;
    support::eventually(
        Duration::from_secs(10),
        "the work-queue message handled",
        || {
            let r = recorder.clone();
            async move { r.done_count() == 1 }
        },
    )
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(
        recorder.attempts("from-work"),
        vec![1],
        "returned from the work queue: not charged"
    );
    assert!(
        recorder.attempts("from-quarantine").is_empty(),
        "handler must not run"
    );
    let parked = support::drain(&conn, "it.mw.returned.parking").await;
    let p = &parked[0].delivery.properties;
    assert_eq!(
        header_str(p, "rw-park-reason").as_deref(),
        Some("delivery-limit")
    );
}

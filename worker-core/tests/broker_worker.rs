//! The worker against a real RabbitMQ: handle, park bad input, refuse unroutable, stop without loss.

mod support;

use std::time::Duration;

use support::{Recorder, Script};
use worker_core::worker::WorkerConfig;
use worker_core::{Error, Publisher, RetryPolicy, Task, TaskOptions, Worker};

fn quick(options: TaskOptions) -> TaskOptions {
    TaskOptions {
        retry: RetryPolicy::none(),
        ..options
    }
}

scripted_task!(Handled, "it.worker.handled", quick(TaskOptions::default()));
scripted_task!(
    Undecodable,
    "it.worker.undecodable",
    quick(TaskOptions::default())
);
scripted_task!(
    Backlog,
    "it.worker.backlog",
    TaskOptions {
        concurrency: 8,
        prefetch: Some(50),
        ..quick(TaskOptions::default())
    }
);

scripted_task!(
    Busy,
    "it.worker.busy",
    TaskOptions {
        concurrency: 1,
        prefetch: Some(4),
        ..quick(TaskOptions::default())
    }
);

scripted_task!(Deleted, "it.worker.deleted", quick(TaskOptions::default()));

fn worker(recorder: &Recorder) -> Worker {
    support::recording_worker(recorder, Duration::from_secs(10))
}

#[tokio::test]
async fn enqueued_task_is_handled_once_and_acked() {
    support::reset(Handled::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder).register(Handled).start().await.unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(
        &mut readiness,
        true,
        "ready once every consumer is confirmed",
    )
    .await;
    let publisher = Publisher::from_env();
    publisher
        .enqueue::<Handled>(&Script::ok("one"))
        .await
        .unwrap();
    support::eventually(Duration::from_secs(10), "the handler ran", || {
        let r = recorder.clone();
        async move { r.done_count() == 1 }
    })
    .await;
    running.shutdown().await.unwrap();

    let conn = support::connect().await;
    assert_eq!(recorder.attempts("one"), vec![1]);
    assert_eq!(
        support::depth(&conn, Handled::QUEUE).await,
        0,
        "acked, not requeued"
    );
    assert_eq!(support::depth(&conn, "it.worker.handled.parking").await, 0);
}

#[tokio::test]
async fn undecodable_payload_is_parked_with_a_reason_and_the_worker_keeps_going() {
    support::reset(Undecodable::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder)
        .register(Undecodable)
        .start()
        .await
        .unwrap();
    let publisher = Publisher::from_env();
    let (_, mut bad) = publisher
        .task_message(
            Undecodable::QUEUE,
            Undecodable::QUEUE,
            &"x",
            Default::default(),
        )
        .unwrap();
    bad.body = b"{not json".to_vec().into();
    publisher.publish(bad).await.unwrap();
    publisher
        .enqueue::<Undecodable>(&Script::ok("after-bad"))
        .await
        .unwrap();

    let conn = support::connect().await;
    support::eventually(
        Duration::from_secs(10),
        "good message handled and bad one parked",
        || {
            let r = recorder.clone();
            let conn = &conn;
            async move {
                r.done_count() == 1
                    && support::depth(conn, "it.worker.undecodable.parking").await == 1
            }
        },
    )
    .await;
    running.shutdown().await.unwrap();
    let parked = support::drain(&conn, "it.worker.undecodable.parking").await;
    assert_eq!(parked.len(), 1);
    let props = &parked[0].delivery.properties;
    assert_eq!(
        support::header_str(props, "rw-park-reason").as_deref(),
        Some("undecodable")
    );
    let message = support::header_str(props, "rw-error-message").unwrap();
    assert!(message.contains("cannot decode"), "{message}");
    assert_eq!(parked[0].delivery.data, b"{not json", "body kept unchanged");
}

#[tokio::test]
async fn unroutable_publish_is_an_error() {
    let publisher = Publisher::from_env();
    let (_, message) = publisher
        .task_message(
            "nobody",
            "it.worker.no-such-queue-ever",
            &1u8,
            Default::default(),
        )
        .unwrap();
    let err = publisher.publish(message).await.unwrap_err();
    assert!(matches!(err, Error::Unroutable { .. }), "{err:?}");
    assert!(err.to_string().contains("unroutable"), "{err}");
}

#[tokio::test]
async fn routing_key_over_255_bytes_is_a_clear_error() {
    let publisher = Publisher::from_env();
    let long = "q".repeat(300);
    let err = publisher
        .task_message("t", &long, &1u8, Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("at most 255"), "{err}");
}

#[tokio::test]
async fn stop_with_a_backlog_loses_nothing() {
    support::reset(Backlog::QUEUE, &[]).await;
    const N: usize = 2000;
    let publisher = Publisher::from_env();
    let payloads: Vec<Script> = (0..N)
        .map(|i| Script {
            id: format!("m{i}"),
            sleep_ms: 2,
            ..Script::default()
        })
        .collect();
    let recorder = Recorder::default();
    let worker = worker(&recorder).register(Backlog);
    worker.declare_topology().await.unwrap();
    publisher.enqueue_batch::<Backlog>(&payloads).await.unwrap();
    let running = worker.start().await.unwrap();
    support::eventually(
        Duration::from_secs(30),
        "some of the backlog handled",
        || {
            let r = recorder.clone();
            async move { r.done_count() >= 300 }
        },
    )
    .await;
    running.shutdown().await.unwrap();

    let conn = support::connect().await;
    let handled = recorder.done_count();
    let queued = support::depth(&conn, Backlog::QUEUE).await as usize;
    let parked = support::depth(&conn, "it.worker.backlog.parking").await as usize;
    println!(
        "published {N}, handled {handled}, still queued {queued}, parked {parked}, duplicates {}",
        recorder.duplicates()
    );
    assert!(handled < N, "stopped mid-backlog");
    assert_eq!(parked, 0);
    assert_eq!(handled + queued, N, "every message handled or still queued");
    assert_eq!(recorder.duplicates(), 0, "no handler ran twice");
}

/// With fewer handler slots than the prefetch, a stop must not wait for a
/// slot: it returns within the grace period, and the deliveries that never
/// started go back to the queue unstarted.
#[tokio::test]
async fn stop_while_every_slot_is_busy_returns_the_waiting_deliveries() {
    support::reset(Busy::QUEUE, &[]).await;
    let publisher = Publisher::from_env();
    let payloads: Vec<Script> = (0..3)
        .map(|i| Script {
            id: format!("b{i}"),
            sleep_ms: 120_000,
            ..Script::default()
        })
        .collect();
    let recorder = Recorder::default();
    let worker = Worker::from_env()
        .state(recorder.clone())
        .config(WorkerConfig {
            grace_period: Duration::from_millis(300),
            ..WorkerConfig::default()
        })
        .register(Busy);
    worker.declare_topology().await.unwrap();
    publisher.enqueue_batch::<Busy>(&payloads).await.unwrap();
    let running = worker.start().await.unwrap();
    support::eventually(Duration::from_secs(10), "the first handler started", || {
        let r = recorder.clone();
        async move { !r.attempts("b0").is_empty() }
    })
    .await;

    tokio::time::timeout(Duration::from_secs(15), running.shutdown())
        .await
        .expect("the stop waited for a busy handler slot instead of the grace period")
        .unwrap();
    assert_eq!(
        (recorder.attempts("b1"), recorder.attempts("b2")),
        (vec![], vec![]),
        "deliveries waiting for a slot never start after the stop"
    );
    let conn = support::connect().await;
    support::eventually(
        Duration::from_secs(10),
        "all three back in the queue",
        || {
            let conn = &conn;
            async move { support::depth(conn, Busy::QUEUE).await == 3 }
        },
    )
    .await;
    assert_eq!(support::depth(&conn, "it.worker.busy.parking").await, 0);
}

/// Deleting the work queue under a running worker makes the broker cancel
/// its consumer: the worker declares the queue again and goes on consuming.
#[tokio::test]
async fn a_queue_deleted_under_the_worker_is_declared_again_and_consumed() {
    support::reset(Deleted::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = worker(&recorder).register(Deleted).start().await.unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(&mut readiness, true, "ready").await;

    support::delete_queues(&[Deleted::QUEUE]).await;
    support::readiness_becomes(
        &mut readiness,
        false,
        "not ready while the consumer is gone",
    )
    .await;
    support::readiness_becomes(
        &mut readiness,
        true,
        "ready again after declaring the queue anew",
    )
    .await;

    Publisher::from_env()
        .enqueue::<Deleted>(&Script::ok("after"))
        .await
        .expect("the queue exists again");
    support::eventually(
        Duration::from_secs(10),
        "handled after the redeclare",
        || {
            let r = recorder.clone();
            async move { r.done_count() == 1 }
        },
    )
    .await;
    running.shutdown().await.unwrap();
}

//! The work queue's own options against a real RabbitMQ: priorities, length
//! limits with their overflow, and message TTL. Nothing leaves silently:
//! a refused publish is an error, a dropped or expired message is parked
//! with the broker's reason.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use worker_core::broker::{Capabilities, QUORUM_HIGH_PRIORITY};
use worker_core::topology::{declare_all, TaskSpec};
use worker_core::{
    EnqueueOptions, Error, Overflow, Publisher, QueueLimits, QueueType, RetryPolicy, Task,
    TaskContext, TaskError, TaskOptions, Worker,
};

/// The order in which handlers ran, by payload.
#[derive(Clone, Default)]
struct Order(Arc<Mutex<Vec<String>>>);

impl Order {
    fn push(&self, payload: String) {
        self.0.lock().unwrap().push(payload);
    }

    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A task on `$queue` that records its payload in [`Order`].
macro_rules! ordered_task {
    ($ty:ident, $queue:literal, $options:expr) => {
        struct $ty;
        impl Task for $ty {
            type Payload = String;
            const NAME: &'static str = $queue;
            const QUEUE: &'static str = $queue;
            fn options(&self) -> TaskOptions {
                $options
            }
            async fn run(&self, ctx: TaskContext, payload: String) -> Result<(), TaskError> {
                let order = ctx
                    .state::<Order>()
                    .ok_or_else(|| TaskError::permanent("no order"))?;
                order.push(payload);
                Ok(())
            }
        }
    };
}

/// One at a time, so the order of runs is the order of deliveries.
fn one_at_a_time(queue_type: QueueType, priority: u8) -> TaskOptions {
    TaskOptions {
        retry: RetryPolicy::none(),
        prefetch: Some(1),
        concurrency: 1,
        queue_type,
        priority: Some(priority),
        ..TaskOptions::default()
    }
}

ordered_task!(
    ClassicPriority,
    "it.qopts.priority.classic",
    one_at_a_time(QueueType::Classic, 10)
);
ordered_task!(
    QuorumPriority,
    "it.qopts.priority.quorum",
    one_at_a_time(QueueType::Quorum, 10)
);

fn limited(queue_type: QueueType, limits: QueueLimits) -> TaskOptions {
    TaskOptions {
        retry: RetryPolicy::none(),
        queue_type,
        limits,
        ..TaskOptions::default()
    }
}

ordered_task!(
    RejectPublish,
    "it.qopts.reject-publish",
    limited(
        QueueType::Quorum,
        QueueLimits {
            max_length: Some(2),
            ..QueueLimits::default()
        }
    )
);
ordered_task!(
    DropHead,
    "it.qopts.drop-head",
    limited(
        QueueType::Classic,
        QueueLimits {
            max_length: Some(2),
            overflow: Overflow::DropHead,
            ..QueueLimits::default()
        }
    )
);
ordered_task!(
    Expiring,
    "it.qopts.expiring",
    limited(
        QueueType::Quorum,
        QueueLimits {
            message_ttl: Some(Duration::from_millis(200)),
            ..QueueLimits::default()
        }
    )
);

/// Deletes the task's queues and declares them afresh, as a worker would.
async fn fresh<T: Task>(task: &T) -> Capabilities {
    support::reset(T::QUEUE, &[]).await;
    let caps = support::capabilities().await;
    let spec = Arc::new(TaskSpec::new(T::NAME, T::QUEUE, task.options()));
    let conn = support::connect().await;
    declare_all(&conn, &[spec], caps)
        .await
        .expect("the task's queues are declared");
    caps
}

async fn enqueue_with_priority<T: Task<Payload = String>>(
    publisher: &Publisher,
    body: &str,
    priority: u8,
) {
    publisher
        .enqueue_with::<T>(
            &body.to_owned(),
            EnqueueOptions::default().with_priority(priority),
        )
        .await
        .expect("confirmed");
}

/// Runs a worker over a backlog until `expected` handlers ran; returns the order.
async fn handle_backlog<T: Task>(task: T, expected: usize) -> Vec<String> {
    let order = Order::default();
    let running = Worker::from_env()
        .state(order.clone())
        .register(task)
        .start()
        .await
        .expect("the worker starts");
    support::eventually(Duration::from_secs(20), "the backlog was handled", || {
        let order = order.clone();
        async move { order.seen().len() == expected }
    })
    .await;
    running.shutdown().await.unwrap();
    order.seen()
}

#[tokio::test]
async fn high_priority_messages_run_before_a_low_priority_backlog_classic() {
    fresh(&ClassicPriority).await;
    let publisher = Publisher::from_env();
    for n in 0..8 {
        enqueue_with_priority::<ClassicPriority>(&publisher, &format!("low{n}"), 1).await;
    }
    for n in 0..3 {
        enqueue_with_priority::<ClassicPriority>(&publisher, &format!("high{n}"), 9).await;
    }
    let order = handle_backlog(ClassicPriority, 11).await;
    assert_eq!(
        order[..4],
        ["high0", "high1", "high2", "low0"],
        "highest priority first, then in order: {order:?}"
    );
}

#[tokio::test]
async fn quorum_priorities_serve_high_first_on_4_x_and_are_refused_on_3_x() {
    let caps = support::capabilities().await;
    support::reset(QuorumPriority::QUEUE, &[]).await;
    if !caps.quorum_priorities() {
        let started = Worker::from_env()
            .state(Order::default())
            .register(QuorumPriority)
            .start()
            .await;
        let Err(err) = started else {
            panic!("a worker must refuse quorum priorities that {caps} would ignore");
        };
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(
            err.to_string().contains("queue_type = \"classic\""),
            "{err}"
        );
        return;
    }
    fresh(&QuorumPriority).await;
    let publisher = Publisher::from_env();
    for n in 0..6 {
        enqueue_with_priority::<QuorumPriority>(&publisher, &format!("low{n}"), 0).await;
    }
    for n in 0..3 {
        enqueue_with_priority::<QuorumPriority>(
            &publisher,
            &format!("high{n}"),
            QUORUM_HIGH_PRIORITY,
        )
        .await;
    }
    let order = handle_backlog(QuorumPriority, 9).await;
    let expected = if caps.quorum_priorities_strict() {
        // 4.3+: strict priorities, highest first.
        ["high0", "high1", "high2", "low0", "low1", "low2"]
    } else {
        // 4.0-4.2: two high ones, then one normal one, while both wait (see
        // Capabilities::quorum_priority_levels): high before the backlog,
        // not strictly.
        ["high0", "high1", "low0", "high2", "low1", "low2"]
    };
    assert_eq!(order[..6], expected, "{caps}: {order:?}");
}

#[tokio::test]
async fn a_full_queue_with_reject_publish_fails_the_enqueue() {
    fresh(&RejectPublish).await;
    let publisher = Publisher::from_env();
    let send = |n: u32| {
        let publisher = publisher.clone();
        async move { publisher.enqueue::<RejectPublish>(&format!("m{n}")).await }
    };
    // Quorum queues enforce the limit softly: the publish that takes the
    // queue over it is still taken, the next one is refused.
    for n in 1..=3 {
        send(n).await.expect("room for it");
    }
    let err = send(4).await.expect_err("the queue is full");
    assert!(matches!(err, Error::Nacked { .. }), "{err}");
    assert!(err.to_string().contains("may be full"), "{err}");
    let conn = support::connect().await;
    assert_eq!(support::depth(&conn, RejectPublish::QUEUE).await, 3);
    assert_eq!(
        support::depth(&conn, &format!("{}.parking", RejectPublish::QUEUE)).await,
        0,
        "a refused message is the producer's to handle, not parked"
    );
}

/// The parked messages of a task: (body, reason), oldest first, taken
/// from its parking queue. The reason as `parked list` shows it: the
/// worker's `rw-park-reason`, or `dead-lettered: <reason>` from the
/// broker's `x-death` for a message the broker parked itself.
async fn parked_reasons(queue: &str, expected: usize) -> Vec<(String, String)> {
    let parking = format!("{queue}.parking");
    let conn = &support::connect().await;
    support::eventually(Duration::from_secs(10), "the message was parked", || {
        let parking = parking.clone();
        async move { support::depth(conn, &parking).await as usize == expected }
    })
    .await;
    support::drain(conn, &parking)
        .await
        .iter()
        .map(|m| {
            let props = &m.delivery.properties;
            let reason = support::header_str(props, worker_core::headers::PARK_REASON)
                .or_else(|| {
                    support::x_death(props)
                        .first()
                        .map(|(_, reason)| format!("dead-lettered: {reason}"))
                })
                .unwrap_or_else(|| "unknown".to_owned());
            (
                String::from_utf8_lossy(&m.delivery.data).into_owned(),
                reason,
            )
        })
        .collect()
}

#[tokio::test]
async fn drop_head_parks_the_oldest_with_reason_maxlen() {
    fresh(&DropHead).await;
    let publisher = Publisher::from_env();
    for n in 1..=3 {
        publisher
            .enqueue::<DropHead>(&format!("m{n}"))
            .await
            .expect("drop-head takes every publish");
    }
    let parked = parked_reasons(DropHead::QUEUE, 1).await;
    assert_eq!(
        parked,
        [("\"m1\"".to_owned(), "dead-lettered: maxlen".to_owned())]
    );
    let order = handle_backlog(DropHead, 2).await;
    assert_eq!(order, ["m2", "m3"]);
}

#[tokio::test]
async fn an_expired_message_is_parked_with_reason_expired() {
    fresh(&Expiring).await;
    Publisher::from_env()
        .enqueue::<Expiring>(&"late".to_owned())
        .await
        .unwrap();
    let parked = parked_reasons(Expiring::QUEUE, 1).await;
    assert_eq!(
        parked,
        [("\"late\"".to_owned(), "dead-lettered: expired".to_owned())]
    );
    let conn = support::connect().await;
    assert_eq!(support::depth(&conn, Expiring::QUEUE).await, 0);
}

ordered_task!(
    Relimited,
    "it.qopts.relimited",
    limited(
        QueueType::Quorum,
        QueueLimits {
            max_length: Some(5),
            ..QueueLimits::default()
        }
    )
);

#[tokio::test]
async fn changing_a_limit_of_an_existing_queue_says_what_to_do() {
    // The queue as an earlier version of the task declared it: no limit.
    support::reset(Relimited::QUEUE, &[]).await;
    let caps = support::capabilities().await;
    let conn = support::connect().await;
    let before = TaskSpec::new(Relimited::NAME, Relimited::QUEUE, TaskOptions::default());
    declare_all(&conn, &[Arc::new(before)], caps).await.unwrap();

    let started = Worker::from_env()
        .state(Order::default())
        .register(Relimited)
        .start()
        .await;
    let Err(err) = started else {
        panic!("a worker must refuse a queue whose arguments differ from its options");
    };
    assert!(matches!(err, Error::TopologyMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("x-max-length"), "names the argument: {text}");
    assert!(
        text.contains("make the task's options match it") && text.contains("delete it"),
        "says what to do: {text}"
    );
}

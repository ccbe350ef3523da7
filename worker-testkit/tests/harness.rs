//! The harness itself: reports, state, user layers, whole message lives.

mod common;

use std::any::TypeId;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{retry_options, secs, Scripted, Work};
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use worker_core::middleware::{BoxJobService, DeliveryLimitLayer};
use worker_core::worker::Settlement;
use worker_core::{Job, Outcome, Task, TaskContext, TaskError, TaskOptions};
use worker_testkit::{DeliveryBuilder, Harness, RunEnd};

fn down() -> TaskError {
    TaskError::transient("upstream is down")
}

#[tokio::test(start_paused = true)]
async fn follows_a_message_through_both_tiers_into_parking() {
    let harness = Harness::new(Scripted::new(retry_options(2, &[1, 5], 5), |_, _| async {
        Err(down())
    }));

    // Delivery 1: attempts 1-2, then the 1 s tier.
    let report = harness.run_payload(&Work { id: 1 }).await;
    assert_eq!(report.redelivered_to(), Some((secs(1), 2)), "{report}");
    let copy = report.redelivered_copy().expect("copy").clone();

    // Back from the 1 s tier: attempts 3-4, then the 5 s tier.
    let back = DeliveryBuilder::returned_from_tier(&copy, "work")
        .tag(2)
        .build();
    let report = harness.run(back).await;
    let attempts: Vec<u32> = report.runs().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [3, 4], "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(5), 4)));
    let copy = report.redelivered_copy().expect("copy").clone();
    assert_eq!(copy.header_u64("rw-redeliveries"), Some(2));
    assert!(
        copy.headers().x_death().is_empty(),
        "the tier's x-death is not carried over"
    );

    // Back from the 5 s tier: attempt 5 is the last, then parking.
    let back = DeliveryBuilder::returned_from_tier(&copy, "work")
        .tag(3)
        .build();
    let report = harness.run(back).await;
    assert_eq!(report.handler_runs(), 1, "{report}");
    let parked = report.parked().expect("parked");
    assert_eq!((parked.reason.as_str(), parked.attempts), ("exhausted", 5));

    let mock = harness.mock();
    mock.assert_published_to("work.retry.1s");
    mock.assert_published_to("work.retry.5s");
    mock.assert_published_to("work.parking");
    for tag in 1..=3 {
        mock.assert_acked(tag);
    }
    mock.assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn a_message_keeps_its_priority_through_the_tiers_and_into_parking() {
    let options = TaskOptions {
        priority: Some(10),
        ..retry_options(1, &[1], 2)
    };
    let harness = Harness::new(Scripted::new(options, |_, _| async { Err(down()) }));
    let first = DeliveryBuilder::for_task::<Scripted>(&Work { id: 1 })
        .priority(7)
        .build();
    let report = harness.run(first).await;
    let copy = report.redelivered_copy().expect("a tier copy").clone();
    assert_eq!(copy.properties.priority(), Some(7), "{report}");

    let back = DeliveryBuilder::returned_from_tier(&copy, "work")
        .tag(2)
        .build();
    let report = harness.run(back).await;
    let parked = report.parked().expect("parked");
    assert_eq!(parked.message.properties.priority(), Some(7), "{report}");
}

#[tokio::test(start_paused = true)]
async fn the_report_reads_well_in_a_failure_message() {
    let harness = Harness::new(Scripted::new(retry_options(2, &[1], 5), |_, _| async {
        Err(down())
    }));
    let report = harness.run_payload(&Work { id: 1 }).await;

    let text = report.to_string();

    assert!(
        text.starts_with("delivery 1: outcome Redelivered"),
        "{text}"
    );
    assert!(text.contains("settled with Ack"), "{text}");
    assert!(text.contains("handler service called 2 time(s):"), "{text}");
    assert!(
        text.contains("attempt 1 at +0ns: failed, transient (handler: upstream is down)"),
        "{text}"
    );
    assert!(text.contains("[1] publish to \"work.retry.1s\""), "{text}");
    assert!(text.contains("[2] ack 1"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn payload_runs_take_consecutive_tags() {
    let harness = Harness::new(Scripted::new(TaskOptions::default(), |_, _| async {
        Ok(())
    }));
    for expected in 1..=3 {
        assert_eq!(harness.run_payload(&Work { id: 0 }).await.tag(), expected);
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_continue_from_the_headers() {
    let harness = Harness::new(Scripted::new(
        retry_options(3, &[1], 10),
        |ctx, _| async move {
            if ctx.attempt() < 5 {
                return Err(down());
            }
            Ok(())
        },
    ));
    let report = harness
        .run(
            DeliveryBuilder::for_task::<Scripted>(&Work { id: 0 })
                .attempts(2)
                .build(),
        )
        .await;
    let attempts: Vec<u32> = report.runs().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [3, 4, 5], "{report}");
    assert!(report.succeeded());
}

struct Counter {
    hits: Arc<AtomicU32>,
}

struct NeedsCounter;

impl Task for NeedsCounter {
    type Payload = Work;
    const NAME: &'static str = "count";
    const QUEUE: &'static str = "count";

    fn required_state(&self) -> Vec<(TypeId, &'static str)> {
        vec![(TypeId::of::<Counter>(), "Counter")]
    }

    async fn run(&self, ctx: TaskContext, work: Work) -> Result<(), TaskError> {
        let counter = ctx.state::<Counter>().expect("required state is present");
        counter
            .hits
            .fetch_add(u32::try_from(work.id).unwrap(), Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn shared_state_reaches_the_handler() {
    let hits = Arc::new(AtomicU32::new(0));
    let harness = Harness::new(NeedsCounter).state(Counter { hits: hits.clone() });
    assert!(harness.run_payload(&Work { id: 5 }).await.succeeded());
    assert_eq!(hits.load(Ordering::SeqCst), 5);

    let mut state = worker_core::task::StateMap::default();
    state.insert(Counter { hits: hits.clone() });
    let harness = Harness::new(NeedsCounter).state_map(state);
    assert!(harness.run_payload(&Work { id: 2 }).await.succeeded());
    assert_eq!(hits.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "task count needs shared state of type Counter")]
async fn missing_required_state_panics_like_the_worker_refuses_to_start() {
    let harness = Harness::new(NeedsCounter);
    harness.run_payload(&Work { id: 1 }).await;
}

#[tokio::test(start_paused = true)]
async fn user_layers_wrap_the_handler_inside_the_stack() {
    let seen = Arc::new(AtomicU32::new(0));
    let in_layer = seen.clone();
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Err(down())
    }))
    .wrap_handler(move |handler: BoxJobService| {
        let seen = in_layer.clone();
        BoxCloneSyncService::new(tower::service_fn(move |job: Job| {
            seen.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            async move {
                if job.attempt() == 2 {
                    // The layer answers for the handler on the second try.
                    return Ok::<_, Infallible>(Outcome::Discarded("circuit open".into()));
                }
                handler.oneshot(job).await
            }
        }))
    });

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the retry layer sits outside user layers"
    );
    assert_eq!(report.discarded(), Some("circuit open"), "{report}");
    assert_eq!(report.handler_runs(), 1);
    assert!(matches!(
        report.runs()[0].ended,
        RunEnd::Returned(Outcome::Failed(_))
    ));
}

/// Layers that hold a resource between `poll_ready` and `call` (a
/// concurrency limit, a buffer, a rate limit) panic when called without
/// being made ready; the retry layer calls the handler several times.
#[tokio::test(start_paused = true)]
async fn user_layers_that_need_poll_ready_work_through_in_process_retries() {
    let harness = Harness::new(Scripted::new(
        retry_options(3, &[], 3),
        |ctx, _| async move {
            if ctx.attempt() < 3 {
                Err(down())
            } else {
                Ok(())
            }
        },
    ))
    .wrap_handler(|handler: BoxJobService| {
        BoxCloneSyncService::new(
            tower::ServiceBuilder::new()
                .concurrency_limit(1)
                .service(handler),
        )
    });

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert!(report.succeeded(), "{report}");
    assert_eq!(report.handler_runs(), 3, "{report}");
    assert!(report.acked());
}

/// A user layer may panic while making its future, before anything is
/// polled: that is a caught panic too, never a lost delivery.
#[tokio::test(start_paused = true)]
async fn a_panic_while_calling_a_user_layer_is_caught() {
    let harness = Harness::new(Scripted::new(retry_options(1, &[], 1), |_, _| async {
        Ok(())
    }))
    .wrap_handler(|_handler: BoxJobService| {
        BoxCloneSyncService::new(tower::service_fn(
            |_job: Job| -> std::future::Ready<Result<Outcome, Infallible>> {
                panic!("layer refused synchronously")
            },
        ))
    });

    let report = harness.run_payload(&Work { id: 1 }).await;

    let parked = report.parked().expect("parked after its only attempt");
    assert_eq!(parked.error_kind, "panic", "{report}");
    assert!(
        parked.error_message.contains("layer refused synchronously"),
        "{}",
        parked.error_message
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_can_drive_a_single_layer() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 2), |_, _| async {
        Ok(())
    }));
    let job = harness.job(
        DeliveryBuilder::for_task::<Scripted>(&Work { id: 1 })
            .attempts(2)
            .build(),
    );
    let never = tower::service_fn(|_: Job| async {
        panic!("over the limit: the inner service is not called")
    });
    let limited = tower::Layer::layer(&DeliveryLimitLayer, BoxCloneSyncService::new(never));

    let outcome = limited.oneshot(job).await.unwrap();

    assert!(
        matches!(outcome, Outcome::Failed(f) if f.cause == worker_core::FailureCause::DeliveryLimit)
    );
    harness.mock().assert_nothing_else();
}

#[worker_core::task(queue = "paced", rate = "2/s")]
async fn paced(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[worker_core::task(queue = "unpaced")]
async fn unpaced(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rate_paces_handler_starts_in_one_process() {
    // 2/s: one start every 500 ms, the first at once, shared by every
    // delivery of the task whether they run together or one after another.
    let harness = Harness::new(Paced);
    assert_eq!(
        harness.task_options().rate,
        Some(worker_core::Rate::per_second(2))
    );
    let started = tokio::time::Instant::now();
    let payloads: Vec<u32> = (0..6).collect();
    let reports =
        futures_util::future::join_all(payloads.iter().map(|n| harness.run_payload(n))).await;
    assert!(reports.iter().all(|r| r.handler_runs() == 1));
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(2500));

    // One after another: the slots go on from where they were.
    let started = tokio::time::Instant::now();
    for n in 0..6 {
        let report = harness.run_payload(&n).await;
        assert_eq!(report.handler_runs(), 1, "{report}");
    }
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(3000));

    // Without the option no delivery waits.
    let harness = Harness::new(Unpaced);
    let started = tokio::time::Instant::now();
    for n in 0..6 {
        harness.run_payload(&n).await;
    }
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_waiting_for_its_rate_slot_goes_back_uncharged_at_shutdown() {
    let harness = Harness::new(Paced);
    harness.run_payload(&1).await;
    let trigger = harness.shutdown_trigger();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        trigger.trigger();
    });
    let started = tokio::time::Instant::now();
    let report = harness.run_payload(&2).await;
    assert_eq!(report.handler_runs(), 0, "{report}");
    // Its handler never started: back with a nack, which charges no
    // attempt, as a clean stop returns what it prefetched (a reject would).
    assert!(matches!(report.outcome(), Outcome::NotStarted), "{report}");
    assert_eq!(report.settlement(), Settlement::Return, "{report}");
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(100));
}

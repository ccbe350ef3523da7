//! The default middleware stack, exercised through the harness: retries,
//! delay tiers, parking, timeouts, panics, bad input, delivery limits,
//! shutdown and publish failures. No broker: the channel is the mock.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{millis, retry_options, secs, Notify, Scripted, Work};
use worker_core::__testkit::ShutdownTrigger;
use worker_core::backoff::Backoff;
use worker_core::headers::{
    FIRST_FAILURE, LAST_FAILURE, ORIGINAL_EXCHANGE, ORIGINAL_QUEUE, ORIGINAL_ROUTING_KEY,
    PARK_HOST, PARK_TASK, REDELIVERIES, X_DELIVERY_COUNT,
};
use worker_core::worker::Settlement;
use worker_core::{DeathReason, FailureKind, Outcome, RetryPolicy, Task, TaskError, TaskOptions};
use worker_testkit::mock::Event;
use worker_testkit::{DeliveryBuilder, Harness, RunEnd};

fn always(err: fn() -> TaskError, options: TaskOptions) -> Scripted {
    Scripted::new(options, move |_, _| async move { Err(err()) })
}

fn down() -> TaskError {
    TaskError::transient("upstream is down")
}

fn work(id: u64) -> DeliveryBuilder {
    DeliveryBuilder::for_task::<Scripted>(&Work { id })
}

#[tokio::test(start_paused = true)]
async fn transient_twice_then_success_is_acked_once_after_three_runs() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let task = Scripted::new(retry_options(3, &[1], 5), move |_, _| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n <= 2 {
                Err(TaskError::transient(format!("try {n} failed")))
            } else {
                Ok(())
            }
        }
    });
    let harness = Harness::new(task);

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert!(report.succeeded(), "{report}");
    assert!(report.acked());
    assert_eq!(report.handler_runs(), 3);
    assert_eq!(report.retried_in_process(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let attempts: Vec<u32> = report.runs().iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(report.published().is_empty());
    harness.mock().assert_acked(1);
    harness.mock().assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn always_failing_first_delivery_runs_twice_then_waits_in_the_first_tier() {
    let harness = Harness::new(always(down, retry_options(2, &[1, 5], 5)));
    let delivery = work(7)
        .tag(3)
        .delivery_count(0)
        .header("tenant", "acme")
        .build();
    let body = delivery.body.clone();

    let report = harness.run(delivery).await;

    assert_eq!(report.handler_runs(), 2, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(1), 2)));
    assert!(report.acked());
    let copy = harness.mock().assert_published_to("work.retry.1s");
    assert_eq!(copy.body, body);
    assert_eq!(copy.header_u64(REDELIVERIES), Some(1));
    assert_eq!(copy.header_str("rw-error-kind").as_deref(), Some("handler"));
    assert_eq!(
        copy.header_str("rw-error-message").as_deref(),
        Some("upstream is down")
    );
    assert!(copy.header_u64(FIRST_FAILURE).is_some());
    assert_eq!(copy.header_str("tenant").as_deref(), Some("acme"));
    assert!(
        !copy.headers().contains(X_DELIVERY_COUNT),
        "x- headers belong to the broker and are dropped from copies"
    );
    assert_eq!(copy.properties.kind(), Some(Scripted::NAME));
    harness.mock().assert_acked(3);
    harness.mock().assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn the_last_allowed_attempt_runs_once_then_parks_as_exhausted() {
    let harness = Harness::new(always(down, retry_options(2, &[1, 5], 5)));
    let delivery = work(7).attempts(4).redeliveries(2).build();

    let report = harness.run(delivery).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    assert_eq!(report.runs()[0].attempt, 5);
    assert!(matches!(
        report.outcome(),
        Outcome::Parked {
            reason: "exhausted",
            attempt: 5
        }
    ));
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "exhausted");
    assert_eq!(parked.attempts, 5);
    assert_eq!(parked.error_message, "upstream is down");
    assert!(report.acked());
    harness.mock().assert_published_to("work.parking");
    harness.mock().assert_acked(1);
    harness.mock().assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn permanent_error_parks_at_once_with_failure_headers_and_the_original_untouched() {
    let harness = Harness::new(always(
        || TaskError::permanent("card declined"),
        retry_options(3, &[1, 5], 5),
    ));
    let delivery = work(9)
        .tag(11)
        .exchange("orders")
        .routing_key("orders.created")
        .message_id("m-9")
        .correlation_id("order-9")
        .timestamp(1_700_000_000)
        .header("tenant", "acme")
        .build();
    let original = delivery.clone();

    let report = harness.run(delivery).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "permanent");
    assert_eq!(parked.attempts, 1);
    assert_eq!(parked.error_kind, "handler");
    assert_eq!(parked.error_message, "card declined");
    let h = parked.headers();
    assert_eq!(h.get_str(PARK_TASK).as_deref(), Some("work.do"));
    assert_eq!(h.get_str(ORIGINAL_EXCHANGE).as_deref(), Some("orders"));
    assert_eq!(
        h.get_str(ORIGINAL_ROUTING_KEY).as_deref(),
        Some("orders.created")
    );
    assert_eq!(h.get_str(ORIGINAL_QUEUE).as_deref(), Some("work"));
    assert!(h.get_str(PARK_HOST).is_some_and(|host| !host.is_empty()));
    let first = h.get_u64(FIRST_FAILURE).expect("first failure");
    let last = h.get_u64(LAST_FAILURE).expect("last failure");
    assert!(first <= last && first > 1_600_000_000);

    // Body and properties are the original's; only rw- headers were added.
    assert_eq!(parked.body(), &*original.body);
    let mut props = parked.message.properties.clone();
    props.headers_mut().retain(|name| !name.starts_with("rw-"));
    assert_eq!(props, original.properties);
    assert_eq!(parked.message.exchange, "");
    assert_eq!(parked.message.routing_key, "work.parking");

    // The copy is confirmed before the original is acked.
    assert!(matches!(
        report.events(),
        [Event::Published(p), Event::Ack { tag: 11, multiple: false }] if p.routing_key == "work.parking"
    ));
}

#[tokio::test(start_paused = true)]
async fn panic_is_transient_retried_then_parked_with_the_panic_text() {
    let task = Scripted::new(retry_options(2, &[], 2), |_, work: Work| async move {
        if work.id > 0 {
            panic!("widget {} exploded", work.id);
        }
        Ok(())
    });
    let harness = Harness::new(task);

    let report = harness.run_payload(&Work { id: 7 }).await;

    assert_eq!(report.handler_runs(), 2, "{report}");
    assert!(report
        .runs()
        .iter()
        .all(|r| matches!(r.ended, RunEnd::Panicked)));
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "exhausted");
    assert_eq!(parked.error_kind, "panic");
    assert!(
        parked.error_message.contains("widget 7 exploded"),
        "{}",
        parked.error_message
    );
    assert!(report.acked());
}

#[tokio::test(start_paused = true)]
async fn timeout_is_transient_and_takes_no_wall_clock_time() {
    let task = Scripted::new(retry_options(2, &[60], 5), |_, _| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    let harness = Harness::new(task).timeout(secs(1));
    let wall = std::time::Instant::now();

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert!(wall.elapsed() < secs(5), "took {:?}", wall.elapsed());
    assert_eq!(report.handler_runs(), 2, "{report}");
    assert!(report
        .runs()
        .iter()
        .all(|r| matches!(r.ended, RunEnd::Cancelled)));
    assert_eq!(report.redelivered_to(), Some((secs(60), 2)));
    let copy = report.redelivered_copy().expect("copy");
    assert_eq!(copy.header_str("rw-error-kind").as_deref(), Some("timeout"));
    assert_eq!(
        copy.header_str("rw-error-message").as_deref(),
        Some("handler timed out after 1s")
    );
    // two one-second attempts and one short backoff, on tokio's clock
    assert!(report.elapsed() >= secs(2) && report.elapsed() < secs(5));
}

/// A handler that never returns, on a task with no timeout: the hold
/// budget (4/5 of the broker's consumer timeout) cuts each delivery's
/// attempt short before the broker would time the consumer out, starts no
/// in-process retry it cannot hold, and charges every cut attempt, so the
/// message is parked within its attempts on every broker version.
#[tokio::test(start_paused = true)]
async fn a_handler_that_always_hangs_is_cut_at_the_hold_budget_and_parked_within_its_attempts() {
    let task = Scripted::new(retry_options(3, &[10], 3), |_, _| {
        std::future::pending::<Result<(), TaskError>>()
    });
    let harness = Harness::new(task).consumer_timeout(secs(60));

    let first = harness.run_payload(&Work { id: 1 }).await;
    assert_eq!(
        first.handler_runs(),
        1,
        "no retry here after the budget: {first}"
    );
    assert_eq!(first.redelivered_to(), Some((secs(10), 1)));
    assert!(
        first.elapsed() >= secs(48) && first.elapsed() < secs(49),
        "cut at 4/5 of the 60 s timeout, not {:?}",
        first.elapsed()
    );
    let copy = first.redelivered_copy().expect("a copy in the tier");
    assert_eq!(copy.header_str("rw-error-kind").as_deref(), Some("timeout"));
    assert!(copy
        .header_str("rw-error-message")
        .is_some_and(|m| m.contains("hold budget")));

    let second = harness
        .run(DeliveryBuilder::returned_from_tier(copy, Scripted::QUEUE).build())
        .await;
    assert_eq!(second.handler_runs(), 1, "{second}");
    let copy = second.redelivered_copy().expect("a second trip");
    let third = harness
        .run(DeliveryBuilder::returned_from_tier(copy, Scripted::QUEUE).build())
        .await;
    let parked = third.parked().expect("parked after its last attempt");
    assert_eq!(parked.reason, "exhausted");
    assert_eq!(parked.attempts, 3);
}

/// Within the hold budget, the task's own timeout and in-process retries
/// work as before; a retry starts only while the budget can hold it.
#[tokio::test(start_paused = true)]
async fn in_process_retries_run_while_the_hold_budget_lasts() {
    let task = Scripted::new(retry_options(5, &[10], 9), |_, _| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    // 20 s attempts under a 48 s budget: two fit, the third is cut at 48 s.
    let harness = Harness::new(task)
        .timeout(secs(20))
        .consumer_timeout(secs(60));

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 3, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(10), 3)));
    assert!(report.elapsed() < secs(49), "held {:?}", report.elapsed());
    let copy = report.redelivered_copy().expect("copy");
    assert!(copy
        .header_str("rw-error-message")
        .is_some_and(|m| m.contains("hold budget")));
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_skips_in_process_retries_and_picks_a_tier_at_least_that_long() {
    let ask = || TaskError::retry_after(Duration::from_secs(3600), "rate limited");
    let harness = Harness::new(always(ask, retry_options(3, &[1, 600, 7200], 5)));

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(7200), 1)));
    harness.mock().assert_published_to("work.retry.2h");
}

/// Seconds since the epoch, as the framework stamps them.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_every_tier_waits_in_the_longest_until_due() {
    let ask = || TaskError::retry_after(Duration::from_secs(3600), "rate limited");
    let harness = Harness::new(always(ask, retry_options(3, &[1, 5], 5)));

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(5), 1)));
    let copy = report.redelivered_copy().expect("copy").clone();
    let due = copy.header_u64("rw-not-before").expect("rw-not-before");
    let asked = unix_now() + 3600;
    assert!(
        (asked - 2..=asked + 1).contains(&due),
        "due {due}, asked {asked}"
    );

    // Back from the tier long before it is due: to the tier again, without
    // running and without being charged an attempt.
    let back = DeliveryBuilder::returned_from_tier(&copy, "work")
        .tag(2)
        .build();
    let report = harness.run(back).await;
    assert_eq!(report.handler_runs(), 0, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(5), 1)), "{report}");
    let again = report.redelivered_copy().expect("copy");
    assert_eq!(again.header_u64("rw-not-before"), Some(due));
    assert_eq!(
        again.header_u64("rw-attempts"),
        copy.header_u64("rw-attempts")
    );
    assert_eq!(
        again.header_u64("rw-redeliveries"),
        copy.header_u64("rw-redeliveries")
    );
    assert!(
        report.acked(),
        "the early copy is acked once its next wait is confirmed"
    );

    // Once due, it runs: attempt 2.
    let due_now = DeliveryBuilder::returned_from_tier(&copy, "work")
        .tag(3)
        .header("rw-not-before", unix_now() - 1)
        .build();
    let report = harness.run(due_now).await;
    assert_eq!(report.runs()[0].attempt, 2, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_short_retry_after_is_slept_in_process_for_exactly_that_long() {
    let ask = || TaskError::retry_after(millis(300), "busy");
    let harness = Harness::new(always(ask, retry_options(2, &[1, 5], 5)));

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 2, "{report}");
    assert_eq!(report.backoff_delays(), [millis(300)]);
    assert_eq!(report.redelivered_to(), Some((secs(1), 2)));
}

#[tokio::test(start_paused = true)]
async fn unclassified_errors_follow_the_task_option() {
    let parse = || TaskError::from("x".parse::<u32>().unwrap_err());
    let options = TaskOptions {
        unclassified: FailureKind::Permanent,
        ..retry_options(3, &[1], 5)
    };
    let harness = Harness::new(always(parse, options));
    let report = harness.run_payload(&Work { id: 1 }).await;
    assert_eq!(report.handler_runs(), 1, "{report}");
    assert_eq!(report.parked().expect("parked").reason, "permanent");

    // The default treats them as transient.
    let harness = Harness::new(always(parse, retry_options(3, &[1], 5)));
    let report = harness.run_payload(&Work { id: 1 }).await;
    assert_eq!(report.handler_runs(), 3, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(1), 3)));
}

#[tokio::test(start_paused = true)]
async fn undecodable_body_is_parked_without_reaching_the_handler() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));

    let report = harness
        .run(
            DeliveryBuilder::raw(&br#"{"id": "#[..])
                .task("work.do")
                .build(),
        )
        .await;

    assert_eq!(report.handler_runs(), 0, "{report}");
    assert_eq!(
        report.runs().len(),
        1,
        "decoding is tried once, never retried"
    );
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "undecodable");
    assert_eq!(parked.error_kind, "undecodable");
    assert!(parked.error_message.contains("cannot decode"));
    assert_eq!(parked.body(), br#"{"id": "#);
    assert!(report.acked());
}

#[tokio::test(start_paused = true)]
async fn a_payload_of_the_wrong_shape_is_undecodable() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));
    let report = harness
        .run(DeliveryBuilder::json(&["not", "work"]).build())
        .await;
    assert_eq!(report.parked().expect("parked").reason, "undecodable");
}

#[tokio::test(start_paused = true)]
async fn empty_body_is_parked_as_undecodable() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));

    let report = harness.run(work(1).body(Vec::new()).build()).await;

    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "undecodable");
    assert!(
        parked.error_message.contains("empty body"),
        "{}",
        parked.error_message
    );
    assert_eq!(report.handler_runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn unsupported_content_type_is_parked_as_undecodable() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));
    let report = harness.run(work(1).content_type("text/xml").build()).await;
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "undecodable");
    assert!(parked.error_message.contains("unsupported content type"));
}

#[tokio::test(start_paused = true)]
async fn body_over_max_body_bytes_is_parked_as_too_large() {
    let options = TaskOptions {
        max_body_bytes: 16,
        ..retry_options(3, &[1], 5)
    };
    let harness = Harness::new(Scripted::new(options, |_, _| async { Ok(()) }));

    let report = harness
        .run(work(123_456_789_012_345).header("pad", "x").build())
        .await;

    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "too-large", "{report}");
    assert!(parked
        .error_message
        .contains("exceeds the task's limit of 16 bytes"));
    assert_eq!(report.handler_runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_task_name_is_parked_without_running_the_handler() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));

    let report = harness.run(work(1).task("work.undo").build()).await;

    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "unknown-task", "{report}");
    assert!(parked.error_message.contains("\"work.undo\""));
    // Filed under the task it named, not the queue's registered task.
    assert_eq!(
        parked
            .message
            .properties
            .headers()
            .get_str("rw-park-task")
            .as_deref(),
        Some("work.undo"),
        "{report}"
    );
    assert_eq!(report.handler_runs(), 0);

    // No name at all goes to the queue's task, as in the worker.
    let report = harness
        .run(DeliveryBuilder::json(&Work { id: 1 }).build())
        .await;
    assert!(report.succeeded(), "{report}");
}

#[tokio::test(start_paused = true)]
async fn discard_is_acked_and_reported() {
    let harness = Harness::new(always(
        || TaskError::discard("order was cancelled"),
        retry_options(3, &[1], 5),
    ));

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert!(report.acked(), "{report}");
    assert_eq!(report.discarded(), Some("order was cancelled"));
    assert_eq!(report.handler_runs(), 1);
    harness.mock().assert_acked(1);
    harness.mock().assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn a_quarantined_delivery_returned_past_max_attempts_parks_without_running_the_handler() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        panic!("the handler must not run")
    }));

    let quarantine = harness.spec().quarantine.clone();
    let report = harness
        .run(work(1).routing_key(&quarantine).delivery_count(5).build())
        .await;

    assert!(report.runs().is_empty(), "{report}");
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "delivery-limit");
    assert_eq!(parked.error_kind, "delivery-limit");
    assert_eq!(parked.attempts, 5);
    assert!(parked.error_message.contains("5 unsettled deliveries"));
    assert!(report.acked());
}

#[tokio::test(start_paused = true)]
async fn a_delivery_returned_from_the_work_queue_is_quarantined_without_charging_an_attempt() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));
    let report = harness
        .run(work(1).delivery_count(4).attempts(2).build())
        .await;
    assert!(
        report.runs().is_empty(),
        "returned deliveries do not run in place: {report}"
    );
    assert!(
        matches!(report.outcome(), Outcome::Quarantined { attempts: 2 }),
        "{report}"
    );
    assert!(report.acked(), "acked once the copy is confirmed");
    let quarantine = harness.spec().quarantine.clone();
    let copies = report.published_to(&quarantine);
    assert_eq!(copies.len(), 1, "{report}");
    assert_eq!(copies[0].header_u64("rw-attempts"), Some(2));
    assert_eq!(
        copies[0].header_u64("x-delivery-count"),
        None,
        "broker headers dropped"
    );

    let report = harness
        .run(DeliveryBuilder::from_published(copies[0]).build())
        .await;
    assert_eq!(report.runs()[0].attempt, 3, "the returns were not charged");
    assert!(report.succeeded(), "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_return_from_quarantine_is_charged_and_the_last_attempt_still_runs() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));
    let quarantine = harness.spec().quarantine.clone();
    let report = harness
        .run(work(1).routing_key(&quarantine).delivery_count(4).build())
        .await;
    assert_eq!(report.runs()[0].attempt, 5);
    assert!(report.succeeded(), "{report}");
}

#[tokio::test(start_paused = true)]
async fn broker_rejections_in_x_death_count_towards_the_limit() {
    let harness = Harness::new(Scripted::new(retry_options(3, &[1], 5), |_, _| async {
        Ok(())
    }));
    let delivery = work(1)
        .attempts(2)
        .dead_lettered("work.retry.1s", DeathReason::Expired, 2)
        .dead_lettered("work", DeathReason::Rejected, 3)
        .build();

    let report = harness.run(delivery).await;

    assert!(report.runs().is_empty(), "{report}");
    assert_eq!(report.parked().expect("parked").reason, "delivery-limit");
}

/// A parking queue that refuses copies must not lose the message: it goes
/// back to the broker (charged, after a backoff), never to the work queue's
/// dead-letter route (the same broken parking queue; a classic queue would
/// drop it), and the worker reports unready until parking works again.
#[tokio::test(start_paused = true)]
async fn a_failing_park_publish_returns_the_delivery_and_makes_the_worker_unready() {
    let harness = Harness::new(always(
        || TaskError::permanent("bad data"),
        retry_options(3, &[1], 5),
    ));
    harness.mock().fail_publishes_to("work.parking");

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.settlement(), Settlement::Requeue, "{report}");
    assert!(report.dead_lettered().is_none(), "{report}");
    assert!(!report.acked());
    assert!(report.parked().is_none());
    harness.mock().assert_publish_failed_to("work.parking");
    harness.mock().assert_rejected_requeue(1);
    harness.mock().assert_nothing_else();
    assert!(!harness.parking_ok(), "parking is reported broken");

    // Parking is back: the next attempt parks and the worker is ready again.
    harness.mock().heal();
    let report = harness.run(work(1).tag(2).build()).await;
    assert!(report.parked().is_some(), "{report}");
    assert!(harness.parking_ok(), "parking works again");
}

#[tokio::test(start_paused = true)]
async fn a_failing_tier_publish_requeues_with_a_counted_reject_after_a_backoff() {
    let harness = Harness::new(always(down, retry_options(1, &[1], 5)));
    harness.mock().fail_next_publishes(1);

    let started = tokio::time::Instant::now();
    let report = harness.run_payload(&Work { id: 1 }).await;

    assert!(report.requeued(), "{report}");
    assert!(matches!(report.outcome(), Outcome::Requeue));
    // reject (counted by every broker version), not nack (uncounted on 4.3)
    harness.mock().assert_publish_failed_to("work.retry.1s");
    harness.mock().assert_rejected_requeue(1);
    harness.mock().assert_nothing_else();
    // held for the task's backoff first: no hot loop through the broker
    assert!(started.elapsed() >= millis(100), "{report}");
}

#[tokio::test(start_paused = true)]
async fn an_unroutable_tier_requeues_too() {
    let harness = Harness::new(always(down, retry_options(1, &[1], 5)));
    harness.mock().make_unroutable("work.retry.1s");
    let report = harness.run_payload(&Work { id: 1 }).await;
    assert!(report.requeued(), "{report}");
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_there_are_no_in_process_retries() {
    let harness = Harness::new(always(down, retry_options(3, &[1], 5)));
    harness.trigger_shutdown();

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    assert_eq!(report.redelivered_to(), Some((secs(1), 1)));
    assert!(report.acked());
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_backoff_sleep_ends_the_retries_at_once() {
    let mut options = retry_options(3, &[1], 5);
    options.retry.backoff = Backoff::new(secs(10), secs(10));
    let harness = Harness::new(always(down, options));
    let trigger = harness.shutdown_trigger();
    tokio::spawn(async move {
        tokio::time::sleep(millis(100)).await;
        trigger.trigger();
    });

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    assert_eq!(report.elapsed(), millis(100));
    assert_eq!(report.redelivered_to(), Some((secs(1), 1)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_triggered_by_the_handler_stops_the_retries() {
    let harness = Harness::new(Scripted::new(
        retry_options(3, &[1], 5),
        |ctx, _| async move {
            ctx.state::<Arc<ShutdownTrigger>>()
                .expect("trigger in state")
                .trigger();
            Err(down())
        },
    ));
    let trigger = harness.shutdown_trigger();
    let harness = harness.state(trigger);

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 1, "{report}");
    assert!(report.redelivered_to().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_one_hour_backoff_finishes_instantly_on_the_paused_clock() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let mut options = retry_options(2, &[], 2);
    options.retry.backoff = Backoff::new(secs(3600), secs(3600));
    // An hour's wait in process needs a broker whose consumer timeout
    // lets the worker hold the delivery that long (the default 30 minutes
    // does not: the retry would go to a tier instead).
    let harness = Harness::new(Scripted::new(options, move |_, _| {
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                Err(down())
            } else {
                Ok(())
            }
        }
    }))
    .consumer_timeout(secs(3 * 3600));
    let wall = std::time::Instant::now();

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert!(report.succeeded(), "{report}");
    assert_eq!(report.backoff_delays(), [secs(3600)]);
    assert!(report.elapsed() >= secs(3600));
    assert!(wall.elapsed() < secs(5), "took {:?}", wall.elapsed());
}

#[tokio::test(start_paused = true)]
async fn backoff_stays_between_min_and_max_over_many_seeded_draws() {
    let backoff = Backoff::new(millis(50), millis(800));
    let policy = RetryPolicy::default()
        .in_process(10)
        .backoff(backoff)
        .tiers([])
        .max_attempts(100);
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..40 {
        let harness = Harness::new(always(down, TaskOptions::default()))
            .retry(policy.clone())
            .seed(seed);
        let report = harness.run_payload(&Work { id: seed }).await;
        let delays = report.backoff_delays();
        assert_eq!(delays.len(), 9, "{report}");
        for (i, d) in delays.iter().enumerate() {
            // The i-th retry waits min * 2^i at most (capped), half that at least.
            let exp = millis(50) * 2u32.pow(i as u32);
            let base = exp.min(millis(800));
            assert!(
                *d >= backoff.min && *d <= backoff.max,
                "seed {seed}: delay {d:?} out of [{:?}, {:?}]",
                backoff.min,
                backoff.max
            );
            assert!(
                *d >= (base / 2).max(backoff.min) && *d <= base + millis(1),
                "seed {seed}, retry {}: {d:?} not within jitter of {base:?}",
                i + 1
            );
        }
        distinct.insert(delays);
        // Without tiers, exhausted in-process retries park the message.
        assert_eq!(report.parked().expect("parked").reason, "exhausted");
    }
    assert!(distinct.len() > 30, "jitter should vary with the seed");

    // The same seed draws the same delays.
    let run = |seed| {
        let harness = Harness::new(always(down, TaskOptions::default()))
            .retry(policy.clone())
            .seed(seed);
        async move { harness.run_payload(&Work { id: 0 }).await.backoff_delays() }
    };
    assert_eq!(run(7).await, run(7).await);
}

#[tokio::test(start_paused = true)]
async fn the_correlation_id_is_propagated_to_tasks_enqueued_by_the_handler() {
    let harness = Harness::new(Scripted::new(
        retry_options(3, &[1], 5),
        |ctx, work: Work| async move {
            ctx.enqueue::<Notify>(&Work { id: work.id + 1 }).await?;
            Ok(())
        },
    ));

    let report = harness
        .run(work(41).tag(2).correlation_id("order-41").build())
        .await;

    assert!(report.succeeded(), "{report}");
    let sent = harness.mock().assert_enqueued::<Notify>();
    assert_eq!(sent.properties.correlation_id(), Some("order-41"));
    assert_eq!(sent.json::<Work>(), Work { id: 42 });
    assert_eq!(sent.routing_key, "notify");
    harness.mock().assert_acked(2);
    harness.mock().assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn without_a_correlation_id_the_message_id_is_propagated() {
    let harness = Harness::new(Scripted::new(
        retry_options(3, &[1], 5),
        |ctx, work: Work| async move {
            ctx.enqueue::<Notify>(&work).await?;
            Ok(())
        },
    ));

    harness.run(work(1).message_id("m-1").build()).await;

    let sent = harness.mock().assert_enqueued::<Notify>();
    assert_eq!(sent.properties.correlation_id(), Some("m-1"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_enqueue_inside_the_handler_is_a_transient_failure() {
    let harness = Harness::new(Scripted::new(
        retry_options(2, &[1], 5),
        |ctx, work: Work| async move {
            ctx.enqueue::<Notify>(&work).await?;
            Ok(())
        },
    ));
    harness.mock().fail_publishes_to("notify");

    let report = harness.run_payload(&Work { id: 1 }).await;

    assert_eq!(report.handler_runs(), 2, "{report}");
    let copy = report.redelivered_copy().expect("copy");
    assert!(copy
        .header_str("rw-error-message")
        .is_some_and(|m| m.contains("publisher nack")));
}

#[tokio::test(start_paused = true)]
async fn copies_drop_the_per_message_ttl_so_they_cannot_expire_while_waiting() {
    let harness = Harness::new(always(down, retry_options(1, &[1], 2)));

    let report = harness
        .run(work(1).tag(1).expiration("60000").build())
        .await;
    let copy = report.redelivered_copy().expect("tier copy");
    assert_eq!(copy.properties.expiration(), None, "{report}");

    let report = harness
        .run(work(1).tag(2).attempts(1).expiration("60000").build())
        .await;
    let parked = report.parked().expect("parked");
    assert_eq!(parked.message.properties.expiration(), None);
    assert_eq!(
        parked
            .headers()
            .get_str("rw-original-expiration")
            .as_deref(),
        Some("60000")
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_failure_time_survives_redeliveries() {
    let harness = Harness::new(always(down, retry_options(1, &[1], 3)));

    let report = harness
        .run(
            work(1)
                .attempts(2)
                .header(FIRST_FAILURE, 1_650_000_000u64)
                .build(),
        )
        .await;

    let parked = report.parked().expect("parked");
    assert_eq!(parked.headers().get_u64(FIRST_FAILURE), Some(1_650_000_000));
    assert!(parked.headers().get_u64(LAST_FAILURE) > Some(1_650_000_000));
}

/// A producer's `user_id` would make the broker refuse every copy (and
/// close the shared publishing channel); its `CC`/`BCC` would route every
/// copy to more queues. Copies carry neither, and keep both in our headers.
#[tokio::test(start_paused = true)]
async fn copies_never_carry_user_id_cc_or_bcc_and_keep_them_in_our_headers() {
    let harness = Harness::new(always(down, retry_options(1, &[1], 2)));
    let hostile = || {
        work(1)
            .user_id("producer")
            .header("CC", "audit")
            .header("BCC", "work")
    };
    let check = |copy: &worker_testkit::mock::Published| {
        let headers = copy.properties.headers();
        assert_eq!(copy.properties.user_id(), None, "{copy:?}");
        assert!(
            !headers.contains("CC") && !headers.contains("BCC"),
            "{copy:?}"
        );
        assert_eq!(
            headers.get_str("rw-original-user-id").as_deref(),
            Some("producer")
        );
        assert_eq!(headers.get_str("rw-original-cc").as_deref(), Some("audit"));
        assert_eq!(headers.get_str("rw-original-bcc").as_deref(), Some("work"));
    };

    // The first failure waits in a tier.
    let report = harness.run(hostile().build()).await;
    assert!(report.redelivered_to().is_some(), "{report}");
    check(&harness.mock().assert_published_to("work.retry.1s"));

    // The last attempt is parked.
    harness.mock().clear();
    let report = harness.run(hostile().attempts(1).tag(2).build()).await;
    assert!(report.parked().is_some(), "{report}");
    check(&harness.mock().assert_published_to("work.parking"));

    // A delivery that came back unsettled is quarantined.
    harness.mock().clear();
    let report = harness
        .run(hostile().delivery_count(1).tag(3).build())
        .await;
    assert!(report.acked(), "{report}");
    check(&harness.mock().assert_published_to("work.quarantine"));
}

/// `retry_after(Duration::MAX)` from a handler, or a producer's
/// `rw-not-before` far in the future, would cycle through the longest tier
/// forever: both are cut to the documented maximum delay.
#[tokio::test(start_paused = true)]
async fn delays_beyond_the_maximum_are_cut_to_it() {
    use worker_core::middleware::MAX_DELAY;
    let latest = || unix_now() + MAX_DELAY.as_secs();

    let forever = || TaskError::retry_after(Duration::MAX, "come back never");
    let harness = Harness::new(always(forever, retry_options(1, &[1, 5], 5)));
    let report = harness.run_payload(&Work { id: 1 }).await;
    assert_eq!(report.redelivered_to(), Some((secs(5), 1)), "{report}");
    let due = report
        .redelivered_copy()
        .and_then(|c| c.header_u64("rw-not-before"))
        .expect("rw-not-before");
    assert!(due <= latest() + 1 && due + 2 >= latest(), "due {due}");

    let far = work(1).header("rw-not-before", u64::MAX / 2).tag(2).build();
    let report = harness.run(far).await;
    assert_eq!(report.handler_runs(), 0, "{report}");
    let due = report
        .redelivered_copy()
        .and_then(|c| c.header_u64("rw-not-before"))
        .expect("rw-not-before");
    assert!(due <= latest() + 1 && due + 2 >= latest(), "due {due}");
}

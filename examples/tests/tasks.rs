//! The example tasks, unit-tested with worker-testkit: no broker, paused clock.

use std::time::Duration;

use examples::tasks::email::{Email, SendEmail};
use examples::tasks::images::{RenderThumbnail, Thumbnail};
use examples::tasks::orders::{Ledger, OrderEvent, RecordOrderEvent};
use examples::tasks::record::{Record, RecordJob};
use worker_core::task::StateMap;
use worker_core::Task;
use worker_testkit::Harness;

fn email(to: &str, provider_failures: u32) -> Email {
    Email {
        to: to.into(),
        subject: "hello".into(),
        provider_failures,
    }
}

#[tokio::test(start_paused = true)]
async fn a_flaky_provider_is_retried_in_process_until_the_email_goes_out() {
    let harness = Harness::new(SendEmail);
    let report = harness.run_payload(&email("ada@example.com", 2)).await;
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.retried_in_process(), 2, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_provider_down_for_long_sends_the_email_to_the_first_delay_tier() {
    let harness = Harness::new(SendEmail);
    let report = harness.run_payload(&email("ada@example.com", 10)).await;
    assert_eq!(
        report.redelivered_to(),
        Some((Duration::from_secs(1), 3)),
        "{report}"
    );
    assert!(report.acked());
}

#[tokio::test(start_paused = true)]
async fn an_invalid_recipient_is_parked_at_once() {
    let harness = Harness::new(SendEmail);
    let report = harness.run_payload(&email("nobody", 0)).await;
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "permanent");
    assert_eq!(parked.attempts, 1);
    assert!(parked.error_message.contains("invalid recipient"));
}

#[tokio::test(start_paused = true)]
async fn order_events_update_the_shared_ledger() {
    let mut state = StateMap::default();
    state.insert(Ledger::default());
    let harness = Harness::new(RecordOrderEvent).state_map(state.clone());
    for (status, cents) in [("created", 0), ("paid", 1250), ("paid", 750)] {
        let event = OrderEvent {
            order_id: 7,
            status: status.into(),
            amount_cents: cents,
        };
        assert!(harness.run_payload(&event).await.succeeded());
    }
    let unknown = OrderEvent {
        order_id: 7,
        status: "refunded".into(),
        amount_cents: 0,
    };
    let report = harness.run_payload(&unknown).await;
    assert_eq!(report.parked().expect("parked").reason, "permanent");
    let ledger = state.get::<Ledger>().expect("ledger");
    assert_eq!((ledger.created(), ledger.paid_cents()), (1, 2000));
}

#[tokio::test(start_paused = true)]
async fn a_thumbnail_that_renders_too_long_times_out_twice_then_parks() {
    let harness = Harness::new(RenderThumbnail);
    let slow = Thumbnail {
        image: "cat.png".into(),
        render_ms: 60_000,
    };
    let report = harness.run_payload(&slow).await;
    assert_eq!(report.runs().len(), 2, "{report}");
    let parked = report.parked().expect("parked");
    assert_eq!(
        (parked.reason.as_str(), parked.error_kind.as_str()),
        ("exhausted", "timeout")
    );
    let fast = Thumbnail {
        image: "dog.png".into(),
        render_ms: 500,
    };
    assert!(harness.run_payload(&fast).await.succeeded());
}

#[tokio::test(start_paused = true)]
async fn the_record_fixture_fails_as_asked() {
    let harness = Harness::new(Record::default());
    let once = RecordJob {
        id: "a".into(),
        fail: 1,
        ..RecordJob::default()
    };
    let report = harness.run_payload(&once).await;
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.runs().len(), 2);

    let permanent = RecordJob {
        id: "b".into(),
        permanent: true,
        ..RecordJob::default()
    };
    assert_eq!(
        harness
            .run_payload(&permanent)
            .await
            .parked()
            .unwrap()
            .reason,
        "permanent"
    );

    let panics = RecordJob {
        id: "c".into(),
        panic: true,
        ..RecordJob::default()
    };
    let report = harness.run_payload(&panics).await;
    assert_eq!(
        report.redelivered_to().map(|(_, attempt)| attempt),
        Some(2),
        "{report}"
    );
}

#[test]
fn demo_worker_run_help_prints_the_fixture_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_demo-worker"))
        .args(["run", "--help"])
        .output()
        .expect("demo-worker runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    // The fixture's specified behaviour: 2 in process, 5 at most, 1s and 5s tiers.
    let retry = Record::default().options().retry;
    assert_eq!((retry.in_process_attempts, retry.max_attempts), (2, 5));
    assert!(help.contains("2 in-process attempts"), "{help}");
    assert!(
        help.contains("DEMO_RETRY_TIERS") && help.contains("default 1s,5s"),
        "{help}"
    );
    assert!(help.contains("5 attempts at most"), "{help}");
}

#[test]
fn demo_worker_tasks_lists_the_periodic_tick_unless_it_is_off() {
    let tasks = |every: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_demo-worker"))
            .arg("tasks")
            .env("DEMO_TICK_EVERY", every)
            .output()
            .expect("demo-worker runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = tasks("1s");
    assert!(
        listed.contains("periodic demo.tick  task=demo.tick every=1s missed=fire"),
        "{listed}"
    );
    assert!(tasks("2m").contains("every=2m"), "{}", tasks("2m"));
    assert!(!tasks("off").contains("periodic"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_demo-worker"))
        .arg("tasks")
        .env("DEMO_TICK_EVERY", "500ms")
        .output()
        .expect("demo-worker runs");
    assert_eq!(bad.status.code(), Some(3), "a sub-second period is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("DEMO_TICK_EVERY"));
}

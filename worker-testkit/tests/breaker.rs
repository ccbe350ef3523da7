//! The circuit breaker on virtual time, offered deliveries as the worker's
//! consumer takes them: closed, open, half-open with one probe, closed again.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::breaker::BreakerState::{Closed, HalfOpen, Open};
use worker_core::{task, TaskError};
use worker_testkit::{DeliveryBuilder, Harness, Offer};

/// What the handler does with a message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Mode {
    Ok,
    /// Downstream is broken: a transient failure.
    Down,
    /// The message is at fault: a permanent failure.
    Poison,
    /// Works, after 5 s.
    Slow,
}

const COOLDOWN: Duration = Duration::from_secs(10);

#[task(queue = "fragile", breaker = "50%/4", breaker_cooldown = "10s", tiers = [], retries = 0)]
async fn fragile(mode: Mode) -> Result<(), TaskError> {
    match mode {
        Mode::Ok => Ok(()),
        Mode::Down => Err(TaskError::transient("downstream is down")),
        Mode::Poison => Err(TaskError::permanent("no such customer")),
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        }
    }
}

fn ran(offer: &Offer) -> bool {
    !offer.is_held()
}

/// Trips the breaker: 2 of the last 4 failed.
async fn trip(harness: &Harness<Fragile>) {
    for mode in [Mode::Down, Mode::Ok, Mode::Down] {
        assert!(ran(&harness.offer_payload(&mode).await));
        assert_eq!(harness.breaker_state(), Some(Closed), "window not full yet");
    }
    assert!(ran(&harness.offer_payload(&Mode::Ok).await));
    assert_eq!(
        harness.breaker_state(),
        Some(Open),
        "2 of the last 4 failed"
    );
}

#[tokio::test(start_paused = true)]
async fn opens_once_the_share_of_failures_in_the_window_is_reached() {
    let harness = Harness::new(Fragile);
    trip(&harness).await;
}

#[tokio::test(start_paused = true)]
async fn takes_no_delivery_while_open_and_leaves_it_unsettled() {
    let harness = Harness::new(Fragile);
    trip(&harness).await;
    let events = harness.mock().events().len();
    for _ in 0..5 {
        assert!(harness.offer_payload(&Mode::Ok).await.is_held());
    }
    tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
    assert!(harness.offer_payload(&Mode::Ok).await.is_held());
    assert_eq!(harness.breaker_state(), Some(Open));
    assert_eq!(
        harness.mock().events().len(),
        events,
        "a held delivery is neither acked, returned nor published"
    );
}

#[tokio::test(start_paused = true)]
async fn after_the_cooldown_exactly_one_probe_runs_and_its_success_closes() {
    let harness = Harness::new(Fragile);
    trip(&harness).await;
    tokio::time::advance(COOLDOWN).await;

    // The slow probe is running when a second delivery is offered.
    let (probe, second) = tokio::join!(harness.offer_payload(&Mode::Slow), async {
        tokio::task::yield_now().await;
        let state = harness.breaker_state();
        (state, harness.offer_payload(&Mode::Ok).await)
    });
    assert_eq!(second.0, Some(HalfOpen));
    assert!(second.1.is_held(), "one probe at a time");
    let probe = probe.report().expect("the probe ran");
    assert!(probe.acked(), "{probe}");
    assert_eq!(harness.breaker_state(), Some(Closed));

    // Consuming resumes.
    for _ in 0..3 {
        assert!(ran(&harness.offer_payload(&Mode::Ok).await));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_again_for_a_fresh_cooldown() {
    let harness = Harness::new(Fragile);
    trip(&harness).await;
    tokio::time::advance(COOLDOWN).await;
    assert!(ran(&harness.offer_payload(&Mode::Down).await));
    assert_eq!(harness.breaker_state(), Some(Open));

    tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
    assert!(harness.offer_payload(&Mode::Ok).await.is_held());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(ran(&harness.offer_payload(&Mode::Ok).await));
    assert_eq!(harness.breaker_state(), Some(Closed));
}

#[tokio::test(start_paused = true)]
async fn a_poison_probe_decides_nothing_and_an_empty_queue_closes() {
    let harness = Harness::new(Fragile);
    trip(&harness).await;
    tokio::time::advance(COOLDOWN).await;
    let poison = harness.offer_payload(&Mode::Poison).await;
    assert_eq!(
        poison
            .report()
            .and_then(|r| r.parked())
            .map(|p| p.reason.clone()),
        Some("permanent".to_owned())
    );
    assert_eq!(
        harness.breaker_state(),
        Some(HalfOpen),
        "the next message probes"
    );
    assert_eq!(harness.offer_nothing(), Some(Closed));
}

#[tokio::test(start_paused = true)]
async fn poison_and_undecodable_messages_never_trip_it() {
    let harness = Harness::new(Fragile);
    for _ in 0..8 {
        harness.offer_payload(&Mode::Poison).await;
        let bad = DeliveryBuilder::raw(&b"not json"[..]).tag(1000).build();
        let offer = harness.offer(bad).await;
        let parked = offer.report().and_then(|r| r.parked()).expect("parked");
        assert_eq!(parked.reason, "undecodable");
    }
    assert_eq!(harness.breaker_state(), Some(Closed));
}

#[tokio::test(start_paused = true)]
async fn a_task_without_a_breaker_always_runs() {
    #[task(queue = "plain", tiers = [], retries = 0)]
    async fn plain(mode: Mode) -> Result<(), TaskError> {
        let _ = mode;
        Err(TaskError::transient("down"))
    }
    let harness = Harness::new(Plain);
    for _ in 0..10 {
        assert!(ran(&harness.offer_payload(&Mode::Down).await));
    }
    assert_eq!(harness.breaker_state(), None);
}

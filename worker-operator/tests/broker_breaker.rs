//! The circuit breaker against a real RabbitMQ: once a task's handler fails
//! transiently in a row, its queue has no consumer and its backlog stays
//! in the broker, untouched, while another task keeps working; when the
//! downstream is back, the probe after the cool-down succeeds and the
//! backlog drains. Every message is handled or parked with its reason.
//! `status --worker URL` reads the breaker's state from the worker's HTTP
//! endpoint all along, so the test lives with the operator surface.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use worker_core::breaker::BreakerState;
use worker_core::{
    BreakerPolicy, Publisher, RetryPolicy, Task, TaskContext, TaskError, TaskOptions,
};

const FRAGILE: &str = "it.breaker.fragile";
const STEADY: &str = "it.breaker.steady";
const COOLDOWN: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(30);

/// Whether the fragile task's downstream works, and what each task handled
/// (payload, attempt).
#[derive(Clone, Default)]
struct World {
    up: Arc<AtomicBool>,
    fragile: Arc<Mutex<Vec<(String, u32)>>>,
    steady: Arc<Mutex<Vec<String>>>,
}

struct Fragile;

impl Task for Fragile {
    type Payload = String;
    const NAME: &'static str = FRAGILE;
    const QUEUE: &'static str = FRAGILE;

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none(),
            prefetch: Some(10),
            concurrency: 2,
            breaker: Some(BreakerPolicy::in_a_row(3).cooldown(COOLDOWN)),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, payload: String) -> Result<(), TaskError> {
        let world = ctx.state::<World>().expect("the test gives the world");
        if !world.up.load(Ordering::SeqCst) {
            return Err(TaskError::transient("downstream is down"));
        }
        world.fragile.lock().unwrap().push((payload, ctx.attempt()));
        Ok(())
    }
}

struct Steady;

impl Task for Steady {
    type Payload = String;
    const NAME: &'static str = STEADY;
    const QUEUE: &'static str = STEADY;

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none(),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, payload: String) -> Result<(), TaskError> {
        let world = ctx.state::<World>().expect("the test gives the world");
        world.steady.lock().unwrap().push(payload);
        Ok(())
    }
}

async fn enqueue_all<T: Task<Payload = String>>(publisher: &Publisher, payloads: &[String]) {
    for p in payloads {
        publisher
            .enqueue::<T>(p)
            .await
            .expect("enqueued and confirmed");
    }
}

async fn state_becomes(
    state: &mut tokio::sync::watch::Receiver<BreakerState>,
    want: BreakerState,
    what: &str,
) {
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for: {what}"))
        .expect("the breaker lives as long as the worker");
}

#[tokio::test]
async fn an_open_breaker_leaves_the_backlog_in_the_broker_until_the_probe_succeeds() {
    support::reset(FRAGILE, &[]).await;
    support::reset(STEADY, &[]).await;
    let world = World::default();
    let worker = worker_core::Worker::from_env()
        .state(world.clone())
        .register(Fragile)
        .register(Steady);
    let spec = worker
        .specs()
        .into_iter()
        .find(|s| s.name == FRAGILE)
        .unwrap();
    let breaker = worker.breakers().get(&spec).expect("Fragile has a breaker");
    let mut state = breaker.subscribe();
    let publisher = worker.publisher().clone();
    let breakers = worker.breakers();
    let running = worker.start().await.expect("the worker starts");
    let mut readiness = running.readiness();
    // The worker's /readyz, as `run --http` serves it, for `status --worker`.
    let http = worker_operator::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        None,
        readiness.clone(),
        breakers,
    )
    .await
    .expect("the probe endpoint binds");
    let worker_url = format!("http://{}", http.local_addr());
    support::readiness_becomes(&mut readiness, true, "the worker consumes").await;
    let conn = support::connect().await;

    // Three transient failures in a row open the breaker.
    let trips: Vec<String> = (1..=3).map(|n| format!("trip-{n}")).collect();
    enqueue_all::<Fragile>(&publisher, &trips).await;
    state_becomes(&mut state, BreakerState::Open, "the breaker opens").await;
    support::eventually(WAIT, "no consumer on the fragile queue", || async {
        support::ready_and_consumers(&conn, FRAGILE).await.1 == 0
    })
    .await;

    // A backlog arrives while it is open; the other task keeps working.
    let backlog: Vec<String> = (0..20).map(|n| format!("b-{n}")).collect();
    enqueue_all::<Fragile>(&publisher, &backlog).await;
    let steady: Vec<String> = (0..5).map(|n| format!("s-{n}")).collect();
    enqueue_all::<Steady>(&publisher, &steady).await;
    support::eventually(WAIT, "the steady task handled its 5", || async {
        world.steady.lock().unwrap().len() == 5
    })
    .await;
    let untouched = support::ready_and_consumers(&conn, FRAGILE).await;
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "still within the cool-down of {COOLDOWN:?} (a slower machine would need a longer one)"
    );
    assert_eq!(untouched, (20, 0), "the backlog stays, with no consumer");
    assert!(world.fragile.lock().unwrap().is_empty());
    assert!(
        *readiness.borrow(),
        "an open breaker leaves the worker ready"
    );
    // `status --worker URL` says so: the broker alone cannot.
    let asked = worker_operator::ops::breakers::read_all(std::slice::from_ref(&worker_url)).await;
    assert_eq!(asked[0].state_of(FRAGILE), Some("open"), "{asked:?}");
    assert_eq!(asked[0].state_of(STEADY), None, "Steady has no breaker");

    // The downstream is back: after the cool-down the probe succeeds, the
    // breaker closes and the backlog drains.
    world.up.store(true, Ordering::SeqCst);
    state_becomes(
        &mut state,
        BreakerState::Closed,
        "the probe closes the breaker",
    )
    .await;
    support::eventually(WAIT, "the backlog drained", || async {
        world.fragile.lock().unwrap().len() >= 20
    })
    .await;
    let asked = worker_operator::ops::breakers::read_all(&[worker_url]).await;
    assert_eq!(asked[0].state_of(FRAGILE), Some("closed"), "{asked:?}");
    running.shutdown().await.expect("a clean stop");

    // Every message accounted for: the backlog handled once each, on its
    // first attempt (pausing charged none), the trips parked as exhausted.
    let handled = world.fragile.lock().unwrap().clone();
    let ids: BTreeSet<&str> = handled.iter().map(|(p, _)| p.as_str()).collect();
    let expected: BTreeSet<&str> = backlog.iter().map(String::as_str).collect();
    assert_eq!(ids, expected);
    assert_eq!(handled.len(), 20, "no duplicates: {handled:?}");
    assert!(
        handled.iter().all(|(_, attempt)| *attempt == 1),
        "{handled:?}"
    );
    assert_eq!(support::ready_and_consumers(&conn, FRAGILE).await.0, 0);
    let parked = support::drain(&conn, &format!("{FRAGILE}.parking")).await;
    let mut parked: Vec<(String, Option<String>)> = parked
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.delivery.data)
                    .trim_matches('"')
                    .to_owned(),
                support::header_str(&m.delivery.properties, "rw-park-reason"),
            )
        })
        .collect();
    parked.sort();
    let want: Vec<(String, Option<String>)> = trips
        .iter()
        .map(|t| (t.clone(), Some("exhausted".to_owned())))
        .collect();
    assert_eq!(parked, want);

    support::reset(FRAGILE, &[]).await;
    support::reset(STEADY, &[]).await;
}

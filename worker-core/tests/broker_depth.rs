//! The queue-depth gauges against a real RabbitMQ: the worker samples its
//! tasks' queues (work, tiers, quarantine, parking) with passive declares,
//! survives a queue that goes missing, and what one round costs.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::{Recorder, Script};
use worker_core::topology::{tier_queue, QueueRole, TaskSpec};
use worker_core::worker::depth::DepthSampler;
use worker_core::worker::WorkerConfig;
use worker_core::{Publisher, RetryPolicy, Task, TaskOptions, Worker};

const SHORT_TIER: Duration = Duration::from_secs(600);
const LONG_TIER: Duration = Duration::from_secs(3600);

fn two_tiers() -> TaskOptions {
    TaskOptions {
        concurrency: 1,
        prefetch: Some(1),
        retry: RetryPolicy::none().tiers([SHORT_TIER, LONG_TIER]),
        ..TaskOptions::default()
    }
}

scripted_task!(Blocked, "it.depth.blocked", two_tiers());
scripted_task!(Costed, "it.depth.cost", two_tiers());

/// The process-wide Prometheus recorder: the sampler runs on the worker's
/// own task, so a local recorder would not see it.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
        handle
    })
}

/// The value of `name`'s series for `queue`, by its labels; `None` when
/// the series does not exist yet.
fn gauge(name: &str, task: &str, queue: &str, role: &str) -> Option<f64> {
    let text = metrics().render();
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .find_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let labels: BTreeMap<&str, &str> = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            let wanted = BTreeMap::from([("task", task), ("queue", queue), ("role", role)]);
            (labels == wanted).then(|| value.trim().parse().ok())?
        })
}

/// Waits until `name{task,queue,role}` reads `want` (NaN matches NaN).
async fn gauge_becomes(name: &str, task: &str, queue: &str, role: &str, want: f64) {
    let what = format!("{name}{{task={task},queue={queue},role={role}}} == {want}");
    support::eventually(Duration::from_secs(20), &what, || async {
        match gauge(name, task, queue, role) {
            Some(v) if want.is_nan() => v.is_nan(),
            Some(v) => v == want,
            None => false,
        }
    })
    .await;
}

async fn publish_raw(queue: &str, n: usize) {
    let (_conn, ch) = support::channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            format!("depth {i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn worker_exports_the_depth_of_every_queue_of_its_tasks() {
    let metrics = metrics();
    let q = Blocked::QUEUE;
    let (short, long) = (tier_queue(q, SHORT_TIER), tier_queue(q, LONG_TIER));
    let (parking, quarantine) = (format!("{q}.parking"), format!("{q}.quarantine"));
    support::reset(q, &[SHORT_TIER, LONG_TIER]).await;

    let recorder = Recorder::default();
    let running = Worker::from_env()
        .state(recorder.clone())
        .config(WorkerConfig {
            grace_period: Duration::from_millis(200),
            depth_interval: Some(Duration::from_millis(100)),
            ..WorkerConfig::default()
        })
        .register(Blocked)
        .start()
        .await
        .unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(&mut readiness, true, "consuming").await;

    // One handler, prefetch 1, and a handler that sleeps for a minute:
    // one message is out, the other four wait in the work queue.
    let publisher = Publisher::from_env();
    for i in 0..5 {
        let mut job = Script::ok(format!("blocked-{i}"));
        job.sleep_ms = 60_000;
        publisher.enqueue::<Blocked>(&job).await.unwrap();
    }
    publish_raw(&parking, 3).await;
    publish_raw(&long, 2).await;

    let task = Blocked::NAME;
    let m = "rabbit_worker_queue_messages";
    let c = "rabbit_worker_queue_consumers";
    gauge_becomes(m, task, q, "work", 4.0).await;
    gauge_becomes(c, task, q, "work", 1.0).await;
    gauge_becomes(m, task, &quarantine, "quarantine", 0.0).await;
    gauge_becomes(c, task, &quarantine, "quarantine", 1.0).await;
    gauge_becomes(m, task, &short, "tier", 0.0).await;
    gauge_becomes(m, task, &long, "tier", 2.0).await;
    gauge_becomes(c, task, &long, "tier", 0.0).await;
    gauge_becomes(m, task, &parking, "parking", 3.0).await;
    gauge_becomes(c, task, &parking, "parking", 0.0).await;

    // A queue that goes missing reads NaN, and the sampler goes on with
    // the queues after it (its channel was closed by the 404).
    support::delete_queues(&[&short]).await;
    gauge_becomes(m, task, &short, "tier", f64::NAN).await;
    gauge_becomes(c, task, &short, "tier", f64::NAN).await;
    publish_raw(&parking, 1).await;
    publish_raw(&long, 1).await;
    gauge_becomes(m, task, &long, "tier", 3.0).await;
    gauge_becomes(m, task, &parking, "parking", 4.0).await;
    assert!(running.is_ready(), "sampling never touches consuming");

    let text = metrics.render();
    for line in text
        .lines()
        .filter(|l| l.starts_with("rabbit_worker_queue_"))
    {
        assert!(
            line.contains(&format!("task=\"{task}\"")) || line.contains("task=\"it.depth.cost\""),
            "only registered task names are label values: {line}"
        );
    }

    running.shutdown().await.unwrap();
    support::reset(q, &[SHORT_TIER, LONG_TIER]).await;
}

/// Prints what one sampling round costs for a task with five queues (work,
/// quarantine, two tiers, parking) on this broker: the figure in
/// BENCHMARKS.md. Asserts only that it is one round trip's order of
/// magnitude per queue, not a speed.
#[tokio::test]
async fn one_sampling_round_costs_a_round_trip_per_queue() {
    let _ = metrics();
    let q = Costed::QUEUE;
    support::reset(q, &[SHORT_TIER, LONG_TIER]).await;
    let worker = Worker::from_env().register(Costed);
    worker.declare_topology().await.unwrap();
    let specs: Vec<Arc<TaskSpec>> = worker.specs();
    let conn = support::connect().await;
    let mut sampler = DepthSampler::new(&specs);
    assert_eq!(sampler.queue_count(), 5);

    let rounds = 300;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..20 {
        sampler.sample(&conn).await.unwrap(); // warm up (and open the channel)
    }
    for _ in 0..rounds {
        let started = Instant::now();
        let readings = sampler.sample(&conn).await.unwrap();
        times.push(started.elapsed());
        assert!(readings.iter().all(|(_, _, d)| d.is_some()));
        assert!(readings.iter().any(|(_, r, _)| *r == QueueRole::Parking));
    }
    times.sort();
    let median = times[rounds / 2];
    let p90 = times[rounds * 9 / 10];
    let max = times[rounds - 1];

    // The same with one queue missing: a 404 costs the channel, and the
    // next queue opens a new one.
    support::delete_queues(&[&tier_queue(q, SHORT_TIER)]).await;
    let mut missing = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        sampler.sample(&conn).await.unwrap();
        missing.push(started.elapsed());
    }
    missing.sort();

    let broker = std::env::var("RABBIT_WORKER_TEST_BROKER").unwrap_or_else(|_| "?".into());
    println!(
        "depth sampling on RabbitMQ {broker}, task with 5 queues, {rounds} rounds: \
         median {median:?} per round ({:?} per queue), p90 {p90:?}, max {max:?}; \
         with one queue missing: median {:?}, p90 {:?}",
        median / 5,
        missing[rounds / 2],
        missing[rounds * 9 / 10],
    );
    sampler.close().await;
    assert!(
        median < Duration::from_millis(250),
        "a round of 5 passive declares took {median:?}"
    );
    support::reset(q, &[SHORT_TIER, LONG_TIER]).await;
}

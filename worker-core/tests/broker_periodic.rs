//! A cron entry on the broker: the worker is elected for its entry and
//! enqueues one tick per matching second, each with its scheduled time in
//! `rw-scheduled-at` and the `timestamp` property and the message id
//! `tick:<entry>:<secs>`. (Failover across processes:
//! `examples/tests/periodic_broker.rs`.)

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use worker_core::headers::SCHEDULED_AT;
use worker_core::metric_names::{PERIODIC_NEXT_TICK, PERIODIC_TICKS, SCHEDULER_LEADER};
use worker_core::schedule::{last_tick_queue, leader, Periodic};
use worker_core::{Task, TaskContext, TaskError, Worker};

/// (message id, rw-scheduled-at, timestamp) of each run.
#[derive(Clone, Default)]
struct Ticks(Arc<Mutex<Vec<(String, u64, u64)>>>);

struct CronTick;

impl Task for CronTick {
    type Payload = String;
    const NAME: &'static str = "broker-periodic.cron";
    const QUEUE: &'static str = "broker-periodic.cron";

    async fn run(&self, ctx: TaskContext, payload: String) -> Result<(), TaskError> {
        assert_eq!(payload, "from the entry");
        let ticks = ctx.state::<Ticks>().expect("Ticks state");
        ticks.0 .0.lock().unwrap().push((
            ctx.message_id().unwrap_or_default().to_owned(),
            ctx.headers().get_count(SCHEDULED_AT).unwrap_or_default(),
            ctx.delivery().properties.timestamp().unwrap_or_default(),
        ));
        Ok(())
    }
}

/// The process-wide Prometheus recorder (the scheduler runs on its own task).
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
        handle
    })
}

/// The value of metric `name` for periodic entry `entry`.
fn entry_metric(name: &str, entry: &str) -> Option<f64> {
    let text = metrics().render();
    let label = format!("entry=\"{entry}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_entry_enqueues_each_matching_second_once_with_its_time_and_id() {
    support::connect().await;
    let entry_id = format!("broker-periodic.{}", std::process::id());
    let election = leader::election_queue(&entry_id);
    let record = last_tick_queue(&entry_id);
    support::delete_queues(&[CronTick::QUEUE, &election, &record]).await;
    let entry = Periodic::cron::<CronTick>(
        "* * * * * *",
        Some("Europe/Paris"),
        &"from the entry".to_owned(),
    )
    .expect("a valid entry")
    .id(entry_id.clone());
    let ticks = Ticks::default();
    metrics();
    let running = Worker::from_env()
        .register(CronTick)
        .periodic(entry)
        .state(ticks.clone())
        .start()
        .await
        .expect("worker starts");
    support::eventually(Duration::from_secs(15), "three ticks handled", || {
        let n = ticks.0.lock().unwrap().len();
        async move { n >= 3 }
    })
    .await;
    assert_eq!(entry_metric(SCHEDULER_LEADER, &entry_id), Some(1.0));
    // The scheduler counts a tick once its copy and its record are
    // confirmed, which can come after a consumer already handled it.
    support::eventually(Duration::from_secs(5), "three ticks counted", || {
        let counted = entry_metric(PERIODIC_TICKS, &entry_id);
        async move { counted.is_some_and(|n| n >= 3.0) }
    })
    .await;
    // The next-tick gauge moves past a tick once the scheduler is done with it.
    let handled_before = ticks.0.lock().unwrap().iter().map(|t| t.1).max();
    support::eventually(
        Duration::from_secs(5),
        "the next-tick gauge past the ticks handled",
        || {
            let next = entry_metric(PERIODIC_NEXT_TICK, &entry_id);
            async move {
                matches!((next, handled_before), (Some(next), Some(last)) if next as u64 > last)
            }
        },
    )
    .await;
    let next = entry_metric(PERIODIC_NEXT_TICK, &entry_id).expect("next tick gauge");
    running.shutdown().await.expect("clean stop");
    assert_eq!(
        entry_metric(SCHEDULER_LEADER, &entry_id),
        Some(0.0),
        "no longer the scheduler once stopped"
    );
    let mut seen = ticks.0.lock().unwrap().clone();
    seen.sort_by_key(|t| t.1);
    for (id, scheduled, timestamp) in &seen {
        assert_eq!(*id, format!("tick:{entry_id}:{scheduled}"));
        assert_eq!(timestamp, scheduled);
    }
    let seconds: Vec<u64> = seen.iter().map(|t| t.1).collect();
    // At most the tick the gauge named was handled before the stop.
    assert!(
        next as u64 >= seconds[seconds.len() - 1],
        "next {next} after {seconds:?}"
    );
    for pair in seconds.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "consecutive seconds, once each: {seconds:?}"
        );
    }
    support::delete_queues(&[
        CronTick::QUEUE,
        &election,
        &record,
        "broker-periodic.cron.parking",
        "broker-periodic.cron.quarantine",
    ])
    .await;
}

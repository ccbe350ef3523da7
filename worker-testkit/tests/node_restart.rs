//! A worker keeps going through a RabbitMQ restart and loses nothing.
//!
//! A private node (see `worker_testkit::node`) gets a backlog of confirmed
//! messages on a quorum queue; the worker starts consuming it; the node is
//! stopped mid-backlog and started again on the same data directory. The
//! worker's supervisor reconnects by itself, and in the end every message
//! was handled at least once and none is left in the queue.
//!
//! Needs `rabbitmq-server` installed (not running: the test runs its own
//! node). Without it the test is skipped with a note, except under
//! `CI=true`, where that is a failure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use worker_core::worker::WorkerConfig;
use worker_core::{
    ConnectionConfig, Connector, Publisher, RetryPolicy, Task, TaskContext, TaskError, TaskOptions,
    Worker,
};
use worker_testkit::node::RabbitNode;
use worker_testkit::wait::holds_within;

const PUBLISHED: u32 = 3000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    id: u32,
}

/// Handler runs per message id, and the gate that holds handlers once a
/// fifth of the backlog is done, until the node has stopped: so the node
/// always stops mid-backlog, however slow the machine is to stop it.
#[derive(Clone)]
struct Handled {
    runs: Arc<Mutex<HashMap<u32, u32>>>,
    open: Arc<watch::Sender<bool>>,
}

impl Default for Handled {
    fn default() -> Self {
        Handled {
            runs: Arc::default(),
            open: Arc::new(watch::channel(false).0),
        }
    }
}

impl Handled {
    fn saw(&self, id: u32) {
        *self.runs.lock().unwrap().entry(id).or_default() += 1;
    }

    /// Waits, once a fifth of the backlog is handled, until the gate opens.
    async fn pass_gate(&self) {
        if self.distinct() >= PUBLISHED / 5 {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
    }

    fn distinct(&self) -> u32 {
        self.runs.lock().unwrap().len() as u32
    }

    fn duplicates(&self) -> u32 {
        self.runs.lock().unwrap().values().map(|n| n - 1).sum()
    }
}

struct Backlog;

impl Task for Backlog {
    type Payload = Item;
    const NAME: &'static str = "node.backlog";
    const QUEUE: &'static str = "node.backlog";

    fn options(&self) -> TaskOptions {
        TaskOptions {
            // No retries at all: the deliveries a restart returns (many of
            // them prefetched and never started) carry an x-delivery-count,
            // but the worker runs them alone in quarantine without charging
            // an attempt, so even max_attempts 1 parks none of them.
            retry: RetryPolicy::none(),
            prefetch: Some(100),
            concurrency: 8,
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, item: Item) -> Result<(), TaskError> {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let handled = ctx.state::<Handled>().expect("Handled state");
        handled.pass_gate().await;
        handled.saw(item.id);
        Ok(())
    }
}

/// Whether process `pid` has exited (a zombie waiting for its reaper counts).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}

/// Takes every message left in `queue` and returns their ids.
async fn take_ids(url: &str, queue: &str) -> Vec<u32> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("the node answers");
    let ch = conn.create_channel().await.expect("channel");
    let mut ids = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let item: Item = serde_json::from_slice(&m.delivery.data).expect("an Item");
        ids.push(item.id);
    }
    let _ = conn.close(200, "taken".into()).await;
    ids
}

/// Ready messages in `queue`, by a fresh connection (`None` if unreachable).
async fn depth(url: &str, queue: &str) -> Option<u32> {
    let connector = Connector::new(ConnectionConfig::new(url));
    let depth = worker_operator::ops::queue_depth(&connector, queue)
        .await
        .ok()
        .flatten();
    connector.close().await;
    depth.map(|d| d.messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_a_node_restart_mid_backlog() {
    let started = Instant::now();
    let mut node = match RabbitNode::start().await {
        Ok(node) => node,
        Err(e) if e.is_not_installed() => {
            worker_testkit::skip::unless_ci(e);
            return;
        }
        Err(e) => panic!("cannot start a private RabbitMQ node: {e}"),
    };
    let booted = started.elapsed();
    let url = node.url();
    // The private node is the version under test (the runner's choice).
    if let Ok(label) = std::env::var("RABBIT_WORKER_TEST_BROKER") {
        let uri: lapin::uri::AMQPUri = url.parse().unwrap();
        let version = worker_core::broker::probe_version(
            &uri,
            &lapin::tcp::OwnedTLSConfig::default(),
            Duration::from_secs(5),
        )
        .await
        .expect("the private node announces its version");
        assert!(
            version.to_string().starts_with(&format!("{label}.")),
            "private node is RabbitMQ {version}, the run is for {label}"
        );
    }
    let handled = Handled::default();
    let worker = Worker::new(Connector::new(ConnectionConfig::new(url.clone())))
        .register(Backlog)
        .state(handled.clone())
        .config(WorkerConfig {
            reconnect_max: Duration::from_secs(2),
            ..WorkerConfig::default()
        });
    worker.declare_topology().await.expect("topology");

    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url.clone())));
    let items: Vec<Item> = (0..PUBLISHED).map(|id| Item { id }).collect();
    publisher
        .enqueue_batch::<Backlog>(&items)
        .await
        .expect("every message confirmed");
    if let Some(c) = publisher.connector() {
        c.close().await;
    }

    let running = worker.start().await.expect("worker started");
    assert!(
        holds_within(Duration::from_secs(20), || {
            let n = handled.distinct();
            async move { n >= PUBLISHED / 5 }
        })
        .await,
        "the worker never got going"
    );
    let before_stop = handled.distinct();
    let stop_at = Instant::now();
    node.stop().await.expect("node stopped");
    let at_stop = handled.distinct();
    handled.open.send_replace(true);
    node.start_again().await.expect("node started again");
    let down_for = stop_at.elapsed();

    let finished = holds_within(Duration::from_secs(30), || {
        let n = handled.distinct();
        let url = url.clone();
        async move { n == PUBLISHED && depth(&url, Backlog::QUEUE).await == Some(0) }
    })
    .await;
    running.shutdown().await.expect("clean stop");

    let distinct = handled.distinct();
    let queued = take_ids(&url, Backlog::QUEUE).await;
    let parked = take_ids(&url, "node.backlog.parking").await;
    let mut accounted: HashSet<u32> = handled.runs.lock().unwrap().keys().copied().collect();
    accounted.extend(queued.iter().copied());
    accounted.extend(parked.iter().copied());
    let lost = PUBLISHED - accounted.len() as u32;
    println!(
        "node {}: booted in {booted:?}; stopped when {before_stop}..{at_stop} were handled; down and back in {down_for:?}",
        node.name()
    );
    println!(
        "published {PUBLISHED}, handled distinct {distinct}, duplicates {}, still queued {}, parked {}, lost {lost}",
        handled.duplicates(),
        queued.len(),
        parked.len()
    );
    assert!(
        at_stop < PUBLISHED,
        "the node must stop mid-backlog (all {PUBLISHED} were handled before it stopped)"
    );
    assert_eq!(lost, 0, "every message handled, queued or parked");
    assert!(parked.is_empty(), "parked: {parked:?}");
    assert!(
        finished,
        "the worker did not finish the backlog after the restart"
    );
    assert_eq!(distinct, PUBLISHED);
    assert!(queued.is_empty());

    // A worker started while its broker is down waits for it instead of
    // failing, and consumes once the node is back.
    node.stop().await.expect("node stopped");
    let late = Handled::default();
    let waiting = Worker::new(Connector::new(ConnectionConfig::new(url.clone())))
        .register(Backlog)
        .state(late.clone())
        .config(WorkerConfig {
            reconnect_max: Duration::from_secs(1),
            ..WorkerConfig::default()
        })
        .start()
        .await
        .expect("start does not fail while the broker is unreachable");
    let mut readiness = waiting.readiness();
    assert!(!*readiness.borrow(), "not ready while the node is down");
    node.start_again().await.expect("node started again");
    tokio::time::timeout(Duration::from_secs(30), readiness.wait_for(|ready| *ready))
        .await
        .expect("ready once the node is back")
        .expect("readiness channel open");
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url.clone())));
    publisher
        .enqueue::<Backlog>(&Item { id: PUBLISHED })
        .await
        .expect("confirmed");
    if let Some(c) = publisher.connector() {
        c.close().await;
    }
    assert!(
        holds_within(Duration::from_secs(10), || {
            let n = late.distinct();
            async move { n == 1 }
        })
        .await,
        "the late-started worker handled nothing"
    );
    waiting.shutdown().await.expect("clean stop");

    // A crash (SIGKILL of the Erlang VM). Booting again after it would cost
    // another few seconds; the stop/start above already showed a restart.
    let pid = node.pid().expect("pid file");
    node.kill().await.expect("killed");
    assert!(!node.is_running());
    assert!(gone(pid), "beam {pid} is gone");
    assert!(
        depth(&url, Backlog::QUEUE).await.is_none(),
        "nothing answers"
    );

    let dir = node.dir().to_owned();
    drop(node);
    assert!(!dir.exists(), "the node's directory is removed on drop");
    assert!(gone(pid), "and the node stopped");
}

//! Reconnection: the broker closes the worker's connection in the middle of
//! a backlog (`rabbitmqctl close_all_connections`); the worker reconnects
//! and finishes the backlog, and no message is lost.
//!
//! The test uses a vhost of its own so that closing "all" connections only
//! closes this test's, not those of tests running beside it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use worker_core::connection::Connector;
use worker_core::worker::WorkerConfig;
use worker_core::{
    ConnectionConfig, Publisher, RetryPolicy, Task, TaskContext, TaskError, TaskOptions, Worker,
};
use worker_testkit::wait::eventually;

const QUEUE: &str = "cli.reconnect.backlog";
const MESSAGES: usize = 600;

#[derive(Clone, Default)]
struct Done(Arc<Mutex<(HashSet<u32>, u32)>>);

impl Done {
    fn record(&self, n: u32) {
        let mut d = self.0.lock().unwrap();
        d.0.insert(n);
        d.1 += 1;
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().0.len()
    }
    fn runs(&self) -> u32 {
        self.0.lock().unwrap().1
    }
}

struct Slow;

impl Task for Slow {
    type Payload = u32;
    const NAME: &'static str = "cli.reconnect.slow";
    const QUEUE: &'static str = QUEUE;
    fn options(&self) -> TaskOptions {
        TaskOptions {
            // Deliveries returned unsettled when the connection drops count
            // as attempts (x-delivery-count), so leave room for them.
            retry: RetryPolicy::none().max_attempts(10),
            concurrency: 2,
            prefetch: Some(20),
            ..TaskOptions::default()
        }
    }
    async fn run(&self, ctx: TaskContext, n: u32) -> Result<(), TaskError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ctx.state::<Done>().expect("state").record(n);
        Ok(())
    }
}

/// Runs rabbitmqctl; `None` (after saying why) when it cannot be used here.
fn rabbitmqctl(args: &[&str]) -> Option<String> {
    match worker_testkit::node::rabbitmqctl(args) {
        Ok(out) => Some(out),
        Err(why) => {
            worker_testkit::skip::unless_ci(format!(
                "{why}; the reconnect test needs rabbitmqctl (run as root on the broker's machine)"
            ));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reconnects_mid_backlog_and_loses_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,worker_core=info".into()),
        )
        .with_test_writer()
        .try_init();
    let vhost = format!("cli-reconnect-{}", uuid::Uuid::new_v4().simple());
    if rabbitmqctl(&["add_vhost", &vhost]).is_none() {
        return;
    }
    let _cleanup = DeleteVhost(vhost.clone());
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]).unwrap();

    let config = ConnectionConfig::from_env().with_vhost(vhost.clone());
    let publisher = Publisher::new(Connector::new(config.clone()));
    let done = Done::default();
    let connector = Connector::new(config);
    let worker = Worker::new(connector.clone())
        .register(Slow)
        .state(done.clone())
        .config(WorkerConfig {
            grace_period: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            ..WorkerConfig::default()
        });
    worker.declare_topology().await.unwrap();
    let payloads: Vec<u32> = (0..MESSAGES as u32).collect();
    publisher.enqueue_batch::<Slow>(&payloads).await.unwrap();
    publisher.connector().unwrap().close().await;

    let running = worker.start().await.unwrap();
    let before = connector.connection().await.unwrap();
    eventually(Duration::from_secs(30), "50 handled", || {
        std::future::ready(done.distinct() >= 50)
    })
    .await;

    rabbitmqctl(&["close_all_connections", "-p", &vhost, "test"]).unwrap();
    let at_close = done.distinct();
    assert!(
        at_close < MESSAGES,
        "the backlog finished before the close ({at_close}); make the handler slower"
    );

    eventually(Duration::from_secs(60), "the whole backlog handled", || {
        std::future::ready(done.distinct() == MESSAGES)
    })
    .await;
    let after = connector.connection().await.unwrap();
    assert!(
        !Arc::ptr_eq(&before, &after),
        "the worker should be on a new connection"
    );
    assert!(running.is_ready(), "consuming again");
    running.shutdown().await.unwrap();

    let depth = worker_operator::ops::queue_depth(
        &Connector::new(ConnectionConfig::from_env().with_vhost(vhost.clone())),
        QUEUE,
    )
    .await
    .unwrap()
    .unwrap()
    .messages;
    assert_eq!(
        done.distinct() + depth as usize,
        MESSAGES,
        "handled distinct ids + still queued == published"
    );
    eprintln!(
        "handled {} distinct ({} before the close), {} runs ({} redelivered after the close), {depth} left",
        done.distinct(),
        at_close,
        done.runs(),
        done.runs() as usize - done.distinct()
    );
}

/// Deletes the test's vhost (and its queues) when the test ends, even on failure.
struct DeleteVhost(String);

impl Drop for DeleteVhost {
    fn drop(&mut self) {
        let _ = worker_testkit::node::rabbitmqctl(&["delete_vhost", &self.0]);
    }
}

//! Delayed enqueue on the memory broker: the delay ladder runs on the
//! broker's manual clock, so a delay of days is checked in milliseconds,
//! and the real worker runs the task once it is due, not a second before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use worker_core::topology::ladder;
use worker_core::worker::WorkerConfig;
use worker_core::{
    ConnectionConfig, Connector, DeathReason, Publisher, Task, TaskContext, TaskError, Worker,
};
use worker_testkit::memory::MemoryBroker;
use worker_testkit::wait::eventually;

/// How long a test waits for the worker to act on the memory broker.
const WAIT: Duration = Duration::from_secs(10);

/// Payloads the handler ran, in order.
#[derive(Clone, Default)]
struct Ran(Arc<Mutex<Vec<String>>>);

impl Ran {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Later;

impl Task for Later {
    type Payload = String;
    const NAME: &'static str = "mem.later";
    const QUEUE: &'static str = "mem.later";

    async fn run(&self, ctx: TaskContext, what: String) -> Result<(), TaskError> {
        ctx.state::<Ran>()
            .expect("Ran state")
            .0
             .0
            .lock()
            .unwrap()
            .push(what);
        Ok(())
    }
}

/// Ready messages across the ladder's rung queues.
fn in_ladder(broker: &MemoryBroker) -> usize {
    (0..ladder::LEVELS)
        .map(|level| broker.queue_depth(&ladder::rung(level)))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_waits_in_the_ladder_on_the_broker_clock_and_runs_once_due() {
    let broker = MemoryBroker::start().await;
    let ran = Ran::default();
    let worker = Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Later)
        .state(ran.clone())
        .config(WorkerConfig {
            settle_wait: Duration::from_millis(10),
            ..WorkerConfig::default()
        });
    let running = worker.start().await.expect("the worker starts");
    eventually(WAIT, "the worker consumes", || {
        let n = broker.consumer_count(Later::QUEUE);
        async move { n == 1 }
    })
    .await;

    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(broker.url())));
    // 100 s = 64 + 32 + 4: three rungs. Two days = 172800 s: five rungs.
    let days = Duration::from_secs(2 * 86_400);
    publisher
        .enqueue_in::<Later>(&"hundred".to_owned(), Duration::from_secs(100))
        .await
        .expect("confirmed");
    publisher
        .enqueue_at::<Later>(&"days".to_owned(), SystemTime::now() + days)
        .await
        .expect("confirmed");
    publisher
        .enqueue_in::<Later>(&"now".to_owned(), Duration::ZERO)
        .await
        .expect("a zero delay goes straight through");
    eventually(WAIT, "the undelayed one runs at once", || {
        let all = ran.all();
        async move { all == ["now"] }
    })
    .await;
    assert_eq!(
        in_ladder(&broker),
        2,
        "both delayed ones wait in the ladder"
    );

    broker.clock().advance(Duration::from_secs(99));
    assert_eq!(in_ladder(&broker), 2, "a second early, still waiting");
    assert_eq!(broker.queue_depth(Later::QUEUE), 0);
    broker.clock().advance(Duration::from_secs(1));
    eventually(WAIT, "100 s later it runs", || {
        let all = ran.all();
        async move { all == ["now", "hundred"] }
    })
    .await;

    // One advance over the whole remaining delay: each rung's wait starts
    // when the one before it ended, so it arrives within the advance.
    broker.clock().advance(days - Duration::from_secs(100));
    eventually(WAIT, "two days later the other runs", || {
        let all = ran.all();
        async move { all == ["now", "hundred", "days"] }
    })
    .await;
    assert_eq!(in_ladder(&broker), 0);
    running.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_delayed_message_arrives_with_one_expiry_per_rung_and_its_due_time() {
    let broker = MemoryBroker::start().await;
    Worker::new(Connector::new(ConnectionConfig::new(broker.url())))
        .register(Later)
        .declare_topology()
        .await
        .expect("topology");
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(broker.url())));
    let delay = Duration::from_secs(13); // 8 + 4 + 1
    publisher
        .enqueue_in::<Later>(&"x".to_owned(), delay)
        .await
        .expect("confirmed");
    broker.clock().advance(delay);
    let arrived = broker.messages(Later::QUEUE);
    assert_eq!(arrived.len(), 1);
    let rungs: Vec<String> = arrived[0]
        .x_death()
        .iter()
        .inspect(|d| assert_eq!(d.reason, DeathReason::Expired))
        .map(|d| d.queue.clone())
        .collect();
    assert_eq!(
        rungs,
        [ladder::rung(0), ladder::rung(2), ladder::rung(3)],
        "newest first"
    );
    let due = arrived[0].header_i64("rw-due-at").expect("rw-due-at");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 13 - 2..=now + 13).contains(&due),
        "due {due}, now {now}"
    );
}

#[tokio::test]
async fn a_delay_to_a_queue_no_worker_declared_is_refused_not_lost() {
    let broker = MemoryBroker::start().await;
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(broker.url())));
    let err = publisher
        .enqueue_in::<Later>(&"x".to_owned(), Duration::from_secs(5))
        .await
        .expect_err("no queue to deliver to");
    assert!(err.to_string().contains("mem.later"), "{err}");
    assert_eq!(in_ladder(&broker), 0);
    let err = publisher
        .enqueue_in::<Later>(&"x".to_owned(), Duration::from_secs(30 * 86_400))
        .await
        .expect_err("past the ladder");
    assert!(
        matches!(err, worker_core::Error::DelayTooLong { .. }),
        "{err}"
    );
}

//! The consuming side of a measurement, run in a child process (`bench
//! __child <spec>`) so that its CPU time and peak RSS are its own: the
//! parent's publishing and the broker are other processes.
//!
//! The child prints `READY` once it consumes and `RESULT <json>` at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use worker_core::topology::{parking_queue, tier_queue};
use worker_core::{ConnectionConfig, Connector, Task, TaskContext, TaskError, TaskOptions, Worker};

use super::enqueue::{self, EnqueueSpec};
use super::payload::{
    baseline_attempt, BenchJob, ChildResult, Counters, Mode, BASELINE_ATTEMPT, TASK_NAME,
};
use super::{task_options, BenchError, Side, SLOT_QUEUES, TIER};

/// What a child consumes and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildSpec {
    pub(crate) side: Side,
    pub(crate) mode: Mode,
    pub(crate) url: String,
    /// The framework's queue slot.
    pub(crate) slot: usize,
    /// The baseline's work queue.
    pub(crate) queue: String,
    pub(crate) expected: u64,
    pub(crate) prefetch: u16,
    pub(crate) latency: bool,
    pub(crate) threads: Option<usize>,
    /// Install the Prometheus recorder in the framework's child.
    #[serde(default)]
    pub(crate) metrics: bool,
    /// Simulated I/O in every handler run (a tokio sleep), in milliseconds.
    #[serde(default)]
    pub(crate) work_ms: u64,
    /// Publish instead of consuming (the concurrent-enqueue scenario).
    #[serde(default)]
    pub(crate) enqueue: Option<EnqueueSpec>,
    /// The framework's side runs `prefetch` handlers at once and leaves
    /// the prefetch to the framework's default, as a task that sets only
    /// `concurrency` does; the baseline keeps `prefetch` for both.
    #[serde(default)]
    pub(crate) default_prefetch: bool,
}

/// The no-op benchmark task, on the queue of slot `S`.
///
/// It counts every run and every resolution in shared atomics (the
/// [`Counters`]), and fails on purpose in the failure modes.
pub(crate) struct FwTask<const S: usize> {
    pub(crate) counters: Arc<Counters>,
    pub(crate) prefetch: u16,
    /// Leave the prefetch to the framework (concurrency `prefetch`).
    pub(crate) default_prefetch: bool,
    /// Simulated I/O awaited in every run.
    pub(crate) work: Duration,
}

impl<const S: usize> Task for FwTask<S> {
    type Payload = BenchJob;
    const NAME: &'static str = TASK_NAME;
    const QUEUE: &'static str = SLOT_QUEUES[S];

    fn options(&self) -> TaskOptions {
        let options = task_options(self.prefetch);
        if self.default_prefetch {
            TaskOptions {
                prefetch: None,
                ..options
            }
        } else {
            options
        }
    }

    async fn run(&self, ctx: TaskContext, job: BenchJob) -> Result<(), TaskError> {
        let fails = self.counters.run_started(&job, ctx.attempt());
        if !self.work.is_zero() {
            self.counters.simulate_io(self.work).await;
        }
        if fails {
            return Err(match self.counters.mode() {
                Mode::Park => {
                    self.counters.resolve(job.seq);
                    TaskError::permanent("bench: permanent failure")
                }
                Mode::Clean | Mode::Redeliver => TaskError::transient("bench: fails once"),
            });
        }
        self.counters.resolve(job.seq);
        Ok(())
    }
}

/// Runs a child from its JSON spec and prints its result.
pub(crate) fn child_main(spec_json: &str) -> Result<(), BenchError> {
    let spec: ChildSpec = serde_json::from_str(spec_json)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = spec.threads {
        builder.worker_threads(threads.max(1));
    }
    let rt = builder.enable_all().build()?;
    let result = rt.block_on(async {
        if let Some(publishing) = &spec.enqueue {
            return match spec.side {
                Side::Framework => {
                    with_slot!(spec.slot, S => enqueue::framework::<S>(&spec, publishing).await)
                }
                Side::Lapin | Side::LapinNaive => enqueue::lapin(&spec, publishing).await,
            };
        }
        match spec.side {
            Side::Framework => with_slot!(spec.slot, S => framework::<S>(&spec).await),
            Side::Lapin => lapin_side(&spec, false).await,
            Side::LapinNaive => lapin_side(&spec, true).await,
        }
    })?;
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}

/// Tells the parent that the consumer is up (after a pause so the
/// subscription is surely active before latency publishing starts).
async fn announce_ready() {
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("READY");
}

/// Waits until every message was resolved; fails if progress stops for 30 s.
async fn wait_all(counters: &Counters) -> Result<(), BenchError> {
    let mut last = counters.resolved();
    loop {
        tokio::select! {
            () = counters.wait_done() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(30)) => {
                let now = counters.resolved();
                if now == last {
                    return Err(format!("consumer stalled: {now} resolved, no progress for 30 s").into());
                }
                last = now;
            }
        }
    }
}

async fn framework<const S: usize>(spec: &ChildSpec) -> Result<ChildResult, BenchError> {
    let counters = Arc::new(Counters::new(spec.expected, spec.mode, spec.latency));
    if spec.metrics {
        // What `run --http` installs: every metric is recorded for real.
        worker_operator::http::prometheus()?;
    }
    let worker = Worker::new(Connector::new(ConnectionConfig::new(spec.url.clone()))).register(
        FwTask::<S> {
            counters: counters.clone(),
            prefetch: spec.prefetch,
            default_prefetch: spec.default_prefetch,
            work: Duration::from_millis(spec.work_ms),
        },
    );
    let running = worker.start().await?;
    running.readiness().wait_for(|ready| *ready).await?;
    announce_ready().await;
    let waited = wait_all(&counters).await;
    let result = counters.result();
    running.shutdown().await?;
    waited?;
    Ok(result)
}

/// What the baseline's consume loop shares with its ack and failure tasks.
struct LapinSide {
    counters: Arc<Counters>,
    /// Acks and failure paths handed off and not finished yet.
    pending: AtomicU64,
    /// Confirm channel for redelivered and parked copies.
    confirm: Option<Channel>,
    /// Simulated I/O per message (the `io` scenario), run in a spawned
    /// task per delivery, at most `limit` at a time.
    work: Duration,
    limit: Arc<tokio::sync::Semaphore>,
    retry_queue: String,
    parking_queue: String,
}

/// The raw lapin baseline: consume, decode the same payload, count, and
/// hand the ack off to a spawned task without waiting for it (`naive`:
/// await every ack before taking the next delivery).
async fn lapin_side(spec: &ChildSpec, naive: bool) -> Result<ChildResult, BenchError> {
    let counters = Arc::new(Counters::new(spec.expected, spec.mode, spec.latency));
    let conn = Connection::connect(&spec.url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(spec.prefetch, BasicQosOptions::default())
        .await?;
    let confirm = if spec.mode == Mode::Clean {
        None
    } else {
        let c = conn.create_channel().await?;
        c.confirm_select(ConfirmSelectOptions::default()).await?;
        Some(c)
    };
    let side = Arc::new(LapinSide {
        counters: counters.clone(),
        pending: AtomicU64::new(0),
        confirm,
        work: Duration::from_millis(spec.work_ms),
        limit: Arc::new(tokio::sync::Semaphore::new(usize::from(
            spec.prefetch.max(1),
        ))),
        retry_queue: tier_queue(&spec.queue, TIER),
        parking_queue: parking_queue(&spec.queue),
    });
    let tag = "bench-lapin";
    let consumer = ch
        .basic_consume(
            spec.queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let looping = tokio::spawn(consume_loop(consumer, side.clone(), naive));
    announce_ready().await;
    let waited = wait_all(&counters).await;
    let result = counters.result();

    // Stop like the framework does: let handed-off work finish, cancel,
    // make sure the broker took the acks (basic.qos is a round trip after
    // them), pause as long as the framework's settle_wait, close.
    let deadline = Instant::now() + Duration::from_secs(30);
    while side.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = ch
        .basic_cancel(tag.into(), BasicCancelOptions::default())
        .await;
    looping.abort();
    let _ = ch
        .basic_qos(spec.prefetch, BasicQosOptions::default())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = ch.close(200, "bench done".into()).await;
    let _ = conn.close(200, "bench done".into()).await;
    waited?;
    Ok(result)
}

async fn consume_loop(mut consumer: lapin::Consumer, side: Arc<LapinSide>, naive: bool) {
    while let Some(next) = consumer.next().await {
        let delivery = match next {
            Ok(d) => d,
            Err(e) => {
                eprintln!("  lapin consumer stopped: {e}");
                break;
            }
        };
        if delivery.redelivered {
            side.counters.saw_redelivery();
        }
        let job: BenchJob = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(_) => {
                let _ = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await;
                continue;
            }
        };
        let attempt = baseline_attempt(&delivery.properties);
        if !side.work.is_zero() {
            side.spawn_io(job, attempt, delivery.acker).await;
            continue;
        }
        if !side.counters.run_started(&job, attempt) {
            side.counters.resolve(job.seq);
            if naive {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            } else {
                side.pending.fetch_add(1, Ordering::AcqRel);
                let side = side.clone();
                let acker = delivery.acker;
                tokio::spawn(async move {
                    let _ = acker.ack(BasicAckOptions::default()).await;
                    side.pending.fetch_sub(1, Ordering::AcqRel);
                });
            }
            continue;
        }
        if side.counters.mode() == Mode::Park {
            side.counters.resolve(job.seq);
        }
        side.pending.fetch_add(1, Ordering::AcqRel);
        let side = side.clone();
        tokio::spawn(async move {
            side.fail(delivery, attempt).await;
            side.pending.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

impl LapinSide {
    /// The `io` scenario's handler: a task per delivery (under a semaphore
    /// as wide as the prefetch) that counts the run, awaits the simulated
    /// I/O, resolves the message and acks it.
    async fn spawn_io(self: &Arc<Self>, job: BenchJob, attempt: u32, acker: lapin::Acker) {
        let Ok(permit) = self.limit.clone().acquire_owned().await else {
            return;
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        let side = self.clone();
        tokio::spawn(async move {
            side.counters.run_started(&job, attempt);
            side.counters.simulate_io(side.work).await;
            side.counters.resolve(job.seq);
            let _ = acker.ack(BasicAckOptions::default()).await;
            drop(permit);
            side.pending.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// The hand-written failure path: publish a copy (to the delay tier or
    /// the parking queue) on a confirm channel, await the confirm, then ack
    /// the original; requeue it if the copy was not confirmed.
    async fn fail(&self, delivery: Delivery, attempt: u32) {
        let confirmed = match self.confirm.as_ref() {
            Some(ch) => self.publish_copy(ch, &delivery, attempt).await,
            None => false,
        };
        if confirmed {
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        } else {
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await;
        }
    }

    /// Publishes the failure copy and says whether the broker confirmed it.
    async fn publish_copy(&self, ch: &Channel, delivery: &Delivery, attempt: u32) -> bool {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let (queue, error) = match self.counters.mode() {
            Mode::Park => (&self.parking_queue, "permanent"),
            Mode::Clean | Mode::Redeliver => (&self.retry_queue, "transient"),
        };
        headers.insert(
            BASELINE_ATTEMPT.into(),
            AMQPValue::LongUInt(attempt.saturating_add(1)),
        );
        headers.insert(
            "bench-error".into(),
            AMQPValue::LongString(LongString::from(error.as_bytes())),
        );
        let props = delivery.properties.clone().with_headers(headers);
        let sent = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &delivery.data,
                props,
            )
            .await;
        match sent {
            Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
            Err(_) => false,
        }
    }
}

//! Request/reply: round trips over direct reply-to, the framework
//! (a worker serving a task that returns its payload, called with
//! [`RpcClient`]) next to raw lapin doing the same (a lapin server that
//! publishes the reply, waits for its confirm and then acks, and a lapin
//! client with one channel, a no-ack consumer of `amq.rabbitmq.reply-to`
//! and a map of pending correlation ids).
//!
//! Unlike the consuming scenarios, the server and its callers run in the
//! bench process: the figures are round-trip times and calls per second,
//! not CPU or memory, and both sides share the process the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::oneshot;
use worker_core::rpc::DIRECT_REPLY_TO;
use worker_core::{
    Call, Callable, ConnectionConfig, Connector, RpcClient, Task, TaskContext, TaskError,
    TaskOptions, Worker,
};

use super::broker::expect_ack;
use super::payload::{body, properties, BenchJob, TASK_NAME};
use super::report::{Figure, RunRecord};
use super::scenarios::Bench;
use super::{task_options, BenchError, Side, SLOT_QUEUES};

/// How long one call may take before the run fails.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// The framework's server: replies with the payload it got.
struct EchoJob<const S: usize> {
    prefetch: u16,
}

impl<const S: usize> Task for EchoJob<S> {
    type Payload = BenchJob;
    const NAME: &'static str = TASK_NAME;
    const QUEUE: &'static str = SLOT_QUEUES[S];

    fn options(&self) -> TaskOptions {
        task_options(self.prefetch)
    }

    async fn run(&self, ctx: TaskContext, job: BenchJob) -> Result<(), TaskError> {
        ctx.reply(&job)
    }
}

impl<const S: usize> Callable for EchoJob<S> {
    type Output = BenchJob;
}

/// What one run of `n` calls by `callers` concurrent callers measured.
struct Round {
    p50_ms: f64,
    p99_ms: f64,
    calls_per_s: f64,
    answered: u64,
}

/// Makes `n` calls, `callers` at a time (each caller calls again as soon
/// as its reply is in), and checks that every call got its own payload back.
///
/// One call goes first, untimed (payload `n`): what a side sets up on its
/// first call (the framework's client opens its channel and reply consumer
/// then) is not a round trip, and in a short run it would weigh on the
/// calls per second of one side only.
async fn round<F, Fut>(n: u64, callers: usize, call: F) -> Result<Round, BenchError>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, BenchError>> + Send,
{
    let warm = call(n).await?;
    if warm != n {
        return Err(format!("the first call got the reply of call {warm}").into());
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (next, call) = (next.clone(), call.clone());
        tasks.spawn(async move {
            let mut times = Vec::new();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= n {
                    return Ok::<_, BenchError>(times);
                }
                let sent = Instant::now();
                let echoed = call(seq).await?;
                if echoed != seq {
                    return Err(format!("call {seq} got the reply of call {echoed}").into());
                }
                times.push(sent.elapsed());
            }
        });
    }
    let mut times = Vec::new();
    while let Some(done) = tasks.join_next().await {
        times.extend(done??);
    }
    let elapsed = started.elapsed();
    times.sort();
    let pick = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
        times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok(Round {
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        calls_per_s: times.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        answered: times.len() as u64,
    })
}

/// A worker serving [`EchoJob`] on the slot's queue, and calls through one [`RpcClient`].
async fn framework<const S: usize>(
    url: &str,
    prefetch: u16,
    n: u64,
    callers: usize,
) -> Result<Round, BenchError> {
    let worker = Worker::new(Connector::new(ConnectionConfig::new(url.to_owned())))
        .register(EchoJob::<S> { prefetch });
    let running = worker.start().await?;
    running.readiness().wait_for(|ready| *ready).await?;
    let connector = Connector::new(ConnectionConfig::new(url.to_owned()));
    let client = RpcClient::new(connector.clone());
    let result = round(n, callers, move |seq| {
        let client = client.clone();
        async move {
            let job = BenchJob::new(seq, 0);
            let reply = Call::<EchoJob<S>>::new(&client, &job)
                .timeout(CALL_LIMIT)
                .await?;
            Ok(reply.seq)
        }
    })
    .await;
    connector.close().await;
    running.shutdown().await?;
    result
}

/// The raw lapin server: consume, publish the reply (confirmed), ack.
struct LapinServer {
    /// The consuming channel, on which the acks go out.
    consume: Channel,
    /// Requests acked so far.
    acked: Arc<AtomicU64>,
}

impl LapinServer {
    async fn start(conn: &Connection, queue: &str, prefetch: u16) -> Result<Self, BenchError> {
        let acked = Arc::new(AtomicU64::new(0));
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let replies = conn.create_channel().await?;
        replies
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut deliveries = consume
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let counted = acked.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = deliveries.next().await {
                let (replies, counted) = (replies.clone(), counted.clone());
                tokio::spawn(async move {
                    if reply(&replies, &delivery).await {
                        if delivery.acker.ack(BasicAckOptions::default()).await.is_ok() {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        // Not a request we can answer: drop it rather than hold it.
                        let _ = delivery
                            .acker
                            .reject(BasicRejectOptions { requeue: false })
                            .await;
                    }
                });
            }
        });
        Ok(LapinServer { consume, acked })
    }

    /// Waits until `n` requests were acked and the broker has them: a
    /// `basic.qos` round trip on the consuming channel comes back only after
    /// the broker read every ack sent before it. Without it, closing the
    /// connection could overtake the last acks and the broker would
    /// requeue those requests (seen in CI: 15 left in the queue).
    async fn settle(&self, n: u64, prefetch: u16) -> Result<(), BenchError> {
        let acked = worker_testkit::wait::holds_within(CALL_LIMIT, || {
            std::future::ready(self.acked.load(Ordering::Relaxed) >= n)
        })
        .await;
        if !acked {
            return Err(format!(
                "the lapin server acked {} of {n} requests",
                self.acked.load(Ordering::Relaxed)
            )
            .into());
        }
        self.consume
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        Ok(())
    }
}

/// Publishes the reply to a request and says whether the broker confirmed it.
async fn reply(replies: &Channel, delivery: &Delivery) -> bool {
    let (Some(reply_to), Some(id)) = (
        delivery.properties.reply_to().clone(),
        delivery.properties.correlation_id().clone(),
    ) else {
        return false;
    };
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id(id);
    let published = replies
        .basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            &delivery.data,
            props,
        )
        .await;
    match published {
        Ok(confirm) => matches!(confirm.await, Ok(c) if c.is_ack()),
        Err(_) => false,
    }
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// The raw lapin caller: one channel for requests and replies.
#[derive(Clone)]
struct LapinCaller {
    channel: Channel,
    waiting: Waiting,
    queue: String,
}

impl LapinCaller {
    async fn open(conn: &Connection, queue: &str) -> Result<LapinCaller, BenchError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let waiting: Waiting = Arc::default();
        let handed = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(reply)) = replies.next().await {
                let id = reply.properties.correlation_id().clone();
                let tx = id.and_then(|id| handed.lock().unwrap().remove(id.as_str()));
                if let Some(tx) = tx {
                    let _ = tx.send(reply.data);
                }
            }
        });
        Ok(LapinCaller {
            channel,
            waiting,
            queue: queue.to_owned(),
        })
    }

    async fn call(&self, seq: u64) -> Result<u64, BenchError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id.clone(), tx);
        let props = properties(&id)
            .with_correlation_id(id.as_str().into())
            .with_reply_to(DIRECT_REPLY_TO.into());
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body(seq, 0),
                props,
            )
            .await?;
        expect_ack(confirm.await?)?;
        let reply = tokio::time::timeout(CALL_LIMIT, rx)
            .await
            .map_err(|_| format!("no reply to call {seq} in {CALL_LIMIT:?}"))??;
        let job: BenchJob = serde_json::from_slice(&reply)?;
        Ok(job.seq)
    }
}

async fn lapin(
    url: &str,
    queue: &str,
    prefetch: u16,
    n: u64,
    callers: usize,
) -> Result<Round, BenchError> {
    let server = Connection::connect(url, ConnectionProperties::default()).await?;
    let serving = LapinServer::start(&server, queue, prefetch).await?;
    let client = Connection::connect(url, ConnectionProperties::default()).await?;
    let caller = LapinCaller::open(&client, queue).await?;
    let result = round(n, callers, move |seq| {
        let caller = caller.clone();
        async move { caller.call(seq).await }
    })
    .await;
    // A caller may have its reply before the server's ack went out: let
    // the server finish, as the framework's worker does on shutdown.
    // `n` calls and the untimed first one.
    let settled = serving.settle(n + 1, prefetch).await;
    let _ = client.close(200, "bench done".into()).await;
    let _ = server.close(200, "bench done".into()).await;
    let result = result?;
    settled?;
    Ok(result)
}

impl Bench<'_> {
    /// Round trips at 1 and at 100 concurrent callers, both sides, interleaved.
    pub(crate) async fn rpc(&mut self) -> Result<(), BenchError> {
        let n = self.cfg.rpc_calls;
        for callers in [1, 100] {
            let label = format!(
                "request/reply, {callers} caller{}",
                if callers == 1 { "" } else { "s" }
            );
            let mut p50 = Figure::new(format!("{label}: round trip p50"), "ms", false);
            let mut p99 = Figure::new(format!("{label}: round trip p99"), "ms", false);
            let mut rate = Figure::new(format!("{label}: calls/s"), "calls/s", true);
            for rep in 0..self.cfg.reps {
                for side in Side::in_turn(rep, false) {
                    let queue = match side {
                        Side::Framework => self.fw.queue.to_string(),
                        _ => self.base.queue.to_string(),
                    };
                    let prefetch = self.cfg.prefetch;
                    let url = self.url.clone();
                    let r = match side {
                        Side::Framework => {
                            with_slot!(self.slot, S => framework::<S>(&url, prefetch, n, callers).await)?
                        }
                        _ => lapin(&url, &queue, prefetch, n, callers).await?,
                    };
                    self.admin
                        .expect_depth(&queue, 0)
                        .await
                        .map_err(|e| format!("rpc, {side:?}: {e}"))?;
                    eprintln!(
                        "  rpc {callers} caller(s) rep {}/{} {side:?}: p50 {:.2} ms, p99 {:.2} ms, {:.0} calls/s",
                        rep + 1,
                        self.cfg.reps,
                        r.p50_ms,
                        r.p99_ms,
                        r.calls_per_s
                    );
                    p50.push(side, r.p50_ms);
                    p99.push(side, r.p99_ms);
                    rate.push(side, r.calls_per_s);
                    self.runs.push(RunRecord {
                        scenario: "rpc".to_owned(),
                        side,
                        expected: n,
                        resolved: r.answered,
                        handler_runs: r.answered,
                        parked: 0,
                    });
                }
            }
            self.figures.extend([p50, p99, rate]);
        }
        Ok(())
    }
}

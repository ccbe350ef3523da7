//! Queue-depth gauges, sampled by the worker itself.
//!
//! Every [`WorkerConfig::depth_interval`](super::WorkerConfig::depth_interval)
//! (15 s by default; `None` turns it off) the worker reads, for every task
//! it consumes, each queue of [`topology::plan`](crate::topology::plan): the
//! work queue, the quarantine queue, each delay tier's wait queue and the
//! parking queue. It sets
//!
//! - `rabbit_worker_queue_messages{task,queue,role}`: messages ready (not
//!   counting deliveries that are out and unacked), and
//! - `rabbit_worker_queue_consumers{task,queue,role}`: consumers,
//!
//! with `role` one of `work`, `tier`, `quarantine`, `parking`. A queue
//! that does not exist reads NaN on both until it does.
//!
//! How: a passive `queue.declare` per queue, one after the other on one
//! channel of the worker's connection, so one round trip per queue per
//! interval and no management plugin. A passive declare of a missing queue
//! makes the broker close the channel; the sampler opens another for the
//! next queue. The sampler runs on its own task: it never holds a
//! consumer, a handler slot or the publisher, and it never opens a
//! connection (while the worker is disconnected it skips its turns; the
//! supervisor reconnects). It stops with the worker.
//!
//! Every worker process samples on its own, so with several replicas each
//! exports the same depths: aggregate with `max`, not `sum`. A queue shared
//! by several tasks is read once per round and exported under each task.
//!
//! Label values are the names of the worker's registered tasks and of the
//! queues derived from them: nothing a producer sends can add a series.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use metrics::Gauge;
use tokio::time::MissedTickBehavior;

use crate::broker::Capabilities;
use crate::connection::Connector;
use crate::error::{reply_code, Error, NOT_FOUND};
use crate::metric_names::{QUEUE_CONSUMERS, QUEUE_MESSAGES};
use crate::runtime::Shutdown;
use crate::topology::{plan, QueueRole, TaskSpec};

/// One queue's reading: `None` for a queue that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Messages ready for delivery.
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// One queue of the sampled tasks and its gauges.
struct Sampled {
    name: ShortString,
    role: QueueRole,
    /// `(messages, consumers)` per task using the queue.
    gauges: Vec<(Gauge, Gauge)>,
}

/// Reads the depth of every queue of some tasks and sets the queue gauges.
///
/// The worker runs one (see the [module docs](self)); it is public so that
/// the cost of a round can be measured, and for tools that want the same
/// gauges without running a worker.
pub struct DepthSampler {
    queues: Vec<Sampled>,
    channel: Option<Channel>,
}

impl std::fmt::Debug for DepthSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepthSampler")
            .field(
                "queues",
                &self
                    .queues
                    .iter()
                    .map(|q| q.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl DepthSampler {
    /// A sampler for every queue of `specs`, each read once per round,
    /// with its gauges registered now (in the recorder installed now).
    pub fn new(specs: &[Arc<TaskSpec>]) -> Self {
        let mut queues: Vec<Sampled> = Vec::new();
        for spec in specs {
            // Queue names do not depend on the broker's version; only the
            // arguments do, and a passive declare sends none.
            for queue in plan(spec, Capabilities::unknown()) {
                let Ok(name) = ShortString::try_new(queue.name.as_str()) else {
                    continue; // too long to exist: declaring it failed already
                };
                let labels = [
                    ("task", spec.name.to_owned()),
                    ("queue", queue.name.clone()),
                    ("role", queue.role.as_str().to_owned()),
                ];
                let gauges = (
                    metrics::gauge!(QUEUE_MESSAGES, &labels),
                    metrics::gauge!(QUEUE_CONSUMERS, &labels),
                );
                match queues.iter_mut().find(|q| q.name == name) {
                    Some(q) => q.gauges.push(gauges),
                    None => queues.push(Sampled {
                        name,
                        role: queue.role,
                        gauges: vec![gauges],
                    }),
                }
            }
        }
        DepthSampler {
            queues,
            channel: None,
        }
    }

    /// How many queues a round reads (one round trip each).
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// One round: a passive declare of every queue on `conn`, setting the
    /// gauges; returns each queue's name, role and depth (`None`: missing).
    ///
    /// A missing queue costs its channel (the broker closes it), and the
    /// next queue opens another. Any other failure (a lost connection)
    /// ends the round early with the error; the gauges of the queues not
    /// read keep their last values.
    pub async fn sample(
        &mut self,
        conn: &Connection,
    ) -> Result<Vec<(String, QueueRole, Option<Depth>)>, Error> {
        let mut readings = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            let channel = match self.channel.take() {
                Some(ch) if ch.status().connected() => ch,
                _ => conn
                    .create_channel()
                    .await
                    .map_err(|e| Error::broker("channel.open", e))?,
            };
            let declared = channel
                .queue_declare(
                    queue.name.clone(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            let depth = match declared {
                Ok(q) => {
                    self.channel = Some(channel);
                    Some(Depth {
                        messages: q.message_count(),
                        consumers: q.consumer_count(),
                    })
                }
                // The broker closed that channel; the next queue opens one.
                Err(e) if reply_code(&e) == Some(NOT_FOUND) => None,
                Err(e) => {
                    return Err(Error::broker(
                        format!("queue.declare (passive) {}", queue.name),
                        e,
                    ))
                }
            };
            for (messages, consumers) in &queue.gauges {
                match depth {
                    Some(d) => {
                        messages.set(f64::from(d.messages));
                        consumers.set(f64::from(d.consumers));
                    }
                    None => {
                        messages.set(f64::NAN);
                        consumers.set(f64::NAN);
                    }
                }
            }
            readings.push((queue.name.to_string(), queue.role, depth));
        }
        Ok(readings)
    }

    /// Closes the sampler's channel, if one is open.
    pub async fn close(&mut self) {
        if let Some(ch) = self.channel.take() {
            if ch.status().connected() {
                let _ = ch.close(200, "depth sampler stopping".into()).await;
            }
        }
    }
}

/// Samples `specs`' queues every `interval` on `connector`'s connection
/// until `shutdown`; the first round right away.
pub(crate) async fn run(
    connector: Connector,
    specs: Vec<Arc<TaskSpec>>,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut sampler = DepthSampler::new(&specs);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A round that takes longer than this is given up (a stuck broker).
    let limit = interval.max(Duration::from_secs(5));
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.triggered() => break,
            _ = ticks.tick() => {}
        }
        // Never open a connection: the supervisor owns reconnecting.
        if !connector.is_connected().await {
            continue;
        }
        let Ok(conn) = connector.connection().await else {
            continue;
        };
        let started = Instant::now();
        let round = tokio::select! {
            () = shutdown.triggered() => break,
            r = tokio::time::timeout(limit, sampler.sample(&conn)) => r,
        };
        let error = match round {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!("queue depths sampled again");
                }
                failing = false;
                tracing::trace!(elapsed = ?started.elapsed(), queues = sampler.queue_count(), "queue depths sampled");
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {limit:?}"),
        };
        // Start the next round on a new channel.
        sampler.channel = None;
        if !failing {
            tracing::warn!(error = %error, "sampling queue depths failed; trying again next interval");
        }
        failing = true;
    }
    sampler.close().await;
}

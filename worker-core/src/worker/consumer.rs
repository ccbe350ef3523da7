//! Consuming one queue on its own channel: dispatch, settle, pause while
//! the task's circuit breaker is open, stop cleanly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::dispatch::{dispatch, Tasks};
use super::lapin_transport::LapinTransport;
use super::settle::Settlement;
use super::settler::Settler;
use super::WorkerConfig;
use crate::breaker::{Admit, Breaker, BreakerState};
use crate::error::Error;
use crate::message::Delivery;
use crate::publisher::Publisher;
use crate::runtime::{Runtime, Shutdown};
use crate::transport::Transport;

/// The tasks served by one queue; the first one is chosen when a message names no task.
pub(crate) struct QueueGroup {
    pub(crate) queue: Arc<str>,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    pub(crate) tasks: Arc<Tasks>,
    /// The circuit breaker of the queue's task, when it has one (a task
    /// with a breaker has its queue to itself).
    pub(crate) breaker: Option<Arc<Breaker>>,
}

/// One queue a group's consumer reads: the work queue, or its quarantine.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) queue: Arc<str>,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    /// Whether this consumer takes the breaker's probe (the work queue's
    /// does; the quarantine's waits for the breaker to close).
    pub(crate) probes: bool,
}

impl QueueGroup {
    /// The work queue and the quarantine queue (prefetch 1, one handler at a time).
    pub(crate) fn sources(&self) -> [Source; 2] {
        let quarantine = self.tasks.first().quarantine.as_str();
        [
            Source {
                queue: self.queue.clone(),
                prefetch: self.prefetch,
                concurrency: self.concurrency,
                probes: true,
            },
            Source {
                queue: Arc::from(quarantine),
                prefetch: 1,
                concurrency: 1,
                probes: false,
            },
        ]
    }
}

/// What every consumer of one connection session shares.
pub(crate) struct Session {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) publisher: Publisher,
    pub(crate) config: WorkerConfig,
    pub(crate) stop: Shutdown,
    /// Told once the consumer started: `basic.consume` was confirmed, or
    /// the breaker holds it paused (for readiness, which an open breaker
    /// does not take away).
    pub(crate) consuming: tokio::sync::mpsc::UnboundedSender<()>,
}

/// How a phase of consuming ended.
enum Ended {
    /// The stop signal fired.
    Stopped,
    /// The channel or the consumer was lost.
    Lost(Error),
    /// The breaker opened: pause.
    Tripped,
    /// The breaker lets this consumer consume again.
    Resumed,
}

/// Consumes `source` for `group`'s tasks until `stop` fires (then stops cleanly and returns
/// `Ok`) or the channel is lost (returns `Err`; the broker redelivers whatever
/// was not settled). While the group's breaker is open it holds no consumer.
pub(crate) async fn consume(
    conn: &Connection,
    group: &QueueGroup,
    source: &Source,
    session: Session,
) -> Result<(), Error> {
    let Session {
        runtime,
        publisher,
        config,
        stop,
        consuming,
    } = session;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Error::broker("channel.open", e))?;
    channel
        .basic_qos(source.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| Error::broker("basic.qos", e))?;
    let transport: Arc<dyn Transport> = Arc::new(LapinTransport::new(channel.clone(), publisher));
    let mut run = Run {
        settler: Settler::spawn(transport.clone()),
        channel,
        transport,
        runtime,
        tasks: group.tasks.clone(),
        breaker: group.breaker.clone(),
        source: source.clone(),
        stop,
        permits: Arc::new(Semaphore::new(source.concurrency.max(1))),
        running: JoinSet::new(),
        tags: HashMap::new(),
        returned: 0,
    };
    if let (Some(breaker), true) = (&run.breaker, source.probes) {
        // A probe of a lost session never reported: this one may probe.
        breaker.probe_abandoned();
    }
    let mut started = Some(consuming);
    let lost = loop {
        let held = run.breaker_holds();
        let ended = if held {
            announce(&mut started);
            run.hold().await
        } else {
            run.consume_until_tripped(&mut started).await
        };
        match ended {
            Ended::Stopped => break None,
            Ended::Lost(e) => break Some(e),
            Ended::Tripped | Ended::Resumed => {}
        }
    };

    if let Some(err) = lost.as_ref() {
        if !matches!(err, Error::ConsumerStopped(_)) {
            // The channel is gone: nothing can be settled on it any more.
            // Let running handlers finish (their settlements are dropped and
            // the broker redelivers) but do not wait for them.
            run.running.detach_all();
            return lost.map_or(Ok(()), Err);
        }
    }
    // A stop, or the broker cancelled the consumer with the channel still
    // open: settle what is in flight on it and close it cleanly (after a
    // cancel the supervisor then consumes again).
    run.finish(&config).await;
    lost.map_or(Ok(()), Err)
}

/// Tells the supervisor, once, that this consumer started.
fn announce(started: &mut Option<tokio::sync::mpsc::UnboundedSender<()>>) {
    if let Some(tx) = started.take() {
        let _ = tx.send(());
    }
}

/// One consumer's channel and what runs on it.
struct Run {
    channel: lapin::Channel,
    transport: Arc<dyn Transport>,
    settler: Settler,
    runtime: Arc<Runtime>,
    tasks: Arc<Tasks>,
    breaker: Option<Arc<Breaker>>,
    source: Source,
    stop: Shutdown,
    /// One per handler that may run at once (the source's concurrency),
    /// kept across pauses so that handlers still running count.
    permits: Arc<Semaphore>,
    running: JoinSet<()>,
    tags: HashMap<tokio::task::Id, u64>,
    /// Deliveries returned unstarted when a consumer was cancelled.
    returned: usize,
}

/// Who hears a delivery's outcome besides the settler.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A delivery consumed while the breaker was closed: counted.
    Consumed,
    /// The breaker's probe: decides its next state.
    Probe,
}

impl Run {
    /// Whether the breaker keeps this consumer from consuming now.
    fn breaker_holds(&self) -> bool {
        self.breaker
            .as_ref()
            .is_some_and(|b| b.state() != BreakerState::Closed)
    }

    /// Consumes until a stop, a lost channel, or the breaker opens; then
    /// cancels the consumer and returns what it took but did not start.
    async fn consume_until_tripped(
        &mut self,
        started: &mut Option<tokio::sync::mpsc::UnboundedSender<()>>,
    ) -> Ended {
        let queue = self.source.queue.clone();
        let consumer_tag = format!("{queue}-{}", uuid::Uuid::new_v4().simple());
        let mut consumer = match self
            .channel
            .basic_consume(
                queue.as_ref().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(consumer) => consumer,
            Err(e) => return Ended::Lost(Error::broker(format!("basic.consume {queue}"), e)),
        };
        let source = &self.source;
        if started.is_some() {
            tracing::info!(queue = %source.queue, prefetch = source.prefetch, concurrency = source.concurrency, "consuming");
            announce(started);
        }
        let mut state = self.breaker.as_ref().map(|b| b.subscribe());
        let permits = self.permits.clone();

        // A delivery is taken from the consumer only once a handler slot is
        // free, and every wait in this loop also watches for the stop signal:
        // with fewer slots than the prefetch, a stop must not wait behind busy
        // handlers, and a delivery that has not started when the stop comes is
        // returned rather than started.
        let mut slot: Option<OwnedSemaphorePermit> = None;
        let ended = loop {
            tokio::select! {
                biased;
                () = self.stop.triggered() => break Ended::Stopped,
                () = opened(&mut state) => break Ended::Tripped,
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    reap(done, &mut self.tags, &self.settler);
                }
                permit = permits.clone().acquire_owned(), if slot.is_none() => {
                    slot = Some(permit.expect("semaphore is never closed"));
                }
                next = consumer.next(), if slot.is_some() => match next {
                    Some(Ok(raw)) => {
                        let permit = slot.take().expect("a slot is held in this branch");
                        self.start(Delivery::from_lapin(raw), Some(permit), Role::Consumed);
                    }
                    Some(Err(e)) => break Ended::Lost(Error::broker(format!("consuming {queue}"), e)),
                    None => break Ended::Lost(Error::ConsumerStopped(format!(
                        "the broker cancelled the consumer of {queue} (the queue was deleted, or, from RabbitMQ 4.3, \
                         a delivery was held past the broker's consumer timeout: tell the worker the broker's \
                         consumer_timeout in WorkerConfig::consumer_timeout); consuming again"
                    ))),
                },
            }
        };
        if matches!(ended, Ended::Stopped | Ended::Tripped) {
            let returned = self.cancel(&consumer_tag, &mut consumer).await;
            if matches!(ended, Ended::Tripped) {
                tracing::debug!(queue = %queue, returned, "consumer cancelled by the circuit breaker");
            }
        }
        ended
    }

    /// While the breaker is not closed: takes no delivery (the probe
    /// aside), lets running handlers finish and settle, and waits for the
    /// cool-down, the probe's outcome, or a stop.
    async fn hold(&mut self) -> Ended {
        let breaker = self
            .breaker
            .clone()
            .expect("only a consumer with a breaker holds");
        loop {
            // Subscribed before asking, so that no change is missed.
            let mut changes = breaker.subscribe();
            let until = match breaker.admit(self.source.probes) {
                Admit::Consume => return Ended::Resumed,
                Admit::Probe => {
                    if let Err(e) = self.probe(&breaker).await {
                        return Ended::Lost(e);
                    }
                    continue;
                }
                Admit::Wait(until) => until,
            };
            tokio::select! {
                biased;
                () = self.stop.triggered() => return Ended::Stopped,
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    reap(done, &mut self.tags, &self.settler);
                }
                () = sleep_until(until) => {}
                _ = changes.changed() => {}
            }
        }
    }

    /// Takes one message with `basic.get` and starts it as the probe; an
    /// empty queue closes the breaker.
    async fn probe(&mut self, breaker: &Breaker) -> Result<(), Error> {
        let queue = self.source.queue.clone();
        let got = self
            .channel
            .basic_get(queue.as_ref().into(), BasicGetOptions { no_ack: false })
            .await;
        match got {
            Ok(Some(message)) => {
                self.start(Delivery::from_lapin(message.delivery), None, Role::Probe);
                Ok(())
            }
            Ok(None) => {
                breaker.probe_found_nothing();
                Ok(())
            }
            Err(e) => {
                breaker.probe_abandoned();
                Err(Error::broker(format!("basic.get {queue}"), e))
            }
        }
    }

    /// Runs `delivery` on its own task: dispatch, tell the breaker, settle.
    fn start(&mut self, delivery: Delivery, permit: Option<OwnedSemaphorePermit>, role: Role) {
        let delivery = Arc::new(delivery);
        let tag = delivery.tag;
        let (tasks, transport, runtime) = (
            self.tasks.clone(),
            self.transport.clone(),
            self.runtime.clone(),
        );
        let (settler, breaker) = (self.settler.clone(), self.breaker.clone());
        self.settler.track(tag);
        let handle = self.running.spawn(async move {
            let (outcome, settlement) = dispatch(&tasks, delivery, transport, runtime).await;
            match (&breaker, role) {
                (Some(b), Role::Consumed) => b.record(&outcome),
                (Some(b), Role::Probe) => b.probe_done(&outcome),
                (None, _) => {}
            }
            settler.settle(tag, settlement);
            drop(permit);
        });
        self.tags.insert(handle.id(), tag);
    }

    /// Cancels the consumer (no new deliveries) and returns the deliveries
    /// that arrived but never started, uncharged (`basic.nack` with
    /// requeue); answers how many.
    async fn cancel(&mut self, consumer_tag: &str, consumer: &mut lapin::Consumer) -> usize {
        if let Err(e) = self
            .channel
            .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
            .await
        {
            tracing::warn!(error = %e, "basic.cancel failed");
        }
        let mut returned = 0usize;
        while let Ok(Some(Ok(raw))) =
            tokio::time::timeout(Duration::from_millis(20), consumer.next()).await
        {
            self.settler.track(raw.delivery_tag);
            self.settler.settle(raw.delivery_tag, Settlement::Return);
            returned += 1;
        }
        self.returned += returned;
        returned
    }

    /// Gives in-flight handlers the grace period, settles, and closes the
    /// channel cleanly. The consumer was cancelled already.
    async fn finish(mut self, config: &WorkerConfig) {
        // In-flight handlers get the grace period.
        let in_flight = self.running.len();
        let finished = tokio::time::timeout(config.grace_period, async {
            while let Some(done) = self.running.join_next_with_id().await {
                reap(done, &mut self.tags, &self.settler);
            }
        })
        .await
        .is_ok();
        // Whatever is still running is cancelled and its delivery returned.
        let mut abandoned = 0usize;
        if !finished {
            self.running.abort_all();
            while let Some(done) = self.running.join_next_with_id().await {
                abandoned += usize::from(done.is_err());
                reap(done, &mut self.tags, &self.settler);
            }
        }
        self.settler.flush().await;
        // Make sure the broker took our acks before the channel closes:
        // basic.qos is synchronous, so its reply follows every earlier
        // frame; then a short wait for quorum queues, which can drop acks
        // that race a channel close (rabbitmq-server #10327).
        let _ = self
            .channel
            .basic_qos(self.source.prefetch, BasicQosOptions::default())
            .await;
        tokio::time::sleep(config.settle_wait).await;
        let _ = self.channel.close(200, "worker stopping".into()).await;
        tracing::info!(queue = %self.source.queue, returned = self.returned, in_flight, abandoned, "consumer stopped");
    }
}

/// Resolves once the breaker is not closed; never without a breaker.
async fn opened(state: &mut Option<watch::Receiver<BreakerState>>) {
    match state {
        Some(rx) => {
            if rx.wait_for(|s| *s != BreakerState::Closed).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Sleeps until `until`; forever without one.
async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}

fn reap(
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    tags: &mut HashMap<tokio::task::Id, u64>,
    settler: &Settler,
) {
    match done {
        Ok((id, ())) => {
            tags.remove(&id);
        }
        Err(e) => {
            // A cancelled task (shutdown past the grace period), or a bug in
            // the settling code itself (handler panics are caught inside the
            // stack): never leave its delivery unsettled.
            if let Some(tag) = tags.remove(&e.id()) {
                if !e.is_cancelled() {
                    tracing::error!(error = %e, tag, "delivery task failed; requeueing");
                }
                settler.settle(tag, Settlement::Requeue);
            }
        }
    }
}

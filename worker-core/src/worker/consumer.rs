//! Consuming one queue on its own channel: dispatch, settle, stop cleanly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::dispatch::{dispatch, Tasks};
use super::lapin_transport::LapinTransport;
use super::settle::Settlement;
use super::settler::Settler;
use super::WorkerConfig;
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
}

/// One queue a group's consumer reads: the work queue, or its quarantine.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) queue: Arc<str>,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
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
            },
            Source {
                queue: Arc::from(quarantine),
                prefetch: 1,
                concurrency: 1,
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
    /// Told once `basic.consume` was confirmed (for readiness).
    pub(crate) consuming: tokio::sync::mpsc::UnboundedSender<()>,
}

/// Consumes `source` for `group`'s tasks until `stop` fires (then stops cleanly and returns
/// `Ok`) or the channel is lost (returns `Err`; the broker redelivers whatever
/// was not settled).
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
    let consumer_tag = format!("{}-{}", source.queue, uuid::Uuid::new_v4().simple());
    let mut consumer = channel
        .basic_consume(
            source.queue.as_ref().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::broker(format!("basic.consume {}", source.queue), e))?;
    tracing::info!(queue = %source.queue, prefetch = source.prefetch, concurrency = source.concurrency, "consuming");
    let _ = consuming.send(());

    let transport: Arc<dyn Transport> = Arc::new(LapinTransport::new(channel.clone(), publisher));
    let settler = Settler::spawn(transport.clone());
    let permits = Arc::new(Semaphore::new(source.concurrency.max(1)));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut tags: HashMap<tokio::task::Id, u64> = HashMap::new();

    // A delivery is taken from the consumer only once a handler slot is
    // free, and every wait in this loop also watches for the stop signal:
    // with fewer slots than the prefetch, a stop must not wait behind busy
    // handlers, and a delivery that has not started when the stop comes is
    // returned by `stop_cleanly` rather than started.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let lost = loop {
        tokio::select! {
            biased;
            () = stop.triggered() => break None,
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                reap(done, &mut tags, &settler);
            }
            permit = permits.clone().acquire_owned(), if slot.is_none() => {
                slot = Some(permit.expect("semaphore is never closed"));
            }
            next = consumer.next(), if slot.is_some() => match next {
                Some(Ok(raw)) => {
                    let permit = slot.take().expect("a slot is held in this branch");
                    let delivery = Arc::new(Delivery::from_lapin(raw));
                    let tag = delivery.tag;
                    let (tasks, transport, runtime) = (group.tasks.clone(), transport.clone(), runtime.clone());
                    let task_settler = settler.clone();
                    settler.track(tag);
                    let handle = running.spawn(async move {
                        let (_, settlement) = dispatch(&tasks, delivery, transport, runtime).await;
                        task_settler.settle(tag, settlement);
                        drop(permit);
                    });
                    tags.insert(handle.id(), tag);
                }
                Some(Err(e)) => break Some(Error::broker(format!("consuming {}", source.queue), e)),
                None => break Some(Error::ConsumerStopped(format!("the broker cancelled the consumer of {}", source.queue))),
            },
        }
    };

    if let Some(err) = lost.as_ref() {
        if !matches!(err, Error::ConsumerStopped(_)) {
            // The channel is gone: nothing can be settled on it any more.
            // Let running handlers finish (their settlements are dropped and
            // the broker redelivers) but do not wait for them.
            running.detach_all();
            return lost.map_or(Ok(()), Err);
        }
    }
    // A stop, or the broker cancelled the consumer with the channel still
    // open: settle what is in flight on it and close it cleanly (after a
    // cancel the supervisor then consumes again).
    stop_cleanly(
        &channel,
        &consumer_tag,
        &mut consumer,
        running,
        tags,
        &settler,
        source,
        &config,
    )
    .await;
    lost.map_or(Ok(()), Err)
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

#[allow(clippy::too_many_arguments)]
async fn stop_cleanly(
    channel: &lapin::Channel,
    consumer_tag: &str,
    consumer: &mut lapin::Consumer,
    mut running: JoinSet<()>,
    mut tags: HashMap<tokio::task::Id, u64>,
    settler: &Settler,
    source: &Source,
    config: &WorkerConfig,
) {
    // 1. No new deliveries.
    if let Err(e) = channel
        .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
        .await
    {
        tracing::warn!(error = %e, "basic.cancel failed");
    }
    // 2. Deliveries that arrived but never started go back to the queue.
    let mut returned = 0usize;
    while let Ok(Some(Ok(raw))) =
        tokio::time::timeout(Duration::from_millis(20), consumer.next()).await
    {
        settler.track(raw.delivery_tag);
        settler.settle(raw.delivery_tag, Settlement::Return);
        returned += 1;
    }
    // 3. In-flight handlers get the grace period.
    let in_flight = running.len();
    let finished = tokio::time::timeout(config.grace_period, async {
        while let Some(done) = running.join_next_with_id().await {
            reap(done, &mut tags, settler);
        }
    })
    .await
    .is_ok();
    // 4. Whatever is still running is cancelled and its delivery returned.
    let mut abandoned = 0usize;
    if !finished {
        running.abort_all();
        while let Some(done) = running.join_next_with_id().await {
            abandoned += usize::from(done.is_err());
            reap(done, &mut tags, settler);
        }
    }
    settler.flush().await;
    // 5. Make sure the broker took our acks before the channel closes:
    //    basic.qos is synchronous, so its reply follows every earlier frame;
    //    then a short wait for quorum queues, which can drop acks that race
    //    a channel close (rabbitmq-server #10327).
    let _ = channel
        .basic_qos(source.prefetch, BasicQosOptions::default())
        .await;
    tokio::time::sleep(config.settle_wait).await;
    let _ = channel.close(200, "worker stopping".into()).await;
    tracing::info!(queue = %source.queue, returned, in_flight, abandoned, "consumer stopped");
}

//! Reading a parking queue without taking: under the queue's lock, every
//! message is taken with `basic.get` without acks and the ones kept are
//! returned with one multiple nack, so the queue's order is what it was on
//! every version (RabbitMQ 4.0's quorum queues put returned messages at
//! the tail: returning a part of the queue would move it behind the rest);
//! messages near a delivery limit are refreshed.

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicQosOptions, QueuePurgeOptions,
};
use lapin::{Channel, Connection};

use super::super::topology::{redeclare, Verdict};
use super::super::{inspect_queue, passive_declare};
use super::lock::{self, Lock};
use worker_core::broker::{Capabilities, DeliveryLimit};
use worker_core::connection::Connector;
use worker_core::error::Error;
use worker_core::headers;
use worker_core::message::{Delivery, Outgoing};
use worker_core::publisher::Publisher;
use worker_core::task::QueueType;
use worker_core::topology::parking_plan;

/// How long to wait after the last acks before closing the channel:
/// quorum queues can drop acks that race a channel close (rabbitmq-server #10327).
const SETTLE_WAIT: Duration = Duration::from_millis(200);

/// How long [`Peek::finish`] waits for returned messages to be ready again.
const RETURN_WAIT: Duration = Duration::from_secs(3);

/// A channel holding unacked `basic.get` deliveries of one queue, and the
/// queue's lock. [`finish`](Peek::finish) it; dropped without that (a
/// cancelled request), its channel is closed in the background, which
/// returns every message it held.
pub(super) struct Peek {
    channel: Channel,
    queue: String,
    lock: Option<Lock>,
    unacked: BTreeSet<u64>,
    /// Messages in the queue when the peek started (under the lock).
    depth: u32,
    /// Messages taken since (acked or not).
    taken: u32,
    /// Messages acked (removed) since.
    acked: u32,
    /// Set when the broker may drop a message this peek returns too often.
    refresh: Option<Refresh>,
}

/// Re-publishing messages that approach the queue's delivery limit.
struct Refresh {
    publisher: Publisher,
    /// Returns after which a message is refreshed.
    at: u64,
}

impl Peek {
    /// Takes `queue`'s lock and opens a peek; `None` when the queue does
    /// not exist.
    pub(super) async fn open(
        connector: &Connector,
        conn: &Connection,
        queue: &str,
    ) -> Result<Option<Peek>, Error> {
        let lock = lock::lock(conn, queue).await?;
        let Some(depth) = inspect_queue(conn, queue).await? else {
            lock.release().await;
            return Ok(None);
        };
        let refresh = return_limit(conn, connector.capabilities(), queue)
            .await?
            .map(|limit| Refresh {
                publisher: Publisher::new(connector.clone()),
                at: u64::from(limit / 2),
            });
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| Error::broker("channel.open", e))?;
        Ok(Some(Peek {
            channel,
            queue: queue.to_owned(),
            lock: Some(lock),
            unacked: BTreeSet::new(),
            depth: depth.messages,
            taken: 0,
            acked: 0,
            refresh,
        }))
    }

    /// Messages in the queue when the peek started.
    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    /// The queue read.
    pub(super) fn queue(&self) -> &str {
        &self.queue
    }

    /// The next message, held unacked; messages refreshed on the way are
    /// skipped (their copies come later, at the queue's tail).
    pub(super) async fn next(&mut self) -> Result<Option<Delivery>, Error> {
        loop {
            let got = self
                .channel
                .basic_get(
                    self.queue.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(|e| Error::broker(format!("basic.get {}", self.queue), e))?;
            let Some(m) = got else {
                return Ok(None);
            };
            self.unacked.insert(m.delivery.delivery_tag);
            self.taken += 1;
            let delivery = worker_core::__operator::delivery_from_lapin(m.delivery);
            if !self.refreshed(&delivery).await? {
                return Ok(Some(delivery));
            }
        }
    }

    /// Replaces `delivery` with a fresh copy at the queue's tail when it was
    /// returned often enough to near the queue's delivery limit.
    async fn refreshed(&mut self, delivery: &Delivery) -> Result<bool, Error> {
        let Some(refresh) = &self.refresh else {
            return Ok(false);
        };
        let headers = delivery.properties.headers();
        if headers.delivery_count() < refresh.at {
            return Ok(false);
        }
        let mut properties = delivery.properties.for_copy();
        properties.headers_mut().remove(headers::X_DELIVERY_COUNT);
        let copy = Outgoing::to_queue(&self.queue, properties, delivery.body.clone());
        refresh.publisher.publish(copy).await?;
        self.ack(delivery.tag).await?;
        tracing::info!(queue = %self.queue, message_id = ?delivery.properties.message_id(), "refreshed a parked message near the queue's delivery limit");
        Ok(true)
    }

    pub(super) async fn ack(&mut self, tag: u64) -> Result<(), Error> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .map_err(|e| Error::broker(format!("basic.ack on {}", self.queue), e))?;
        self.unacked.remove(&tag);
        self.acked += 1;
        Ok(())
    }

    /// Gives the whole queue back (see [`give_back`](Peek::give_back)),
    /// closes the channel and releases the queue's lock.
    pub(super) async fn finish(mut self) {
        self.give_back().await;
        let _ = self.channel.close(200, "done".into()).await;
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }

    /// Removes every message of the queue (none is held yet), closes the
    /// channel and releases the lock; how many there were.
    pub(super) async fn purge(self) -> Result<u32, Error> {
        let purged = self
            .channel
            .queue_purge(self.queue.as_str().into(), QueuePurgeOptions::default())
            .await
            .map_err(|e| Error::broker(format!("queue.purge {}", self.queue), e));
        self.finish().await;
        purged
    }

    /// Gives the whole queue back and starts a new pass over it, still
    /// holding its lock (nobody but the workers, who only add at the
    /// tail, changes it in between).
    pub(super) async fn rewind(&mut self) -> Result<(), Error> {
        self.give_back().await;
        self.depth = passive_declare(&self.channel, self.queue.as_str().into())
            .await
            .map_err(|e| Error::broker(format!("queue.declare (passive) {}", self.queue), e))?
            .message_count();
        self.unacked.clear();
        self.taken = 0;
        self.acked = 0;
        Ok(())
    }

    /// Takes every message still in the queue, so that what it returns is
    /// the whole queue, in order, whatever the caller read; returns every
    /// unacked message; makes sure the broker took the acks and nacks (a
    /// synchronous round trip, then a short settle wait), and waits until
    /// the returned messages are ready again.
    ///
    /// The last wait matters for quorum queues: a requeue goes through the
    /// queue's log, so for a moment after the nack the messages are neither
    /// unacked nor ready, and a listing started right after this one would
    /// find the queue empty.
    async fn give_back(&mut self) {
        while let Ok(Some(_)) = self.next().await {}
        let returned = !self.unacked.is_empty();
        if let Some(&last) = self.unacked.last() {
            if let Err(e) = self
                .channel
                .basic_nack(
                    last,
                    BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    },
                )
                .await
            {
                tracing::warn!(queue = %self.queue, error = %e, "could not return listed messages; the broker returns them when the channel closes");
            }
        }
        // basic.qos is synchronous: its reply follows every earlier frame.
        let _ = self.channel.basic_qos(0, BasicQosOptions::default()).await;
        if self.acked > 0 {
            tokio::time::sleep(SETTLE_WAIT).await;
        }
        if returned {
            self.wait_until_returned().await;
        }
    }

    /// Polls the queue's ready count until every message taken and not
    /// acked is back. Gives up quietly after [`RETURN_WAIT`]: someone else
    /// (a concurrent replay or purge) may have taken messages meanwhile.
    async fn wait_until_returned(&self) {
        let expected = self.taken.saturating_sub(self.acked);
        let deadline = tokio::time::Instant::now() + RETURN_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            let ready = passive_declare(&self.channel, self.queue.as_str().into())
                .await
                .map(|q| q.message_count());
            match ready {
                Ok(ready) if ready >= expected => return,
                Ok(ready) if tokio::time::Instant::now() >= deadline => {
                    tracing::debug!(queue = %self.queue, ready, expected, "listed messages not all ready again; going on");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(queue = %self.queue, error = %e, "could not read the queue's depth after returning messages");
                    return;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for Peek {
    fn drop(&mut self) {
        // Not finished: closing the channel returns what it holds; the
        // lock goes after that.
        let Some(lock) = self.lock.take() else {
            return;
        };
        let channel = self.channel.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = channel.close(200, "cancelled".into()).await;
                lock.release().await;
            });
        }
    }
}

/// How often a message of `queue` may be returned by a peek before the
/// broker drops it; `None` when it never does.
///
/// Only RabbitMQ 4.0-4.2 both count a peek's multiple nack and give a
/// quorum queue a default limit. There a parking queue that redeclares
/// with the framework's unlimited argument is unlimited; any other (one
/// declared by an older version of the framework) gets the default.
async fn return_limit(
    conn: &Connection,
    caps: Capabilities,
    queue: &str,
) -> Result<Option<u32>, Error> {
    let DeliveryLimit::Returns(limit) = caps.default_delivery_limit() else {
        return Ok(None);
    };
    if !caps.nack_requeue_counts() {
        return Ok(None);
    }
    let plan = parking_plan(queue, QueueType::Quorum, caps);
    Ok((redeclare(conn, &plan).await? != Verdict::Matches).then_some(limit))
}

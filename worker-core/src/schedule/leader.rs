//! Electing the one process that schedules, through RabbitMQ itself.
//!
//! Each periodic entry has its election: every worker with the entry
//! consumes its [`election_queue`], a quorum queue with
//! `x-single-active-consumer`: the broker delivers only
//! to one consumer at a time, the active one. The queue holds a token
//! message (each candidate publishes one; `x-max-length: 1` with
//! `reject-publish` keeps it to one, and a refused extra is fine). The
//! active consumer takes the token with prefetch 1 and never acks it:
//! holding it (or having just handed it back to take it again) is leading. No other store is needed.
//!
//! How leadership changes: when the leader's connection closes (a clean
//! stop, a crash, SIGKILL: the kernel closes the socket and the broker sees
//! it at once), the broker returns the token and makes the next consumer,
//! in the order they subscribed, the active one, which receives the token
//! and starts scheduling. A leader cut off without its socket closing
//! (a network partition, a frozen host) is only noticed by the broker's
//! heartbeat check: its takeover time is bounded by twice the heartbeat
//! interval negotiated on the connection (60 s by default on RabbitMQ).
//! Meanwhile the old leader may still enqueue a tick the new one enqueues
//! too: both carry the same message id (`tick:<entry>:<secs>`).
//!
//! The leader hands the token back and takes it again well within the
//! broker's consumer timeout ([`Lease::lost`]), so the broker never times
//! the leader out: holding a delivery unacked for 30 minutes (RabbitMQ's
//! default `consumer_timeout`) would close its channel (before 4.3) or
//! cancel its consumer (4.3), move leadership and write a channel error
//! into the broker's log every 30 minutes.
//!
//! The token's returns are deliveries the quorum queue counts, so the
//! queue is declared with no delivery limit, said as the broker's version
//! needs ([`Capabilities::unlimited_delivery_limit_argument`]).

use futures_util::StreamExt;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

use crate::broker::Capabilities;
use crate::error::Error;
use crate::headers::Headers;
use crate::topology::{declare_named, open_channel, DELIVERY_LIMIT};

/// Every election queue's name starts with this.
pub const SCHEDULER_QUEUE: &str = "rabbit-worker.scheduler";

/// The election queue of a periodic entry: `rabbit-worker.scheduler.<entry>`.
/// One per entry, so that workers of different programs sharing a vhost,
/// each with its own entries, never hold up each other's ticks.
pub fn election_queue(entry: &str) -> String {
    format!("{SCHEDULER_QUEUE}.{entry}")
}

/// The election queue's arguments on a broker with these capabilities.
pub fn scheduler_arguments(caps: Capabilities) -> Headers {
    let mut args = Headers::new();
    args.insert("x-queue-type", "quorum")
        .insert("x-single-active-consumer", true)
        .insert("x-max-length", 1_i64)
        .insert("x-overflow", "reject-publish");
    if let Some(unlimited) = caps.unlimited_delivery_limit_argument() {
        args.insert(DELIVERY_LIMIT, unlimited);
    }
    args
}

/// Leadership held: the channel that holds the token. Dropping it (or
/// losing the connection) gives leadership up.
#[derive(Debug)]
pub struct Lease {
    channel: Channel,
    consumer: lapin::Consumer,
    /// The delivery tag of the token this process holds.
    token: u64,
}

impl Lease {
    /// Whether this process still leads: its channel is open.
    pub fn held(&self) -> bool {
        self.channel.status().connected()
    }

    /// Resolves when leadership is lost: the channel or the connection
    /// closed, or the broker cancelled the consumer.
    ///
    /// Meanwhile, every `refresh` the token is handed back
    /// (`basic.nack`, requeue) and taken again: the single active consumer
    /// stays active, so the token comes straight back to this process,
    /// and no delivery is ever held unacknowledged long enough for the
    /// broker's consumer timeout (which would close the channel before
    /// RabbitMQ 4.3 and cancel the consumer from 4.3, and hand leadership
    /// to another process either way). Keep `refresh` well below the
    /// broker's `consumer_timeout`.
    pub async fn lost(&mut self, refresh: Duration) {
        loop {
            let next = tokio::select! {
                next = self.consumer.next() => next,
                () = tokio::time::sleep(refresh) => {
                    let handed_back = self
                        .channel
                        .basic_nack(self.token, BasicNackOptions { multiple: false, requeue: true })
                        .await;
                    if handed_back.is_err() {
                        return;
                    }
                    self.consumer.next().await
                }
            };
            match next {
                Some(Ok(token)) => self.token = token.delivery_tag,
                Some(Err(_)) | None => return,
            }
        }
    }

    /// Gives leadership up at once (the token goes back to the queue).
    pub async fn release(self) {
        let _ = self.channel.close(200, "scheduler stopping".into()).await;
    }
}

/// Declares the election queue, offers a token, subscribes, and waits
/// until this process is the active consumer and holds the token.
pub async fn acquire(conn: &Connection, caps: Capabilities, queue: &str) -> Result<Lease, Error> {
    let channel = open_channel(conn).await?;
    declare_named(&channel, queue, &scheduler_arguments(caps)).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Error::broker("confirm.select", e))?;
    // A nack (the queue already holds a token) is expected and harmless.
    let offered = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"token",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .map_err(|e| Error::broker("basic.publish scheduler token", e))?;
    let _ = offered.await;
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .map_err(|e| Error::broker("basic.qos", e))?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            format!("scheduler-{}", std::process::id()).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::broker("basic.consume scheduler", e))?;
    match consumer.next().await {
        Some(Ok(token)) => Ok(Lease {
            channel,
            consumer,
            token: token.delivery_tag,
        }),
        Some(Err(e)) => Err(Error::broker("scheduler token", e)),
        None => Err(Error::ConsumerStopped(
            "the scheduler queue's consumer was cancelled".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Version;
    use crate::headers::HeaderValue;

    #[test]
    fn the_token_is_never_dropped_for_its_returns_on_any_version() {
        let on_3 = scheduler_arguments(Capabilities::of(Version::new(3, 10, 8)));
        let on_4 = scheduler_arguments(Capabilities::of(Version::new(4, 0, 5)));
        assert!(!on_3.contains(DELIVERY_LIMIT));
        assert_eq!(on_4.get(DELIVERY_LIMIT), Some(HeaderValue::Int(-1)));
        assert_eq!(
            on_3.get("x-single-active-consumer"),
            Some(HeaderValue::Bool(true))
        );
    }
}

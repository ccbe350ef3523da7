//! The elected scheduler of one entry: enqueue each tick once, record it,
//! carry on.
//!
//! A term starts when [`leader::acquire`] returns and ends when the lease
//! is lost, the worker stops, or publishing fails (the term then starts
//! over, possibly in another process). At the start of a term each entry
//! resumes after its last recorded tick ([`every::resume`]); each tick is
//! published with a confirm and only then recorded, so a crash between the
//! two makes the next scheduler enqueue that tick again, with the same
//! message id (`tick:<entry>:<secs>`): a duplicate, never a gap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};

use super::{every, leader, Missed, Periodic};
use crate::connection::Connector;
use crate::error::Error;
use crate::headers::{Headers, SCHEDULED_AT, SCHEDULER};
use crate::metric_names::{PERIODIC_NEXT_TICK, PERIODIC_TICKS, SCHEDULER_LEADER};
use crate::publisher::{EnqueueOptions, Publisher};
use crate::runtime::Shutdown;
use crate::topology::{declare_named, open_channel};

/// The queue holding an entry's last enqueued tick (one message at most).
pub fn last_tick_queue(entry: &str) -> String {
    format!("{}.last", leader::election_queue(entry))
}

fn last_tick_arguments() -> Headers {
    let mut args = Headers::new();
    args.insert("x-queue-type", "classic")
        .insert("x-max-length", 1_i64);
    args
}

/// `host:pid` of this process, as the last-tick records name it.
pub(crate) fn this_process() -> String {
    format!("{}:{}", crate::host::hostname(), std::process::id())
}

/// Runs one entry's elections and terms until the worker stops.
pub(crate) struct Scheduler {
    pub(crate) connector: Connector,
    pub(crate) publisher: Publisher,
    pub(crate) entry: Periodic,
    pub(crate) shutdown: Shutdown,
    /// How often the leader hands its token back and takes it again
    /// (see [`leader::Lease::lost`]).
    pub(crate) token_refresh: Duration,
}

impl Scheduler {
    pub(crate) async fn run(self) {
        self.leading(false);
        let mut pause = Duration::from_millis(200);
        while !self.shutdown.is_triggered() {
            let term = tokio::select! {
                r = self.term() => r,
                () = self.shutdown.triggered() => break,
            };
            match term {
                Ok(()) => pause = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(entry = %self.entry.id, error = %e, "periodic scheduler: {e}; taking part in the election again in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.shutdown.triggered() => break,
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.leading(false);
    }

    fn leading(&self, yes: bool) {
        metrics::gauge!(SCHEDULER_LEADER, "entry" => self.entry.id.clone(), "task" => self.entry.task)
            .set(if yes { 1.0 } else { 0.0 });
    }

    /// Waits for leadership, then schedules until it ends.
    async fn term(&self) -> Result<(), Error> {
        let conn = self.connector.connection().await?;
        let queue = leader::election_queue(&self.entry.id);
        let mut lease = leader::acquire(&conn, self.connector.capabilities(), &queue).await?;
        tracing::info!(entry = %self.entry.id, process = %this_process(), "this process now schedules periodic entry {}", self.entry.id);
        self.leading(true);
        let result = tokio::select! {
            r = self.lead(&conn) => r,
            () = lease.lost(self.token_refresh) => Err(Error::ConsumerStopped("scheduler leadership lost (its channel closed)".into())),
            () = self.shutdown.triggered() => Ok(()),
        };
        self.leading(false);
        lease.release().await;
        result
    }

    async fn lead(&self, conn: &Connection) -> Result<(), Error> {
        let entry = &self.entry;
        let channel = open_channel(conn).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::broker("confirm.select", e))?;
        let record = last_tick_queue(&entry.id);
        declare_named(&channel, &record, &last_tick_arguments()).await?;
        let last = read_last(&channel, &record).await?;
        let (mut next, skipped) = every::resume(last, now_secs(), entry.missed, |t| {
            entry.schedule.next_after(t)
        });
        if skipped > 0 {
            tracing::warn!(entry = %entry.id, skipped, policy = entry.missed.as_str(), "periodic entry: {skipped} missed ticks skipped");
        }
        tracing::info!(entry = %entry.id, ?last, first = ?next, "periodic entry resumes");
        while let Some(due) = next {
            metrics::gauge!(PERIODIC_NEXT_TICK, "entry" => entry.id.clone(), "task" => entry.task)
                .set(due as f64);
            let wait = Duration::from_secs(due).saturating_sub(since_epoch());
            tokio::time::sleep(wait).await;
            self.enqueue(entry, due).await?;
            record_last(&channel, &record, due).await?;
            metrics::counter!(PERIODIC_TICKS, "entry" => entry.id.clone(), "task" => entry.task)
                .increment(1);
            let following = entry.schedule.next_after(due);
            next = match (entry.missed, following) {
                // Behind while leading (a stalled process): with `skip`,
                // on to the next tick to come.
                (Missed::Skip, Some(t)) if t + 1 < now_secs() => {
                    entry.schedule.next_after(now_secs().saturating_sub(1))
                }
                _ => following,
            };
        }
        tracing::info!(entry = %entry.id, "periodic entry has no more ticks");
        // Lead on, idle: giving the token up would only hand it round.
        std::future::pending().await
    }

    /// Publishes the tick of `entry` scheduled at `due`, confirmed.
    async fn enqueue(&self, entry: &Periodic, due: u64) -> Result<(), Error> {
        let mut headers = Headers::new();
        headers.insert(SCHEDULED_AT, due);
        let options = EnqueueOptions {
            message_id: Some(entry.tick_id(due)),
            headers,
            ..EnqueueOptions::default()
        };
        let (id, mut message) =
            self.publisher
                .task_message(entry.task, entry.queue, &entry.payload, options)?;
        message.properties = std::mem::take(&mut message.properties).with_timestamp(due);
        self.publisher.publish(message).await?;
        tracing::debug!(entry = %entry.id, id, "periodic tick enqueued");
        Ok(())
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn now_secs() -> u64 {
    since_epoch().as_secs()
}

/// The last tick recorded in `queue`, read without taking it.
async fn read_last(channel: &Channel, queue: &str) -> Result<Option<u64>, Error> {
    let got = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(|e| Error::broker(format!("basic.get {queue}"), e))?;
    let Some(message) = got else {
        return Ok(None);
    };
    let last = std::str::from_utf8(&message.delivery.data)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    channel
        .basic_nack(
            message.delivery.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
        .map_err(|e| Error::broker(format!("basic.nack {queue}"), e))?;
    if last.is_none() {
        tracing::warn!(queue, "ignoring a last-tick record that is not a number");
    }
    Ok(last)
}

/// Records `due` as the last tick enqueued (the queue keeps only the newest).
async fn record_last(channel: &Channel, queue: &str, due: u64) -> Result<(), Error> {
    let mut headers = FieldTable::default();
    headers.insert(
        SCHEDULER.into(),
        AMQPValue::LongString(LongString::from(this_process().into_bytes())),
    );
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            due.to_string().as_bytes(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_timestamp(now_secs())
                .with_headers(headers),
        )
        .await
        .map_err(|e| Error::broker(format!("basic.publish {queue}"), e))?
        .await
        .map_err(|e| Error::broker(format!("publisher confirm {queue}"), e))?;
    if confirm.is_ack() && confirm.take_message().is_none() {
        Ok(())
    } else {
        Err(Error::Nacked {
            routing_key: queue.to_owned(),
        })
    }
}

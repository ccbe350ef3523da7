//! What `status` shows of the periodic tasks: who schedules, and when each
//! entry fires next, read from the broker (any process can ask).

use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Connection;

use super::{every, leader::election_queue, scheduler::last_tick_queue, Periodic};
use crate::connection::Connector;
use crate::error::Error;
use crate::headers::SCHEDULER;
use crate::topology::open_channel;

/// One entry as the broker knows it.
#[derive(Debug, Clone)]
pub struct EntryStatus {
    /// The entry's id.
    pub entry: String,
    /// The task it enqueues.
    pub task: &'static str,
    /// Whether a worker is elected for it: its election queue has its
    /// active consumer (with single-active-consumer the broker counts only
    /// that one, so the other candidates cannot be counted this way);
    /// `None` when no worker ever declared the queue.
    pub elected: Option<bool>,
    /// When its ticks fall.
    pub schedule: super::Schedule,
    /// The last tick enqueued (Unix seconds), if any was.
    pub last: Option<u64>,
    /// The process that enqueued it (`host:pid`).
    pub scheduled_by: Option<String>,
    /// When the next tick is due (Unix seconds), by the entry's policy;
    /// `None` when the schedule has no more.
    pub next: Option<u64>,
}

/// The scheduler as the broker knows it.
#[derive(Debug, Clone)]
pub struct SchedulerStatus {
    /// Each entry.
    pub entries: Vec<EntryStatus>,
}

/// Reads the election queue and each entry's last-tick record (taken and
/// returned at once: nothing is consumed).
pub async fn status(connector: &Connector, entries: &[Periodic]) -> Result<SchedulerStatus, Error> {
    let conn = connector.connection().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let elected = consumers(&conn, &election_queue(&entry.id))
            .await?
            .map(|n| n > 0);
        let (last, scheduled_by) = last_record(&conn, &last_tick_queue(&entry.id)).await?;
        let (next, _) = every::resume(last, now, entry.missed, |t| entry.schedule.next_after(t));
        out.push(EntryStatus {
            entry: entry.id.clone(),
            task: entry.task,
            elected,
            schedule: entry.schedule.clone(),
            last,
            scheduled_by,
            next,
        });
    }
    Ok(SchedulerStatus { entries: out })
}

/// Consumers of `queue`, `None` when it does not exist.
async fn consumers(conn: &Connection, queue: &str) -> Result<Option<u32>, Error> {
    let channel = open_channel(conn).await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = channel.close(200, "status read".into()).await;
    Ok(declared.ok().map(|q| q.consumer_count()))
}

/// The last tick and its scheduler from `queue`; nothing when it is
/// missing or empty.
async fn last_record(
    conn: &Connection,
    queue: &str,
) -> Result<(Option<u64>, Option<String>), Error> {
    let channel = open_channel(conn).await?;
    let Ok(Some(message)) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
    else {
        let _ = channel.close(200, "status read".into()).await;
        return Ok((None, None));
    };
    let last = std::str::from_utf8(&message.delivery.data)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let by = message
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| match h.inner().get(SCHEDULER) {
            Some(AMQPValue::LongString(s)) => {
                Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            _ => None,
        });
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
    let _ = channel.close(200, "status read".into()).await;
    Ok((last, by))
}

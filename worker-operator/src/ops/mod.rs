//! Operations on a running system, usable without the CLI: what is parked
//! and replaying it ([`parked`]), queue depths ([`status`]), whether the
//! broker's queues match what the code declares ([`topology`]), and the
//! circuit breakers of running workers ([`breakers`]).
//!
//! Everything here talks to the broker through a [`Connector`] and the
//! registered tasks' [`TaskSpec`]s, the same ones the worker uses, so the
//! queue names can never drift from the worker's.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use worker_core::{Connector, ConnectionConfig};
//! # use worker_core::topology::TaskSpec;
//! # async fn demo(specs: Vec<Arc<TaskSpec>>) -> Result<(), worker_core::Error> {
//! let connector = Connector::new(ConnectionConfig::from_env());
//! let report = worker_operator::ops::topology::check(&connector, &specs).await?;
//! for problem in report.problems() {
//!     eprintln!("{problem}");
//! }
//! # Ok(()) }
//! ```

pub mod breakers;
pub mod parked;
pub mod progress;
pub mod status;
pub mod topology;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Connection;

use worker_core::__operator::reply_code;
use worker_core::connection::Connector;
use worker_core::error::Error;
use worker_core::topology::TaskSpec;

/// Finds a task by its name, or by its queue name when no task has that name.
///
/// ```
/// # use std::sync::Arc;
/// # use worker_core::topology::TaskSpec;
/// # use worker_core::TaskOptions;
/// let specs = vec![Arc::new(TaskSpec::new("send_email", "emails", TaskOptions::default()))];
/// assert!(worker_operator::ops::find_task(&specs, "send_email").is_some());
/// assert!(worker_operator::ops::find_task(&specs, "emails").is_some());
/// assert!(worker_operator::ops::find_task(&specs, "sms").is_none());
/// ```
pub fn find_task<'a>(specs: &'a [Arc<TaskSpec>], name: &str) -> Option<&'a Arc<TaskSpec>> {
    specs
        .iter()
        .find(|s| s.name == name)
        .or_else(|| specs.iter().find(|s| &*s.queue == name))
}

/// Messages ready and consumers of one existing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Messages ready for delivery (not counting unacked ones).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

pub(crate) use worker_core::__operator::NOT_FOUND;

/// Passively declares `queue` on a throwaway channel: `None` when it does
/// not exist (the broker closes that channel with 404).
pub(crate) async fn inspect_queue(
    conn: &Connection,
    queue: &str,
) -> Result<Option<QueueDepth>, Error> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Error::broker("channel.open", e))?;
    let name = lapin::types::ShortString::try_new(queue).map_err(|_| Error::TooLong {
        field: "queue name",
        len: queue.len(),
    })?;
    match passive_declare(&channel, name).await {
        Ok(q) => {
            let _ = channel.close(200, "inspected".into()).await;
            Ok(Some(QueueDepth {
                messages: q.message_count(),
                consumers: q.consumer_count(),
            }))
        }
        Err(e) if reply_code(&e) == Some(NOT_FOUND) => Ok(None),
        Err(e) => Err(Error::broker(format!("queue.declare (passive) {queue}"), e)),
    }
}

/// Declares `queue` passively on `channel`: its counts if it exists; a
/// missing queue is a 404 channel error, which closes the channel.
pub(crate) async fn passive_declare(
    channel: &lapin::Channel,
    queue: lapin::types::ShortString,
) -> Result<lapin::Queue, lapin::Error> {
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Messages and consumers of `queue` (a passive declare on a throwaway
/// channel, creating nothing); `None` when the queue does not exist.
pub async fn queue_depth(connector: &Connector, queue: &str) -> Result<Option<QueueDepth>, Error> {
    let conn = connector.connection().await?;
    inspect_queue(&conn, queue).await
}

/// The first second RFC 3339 cannot write: 10000-01-01T00:00:00Z.
const YEAR_10000: u64 = 253_402_300_800;

/// Formats seconds since the epoch as an RFC 3339 UTC time, in whole
/// seconds (humantime's `format_rfc3339_seconds`).
///
/// RFC 3339 years have four digits: a time from the year 10000 on, which
/// only a broken or hostile producer writes, is given as seconds since the
/// epoch instead.
///
/// ```
/// assert_eq!(worker_operator::ops::format_time(0), "1970-01-01T00:00:00Z");
/// assert_eq!(worker_operator::ops::format_time(1_700_000_000), "2023-11-14T22:13:20Z");
/// assert_eq!(worker_operator::ops::format_time(u64::MAX), "18446744073709551615 seconds after the epoch");
/// ```
pub fn format_time(secs: u64) -> String {
    if secs >= YEAR_10000 {
        return format!("{secs} seconds after the epoch");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_across_leap_years() {
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn times_past_year_9999_are_seconds_since_the_epoch() {
        assert_eq!(format_time(YEAR_10000 - 1), "9999-12-31T23:59:59Z");
        assert_eq!(
            format_time(YEAR_10000),
            "253402300800 seconds after the epoch"
        );
    }
}

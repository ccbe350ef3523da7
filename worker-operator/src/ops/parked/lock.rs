//! One operation at a time on a parking queue, across every process.
//!
//! Every read or action takes the whole parking queue and gives back what
//! it keeps (see [`super::peek`]), so two of them at once would each find
//! the other's messages missing. Each first takes the queue's lock:
//!
//! - in this process, a mutex per queue (dashboard requests share one
//!   connection, and the broker sees them as one holder);
//! - across processes, the exclusive queue `<parking queue>.lock`, declared
//!   on the operation's connection. The broker lets one connection hold it
//!   (`405 RESOURCE_LOCKED` for any other) and deletes it when that
//!   connection closes, so a process that dies never leaves it behind.
//!
//! A waiter polls the broker's lock, with backoff, for up to [`LOCK_WAIT`];
//! then it gives up with [`Error::Busy`] and touches nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use tokio::sync::OwnedMutexGuard;

use worker_core::__operator::reply_code;
use worker_core::error::Error;

/// How long an operation waits for another one on the same queue.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// AMQP reply code 405: another connection holds the exclusive queue.
const RESOURCE_LOCKED: u16 = 405;

/// The held lock of one parking queue; [`release`](Lock::release) it.
/// Dropped without that (a cancelled request), it is released in the
/// background.
pub(super) struct Lock {
    held: Option<Held>,
}

struct Held {
    channel: Channel,
    name: String,
    _local: OwnedMutexGuard<()>,
}

/// The exclusive queue that stands for `queue`'s lock.
pub(super) fn lock_queue(queue: &str) -> String {
    format!("{queue}.lock")
}

/// Takes `queue`'s lock, waiting up to [`LOCK_WAIT`] for whoever holds it.
pub(super) async fn lock(conn: &Connection, queue: &str) -> Result<Lock, Error> {
    let busy = || Error::Busy {
        queue: queue.to_owned(),
        waited: LOCK_WAIT,
    };
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    let local = tokio::time::timeout_at(deadline, local_mutex(queue).lock_owned())
        .await
        .map_err(|_| busy())?;
    let name = lock_queue(queue);
    let mut pause = Duration::from_millis(10);
    loop {
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| Error::broker("channel.open", e))?;
        let declared = channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                classic(),
            )
            .await;
        match declared {
            Ok(_) => {
                return Ok(Lock {
                    held: Some(Held {
                        channel,
                        name,
                        _local: local,
                    }),
                })
            }
            Err(e) if reply_code(&e) == Some(RESOURCE_LOCKED) => {
                if tokio::time::Instant::now() + pause > deadline {
                    return Err(busy());
                }
                tracing::debug!(queue, "parking queue in use by another process; waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            Err(e) => return Err(Error::broker(format!("queue.declare {name}"), e)),
        }
    }
}

impl Lock {
    /// Lets the next operation on the queue go.
    pub(super) async fn release(mut self) {
        if let Some(held) = self.held.take() {
            held.release().await;
        }
    }
}

impl Held {
    async fn release(self) {
        let _ = self
            .channel
            .queue_delete(self.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self.channel.close(200, "released".into()).await;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(held.release());
            }
        }
    }
}

/// A lock queue is classic whatever the vhost's default queue type
/// (exclusive queues cannot be quorum queues).
fn classic() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    args
}

/// This process's mutex for `queue`.
fn local_mutex(queue: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    locks.entry(queue.to_owned()).or_default().clone()
}

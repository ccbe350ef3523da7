//! Talking to the broker from the parent: a slot lock, queues, depth checks,
//! pre-filling, and the server version.

use std::time::{Duration, Instant};

use lapin::options::{
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm};
use tokio::sync::Mutex;
use worker_core::broker::{probe_version, Capabilities};
use worker_core::topology::TaskSpec;

use super::payload::{body, body_padded, padding, raw_publish, Mode};
use super::{procfs, BenchError, SLOTS, SLOT_QUEUES};

/// Messages published before their confirms are awaited, when pre-filling.
const FILL_WINDOW: u64 = 5_000;

/// Body bytes published before their confirms are awaited, when
/// pre-filling big bodies (keeps the broker clear of its memory alarm).
const FILL_WINDOW_BYTES: u64 = 64 << 20;

/// The parent's connection: administration and pre-filling.
pub(crate) struct Admin {
    conn: Connection,
    caps: Capabilities,
    admin: Mutex<Option<Channel>>,
    publish: Channel,
}

impl Admin {
    pub(crate) async fn connect(url: &str) -> Result<Admin, BenchError> {
        let conn = Connection::connect(url, ConnectionProperties::default()).await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Admin {
            conn,
            caps: capabilities(url).await,
            admin: Mutex::new(None),
            publish,
        })
    }

    /// A usable administration channel (reopened after a channel error).
    async fn channel(&self) -> Result<Channel, BenchError> {
        let mut slot = self.admin.lock().await;
        if let Some(ch) = slot.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.conn.create_channel().await?;
        *slot = Some(ch.clone());
        Ok(ch)
    }

    /// Takes the first free framework queue slot.
    ///
    /// A task's queue name is a compile-time constant, so the framework side
    /// cannot use a fresh name per run; it uses one of [`SLOTS`] fixed names
    /// instead, locked for the run by an exclusive queue that the broker
    /// deletes when this connection closes. Two concurrent runs (a bench and
    /// the smoke test, say) thus never share a queue.
    pub(crate) async fn lock_slot(&self) -> Result<usize, BenchError> {
        for (slot, queue) in SLOT_QUEUES.iter().enumerate() {
            let ch = self.conn.create_channel().await?;
            let lock = format!("{queue}.lock");
            let taken = ch
                .queue_declare(
                    lock.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            if taken.is_ok() {
                let _ = ch.close(200, "slot locked".into()).await;
                return Ok(slot);
            }
        }
        Err(format!("all {SLOTS} framework queue slots are in use by other bench runs").into())
    }

    /// Declares a task's queues exactly as the framework does.
    pub(crate) async fn declare(&self, spec: &TaskSpec) -> Result<(), BenchError> {
        let ch = self.channel().await?;
        worker_core::topology::declare(&self.conn, ch, spec, self.caps).await?;
        Ok(())
    }

    /// Deletes every queue the framework declares for a task (work queue,
    /// delay tiers, parking queue and whatever else its topology plan holds).
    pub(crate) async fn delete(&self, spec: &TaskSpec) -> Result<(), BenchError> {
        let ch = self.channel().await?;
        for queue in worker_core::topology::plan(spec, self.caps) {
            ch.queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Ready messages in a queue.
    pub(crate) async fn depth(&self, queue: &str) -> Result<u64, BenchError> {
        let ch = self.channel().await?;
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(u64::from(q.message_count()))
    }

    /// Waits (up to a few seconds: quorum queue counts lag a little) until
    /// `queue` holds exactly `expected` ready messages.
    pub(crate) async fn expect_depth(&self, queue: &str, expected: u64) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let depth = self.depth(queue).await?;
            if depth == expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(
                    format!("queue {queue} holds {depth} messages, expected {expected}").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn purge(&self, queue: &str) -> Result<(), BenchError> {
        let ch = self.channel().await?;
        ch.queue_purge(queue.into(), QueuePurgeOptions::default())
            .await?;
        Ok(())
    }

    /// Publishes messages `0..n` of about `body_bytes` each to `queue`
    /// (persistent, mandatory, confirmed), `FILL_WINDOW` (or
    /// `FILL_WINDOW_BYTES`) at a time.
    pub(crate) async fn fill(
        &self,
        queue: &str,
        n: u64,
        body_bytes: usize,
    ) -> Result<(), BenchError> {
        let pad = padding(body_bytes);
        let window = (FILL_WINDOW_BYTES / pad.len().max(1) as u64).clamp(1, FILL_WINDOW);
        let mut seq = 0;
        while seq < n {
            let end = (seq + window).min(n);
            let mut confirms = Vec::with_capacity((end - seq) as usize);
            for s in seq..end {
                let body = body_padded(s, procfs::now_ns(), &pad);
                confirms.push(raw_publish(&self.publish, queue, &body).await?);
            }
            for c in confirms {
                expect_ack(c.await?)?;
            }
            seq = end;
        }
        Ok(())
    }

    /// Publishes one message and returns its pending confirm.
    pub(crate) async fn send(
        &self,
        queue: &str,
        seq: u64,
        sent_ns: u64,
    ) -> Result<PublisherConfirm, BenchError> {
        raw_publish(&self.publish, queue, &body(seq, sent_ns)).await
    }

    pub(crate) async fn close(&self) {
        let _ = self.conn.close(200, "bench done".into()).await;
    }
}

/// A confirm that says the broker took the message.
pub(crate) fn expect_ack(c: Confirmation) -> Result<(), BenchError> {
    match c {
        Confirmation::Ack(None) => Ok(()),
        other => Err(format!("publish not confirmed: {other:?}").into()),
    }
}

/// Checks what a consumer left behind: nothing in any of the task's queues
/// but the parking queue, which holds exactly the parked messages (then
/// clears them).
pub(crate) async fn check_queues(
    admin: &Admin,
    spec: &TaskSpec,
    mode: Mode,
    n: u64,
) -> Result<(), BenchError> {
    for queue in worker_core::topology::plan(spec, admin.caps) {
        let expected = if queue.name == spec.parking {
            mode.expected_parked(n)
        } else {
            0
        };
        admin.expect_depth(&queue.name, expected).await?;
    }
    admin.purge(&spec.parking).await
}

/// What the broker at `url` announces about itself (its version), read by
/// the framework's own probe.
pub(crate) async fn capabilities(url: &str) -> Capabilities {
    let Ok(uri) = url.parse::<lapin::uri::AMQPUri>() else {
        return Capabilities::unknown();
    };
    let tls = lapin::tcp::OwnedTLSConfig::default();
    probe_version(&uri, &tls, Duration::from_secs(3))
        .await
        .map_or(Capabilities::unknown(), Capabilities::of)
}

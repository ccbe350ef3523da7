//! The caller's side: one channel, one no-ack consumer on the direct
//! reply-to pseudo-queue, and a map of pending calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::oneshot;

use super::call::Reply;
use super::error::CallError;
use super::DIRECT_REPLY_TO;
use crate::connection::Connector;
use crate::error::Error;
use crate::message::Properties;
use crate::publisher::{confirmed, send, EnqueueOptions, Publisher};

/// Calls tasks and awaits their replies over RabbitMQ's direct reply-to.
///
/// Cheap to clone; clones share one channel, on which every call is
/// published (confirmed, mandatory: a call to a queue that does not exist
/// fails at once) and every reply arrives. Many calls may be in flight at
/// once; each waits for the reply with its `correlation_id`. The channel is
/// opened on the first call and again after it is lost; calls in flight
/// when it is lost fail with [`CallError::ConnectionLost`].
///
/// Make calls with the generated `Task::call` (see [`Call`](super::Call)).
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    /// Builds request messages exactly as an enqueue does.
    messages: Publisher,
    session: tokio::sync::Mutex<Option<Session>>,
}

/// The last clone gone: its channel is closed (the reply consumer with it).
impl Drop for Inner {
    fn drop(&mut self) {
        let Some(session) = self.session.get_mut().take() else {
            return;
        };
        session.pending.close();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = session.channel.close(200, "RpcClient dropped".into()).await;
            });
        }
    }
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").finish_non_exhaustive()
    }
}

type Waiting = HashMap<String, oneshot::Sender<Reply>>;

/// The calls waiting on one channel; `None` once the channel is gone (every
/// waiting sender is dropped then, so its call ends as `ConnectionLost`).
#[derive(Default)]
struct Pending {
    calls: Mutex<Option<Waiting>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waiting>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, id: &str) -> Option<oneshot::Receiver<Reply>> {
        let (tx, rx) = oneshot::channel();
        self.lock().as_mut()?.insert(id.to_owned(), tx);
        Some(rx)
    }

    fn remove(&self, id: &str) {
        if let Some(calls) = self.lock().as_mut() {
            calls.remove(id);
        }
    }

    fn complete(&self, id: &str, reply: Reply) {
        let waiting = self.lock().as_mut().and_then(|calls| calls.remove(id));
        match waiting {
            // A caller that gave up in between dropped its receiver.
            Some(tx) => drop(tx.send(reply)),
            None => tracing::debug!(
                correlation_id = id,
                "dropped a reply for no waiting call (it timed out, or was answered before)"
            ),
        }
    }

    fn close(&self) {
        self.lock().take();
    }

    fn is_open(&self) -> bool {
        self.lock().is_some()
    }
}

/// One channel with its reply consumer.
#[derive(Clone)]
struct Session {
    channel: Channel,
    pending: Arc<Pending>,
}

/// Removes a call's entry however the call ends (reply, timeout, error, drop).
struct Entry<'a> {
    pending: &'a Pending,
    id: &'a str,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

impl RpcClient {
    /// A client on `connector`'s connection (opened on first use).
    pub fn new(connector: Connector) -> Self {
        RpcClient {
            inner: Arc::new(Inner {
                messages: Publisher::new(connector.clone()),
                connector,
                session: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Sends the message of task `task` with `body` (JSON) to `queue` and
    /// waits up to `timeout` for its reply.
    pub(crate) async fn call_raw(
        &self,
        task: &str,
        queue: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let call = async {
            let session = self.session().await.map_err(CallError::Broker)?;
            let id = uuid::Uuid::new_v4().to_string();
            let options = EnqueueOptions {
                message_id: Some(id.clone()),
                correlation_id: Some(id.clone()),
                ..EnqueueOptions::default()
            };
            let (_, mut message) = self
                .inner
                .messages
                .json_task_message(task, queue, body, options)
                .map_err(CallError::Broker)?;
            message.properties = message
                .properties
                .with_reply_to(DIRECT_REPLY_TO)
                .map_err(CallError::Broker)?;
            let reply = session
                .pending
                .register(&id)
                .ok_or(CallError::ConnectionLost)?;
            let _entry = Entry {
                pending: &session.pending,
                id: &id,
            };
            self.inner.connector.wait_until_unblocked().await;
            let confirm = send(&session.channel, &message)
                .await
                .map_err(CallError::Broker)?;
            confirmed(&message, confirm.await).map_err(CallError::Broker)?;
            reply.await.map_err(|_| CallError::ConnectionLost)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| CallError::Timeout(timeout))?
    }

    /// The live session, or a new one.
    async fn session(&self) -> Result<Session, Error> {
        let mut slot = self.inner.session.lock().await;
        if let Some(session) = slot.as_ref() {
            if session.channel.status().connected() && session.pending.is_open() {
                return Ok(session.clone());
            }
            session.pending.close();
        }
        let session = open(&self.inner.connector).await?;
        *slot = Some(session.clone());
        Ok(session)
    }
}

/// Opens a confirm channel, starts consuming direct reply-to on it (no-ack,
/// as RabbitMQ requires), and spawns the loop that hands out replies.
async fn open(connector: &Connector) -> Result<Session, Error> {
    let conn = connector.connection().await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Error::broker("channel.open", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Error::broker("confirm.select", e))?;
    let consumer = channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::broker(format!("basic.consume {DIRECT_REPLY_TO}"), e))?;
    let pending = Arc::new(Pending {
        calls: Mutex::new(Some(HashMap::new())),
    });
    tokio::spawn(hand_out(consumer, pending.clone()));
    Ok(Session { channel, pending })
}

/// Hands each reply to the call waiting for its correlation id, until the
/// consumer ends (the channel or connection is gone); then every call still
/// waiting fails as `ConnectionLost`.
async fn hand_out(mut consumer: lapin::Consumer, pending: Arc<Pending>) {
    while let Some(next) = consumer.next().await {
        let delivery = match next {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::warn!(error = %e, "the reply consumer stopped; calls in flight fail");
                break;
            }
        };
        let properties = Properties::from_lapin(delivery.properties);
        let Some(id) = properties.correlation_id() else {
            tracing::debug!("dropped a reply without a correlation id");
            continue;
        };
        let reply = Reply::new(&properties, delivery.data.into());
        pending.complete(id, reply);
    }
    pending.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &'static [u8]) -> Reply {
        Reply {
            status: None,
            reason: None,
            content_type: None,
            body: body.into(),
        }
    }

    fn pending() -> Pending {
        Pending {
            calls: Mutex::new(Some(HashMap::new())),
        }
    }

    #[test]
    fn a_call_that_ends_without_its_reply_leaves_no_entry() {
        let pending = pending();
        let rx = pending.register("c-1").unwrap();
        drop(Entry {
            pending: &pending,
            id: "c-1",
        });
        assert!(pending.lock().as_ref().unwrap().is_empty());
        drop(rx);
        // Its late reply finds no call and is dropped.
        pending.complete("c-1", reply(b"1"));
    }

    #[test]
    fn a_reply_goes_to_the_call_with_its_correlation_id() {
        let pending = pending();
        let mut first = pending.register("c-1").unwrap();
        let mut second = pending.register("c-2").unwrap();
        pending.complete("c-2", reply(b"2"));
        assert_eq!(&second.try_recv().unwrap().body[..], b"2");
        assert!(first.try_recv().is_err(), "still waiting");
    }

    #[test]
    fn closing_fails_every_waiting_call_and_refuses_new_ones() {
        let pending = pending();
        let mut waiting = pending.register("c-1").unwrap();
        pending.close();
        assert!(matches!(
            waiting.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(pending.register("c-2").is_none());
        assert!(!pending.is_open());
    }
}

//! Typed, confirmed publishing.
//!
//! Every message is persistent and mandatory, and every call returns only
//! after the broker confirmed it: an unroutable message is an
//! [`Error::Unroutable`], never a silent drop. One connection is shared and
//! the confirm channel is reused across calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::Channel;
use lapin::{Confirmation, PublisherConfirm};
use tokio::sync::Mutex;

use crate::codec;
use crate::connection::Connector;
use crate::error::Error;
use crate::headers::Headers;
use crate::host::now_secs;
use crate::message::{Outgoing, Properties};
use crate::topology::ladder;
use crate::transport::Transport;

/// Per-message options for [`Publisher::enqueue_with`].
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// The message id; a random UUID when `None`.
    pub message_id: Option<String>,
    /// The correlation id; inherited from the handler's context when publishing from a task.
    pub correlation_id: Option<String>,
    /// Extra headers.
    pub headers: Headers,
    /// The message's priority (the AMQP `priority` property), for tasks
    /// declared with `priority`: on a classic queue, higher runs first, up
    /// to the task's `priority`; on a quorum queue (RabbitMQ 4.0+), 5 and
    /// above is high, the rest normal. `None` is priority 0.
    pub priority: Option<u8>,
}

impl EnqueueOptions {
    /// Sets the message's priority.
    ///
    /// ```
    /// # use worker_core::EnqueueOptions;
    /// let options = EnqueueOptions::default().with_priority(9);
    /// assert_eq!(options.priority, Some(9));
    /// ```
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// Publishes task payloads and raw messages with publisher confirms.
///
/// Cheap to clone; clones share the connection and channel.
///
/// ```no_run
/// # use worker_core::{Publisher, Task, TaskContext, TaskError};
/// # struct Ping;
/// # impl Task for Ping {
/// #     type Payload = String;
/// #     const NAME: &'static str = "ping";
/// #     const QUEUE: &'static str = "ping";
/// #     async fn run(&self, _: TaskContext, _: String) -> Result<(), TaskError> { Ok(()) }
/// # }
/// # async fn demo() -> Result<(), worker_core::Error> {
/// let publisher = Publisher::from_env();
/// let id = publisher.enqueue::<Ping>(&"hello".to_owned()).await?;
/// println!("enqueued {id}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    backend: Backend,
    correlation_id: Option<Arc<str>>,
}

#[derive(Clone)]
enum Backend {
    Broker(Arc<PublisherInner>),
    Transport(Arc<dyn Transport>),
}

struct PublisherInner {
    connector: Connector,
    channel: Mutex<Option<Channel>>,
    confirm_timeout: Duration,
    /// Queues the delay ladder was seen to lead to (see [`Publisher::prepare_delayed`]).
    delayed_to: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Broker(inner) => format!("{:?}", inner.connector),
            Backend::Transport(_) => "transport".to_owned(),
        };
        f.debug_struct("Publisher")
            .field("backend", &backend)
            .field("correlation_id", &self.correlation_id)
            .finish()
    }
}

impl Publisher {
    /// A publisher on a shared connector.
    pub fn new(connector: Connector) -> Self {
        Publisher {
            backend: Backend::Broker(Arc::new(PublisherInner {
                connector,
                channel: Mutex::new(None),
                confirm_timeout: Duration::from_secs(30),
                delayed_to: Default::default(),
            })),
            correlation_id: None,
        }
    }

    /// Sets how long to wait for the broker's confirm of one message while
    /// the connection is not blocked (30 s by default); past it the publish
    /// fails with [`Error::ConfirmTimeout`] and the message may or may not
    /// have arrived. Time spent blocked by a resource alarm does not count.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use worker_core::{ConnectionConfig, Connector, Publisher};
    /// let publisher = Publisher::new(Connector::new(ConnectionConfig::from_env()))
    ///     .with_confirm_timeout(Duration::from_secs(5));
    /// # drop(publisher);
    /// ```
    pub fn with_confirm_timeout(self, timeout: Duration) -> Self {
        let backend = match self.backend {
            Backend::Broker(inner) => Backend::Broker(Arc::new(PublisherInner {
                connector: inner.connector.clone(),
                channel: Mutex::new(None),
                confirm_timeout: timeout,
                delayed_to: Default::default(),
            })),
            transport @ Backend::Transport(_) => transport,
        };
        Publisher { backend, ..self }
    }

    /// A publisher that sends through a [`Transport`] (the testkit's mock, for example).
    pub fn from_transport(transport: Arc<dyn Transport>) -> Self {
        Publisher {
            backend: Backend::Transport(transport),
            correlation_id: None,
        }
    }

    /// A publisher connecting to `AMQP_URL` (or the local default) on first use.
    pub fn from_env() -> Self {
        Publisher::new(Connector::new(crate::ConnectionConfig::from_env()))
    }

    /// The connector this publisher uses, when it talks to a broker.
    pub fn connector(&self) -> Option<&Connector> {
        match &self.backend {
            Backend::Broker(inner) => Some(&inner.connector),
            Backend::Transport(_) => None,
        }
    }

    /// A clone that stamps `correlation_id` on messages that do not carry one.
    pub fn with_correlation_id(&self, correlation_id: Option<Arc<str>>) -> Self {
        Publisher {
            backend: self.backend.clone(),
            correlation_id,
        }
    }

    /// Builds the message for a task payload without sending it.
    pub fn task_message<P: serde::Serialize + ?Sized>(
        &self,
        task_name: &str,
        queue: &str,
        payload: &P,
        options: EnqueueOptions,
    ) -> Result<(String, Outgoing), Error> {
        let body = codec::encode_json(payload)?;
        self.json_task_message(task_name, queue, body, options)
    }

    /// [`task_message`](Publisher::task_message) for a body already
    /// encoded as JSON.
    pub(crate) fn json_task_message(
        &self,
        task_name: &str,
        queue: &str,
        body: Vec<u8>,
        options: EnqueueOptions,
    ) -> Result<(String, Outgoing), Error> {
        let id = options
            .message_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut props = Properties::default()
            .with_content_type(codec::JSON)
            .with_message_id(&id)?
            .with_kind(task_name)?
            .with_timestamp(now_secs())
            .with_headers(options.headers);
        let correlation = options
            .correlation_id
            .as_deref()
            .or(self.correlation_id.as_deref());
        if let Some(c) = correlation {
            props = props.with_correlation_id(c)?;
        }
        if let Some(priority) = options.priority {
            props = props.with_priority(priority);
        }
        #[cfg(feature = "otel")]
        crate::trace_context::inject_current(props.headers_mut());
        check_short("queue name", queue)?;
        Ok((id, Outgoing::to_queue(queue, props, body)))
    }

    /// Publishes one message (made persistent) and waits for its confirm.
    pub async fn publish(&self, message: Outgoing) -> Result<(), Error> {
        let inner = match &self.backend {
            Backend::Broker(inner) => inner,
            Backend::Transport(t) => return t.publish(message).await,
        };
        let channel = inner.channel().await?;
        // A resource alarm pauses publishing instead of failing it.
        inner.connector.wait_until_unblocked().await;
        let started = Instant::now();
        let confirm = send(&channel, &message).await?;
        inner.settle_confirm(&message, confirm, started).await
    }

    /// Publishes messages back to back, then waits for all confirms.
    pub async fn publish_batch(&self, messages: Vec<Outgoing>) -> Result<(), Error> {
        let inner = match &self.backend {
            Backend::Broker(inner) => inner,
            Backend::Transport(_) => {
                for message in messages {
                    self.publish(message).await?;
                }
                return Ok(());
            }
        };
        let channel = inner.channel().await?;
        inner.connector.wait_until_unblocked().await;
        let started = Instant::now();
        let mut pending = Vec::with_capacity(messages.len());
        for message in &messages {
            pending.push(send(&channel, message).await?);
        }
        let results = join_all(
            messages
                .iter()
                .zip(pending)
                .map(|(m, c)| inner.settle_confirm(m, c, started)),
        )
        .await;
        results.into_iter().collect()
    }
}

/// What [`Publisher::publish_each`] did with each message of a batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// One result for each message sent, in the batch's order: `Ok` once
    /// the broker confirmed it. A failed one may or may not have arrived
    /// (a confirm timeout), or surely did not (a nack, an unroutable message).
    pub confirms: Vec<Result<(), Error>>,
    /// Why the messages after the sent ones were not sent at all (no
    /// channel, a publish that failed); `None` when every one was sent.
    pub unsent: Option<Error>,
}

impl BatchOutcome {
    /// Messages handed to the broker.
    pub fn sent(&self) -> usize {
        self.confirms.len()
    }

    /// Messages the broker confirmed.
    pub fn confirmed(&self) -> usize {
        self.confirms.iter().filter(|r| r.is_ok()).count()
    }

    /// The first failure: a confirm that failed, else why the rest was not sent.
    pub fn first_error(&self) -> Option<&Error> {
        self.confirms
            .iter()
            .find_map(|r| r.as_ref().err())
            .or(self.unsent.as_ref())
    }
}

impl Publisher {
    /// Publishes messages back to back, then waits for all confirms, like
    /// [`publish_batch`](Publisher::publish_batch), but reports every
    /// message instead of the first failure: for callers that count what
    /// arrived (the command line's `enqueue --from`). A failed publish stops
    /// the sending; the messages already sent still get their confirms.
    pub async fn publish_each(&self, messages: Vec<Outgoing>) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let inner = match &self.backend {
            Backend::Broker(inner) => inner,
            Backend::Transport(_) => {
                for message in messages {
                    outcome.confirms.push(self.publish(message).await);
                }
                return outcome;
            }
        };
        let channel = match inner.channel().await {
            Ok(channel) => channel,
            Err(e) => {
                outcome.unsent = Some(e);
                return outcome;
            }
        };
        inner.connector.wait_until_unblocked().await;
        let started = Instant::now();
        let mut pending = Vec::with_capacity(messages.len());
        for message in &messages {
            match send(&channel, message).await {
                Ok(confirm) => pending.push(confirm),
                Err(e) => {
                    outcome.unsent = Some(e);
                    break;
                }
            }
        }
        outcome.confirms = join_all(
            messages
                .iter()
                .zip(pending)
                .map(|(m, c)| inner.settle_confirm(m, c, started)),
        )
        .await;
        outcome
    }
}

impl Publisher {
    /// Makes sure the delay ladder exists and leads to `queue`: declares
    /// it (idempotent) and binds `queue` to its deliver exchange, once per
    /// publisher and queue. The queue must exist (a worker declared it).
    /// A publisher over a [`Transport`] has no broker to declare on.
    pub(crate) async fn prepare_delayed(&self, queue: &str) -> Result<(), Error> {
        let Backend::Broker(inner) = &self.backend else {
            return Ok(());
        };
        let first = {
            let seen = inner.delayed_to.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(queue) {
                return Ok(());
            }
            seen.is_empty()
        };
        let conn = inner.connector.connection().await?;
        let channel = crate::topology::open_channel(&conn).await?;
        let declared = async {
            if first {
                ladder::declare(&channel).await?;
            }
            ladder::bind_destination(&channel, queue).await
        }
        .await;
        let _ = channel.close(200, "delay ladder declared".into()).await;
        declared?;
        inner
            .delayed_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned());
        Ok(())
    }
}

impl PublisherInner {
    /// Waits for `message`'s confirm and records its latency since
    /// `started` in `rabbit_worker_publish_confirm_seconds`, labelled with
    /// the task (the `type` property) and the queue (the routing key on the
    /// default exchange, else the exchange).
    async fn settle_confirm(
        &self,
        message: &Outgoing,
        confirm: PublisherConfirm,
        started: Instant,
    ) -> Result<(), Error> {
        let confirmation = self.await_confirm(confirm).await;
        let queue = if message.exchange.is_empty() {
            &message.routing_key
        } else {
            &message.exchange
        };
        crate::middleware::metrics::record_publish_confirm(
            message.properties.kind(),
            queue,
            started.elapsed().as_secs_f64(),
        );
        confirmed(message, confirmation?)
    }

    /// Waits for a confirm. The timeout runs only while the connection is
    /// not blocked: the publish that makes RabbitMQ send `connection.blocked`
    /// is already on the wire, and its confirm is held back for as long as
    /// the resource alarm lasts, which may be minutes. Every change of the
    /// blocked state starts the timeout afresh.
    async fn await_confirm(
        &self,
        confirm: PublisherConfirm,
    ) -> Result<Result<Confirmation, lapin::Error>, Error> {
        let mut blocked = self.connector.blocked_changes();
        tokio::pin!(confirm);
        loop {
            let is_blocked = blocked.borrow_and_update().is_some();
            let timeout = async {
                if is_blocked {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(self.confirm_timeout).await;
            };
            tokio::select! {
                result = &mut confirm => return Ok(result),
                changed = blocked.changed() => {
                    if changed.is_err() {
                        // The connector is gone; only the timeout is left.
                        return tokio::time::timeout(self.confirm_timeout, confirm)
                            .await
                            .map_err(|_| Error::ConfirmTimeout(self.confirm_timeout));
                    }
                }
                () = timeout => return Err(Error::ConfirmTimeout(self.confirm_timeout)),
            }
        }
    }

    /// The confirm channel, opened (or reopened after loss) on demand.
    async fn channel(&self) -> Result<Channel, Error> {
        let mut slot = self.channel.lock().await;
        if let Some(ch) = slot.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = self.connector.connection().await?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| Error::broker("channel.open", e))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Error::broker("confirm.select", e))?;
        *slot = Some(ch.clone());
        Ok(ch)
    }
}

/// What the broker's answer to a confirmed publish of `message` means: a
/// return (unroutable) or a nack is an error, like a failed confirm.
pub(crate) fn confirmed(
    message: &Outgoing,
    confirmation: Result<Confirmation, lapin::Error>,
) -> Result<(), Error> {
    let confirmation = confirmation.map_err(|e| Error::broker("publisher confirm", e))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(Error::Unroutable {
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
                reply: format!("{} {}", returned.reply_code, returned.reply_text),
            })
        }
        Confirmation::Nack(None) => Err(Error::Nacked {
            routing_key: message.routing_key.clone(),
        }),
        Confirmation::NotRequested => Err(Error::Config(
            "publisher confirms are not enabled on the publishing channel".into(),
        )),
    }
}

fn check_short(field: &'static str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::TooLong {
        field,
        len: value.len(),
    })
}

/// Sends `message` (made persistent) on a confirm channel.
pub(crate) async fn send(channel: &Channel, message: &Outgoing) -> Result<PublisherConfirm, Error> {
    let exchange = check_short("exchange name", &message.exchange)?;
    let routing_key = check_short("routing key", &message.routing_key)?;
    let props = message.properties.to_lapin().with_delivery_mode(2);
    channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: message.mandatory,
                immediate: false,
            },
            &message.body,
            props,
        )
        .await
        .map_err(|e| Error::broker("basic.publish", e))
}

//! Parked messages: list, show, replay and purge.
//!
//! # Reading without taking
//!
//! AMQP 0-9-1 has no "peek". To list a parking queue we take messages with
//! `basic.get` *without* acking them, so they stay owned by the broker, and
//! at the end return them all with one `basic.nack(multiple, requeue)`. If
//! the tool dies half way, the broker requeues them when the channel
//! closes: listing can never lose a message. Parking queues have no
//! consumer, so holding their messages for a moment hurts nobody, and
//! requeued messages keep their place.
//!
//! Alternatives considered: the management plugin's "get messages" does the
//! same thing over HTTP but needs the plugin, its port and separate
//! credentials; a stream queue would allow real peeking but the parking
//! queue must be a plain queue so that the work queue can dead-letter into
//! it.
//!
//! The one cost: on a quorum queue every requeue raises the message's
//! `x-delivery-count`. The topology declares parking queues without a
//! delivery limit on every version, so that costs nothing. A parking queue
//! declared by an older version of the framework on RabbitMQ 4.0-4.2 has
//! the broker's default limit (20) and those versions count the requeue
//! (4.3 no longer counts a multiple nack): there a message returned half
//! its limit is *refreshed* instead of returned, a confirmed copy published
//! to the same queue before the original is acked, so a listing can never
//! lose it (the copy moves to the queue's tail; nothing else changes).
//!
//! # Replaying
//!
//! A replayed copy goes to the task's work queue with the parked message's
//! body and properties, its `rw-replays` header raised by one, and its
//! attempt history cleared (our attempt, redelivery and failure headers and
//! every broker-owned `x-` header), so it gets a fresh set of attempts.
//! Each copy is confirmed by the broker *before* its parked original is
//! acked: a crash in between leaves a duplicate, never a loss. Replay only
//! looks at the messages that were parked when it started, so a message
//! that fails again and is parked anew is not replayed twice in one run.

use bytes::Bytes;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicQosOptions, QueuePurgeOptions,
};
use lapin::{Channel, Connection};
use serde_json::{json, Value};

use super::topology::{redeclare, Verdict};
use super::{format_time, inspect_queue, passive_declare};
use crate::broker::{Capabilities, DeliveryLimit};
use crate::connection::Connector;
use crate::error::Error;
use crate::headers::{self, HeaderValue, Headers};
use crate::message::{Delivery, Outgoing, Properties};
use crate::publisher::Publisher;
use crate::task::QueueType;
use crate::topology::parking_plan;
use crate::topology::TaskSpec;

/// How long to wait after the last acks before closing the channel:
/// quorum queues can drop acks that race a channel close (rabbitmq-server #10327).
const SETTLE_WAIT: Duration = Duration::from_millis(200);

/// Headers a replayed copy drops (besides every `x-` header): the attempt
/// history and what the park layer added.
pub const CLEARED_ON_REPLAY: &[&str] = &[
    headers::ATTEMPTS,
    headers::REDELIVERIES,
    headers::NOT_BEFORE,
    headers::FIRST_FAILURE,
    headers::LAST_FAILURE,
    headers::PARK_TASK,
    headers::PARK_REASON,
    headers::ERROR_KIND,
    headers::ERROR_MESSAGE,
    headers::ORIGINAL_EXCHANGE,
    headers::ORIGINAL_ROUTING_KEY,
    headers::ORIGINAL_QUEUE,
    headers::PARK_HOST,
    headers::ORIGINAL_EXPIRATION,
];

/// One parked message, with what the park headers say about it.
#[derive(Debug, Clone)]
pub struct ParkedMessage {
    /// The parking queue it sits in.
    pub queue: String,
    /// Its `message_id` property.
    pub message_id: Option<String>,
    /// The task it was meant for (`rw-park-task`, or the `type` property).
    pub task: Option<String>,
    /// Why it was parked: our reason (`exhausted`, `permanent`,
    /// `undecodable`, ...), or `dead-lettered: <reason>` when the broker
    /// moved it (delivery limit, reject), or `unknown`.
    pub reason: String,
    /// The failure kind of the last error.
    pub error_kind: Option<String>,
    /// The last error's message.
    pub error: Option<String>,
    /// Attempts made before it was parked.
    pub attempts: Option<u64>,
    /// Times it was replayed before.
    pub replays: u64,
    /// When it first failed, seconds since the epoch.
    pub first_failure: Option<u64>,
    /// When it was parked (last failure, or the broker's dead-letter time).
    pub parked_at: Option<u64>,
    /// The host of the worker that parked it.
    pub host: Option<String>,
    /// Its properties, headers included.
    pub properties: Properties,
    /// Its body.
    pub body: Bytes,
}

impl ParkedMessage {
    /// Reads a delivery from a parking queue.
    pub fn from_delivery(queue: &str, delivery: &Delivery) -> ParkedMessage {
        let h = delivery.properties.headers();
        let deaths = h.x_death();
        let reason = h
            .get_str(headers::PARK_REASON)
            .or_else(|| {
                deaths
                    .first()
                    .map(|d| format!("dead-lettered: {}", d.reason))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        ParkedMessage {
            queue: queue.to_owned(),
            message_id: delivery.properties.message_id().map(str::to_owned),
            task: h
                .get_str(headers::PARK_TASK)
                .or_else(|| delivery.properties.kind().map(str::to_owned)),
            reason,
            error_kind: h.get_str(headers::ERROR_KIND),
            error: h.get_str(headers::ERROR_MESSAGE),
            // Our header when a worker parked it; for a message the broker
            // dead-lettered itself, what its x-death and delivery count say.
            attempts: h.get_u64(headers::ATTEMPTS).or_else(|| {
                let queue = &deaths.first()?.queue;
                Some(u64::from(headers::Attempts::read(h, queue).previous())).filter(|n| *n > 0)
            }),
            replays: h.get_u64(headers::REPLAYS).unwrap_or(0),
            first_failure: h.get_u64(headers::FIRST_FAILURE),
            parked_at: h
                .get_u64(headers::LAST_FAILURE)
                .or_else(|| deaths.first().and_then(|d| d.time)),
            host: h.get_str(headers::PARK_HOST),
            properties: delivery.properties.clone(),
            body: delivery.body.clone(),
        }
    }

    /// A one-line summary: id, task, reason, attempts, when, error.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}  task={}  reason={}  attempts={}  parked={}",
            self.message_id.as_deref().unwrap_or("<no id>"),
            self.task.as_deref().unwrap_or("?"),
            self.reason,
            self.attempts
                .map_or_else(|| "?".to_owned(), |a| a.to_string()),
            self.parked_at.map_or_else(|| "?".to_owned(), format_time),
        );
        if self.replays > 0 {
            line.push_str(&format!("  replays={}", self.replays));
        }
        if let Some(error) = &self.error {
            line.push_str(&format!("  error={}", one_line(error, 160)));
        }
        line
    }

    /// The message as JSON; `with_body` adds every header, the properties
    /// and the body (as JSON when it parses, else as text or hex).
    pub fn to_json(&self, with_body: bool) -> Value {
        let mut v = json!({
            "queue": self.queue,
            "message_id": self.message_id,
            "task": self.task,
            "reason": self.reason,
            "error_kind": self.error_kind,
            "error": self.error,
            "attempts": self.attempts,
            "replays": self.replays,
            "first_failure": self.first_failure.map(format_time),
            "parked_at": self.parked_at.map(format_time),
            "host": self.host,
        });
        if with_body {
            let p = &self.properties;
            v["properties"] = json!({
                "content_type": p.content_type(),
                "content_encoding": p.content_encoding(),
                "correlation_id": p.correlation_id(),
                "reply_to": p.reply_to(),
                "type": p.kind(),
                "app_id": p.app_id(),
                "priority": p.priority(),
                "delivery_mode": p.delivery_mode(),
                "timestamp": p.timestamp().map(format_time),
            });
            v["headers"] = headers_to_json(p.headers());
            v["body_bytes"] = json!(self.body.len());
            match std::str::from_utf8(&self.body) {
                Ok(text) => {
                    v["body"] = serde_json::from_str::<Value>(text)
                        .unwrap_or_else(|_| Value::String(text.to_owned()));
                }
                Err(_) => v["body_hex"] = Value::String(hex(&self.body)),
            }
        }
        v
    }

    /// Every header and the body, for a person to read.
    pub fn details(&self) -> String {
        let mut out = String::new();
        let p = &self.properties;
        out.push_str(&format!("queue:          {}\n", self.queue));
        out.push_str(&format!(
            "message id:     {}\n",
            self.message_id.as_deref().unwrap_or("<none>")
        ));
        out.push_str(&format!(
            "task:           {}\n",
            self.task.as_deref().unwrap_or("?")
        ));
        out.push_str(&format!("reason:         {}\n", self.reason));
        if let Some(kind) = &self.error_kind {
            out.push_str(&format!("error kind:     {kind}\n"));
        }
        if let Some(error) = &self.error {
            out.push_str(&format!("error:          {error}\n"));
        }
        out.push_str(&format!(
            "attempts:       {}\n",
            self.attempts
                .map_or_else(|| "?".to_owned(), |a| a.to_string())
        ));
        out.push_str(&format!("replays:        {}\n", self.replays));
        if let Some(t) = self.first_failure {
            out.push_str(&format!("first failure:  {}\n", format_time(t)));
        }
        if let Some(t) = self.parked_at {
            out.push_str(&format!("parked at:      {}\n", format_time(t)));
        }
        out.push_str("properties:\n");
        let props = [
            ("content_type", p.content_type().map(str::to_owned)),
            ("content_encoding", p.content_encoding().map(str::to_owned)),
            ("correlation_id", p.correlation_id().map(str::to_owned)),
            ("reply_to", p.reply_to().map(str::to_owned)),
            ("type", p.kind().map(str::to_owned)),
            ("app_id", p.app_id().map(str::to_owned)),
            ("priority", p.priority().map(|v| v.to_string())),
            ("delivery_mode", p.delivery_mode().map(|v| v.to_string())),
            ("timestamp", p.timestamp().map(format_time)),
        ];
        for (name, value) in props {
            if let Some(value) = value {
                out.push_str(&format!("  {name}: {value}\n"));
            }
        }
        out.push_str("headers:\n");
        for (name, value) in p.headers().iter() {
            out.push_str(&format!("  {name}: {}\n", headers_to_json(&single(value))));
        }
        out.push_str(&format!("body ({} bytes):\n", self.body.len()));
        match std::str::from_utf8(&self.body) {
            Ok(text) => out.push_str(text),
            Err(_) => out.push_str(&format!("<not UTF-8> {}", hex(&self.body))),
        }
        out.push('\n');
        out
    }
}

fn single(value: HeaderValue) -> Headers {
    let mut h = Headers::new();
    h.insert("v", value);
    h
}

/// Header values as JSON (a single-entry table `{"v": ...}` is unwrapped).
fn headers_to_json(headers: &Headers) -> Value {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_owned(), value_to_json(&v)))
        .collect();
    if map.len() == 1 {
        if let Some(v) = map.get("v") {
            return v.clone();
        }
    }
    Value::Object(map)
}

fn value_to_json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::Bool(b) => json!(b),
        HeaderValue::Int(i) => json!(i),
        HeaderValue::UInt(u) => json!(u),
        HeaderValue::Float(f) => json!(f),
        HeaderValue::Str(s) => json!(s),
        HeaderValue::Bytes(b) => json!(hex(b)),
        HeaderValue::Timestamp(t) => json!(format_time(*t)),
        HeaderValue::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        HeaderValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_owned(), value_to_json(&v)))
                .collect(),
        ),
        HeaderValue::Void => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// The copy that goes back to the work queue `queue` when `delivery` is replayed.
///
/// ```
/// use worker_core::{Headers, Properties};
/// use worker_core::message::Delivery;
///
/// let mut headers = Headers::new();
/// headers
///     .insert("rw-attempts", 3u8)
///     .insert("rw-park-reason", "exhausted")
///     .insert("x-delivery-count", 2u8)
///     .insert("rw-replays", 1u8)
///     .insert("tenant", "acme");
/// let delivery = Delivery {
///     tag: 1,
///     exchange: String::new(),
///     routing_key: "emails.parking".into(),
///     redelivered: false,
///     properties: Properties::default().with_headers(headers),
///     body: b"{}".to_vec().into(),
/// };
/// let copy = worker_core::ops::parked::replay_copy(&delivery, "emails");
/// let h = copy.properties.headers();
/// assert_eq!(copy.routing_key, "emails");
/// assert_eq!(h.get_u64("rw-replays"), Some(2));
/// assert_eq!(h.get_str("tenant").as_deref(), Some("acme"));
/// assert!(!h.contains("rw-attempts") && !h.contains("rw-park-reason") && !h.contains("x-delivery-count"));
/// ```
pub fn replay_copy(delivery: &Delivery, queue: &str) -> Outgoing {
    let replays = delivery
        .properties
        .headers()
        .get_u64(headers::REPLAYS)
        .unwrap_or(0);
    Outgoing::copy_of(delivery, queue, |headers| {
        headers.retain(|name| !CLEARED_ON_REPLAY.contains(&name));
        headers.insert(headers::REPLAYS, replays.saturating_add(1));
    })
}

/// What a listing found.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The parking queue.
    pub queue: String,
    /// Whether the parking queue exists at all.
    pub exists: bool,
    /// Messages in the queue when the listing started.
    pub total: u32,
    /// The first `limit` of them, oldest first.
    pub messages: Vec<ParkedMessage>,
}

/// Which parked messages to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every message parked when the replay starts.
    All,
    /// The messages with these `message_id`s.
    Ids(Vec<String>),
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// The parking queue.
    pub queue: String,
    /// Ids of the messages now back in the work queue (`<no id>` for messages without one).
    pub replayed: Vec<String>,
    /// Requested ids that were not in the parking queue.
    pub not_found: Vec<String>,
    /// Why the replay stopped early; messages not yet replayed stay parked.
    pub error: Option<Error>,
}

/// How long [`Peek::finish`] waits for returned messages to be ready again.
const RETURN_WAIT: Duration = Duration::from_secs(3);

/// A channel holding unacked `basic.get` deliveries of one queue.
struct Peek {
    channel: Channel,
    queue: String,
    unacked: BTreeSet<u64>,
    /// Messages ready when the peek started.
    ready_before: u32,
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
    async fn open(
        connector: &Connector,
        conn: &Connection,
        queue: &str,
        ready_before: u32,
    ) -> Result<Peek, Error> {
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
        Ok(Peek {
            channel,
            queue: queue.to_owned(),
            unacked: BTreeSet::new(),
            ready_before,
            acked: 0,
            refresh,
        })
    }

    /// The next message, held unacked; messages refreshed on the way are
    /// skipped (their copies come later, at the queue's tail).
    async fn next(&mut self) -> Result<Option<Delivery>, Error> {
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
            let delivery = Delivery::from_lapin(m.delivery);
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
        // One out, one in: the queue's depth is what it was.
        self.acked -= 1;
        tracing::info!(queue = %self.queue, message_id = ?delivery.properties.message_id(), "refreshed a parked message near the queue's delivery limit");
        Ok(true)
    }

    async fn ack(&mut self, tag: u64) -> Result<(), Error> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .map_err(|e| Error::broker(format!("basic.ack on {}", self.queue), e))?;
        self.unacked.remove(&tag);
        self.acked += 1;
        Ok(())
    }

    /// Returns every unacked message, makes sure the broker took the acks
    /// and nacks (a synchronous round trip, then a short settle wait), waits
    /// until the returned messages are ready again, and closes the channel.
    ///
    /// The last wait matters for quorum queues: a requeue goes through the
    /// queue's log, so for a moment after the nack the messages are neither
    /// unacked nor ready, and a listing started right after this one would
    /// find the queue empty.
    async fn finish(self) {
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
        let _ = self.channel.close(200, "done".into()).await;
    }

    /// Polls the queue's ready count until every message taken and not
    /// acked is back. Gives up quietly after [`RETURN_WAIT`]: someone else
    /// (a concurrent replay or purge) may have taken messages meanwhile.
    async fn wait_until_returned(&self) {
        let expected = self.ready_before.saturating_sub(self.acked);
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

/// Lists up to `limit` messages of a parking queue without removing any.
pub async fn list(connector: &Connector, queue: &str, limit: usize) -> Result<Listing, Error> {
    let conn = connector.connection().await?;
    let Some(depth) = inspect_queue(&conn, queue).await? else {
        return Ok(Listing {
            queue: queue.to_owned(),
            exists: false,
            total: 0,
            messages: Vec::new(),
        });
    };
    let mut peek = Peek::open(connector, &conn, queue, depth.messages).await?;
    let mut messages = Vec::new();
    let mut failure = None;
    while messages.len() < limit.min(depth.messages as usize) {
        match peek.next().await {
            Ok(Some(d)) => messages.push(ParkedMessage::from_delivery(queue, &d)),
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    peek.finish().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(Listing {
            queue: queue.to_owned(),
            exists: true,
            total: depth.messages,
            messages,
        }),
    }
}

/// Finds a message by `message_id` in the given parking queues, without
/// removing anything; scans each queue once.
pub async fn find(
    connector: &Connector,
    queues: &[String],
    message_id: &str,
) -> Result<Option<ParkedMessage>, Error> {
    let conn = connector.connection().await?;
    for queue in queues {
        let Some(depth) = inspect_queue(&conn, queue).await? else {
            continue;
        };
        let mut peek = Peek::open(connector, &conn, queue, depth.messages).await?;
        let mut found = None;
        let mut failure = None;
        for _ in 0..depth.messages {
            match peek.next().await {
                Ok(Some(d)) if d.properties.message_id() == Some(message_id) => {
                    found = Some(ParkedMessage::from_delivery(queue, &d));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        peek.finish().await;
        if let Some(e) = failure {
            return Err(e);
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Moves parked messages of `spec`'s parking queue back to its work queue.
///
/// Each copy is published with a confirm (waiting while the broker blocks
/// the connection) before its parked original is acked. Errors before any
/// message was touched are returned; later ones stop the replay and are
/// reported in [`ReplayReport::error`] with what was replayed so far.
pub async fn replay(
    connector: &Connector,
    spec: &TaskSpec,
    selection: &Selection,
) -> Result<ReplayReport, Error> {
    let queue = spec.parking.as_str();
    let mut report = ReplayReport {
        queue: queue.to_owned(),
        ..ReplayReport::default()
    };
    let mut wanted: Option<HashSet<&str>> = match selection {
        Selection::All => None,
        Selection::Ids(ids) => Some(ids.iter().map(String::as_str).collect()),
    };
    let conn = connector.connection().await?;
    let Some(depth) = inspect_queue(&conn, queue).await? else {
        if let Some(w) = wanted {
            report.not_found = w.into_iter().map(str::to_owned).collect();
        }
        return Ok(report);
    };
    let publisher = Publisher::new(connector.clone());
    let mut peek = Peek::open(connector, &conn, queue, depth.messages).await?;
    for _ in 0..depth.messages {
        if wanted.as_ref().is_some_and(HashSet::is_empty) {
            break;
        }
        let delivery = match peek.next().await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => {
                report.error = Some(e);
                break;
            }
        };
        let id = delivery.properties.message_id().map(str::to_owned);
        if let Some(w) = wanted.as_mut() {
            match id.as_deref() {
                Some(i) if w.remove(i) => {}
                _ => continue,
            }
        }
        connector.wait_until_unblocked().await;
        if let Err(e) = publisher.publish(replay_copy(&delivery, &spec.queue)).await {
            report.error = Some(e);
            break;
        }
        if let Err(e) = peek.ack(delivery.tag).await {
            // The copy is in the work queue and the original stays parked:
            // a duplicate, reported so a person can purge or ignore it.
            report.error = Some(Error::ReplayLeftOriginal {
                message_id: id.clone().unwrap_or_else(|| "<no id>".into()),
                queue: queue.to_owned(),
                source: Box::new(e),
            });
            report.replayed.push(id.unwrap_or_else(|| "<no id>".into()));
            break;
        }
        metrics::counter!("rabbit_worker_replayed_total", "task" => spec.name).increment(1);
        tracing::info!(task = spec.name, message_id = ?id, "replayed parked message to {}", spec.queue);
        report.replayed.push(id.unwrap_or_else(|| "<no id>".into()));
    }
    peek.finish().await;
    if let Some(w) = wanted {
        let mut missing: Vec<String> = w.into_iter().map(str::to_owned).collect();
        missing.sort();
        report.not_found = missing;
    }
    Ok(report)
}

/// Deletes every message of a parking queue; returns how many there were
/// (`None` when the queue does not exist).
pub async fn purge(connector: &Connector, queue: &str) -> Result<Option<u32>, Error> {
    let conn = connector.connection().await?;
    if inspect_queue(&conn, queue).await?.is_none() {
        return Ok(None);
    }
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Error::broker("channel.open", e))?;
    let count = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .map_err(|e| Error::broker(format!("queue.purge {queue}"), e))?;
    let _ = channel.close(200, "purged".into()).await;
    tracing::warn!(queue, count, "purged parking queue");
    Ok(Some(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(headers: Headers) -> Delivery {
        Delivery {
            tag: 7,
            exchange: String::new(),
            routing_key: "q.parking".into(),
            redelivered: false,
            properties: Properties::default()
                .with_message_id("m-1")
                .unwrap()
                .with_kind("t")
                .unwrap()
                .with_headers(headers),
            body: b"{\"a\":1}".to_vec().into(),
        }
    }

    #[test]
    fn replay_copy_clears_history_and_counts_replays() {
        let mut h = Headers::new();
        for name in CLEARED_ON_REPLAY {
            h.insert(name, "x");
        }
        h.insert("x-death", "d")
            .insert("x-delivery-count", 3i64)
            .insert("keep-me", 1i64);
        let copy = replay_copy(&delivery(h), "q");
        let headers = copy.properties.headers();
        let names: Vec<&str> = headers.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["keep-me", "rw-replays"], "{names:?}");
        assert_eq!(headers.get_u64(headers::REPLAYS), Some(1));
        assert_eq!(copy.properties.message_id(), Some("m-1"));
        assert_eq!(copy.properties.kind(), Some("t"));
        assert_eq!(&*copy.body, b"{\"a\":1}");
        assert!(copy.mandatory);
        assert_eq!(
            (copy.exchange.as_str(), copy.routing_key.as_str()),
            ("", "q")
        );
    }

    #[test]
    fn parked_message_reads_park_headers_and_broker_deaths() {
        let mut h = Headers::new();
        h.insert(headers::PARK_REASON, "permanent")
            .insert(headers::PARK_TASK, "send")
            .insert(headers::ATTEMPTS, 2u8)
            .insert(headers::LAST_FAILURE, 1_700_000_000u64)
            .insert(headers::ERROR_MESSAGE, "boom\nline two");
        let m = ParkedMessage::from_delivery("q.parking", &delivery(h));
        assert_eq!(m.reason, "permanent");
        assert_eq!(m.task.as_deref(), Some("send"));
        assert_eq!(m.attempts, Some(2));
        let line = m.summary();
        assert!(line.contains("2023-11-14T22:13:20Z"), "{line}");
        assert!(line.contains("error=boom line two"), "{line}");
        let v = m.to_json(true);
        assert_eq!(v["body"]["a"], 1);
        assert_eq!(v["headers"]["rw-park-reason"], "permanent");

        let bare = ParkedMessage::from_delivery("q.parking", &delivery(Headers::new()));
        assert_eq!(bare.reason, "unknown");
        assert_eq!(bare.task.as_deref(), Some("t"));
        assert!(bare.details().contains("body (7 bytes)"));
        assert_eq!(bare.attempts, None);
    }

    #[test]
    fn attempts_of_a_message_the_broker_dead_lettered_come_from_x_death() {
        let mut death = Headers::new();
        death
            .insert("queue", "q")
            .insert("reason", "rejected")
            .insert("count", 3i64)
            .insert("exchange", "")
            .insert("routing-keys", vec![HeaderValue::from("q")]);
        let mut h = Headers::new();
        h.insert(headers::X_DEATH, vec![HeaderValue::Table(death)]);
        let m = ParkedMessage::from_delivery("q.parking", &delivery(h));
        assert_eq!(m.reason, "dead-lettered: rejected");
        assert_eq!(m.attempts, Some(3));
    }
}

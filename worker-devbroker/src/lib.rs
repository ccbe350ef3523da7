//! An in-memory broker that speaks AMQP 0-9-1 on a loopback port, modelled
//! on RabbitMQ: in-memory, not durable, for development and tests.
//!
//! Two uses:
//!
//! - **Development**: the `rabbit-worker-devbroker` binary serves it on
//!   `127.0.0.1:5672` (port configurable) until stopped, so a worker, its
//!   command line, the dashboard and any AMQP 0-9-1 client (pika included)
//!   run with nothing installed. It refuses to listen beyond loopback
//!   unless told to (`--allow-remote`), and keeps nothing across restarts.
//!   `cargo install worker-devbroker` installs it.
//! - **Tests**: [`MemoryBroker::start`] below, with a clock the test moves
//!   (worker-testkit re-exports this crate as `worker_testkit::memory`).
//!
//! It is not RabbitMQ: no persistence, no clustering, no users or virtual
//! hosts beyond `/` (the lists below say what is and is not modelled). Use
//! RabbitMQ for anything that must keep its messages.
//!
//! [`MemoryBroker::start`] listens on `127.0.0.1:<free port>`; the unchanged
//! worker, the publisher and plain lapin connect to it by
//! [`url`](MemoryBroker::url), exactly as to RabbitMQ. Time is a manual
//! [`Clock`]: message TTLs (and so the worker's delay tiers) expire when a
//! test calls [`clock().advance(..)`](Clock::advance), not after real
//! waiting. Inspection helpers read queues without consuming, and
//! [`close_all_connections`](MemoryBroker::close_all_connections) simulates
//! a broker that drops its clients.
//!
//! ```
//! use std::time::Duration;
//! use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
//! use lapin::types::{AMQPValue, FieldTable};
//! use lapin::{BasicProperties, Connection, ConnectionProperties};
//! use worker_devbroker::MemoryBroker;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let broker = MemoryBroker::start().await;
//! let conn = Connection::connect(&broker.url(), ConnectionProperties::default())
//!     .await
//!     .unwrap();
//! let ch = conn.create_channel().await.unwrap();
//! ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
//! let mut wait_args = FieldTable::default();
//! wait_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(10_000));
//! wait_args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
//! wait_args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString("jobs".into()));
//! for (name, args) in [("jobs", FieldTable::default()), ("jobs.wait", wait_args)] {
//!     ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
//!         .await
//!         .unwrap();
//! }
//! let confirm = ch
//!     .basic_publish(
//!         "".into(),
//!         "jobs.wait".into(),
//!         BasicPublishOptions::default(),
//!         b"later",
//!         BasicProperties::default(),
//!     )
//!     .await
//!     .unwrap();
//! // The confirm says the broker holds the message: now time may move.
//! assert!(confirm.await.unwrap().is_ack());
//!
//! broker.clock().advance(Duration::from_secs(9));
//! assert_eq!(broker.queue_depth("jobs"), 0);
//! broker.clock().advance(Duration::from_secs(1));
//! let back = broker.messages("jobs");
//! assert_eq!(back[0].body_str(), "later");
//! assert_eq!(back[0].x_death()[0].queue, "jobs.wait");
//!
//! let got = ch
//!     .basic_get("jobs".into(), BasicGetOptions { no_ack: true })
//!     .await
//!     .unwrap()
//!     .expect("the message came back from the wait queue");
//! assert_eq!(got.delivery.data, b"later");
//! # }
//! ```
//!
//! Time only moves for messages the broker already holds: a client's frames
//! may still be on their way when a test calls `advance`. Await the publisher
//! confirm, or any synchronous round trip on the connection (a `basic.qos`,
//! a passive declare), after publishing, acking or rejecting and before
//! advancing the clock. The worker's delay tiers are safe: it publishes a
//! copy, awaits its confirm, then acks.
//!
//! # What is modelled
//!
//! The rules below follow RabbitMQ 3.10 by default; where 4.0 or 4.3
//! differs, [`MemoryBroker::start_as`] picks the version
//! (`tests/differential.rs` runs every scenario on each real version
//! against a memory broker of the same version):
//!
//! | behaviour | 3.10 | 4.0 | 4.3 | how the memory broker follows it |
//! |---|---|---|---|---|
//! | quorum queue without `x-delivery-limit` | no limit | limit 20 | limit 20 | the version's default from `Capabilities::default_delivery_limit` |
//! | `x-delivery-limit: -1` | drops at the first return | no limit | no limit | negative is none on 4.x, zero on 3.x |
//! | `x-delivery-count` on a first `basic.get` | `0` | absent | absent | shown on 3.x only (all leave it out on a first consumer delivery) |
//! | client-set `x-death` on a published message | merged into the history | ignored: dead-lettering starts a new one | ignored | dropped on dead-lettering on 4.x unless this broker wrote it |
//! | `connection.start` `version` | `3.10.8` | `4.0.5` | `4.3.6` | the modelled version, so the worker reads it as from RabbitMQ |
//! | dead-lettering headers | `x-first-death-*` | also `x-last-death-*` | also `x-last-death-*` | added on 4.x |
//! | `basic.reject(requeue=false)` out of a quorum queue | copy starts at count 0 | counted; the count travels with the copy (redelivered, `x-delivery-count` raised per rejection) | the same, and the copy arrives redelivered in a classic queue too | carried on 4.x; `Capabilities::rejected_copies_arrive_redelivered` |
//! | quorum `basic.get` returns | to the tail | served first, with consumer returns, in return order | as 4.0 | by version |
//! | returns counted toward the limit (`x-delivery-count`) | nack, reject, closed channel | the same | reject and closed channel; a nack (and `basic.recover`) is not counted | `Capabilities::nack_requeue_counts` |
//! | `x-acquired-count` (every return, counted or not) | absent | absent | shown once above 0, carried by dead-lettering like the count | `Capabilities::acquired_count_header` |
//! | quorum priorities | none | two levels, weighted | 32 strict levels, above 31 served as 31 | `Capabilities::quorum_priority_levels` |
//! | `basic.qos(global = true)` | channel-wide | channel-wide | accepted, applied per consumer | `Capabilities::global_qos` |
//! | `mandatory` reply to a direct reply-to address | returned `NO_ROUTE` (delivered or not) | the same | never returned | `Capabilities::mandatory_direct_reply_returned` |
//!
//! Besides those, the rules are the same on every version:
//!
//! - Connections: protocol header, PLAIN/AMQPLAIN with any credentials,
//!   vhost `/` only, `frame_max` 128 KiB, `channel_max` 2047. The broker
//!   proposes no heartbeat; a client that asks for one gets heartbeat
//!   frames, and client heartbeats are accepted but not required.
//! - Channels, with channel errors (`channel.close` with RabbitMQ's reply
//!   codes and texts: 404 NOT_FOUND, 405 RESOURCE_LOCKED, 406
//!   PRECONDITION_FAILED, 403 ACCESS_REFUSED) and connection errors (501,
//!   503, 504, 505, 530, 540).
//! - Exchanges: the default exchange, `direct`, `fanout`, `topic` (`*` one
//!   word, `#` zero or more) and `headers` (`x-match` `all`/`any`, and the
//!   `-with-x` forms), the predeclared `amq.*` exchanges, exchange-to-
//!   exchange bindings, `internal` and `auto_delete` exchanges, `CC`/`BCC`
//!   routing headers. Declare with other type or flags: 406; passive: 404
//!   when missing.
//! - Queues: declare (durable, exclusive and auto-delete flags kept,
//!   server-named `amq.gen-*` queues, passive declare), redeclare with other
//!   flags or arguments: 406 with RabbitMQ's "inequivalent arg" text
//!   (integer widths are equivalent, as in RabbitMQ), bind, unbind, purge,
//!   delete (`if_unused`, `if_empty`; consumers get `basic.cancel`).
//! - Queue arguments: `x-queue-type` `classic`/`quorum` (quorum queues must
//!   be durable, non-exclusive, non-auto-delete), `x-message-ttl` and the
//!   per-message `expiration` (the lower wins), `x-dead-letter-exchange`,
//!   `x-dead-letter-routing-key`, `x-max-length`, `x-max-length-bytes`,
//!   `x-overflow` `drop-head` (dead-letters with reason `maxlen`),
//!   `reject-publish` (publisher nack; quorum queues use RabbitMQ's soft
//!   limit: one message over, then refuse until back at 80 %) and, on
//!   classic queues, `reject-publish-dlx`; `x-delivery-limit` on quorum
//!   queues; `x-single-active-consumer` (only the earliest consumer still
//!   subscribed is served, and counted in `queue.declare-ok`; the next
//!   takes over when it leaves); `x-max-priority` on classic queues (highest priority first, a
//!   priority above the maximum counts as the maximum, first in first out
//!   within one; refused with 406 on quorum queues), and quorum queues'
//!   two priority levels where the version has them (4.0: 5 and above is
//!   high, two high then one normal while both wait; 3.10 ignores
//!   priorities). Other arguments are stored, compared on redeclare, and
//!   otherwise ignored.
//! - TTL: messages expire only at the head of their queue (a long-lived
//!   head holds back short-lived messages behind it), by the broker clock.
//! - Dead-lettering: the `x-death` table as RabbitMQ writes it (entries
//!   keyed by queue and reason, newest first, a repeat moves its entry to
//!   the front with `count` + 1; fields `queue`, `reason`, `count`,
//!   `exchange`, `routing-keys`, `time`, `original-expiration`),
//!   `x-first-death-queue/-reason/-exchange`, the `expiration` property
//!   removed, the dead-letter routing key replacing the message's keys (and
//!   its `CC` header), cycle detection (a fully automatic cycle drops the
//!   message; a rejection in the cycle lets it go round), and a missing
//!   dead-letter exchange dropping the message.
//! - Consumers: `basic.qos` prefetch per consumer (set before
//!   `basic.consume`; `global` as a channel-wide limit before 4.3), `basic.consume`
//!   with server-generated tags (`amq.ctag-*`), exclusive consumers,
//!   `no_ack`, round-robin between consumers, `basic.cancel`, `basic.get`
//!   (`get-ok` with the remaining message count, `get-empty`),
//!   `basic.recover`.
//! - Settling: `basic.ack`/`nack`/`reject` with `multiple`, unknown tags
//!   (406), requeue with the `redelivered` flag; classic queues requeue to
//!   the message's original position; quorum queues count returns in
//!   `x-delivery-count` (shown on consumer deliveries once above 0, on
//!   `basic.get` always), serve consumer returns first and put `basic.get`
//!   returns at the tail (as 3.10 was seen to), and past `x-delivery-limit`
//!   dead-letter with reason `delivery_limit`. Deliveries unacked when a
//!   channel or connection closes go back to their queues.
//! - Publishing: `mandatory` (`basic.return` 312 NO_ROUTE, sent before the
//!   confirm), publisher confirms (`confirm.select`; ack, or nack when a
//!   `reject-publish` queue refused the message), publishing to a missing
//!   exchange (404).
//! - Direct reply-to: a no-ack consumer of `amq.rabbitmq.reply-to` (an
//!   acking one: 406), a request naming it in `reply_to` rewritten to the
//!   channel's address (without the consumer: 406 "fast reply consumer
//!   does not exist"), replies to that address through the default
//!   exchange delivered straight to the consumer, dropped when its channel
//!   is gone, and returned as `NO_ROUTE` when `mandatory`, delivered or
//!   not, before 4.2 (never from 4.2), as RabbitMQ does.
//!
//! # What is not modelled
//!
//! Clustering, persistence (everything is lost when the broker is dropped;
//! `durable` and `delivery_mode` are kept but mean nothing), virtual hosts
//! other than `/`, users and permissions (any credentials work; `user_id`
//! is not checked), transactions (`tx.select` is refused with 540),
//! `channel.flow(active=false)`, lazy queues, streams, consumer priorities, queue
//! expiry (`x-expires`), `x-max-age`, alternate exchanges, the consumer
//! acknowledgement timeout, memory and disk alarms (`connection.blocked`),
//! publisher flow control, at-least-once dead-lettering's retries (a
//! dead-letter target that refuses the message drops it, as at-most-once
//! does), RabbitMQ 4.3's delayed retry (`x-delayed-retry-*`), and the
//! management HTTP API.

mod clock;
mod connection;
mod error;
mod message;
mod methods;
mod queue;
mod routing;
mod state;
mod wire;

pub use clock::Clock;

/// The `product` this broker announces in `connection.start`.
pub const PRODUCT: &str = "rabbit-worker devbroker";
/// What it is, announced as `information` in `connection.start` and on the
/// development broker's first line.
pub const INFORMATION: &str = "in-memory, not durable, for development and tests";

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::AMQPValue;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use worker_core::broker::Version;
use worker_core::{DeathReason, XDeath};

use message::{as_int, as_text, Message};
use state::State;

/// What the broker's tasks share.
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tick(&self) {
        self.lock().tick();
    }
}

/// The RabbitMQ version [`MemoryBroker::start`] follows.
pub const DEFAULT_VERSION: Version = Version::new(3, 10, 8);

/// An AMQP 0-9-1 broker in this process, for tests.
///
/// Dropping it closes every connection and frees the port.
pub struct MemoryBroker {
    shared: Arc<Shared>,
    clock: Clock,
    port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("url", &self.url())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// A message held by a queue, as [`MemoryBroker::messages`] shows it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The body.
    pub body: Vec<u8>,
    /// The properties (headers included) as a consumer would get them,
    /// without the `x-delivery-count` a quorum queue adds on delivery.
    pub properties: BasicProperties,
    /// The exchange it was published, or dead-lettered, to.
    pub exchange: String,
    /// The routing key it was published, or dead-lettered, with.
    pub routing_key: String,
    /// Whether it was delivered before.
    pub redelivered: bool,
    /// How often a quorum queue saw it come back (`x-delivery-count`).
    pub delivery_count: u64,
    /// How long until its TTL runs out (by the broker clock), if it has one.
    pub expires_in: Option<Duration>,
}

impl StoredMessage {
    /// The body as text (lossy).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's raw value.
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties.headers().as_ref()?.inner().get(name)
    }

    /// A string header.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).and_then(as_text)
    }

    /// An integer header, read in any width.
    pub fn header_i64(&self, name: &str) -> Option<i64> {
        self.header(name).and_then(as_int)
    }

    /// The `x-death` history, newest first.
    pub fn x_death(&self) -> Vec<XDeath> {
        let Some(AMQPValue::FieldArray(entries)) = self.header("x-death") else {
            return Vec::new();
        };
        entries
            .as_slice()
            .iter()
            .filter_map(|e| match e {
                AMQPValue::FieldTable(t) => Some(t.inner()),
                _ => None,
            })
            .map(|t| {
                let text = |k: &str| t.get(k).and_then(as_text).unwrap_or_default();
                let reason = match text("reason").as_str() {
                    "rejected" => DeathReason::Rejected,
                    "expired" => DeathReason::Expired,
                    "maxlen" => DeathReason::MaxLen,
                    "delivery_limit" => DeathReason::DeliveryLimit,
                    other => DeathReason::Other(other.to_owned()),
                };
                let routing_keys = match t.get("routing-keys") {
                    Some(AMQPValue::FieldArray(a)) => {
                        a.as_slice().iter().filter_map(as_text).collect()
                    }
                    _ => Vec::new(),
                };
                XDeath {
                    queue: text("queue"),
                    reason,
                    count: t
                        .get("count")
                        .and_then(as_int)
                        .and_then(|c| u64::try_from(c).ok())
                        .unwrap_or(0),
                    exchange: text("exchange"),
                    routing_keys,
                    time: t
                        .get("time")
                        .and_then(as_int)
                        .and_then(|c| u64::try_from(c).ok()),
                }
            })
            .collect()
    }
}

impl MemoryBroker {
    /// Starts a broker with a manual clock on `127.0.0.1` and a free port.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start() -> MemoryBroker {
        MemoryBroker::with_clock(Clock::new(true), DEFAULT_VERSION).await
    }

    /// Starts a broker with a manual clock that follows the rules of
    /// RabbitMQ `version` where the versions differ (see the module docs'
    /// table), and announces that version in `connection.start`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start_as(version: Version) -> MemoryBroker {
        MemoryBroker::with_clock(Clock::new(true), version).await
    }

    /// Starts a broker whose TTLs follow the wall clock.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start_with_real_clock() -> MemoryBroker {
        MemoryBroker::with_clock(Clock::new(false), DEFAULT_VERSION).await
    }

    /// Serves a broker with the wall clock on `addr` (the development
    /// broker's way: a fixed port, the rules of RabbitMQ `version`).
    ///
    /// # Errors
    ///
    /// When `addr` cannot be bound (the port is taken, say).
    pub async fn serve_on(addr: SocketAddr, version: Version) -> std::io::Result<MemoryBroker> {
        let listener = TcpListener::bind(addr).await?;
        Ok(MemoryBroker::on_listener(
            listener,
            Clock::new(false),
            version,
        ))
    }

    async fn with_clock(clock: Clock, version: Version) -> MemoryBroker {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the memory broker needs a free loopback port");
        MemoryBroker::on_listener(listener, clock, version)
    }

    fn on_listener(listener: TcpListener, clock: Clock, version: Version) -> MemoryBroker {
        let port = listener.local_addr().expect("bound address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(clock.clone(), version)),
        });
        clock.attach(Arc::downgrade(&shared));
        let mut tasks = vec![tokio::spawn(accept_loop(listener, Arc::downgrade(&shared)))];
        if !clock.is_manual() {
            let weak = Arc::downgrade(&shared);
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(5));
                loop {
                    every.tick().await;
                    match weak.upgrade() {
                        Some(shared) => shared.tick(),
                        None => return,
                    }
                }
            }));
        }
        MemoryBroker {
            shared,
            clock,
            port,
            tasks,
        }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's clock; TTLs run on it.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Ready messages in `queue` (not counting unacked deliveries); 0 if
    /// there is no such queue.
    pub fn queue_depth(&self, queue: &str) -> usize {
        self.shared.lock().queues.get(queue).map_or(0, |q| q.len())
    }

    /// Deliveries from `queue` that consumers hold unacked.
    pub fn unacked_count(&self, queue: &str) -> usize {
        self.shared
            .lock()
            .conns
            .values()
            .flat_map(|c| c.channels.values())
            .flat_map(|ch| ch.unacked.values())
            .filter(|u| u.queue == queue)
            .count()
    }

    /// Consumers of `queue`.
    pub fn consumer_count(&self, queue: &str) -> usize {
        self.shared
            .lock()
            .queues
            .get(queue)
            .map_or(0, |q| q.consumers.len())
    }

    /// Whether `queue` exists.
    pub fn has_queue(&self, queue: &str) -> bool {
        self.shared.lock().queues.contains_key(queue)
    }

    /// Every queue's name, sorted.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.lock().queues.keys().cloned().collect();
        names.sort();
        names
    }

    /// The ready messages of `queue`, head first, without taking them;
    /// empty if there is no such queue.
    pub fn messages(&self, queue: &str) -> Vec<StoredMessage> {
        let state = self.shared.lock();
        let now = state.clock.now_ms();
        let Some(q) = state.queues.get(queue) else {
            return Vec::new();
        };
        q.ready()
            .map(|e| StoredMessage {
                body: e.msg.body.to_vec(),
                properties: e.msg.properties.clone(),
                exchange: e.msg.exchange.clone(),
                routing_key: e.msg.routing_key().to_owned(),
                redelivered: e.redelivered,
                delivery_count: e.delivery_count,
                expires_in: e
                    .expires_at
                    .map(|t| Duration::from_millis(t.saturating_sub(now))),
            })
            .collect()
    }

    /// Open client connections.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// The `connection_name` each open connection gave (empty if none), sorted.
    pub fn connection_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .lock()
            .conns
            .values()
            .map(|c| c.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Publishes as a client would (without confirms); returns how many
    /// queues took the message.
    ///
    /// # Panics
    ///
    /// If the exchange does not exist.
    pub fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        properties: BasicProperties,
        body: impl Into<Vec<u8>>,
    ) -> usize {
        let mut state = self.shared.lock();
        assert!(
            state.exchanges.contains_key(exchange),
            "no exchange '{exchange}' in the memory broker"
        );
        let msg = Message {
            exchange: exchange.to_owned(),
            routing_keys: vec![routing_key.to_owned()],
            properties,
            body: Bytes::from(body.into()),
            broker_deaths: false,
            carried_deliveries: 0,
            carried_acquired: 0,
        };
        let targets = state.route(
            exchange,
            &msg.routing_keys,
            msg.properties.headers().as_ref(),
        );
        let taken = targets
            .iter()
            .filter(|t| state.enqueue(t, msg.clone()))
            .count();
        state.pump();
        taken
    }

    /// Acts as RabbitMQ's consumer timeout at this moment of the broker's
    /// clock: every delivery a consumer has held unacknowledged for
    /// `timeout` or longer is timed out as the modelled version does.
    /// Before 4.3 the channel holding it is closed with
    /// `PRECONDITION_FAILED`, and every unacked delivery on it goes back,
    /// counted. From 4.3 only quorum queues time out: the delivery goes back
    /// uncounted (`x-acquired-count` raised, `x-delivery-count` not), its
    /// consumer gets `basic.cancel`, the channel stays open, and a later ack
    /// of its tag is accepted and does nothing. Returns how many deliveries
    /// timed out. (The broker never runs the timeout by itself: a test says
    /// when.)
    pub fn time_out_consumers(&self, timeout: Duration) -> usize {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.shared.lock().time_out_consumers(ms)
    }

    /// Arms a fault: the next `queue.declare` is not carried out but
    /// closes its connection with 320 CONNECTION_FORCED, as when a node
    /// goes away while a client declares its topology. One-shot.
    pub fn drop_connection_at_next_queue_declare(&self) {
        self.shared.lock().drop_at_declare = true;
    }

    /// Closes every client connection with 320 CONNECTION_FORCED, like
    /// `rabbitmqctl close_all_connections`; their unacked deliveries go back
    /// to their queues. Returns how many were closed. Clients may connect
    /// again at once.
    pub fn close_all_connections(&self) -> usize {
        let kills = self.shared.lock().close_all_connections("testkit");
        let n = kills.len();
        // Clients answer connection.close with close-ok; drop the ones that
        // do not within a second.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if n > 0 => {
                rt.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    kills.iter().for_each(|k| k.notify_one());
                });
            }
            _ => kills.iter().for_each(|k| k.notify_one()),
        }
        n
    }
}

impl Drop for MemoryBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.lock().shutdown();
    }
}

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

async fn accept_loop(listener: TcpListener, shared: std::sync::Weak<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection::serve(shared, stream, id));
    }
}

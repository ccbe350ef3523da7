//! Deliveries as the broker would hand them to the worker.

use bytes::Bytes;

use serde::Serialize;
use worker_core::codec::JSON;
use worker_core::headers::{ATTEMPTS, REDELIVERIES, X_DEATH, X_DELIVERY_COUNT};
use worker_core::{DeathReason, Delivery, HeaderValue, Headers, Properties, Task, XDeath};

use crate::mock::Published;

/// Builds a [`Delivery`]: body, properties, headers and broker metadata.
///
/// Everything has a plain default (tag 1, default exchange, empty routing
/// key, no properties, empty body), so a test states only what matters to it.
///
/// ```
/// use worker_core::{Attempts, DeathReason, XDeath};
/// use worker_testkit::DeliveryBuilder;
///
/// #[derive(serde::Serialize)]
/// struct Email { to: String }
///
/// let delivery = DeliveryBuilder::json(&Email { to: "a@b".into() })
///     .tag(42)
///     .task("emails.send")
///     .routing_key("emails")
///     .correlation_id("order-7")
///     .header("tenant", "acme")
///     .delivery_count(1)
///     .dead_lettered("emails", DeathReason::Rejected, 2)
///     .redelivered(true)
///     .build();
///
/// assert_eq!(delivery.tag, 42);
/// assert_eq!(delivery.properties.kind(), Some("emails.send"));
/// assert_eq!(delivery.properties.content_type(), Some("application/json"));
/// assert_eq!(&*delivery.body, br#"{"to":"a@b"}"#);
/// // one earlier return plus two rejections: this is the fourth attempt
/// assert_eq!(Attempts::read(delivery.properties.headers(), "emails").current(), 4);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct DeliveryBuilder {
    tag: u64,
    exchange: String,
    routing_key: String,
    redelivered: bool,
    body: Bytes,
    content_type: Option<String>,
    message_id: Option<String>,
    correlation_id: Option<String>,
    kind: Option<String>,
    expiration: Option<String>,
    timestamp: Option<u64>,
    base: Properties,
    headers: Headers,
    deaths: Option<Vec<XDeath>>,
}

impl Default for DeliveryBuilder {
    fn default() -> Self {
        DeliveryBuilder {
            tag: 1,
            exchange: String::new(),
            routing_key: String::new(),
            redelivered: false,
            body: Bytes::new(),
            content_type: None,
            message_id: None,
            correlation_id: None,
            kind: None,
            expiration: None,
            timestamp: None,
            base: Properties::default(),
            headers: Headers::new(),
            deaths: None,
        }
    }
}

impl DeliveryBuilder {
    /// An empty delivery with tag 1 and no properties.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().build();
    /// assert_eq!(d.tag, 1);
    /// assert!(d.body.is_empty());
    /// ```
    pub fn new() -> Self {
        DeliveryBuilder::default()
    }

    /// A delivery whose body is `payload` serialized as JSON, with content
    /// type `application/json`.
    ///
    /// # Panics
    ///
    /// When `payload` cannot be serialized.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::json(&[1, 2, 3]).build();
    /// assert_eq!(&*d.body, b"[1,2,3]");
    /// ```
    pub fn json<P: Serialize + ?Sized>(payload: &P) -> Self {
        DeliveryBuilder::new().payload(payload)
    }

    /// A delivery with this raw body and no content type (which the
    /// runtime reads as JSON). Useful for malformed input.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::raw(&b"{not json"[..]).build();
    /// assert_eq!(d.properties.content_type(), None);
    /// ```
    pub fn raw(body: impl Into<Bytes>) -> Self {
        DeliveryBuilder::new().body(body)
    }

    /// A delivery of task `T` as its publisher sends it: JSON payload,
    /// `type` set to `T::NAME`, routing key `T::QUEUE` on the default exchange.
    ///
    /// ```
    /// use worker_core::{Task, TaskContext, TaskError};
    ///
    /// struct Ping;
    /// impl Task for Ping {
    ///     type Payload = String;
    ///     const NAME: &'static str = "ping";
    ///     const QUEUE: &'static str = "pings";
    ///     async fn run(&self, _: TaskContext, _: String) -> Result<(), TaskError> { Ok(()) }
    /// }
    ///
    /// let d = worker_testkit::DeliveryBuilder::for_task::<Ping>(&"hi".to_owned()).build();
    /// assert_eq!((d.routing_key.as_str(), d.properties.kind()), ("pings", Some("ping")));
    /// ```
    pub fn for_task<T: Task>(payload: &T::Payload) -> Self {
        DeliveryBuilder::json(payload)
            .task(T::NAME)
            .routing_key(T::QUEUE)
    }

    /// A delivery of a message the mock channel recorded, as a consumer of
    /// its target queue would receive it: same properties and body,
    /// exchange and routing key as published.
    ///
    /// ```
    /// use worker_core::{Outgoing, Properties};
    /// use worker_testkit::{mock::Published, DeliveryBuilder};
    ///
    /// let sent = Published::from(Outgoing::to_queue("q", Properties::default(), &b"1"[..]));
    /// let d = DeliveryBuilder::from_published(&sent).tag(3).build();
    /// assert_eq!((d.routing_key.as_str(), &*d.body), ("q", &b"1"[..]));
    /// ```
    pub fn from_published(message: &Published) -> Self {
        let p = &message.properties;
        let mut base = p.clone();
        base.headers_mut().retain(|_| false);
        DeliveryBuilder {
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
            body: message.body.clone(),
            content_type: p.content_type().map(str::to_owned),
            message_id: p.message_id().map(str::to_owned),
            correlation_id: p.correlation_id().map(str::to_owned),
            kind: p.kind().map(str::to_owned),
            expiration: p.expiration().map(str::to_owned),
            timestamp: p.timestamp(),
            base,
            headers: p.headers().clone(),
            ..DeliveryBuilder::default()
        }
    }

    /// The delivery the broker makes of a copy that waited in a delay tier:
    /// when the tier's TTL runs out, the copy is dead-lettered through the
    /// default exchange back to `work_queue`, with an `x-death` entry
    /// (reason `expired`) for the tier queue.
    ///
    /// Feed it to [`Harness::run`](crate::Harness::run) to follow a message
    /// through its whole life.
    ///
    /// ```
    /// use worker_core::{DeathReason, Outgoing, Properties};
    /// use worker_testkit::{mock::Published, DeliveryBuilder};
    ///
    /// let mut props = Properties::default();
    /// props.headers_mut().insert("rw-attempts", 2u32);
    /// let copy = Published::from(Outgoing::to_queue("emails.retry.1s", props, &b"{}"[..]));
    ///
    /// let back = DeliveryBuilder::returned_from_tier(&copy, "emails").tag(2).build();
    /// assert_eq!(back.routing_key, "emails");
    /// let death = &back.properties.headers().x_death()[0];
    /// assert_eq!((death.queue.as_str(), &death.reason), ("emails.retry.1s", &DeathReason::Expired));
    /// ```
    pub fn returned_from_tier(copy: &Published, work_queue: &str) -> Self {
        let mut deaths = copy.headers().x_death();
        match deaths
            .iter()
            .position(|d| d.queue == copy.routing_key && d.reason == DeathReason::Expired)
        {
            Some(i) => {
                let mut entry = deaths.remove(i);
                entry.count += 1;
                deaths.insert(0, entry);
            }
            None => deaths.insert(
                0,
                XDeath {
                    queue: copy.routing_key.clone(),
                    reason: DeathReason::Expired,
                    count: 1,
                    exchange: copy.exchange.clone(),
                    routing_keys: vec![copy.routing_key.clone()],
                    time: None,
                },
            ),
        }
        DeliveryBuilder::from_published(copy)
            .exchange("")
            .routing_key(work_queue)
            .x_death(deaths)
    }

    /// Sets the delivery tag.
    ///
    /// ```
    /// assert_eq!(worker_testkit::DeliveryBuilder::new().tag(9).build().tag, 9);
    /// ```
    pub fn tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }

    /// Sets the exchange the message was published to ("" is the default exchange).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().exchange("events").build();
    /// assert_eq!(d.exchange, "events");
    /// ```
    pub fn exchange(mut self, exchange: &str) -> Self {
        self.exchange = exchange.to_owned();
        self
    }

    /// Sets the routing key the message was published with.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().routing_key("orders.created").build();
    /// assert_eq!(d.routing_key, "orders.created");
    /// ```
    pub fn routing_key(mut self, routing_key: &str) -> Self {
        self.routing_key = routing_key.to_owned();
        self
    }

    /// Sets the broker's `redelivered` flag.
    ///
    /// ```
    /// assert!(worker_testkit::DeliveryBuilder::new().redelivered(true).build().redelivered);
    /// ```
    pub fn redelivered(mut self, redelivered: bool) -> Self {
        self.redelivered = redelivered;
        self
    }

    /// Replaces the body with raw bytes (the content type is left as it is).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::json(&1).body(Vec::new()).build();
    /// assert!(d.body.is_empty());
    /// ```
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Replaces the body with `payload` as JSON and sets content type `application/json`.
    ///
    /// # Panics
    ///
    /// When `payload` cannot be serialized.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::raw(&b"x"[..]).payload(&true).build();
    /// assert_eq!(&*d.body, b"true");
    /// ```
    pub fn payload<P: Serialize + ?Sized>(mut self, payload: &P) -> Self {
        let body = serde_json::to_vec(payload)
            .unwrap_or_else(|e| panic!("cannot serialize the test payload as JSON: {e}"));
        self.body = body.into();
        self.content_type = Some(JSON.to_owned());
        self
    }

    /// Sets the `content_type` property.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().content_type("text/plain").build();
    /// assert_eq!(d.properties.content_type(), Some("text/plain"));
    /// ```
    pub fn content_type(mut self, content_type: &str) -> Self {
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// Removes the `content_type` property (but not the one of a message
    /// given to [`from_published`](Self::from_published), which is kept).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::json(&1).without_content_type().build();
    /// assert_eq!(d.properties.content_type(), None);
    /// ```
    pub fn without_content_type(mut self) -> Self {
        self.content_type = None;
        self
    }

    /// Sets the `message_id` property.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().message_id("m-1").build();
    /// assert_eq!(d.properties.message_id(), Some("m-1"));
    /// ```
    pub fn message_id(mut self, id: &str) -> Self {
        self.message_id = Some(id.to_owned());
        self
    }

    /// Sets the `user_id` property (the login the broker says published it).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().user_id("producer").build();
    /// assert_eq!(d.properties.user_id(), Some("producer"));
    /// ```
    pub fn user_id(mut self, user: &str) -> Self {
        self.base = self
            .base
            .with_user_id(user)
            .expect("a user id of at most 255 bytes");
        self
    }

    /// Sets the `correlation_id` property.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().correlation_id("c-1").build();
    /// assert_eq!(d.properties.correlation_id(), Some("c-1"));
    /// ```
    pub fn correlation_id(mut self, id: &str) -> Self {
        self.correlation_id = Some(id.to_owned());
        self
    }

    /// Sets the `reply_to` property: the delivery is a call, and the worker
    /// replies there (see [`Report::reply`](crate::Report::reply)).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().reply_to("amq.rabbitmq.reply-to.x").build();
    /// assert_eq!(d.properties.reply_to(), Some("amq.rabbitmq.reply-to.x"));
    /// ```
    ///
    /// # Panics
    ///
    /// When `address` is longer than 255 bytes.
    pub fn reply_to(mut self, address: &str) -> Self {
        self.base = self
            .base
            .with_reply_to(address)
            .unwrap_or_else(|e| panic!("DeliveryBuilder: bad reply_to: {e}"));
        self
    }

    /// Sets the task name (the `type` property).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().task("emails.send").build();
    /// assert_eq!(d.properties.kind(), Some("emails.send"));
    /// ```
    pub fn task(mut self, name: &str) -> Self {
        self.kind = Some(name.to_owned());
        self
    }

    /// Sets the per-message TTL (`expiration`, milliseconds as a string).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().expiration("60000").build();
    /// assert_eq!(d.properties.expiration(), Some("60000"));
    /// ```
    pub fn expiration(mut self, millis: &str) -> Self {
        self.expiration = Some(millis.to_owned());
        self
    }

    /// Sets the `priority` property (for tasks with `priority`).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().priority(9).build();
    /// assert_eq!(d.properties.priority(), Some(9));
    /// ```
    pub fn priority(mut self, priority: u8) -> Self {
        self.base = self.base.with_priority(priority);
        self
    }

    /// Sets the `timestamp` property (seconds since the epoch).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().timestamp(1_700_000_000).build();
    /// assert_eq!(d.properties.timestamp(), Some(1_700_000_000));
    /// ```
    pub fn timestamp(mut self, secs: u64) -> Self {
        self.timestamp = Some(secs);
        self
    }

    /// Sets one header.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().header("tenant", "acme").build();
    /// assert_eq!(d.properties.headers().get_str("tenant").as_deref(), Some("acme"));
    /// ```
    pub fn header(mut self, name: &str, value: impl Into<HeaderValue>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets every header in `headers` (keeping others already set).
    ///
    /// ```
    /// use worker_core::Headers;
    ///
    /// let mut extra = Headers::new();
    /// extra.insert("a", 1u8).insert("b", 2u8);
    /// let d = worker_testkit::DeliveryBuilder::new().header("c", 3u8).headers(&extra).build();
    /// assert_eq!(d.properties.headers().len(), 3);
    /// ```
    pub fn headers(mut self, headers: &Headers) -> Self {
        for (name, value) in headers.iter() {
            self.headers.insert(name, value);
        }
        self
    }

    /// Replaces the `x-death` history with `entries`, newest first.
    ///
    /// ```
    /// use worker_core::{DeathReason, XDeath};
    ///
    /// let entry = XDeath {
    ///     queue: "emails".into(),
    ///     reason: DeathReason::DeliveryLimit,
    ///     count: 1,
    ///     exchange: String::new(),
    ///     routing_keys: vec!["emails".into()],
    ///     time: Some(1_700_000_000),
    /// };
    /// let d = worker_testkit::DeliveryBuilder::new().x_death([entry.clone()]).build();
    /// assert_eq!(d.properties.headers().x_death(), [entry]);
    /// ```
    pub fn x_death(mut self, entries: impl IntoIterator<Item = XDeath>) -> Self {
        self.deaths = Some(entries.into_iter().collect());
        self
    }

    /// Adds an `x-death` entry for `queue` and `reason`, older than those
    /// already added (entries are kept newest first). The entry records the
    /// builder's exchange and routing key at the time of the call.
    ///
    /// ```
    /// use worker_core::DeathReason;
    ///
    /// let d = worker_testkit::DeliveryBuilder::new()
    ///     .dead_lettered("emails.retry.1s", DeathReason::Expired, 1)
    ///     .dead_lettered("emails", DeathReason::Rejected, 1)
    ///     .build();
    /// let deaths = d.properties.headers().x_death();
    /// assert_eq!(deaths[0].queue, "emails.retry.1s");
    /// assert_eq!(deaths[1].reason, DeathReason::Rejected);
    /// ```
    pub fn dead_lettered(mut self, queue: &str, reason: DeathReason, count: u64) -> Self {
        let entry = XDeath {
            queue: queue.to_owned(),
            reason,
            count,
            exchange: self.exchange.clone(),
            routing_keys: vec![if self.routing_key.is_empty() {
                queue.to_owned()
            } else {
                self.routing_key.clone()
            }],
            time: None,
        };
        let mut deaths = self.deaths.take().unwrap_or_else(|| self.headers.x_death());
        deaths.push(entry);
        self.deaths = Some(deaths);
        self
    }

    /// Sets the quorum queue's `x-delivery-count`: returns of this copy
    /// that were never settled (a crashed worker).
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().delivery_count(3).build();
    /// assert_eq!(d.properties.headers().delivery_count(), 3);
    /// ```
    pub fn delivery_count(self, count: u64) -> Self {
        self.header(X_DELIVERY_COUNT, count)
    }

    /// Sets `rw-attempts`: attempts made before this copy was published,
    /// as the framework writes it on copies sent to a delay tier.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().attempts(4).build();
    /// assert_eq!(d.properties.headers().get_u64("rw-attempts"), Some(4));
    /// ```
    pub fn attempts(self, attempts: u32) -> Self {
        self.header(ATTEMPTS, attempts)
    }

    /// Sets `rw-redeliveries`: trips through the delay tiers so far.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::new().redeliveries(2).build();
    /// assert_eq!(d.properties.headers().get_u64("rw-redeliveries"), Some(2));
    /// ```
    pub fn redeliveries(self, redeliveries: u32) -> Self {
        self.header(REDELIVERIES, redeliveries)
    }

    /// Builds the delivery.
    ///
    /// # Panics
    ///
    /// When a string property is longer than AMQP's 255-byte limit.
    ///
    /// ```
    /// let d = worker_testkit::DeliveryBuilder::json(&"hello").tag(2).build();
    /// assert_eq!(d.tag, 2);
    /// ```
    pub fn build(self) -> Delivery {
        let short = |field: &str, r: Result<Properties, worker_core::Error>| {
            r.unwrap_or_else(|e| panic!("DeliveryBuilder: bad {field}: {e}"))
        };
        let mut props = self.base;
        if let Some(v) = &self.content_type {
            props = short("content type", props.with_content_type_checked(v));
        }
        if let Some(v) = &self.message_id {
            props = short("message id", props.with_message_id(v));
        }
        if let Some(v) = &self.correlation_id {
            props = short("correlation id", props.with_correlation_id(v));
        }
        if let Some(v) = &self.kind {
            props = short("task name", props.with_kind(v));
        }
        if let Some(v) = &self.expiration {
            props = short("expiration", props.with_expiration(v));
        }
        if let Some(secs) = self.timestamp {
            props = props.with_timestamp(secs);
        }
        let mut headers = self.headers;
        if let Some(deaths) = &self.deaths {
            if deaths.is_empty() {
                headers.remove(X_DEATH);
            } else {
                headers.insert(X_DEATH, XDeath::to_header_value(deaths));
            }
        }
        Delivery {
            tag: self.tag,
            exchange: self.exchange,
            routing_key: self.routing_key,
            redelivered: self.redelivered,
            properties: props.with_headers(headers),
            body: self.body,
        }
    }
}

//! Messages as the runtime sees them, free of lapin types.

use bytes::Bytes;

use lapin::types::ShortString;
use lapin::BasicProperties;

use crate::error::Error;
use crate::headers::{
    is_broker_owned, Headers, ORIGINAL_EXPIRATION, ORIGINAL_USER_ID, ROUTING_HEADERS,
};

/// AMQP basic properties of a message.
///
/// ```
/// use worker_core::Properties;
///
/// let props = Properties::default()
///     .with_content_type("application/json")
///     .with_correlation_id("order-42")
///     .unwrap();
/// assert_eq!(props.correlation_id(), Some("order-42"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    inner: BasicProperties,
    headers: Headers,
}

fn short(field: &'static str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::TooLong {
        field,
        len: value.len(),
    })
}

macro_rules! string_property {
    ($get:ident, $with:ident, $lapin_with:ident, $field:literal) => {
        #[doc = concat!("The `", $field, "` property.")]
        pub fn $get(&self) -> Option<&str> {
            self.inner.$get().as_ref().map(|s| s.as_str())
        }

        #[doc = concat!("Sets `", $field, "`; fails when longer than 255 bytes.")]
        pub fn $with(mut self, value: &str) -> Result<Self, Error> {
            self.inner = self.inner.$lapin_with(short($field, value)?);
            Ok(self)
        }
    };
}

impl Properties {
    pub(crate) fn from_lapin(mut inner: BasicProperties) -> Self {
        let headers = match inner.headers() {
            Some(t) if !t.inner().is_empty() => {
                let t = t.clone();
                inner = inner.with_headers(Default::default());
                Headers::from_field_table(t)
            }
            _ => Headers::new(),
        };
        Properties { inner, headers }
    }

    pub(crate) fn to_lapin(&self) -> BasicProperties {
        self.inner
            .clone()
            .with_headers(self.headers.field_table().clone())
    }

    string_property!(
        content_type,
        with_content_type_checked,
        with_content_type,
        "content_type"
    );
    string_property!(
        content_encoding,
        with_content_encoding,
        with_content_encoding,
        "content_encoding"
    );
    string_property!(
        correlation_id,
        with_correlation_id,
        with_correlation_id,
        "correlation_id"
    );
    string_property!(reply_to, with_reply_to, with_reply_to, "reply_to");
    string_property!(expiration, with_expiration, with_expiration, "expiration");
    string_property!(message_id, with_message_id, with_message_id, "message_id");
    string_property!(kind, with_kind, with_type, "type");
    string_property!(app_id, with_app_id, with_app_id, "app_id");
    string_property!(user_id, with_user_id, with_user_id, "user_id");

    /// Sets `content_type` from a known-short constant.
    pub fn with_content_type(self, value: &'static str) -> Self {
        self.with_content_type_checked(value)
            .expect("content types given as constants are short")
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// 2 for persistent, 1 for transient.
    pub fn delivery_mode(&self) -> Option<u8> {
        *self.inner.delivery_mode()
    }

    /// Marks the message persistent (delivery mode 2).
    pub fn persistent(mut self) -> Self {
        self.inner = self.inner.with_delivery_mode(2);
        self
    }

    /// Seconds since the epoch.
    pub fn timestamp(&self) -> Option<u64> {
        *self.inner.timestamp()
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, secs: u64) -> Self {
        self.inner = self.inner.with_timestamp(secs);
        self
    }

    /// The properties of a copy the framework publishes (to a wait queue,
    /// quarantine, parking, or back to the work queue on replay): what the
    /// broker or another user owns is moved into headers of ours, so that
    /// nothing is lost and the copy goes only where the framework sends it:
    ///
    /// - `expiration` (to `rw-original-expiration`): a copy must not expire
    ///   where it waits;
    /// - `user_id` (to `rw-original-user-id`): RabbitMQ refuses, and closes
    ///   the publishing channel for, a message whose `user_id` is not the
    ///   publishing login;
    /// - the `CC` and `BCC` headers (to `rw-original-cc` / `-bcc`): the
    ///   broker would route the copy to those queues too.
    ///
    /// A value already kept (a copy of a copy) is not overwritten.
    ///
    /// ```
    /// use worker_core::Properties;
    ///
    /// let mut original = Properties::default().with_expiration("60000").unwrap();
    /// original.headers_mut().insert("CC", "audit");
    /// let copy = original.for_copy();
    /// assert_eq!(copy.expiration(), None);
    /// assert!(!copy.headers().contains("CC"));
    /// assert_eq!(copy.headers().get_str("rw-original-cc").as_deref(), Some("audit"));
    /// assert_eq!(copy.headers().get_str("rw-original-expiration").as_deref(), Some("60000"));
    /// ```
    pub fn for_copy(&self) -> Properties {
        let p = &self.inner;
        let mut headers = self.headers.clone();
        let mut keep = |name: &str, value: Option<&str>| {
            if let Some(v) = value {
                if !headers.contains(name) {
                    headers.insert(name, v);
                }
            }
        };
        keep(ORIGINAL_EXPIRATION, self.expiration());
        keep(ORIGINAL_USER_ID, p.user_id().as_ref().map(|u| u.as_str()));
        for (routing, kept) in ROUTING_HEADERS {
            if let Some(value) = headers.get(routing) {
                headers.remove(routing);
                if !headers.contains(kept) {
                    headers.insert(kept, value);
                }
            }
        }
        let mut fresh = BasicProperties::default();
        macro_rules! copy {
            ($($get:ident => $with:ident),*) => {$(
                if let Some(v) = p.$get().clone() {
                    fresh = fresh.$with(v);
                }
            )*};
        }
        copy!(content_type => with_content_type, content_encoding => with_content_encoding,
            delivery_mode => with_delivery_mode, priority => with_priority,
            correlation_id => with_correlation_id, reply_to => with_reply_to,
            message_id => with_message_id, timestamp => with_timestamp, kind => with_type,
            app_id => with_app_id, cluster_id => with_cluster_id);
        Properties {
            inner: fresh,
            headers,
        }
    }

    /// The priority.
    pub fn priority(&self) -> Option<u8> {
        *self.inner.priority()
    }

    /// Sets the priority (kept by every copy, see [`Properties::for_copy`]).
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.inner = self.inner.with_priority(priority);
        self
    }
}

/// A message delivered to this worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The channel-scoped delivery tag.
    pub tag: u64,
    /// The exchange it was published to ("" for the default exchange).
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
    /// Its properties.
    pub properties: Properties,
    /// Its body: lapin's buffer, taken over without copying and shared
    /// between attempts and copies (clones share it).
    pub body: Bytes,
}

impl Delivery {
    pub(crate) fn from_lapin(d: lapin::message::Delivery) -> Self {
        Delivery {
            tag: d.delivery_tag,
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            redelivered: d.redelivered,
            properties: Properties::from_lapin(d.properties),
            body: d.data.into(),
        }
    }
}

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Target exchange ("" for the default exchange).
    pub exchange: String,
    /// Routing key (the queue name, on the default exchange).
    pub routing_key: String,
    /// Properties (delivery mode, ids, headers, ...).
    pub properties: Properties,
    /// Body bytes (a clone of a delivery's body shares its buffer).
    pub body: Bytes,
    /// Whether an unroutable message is an error (it is, for everything the framework sends).
    pub mandatory: bool,
}

impl Outgoing {
    /// A copy of `delivery` for `queue`, as the framework publishes every
    /// copy of a message (to a wait queue, quarantine, parking, or back to
    /// work on replay): the properties of [`Properties::for_copy`], without
    /// the broker's `x-` headers, then `stamp` adds ours.
    pub fn copy_of(delivery: &Delivery, queue: &str, stamp: impl FnOnce(&mut Headers)) -> Self {
        let mut properties = delivery.properties.for_copy();
        let headers = properties.headers_mut();
        headers.retain(|name| !is_broker_owned(name));
        stamp(headers);
        Outgoing::to_queue(queue, properties, delivery.body.clone())
    }

    /// A mandatory message to a queue through the default exchange.
    pub fn to_queue(queue: &str, properties: Properties, body: impl Into<Bytes>) -> Self {
        Outgoing {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            properties,
            body: body.into(),
            mandatory: true,
        }
    }
}

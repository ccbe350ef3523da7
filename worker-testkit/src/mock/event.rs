//! What the mock channel records.

use bytes::Bytes;
use std::fmt;

use serde::de::DeserializeOwned;
use worker_core::headers::{ATTEMPTS, ERROR_KIND, PARK_REASON, REDELIVERIES};
use worker_core::{Headers, Outgoing, Properties};

/// One operation the runtime performed on the mock channel, in the order it happened.
///
/// ```
/// use worker_testkit::mock::{self, Event};
/// use worker_core::transport::Transport;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (transport, handle) = mock::pair();
/// transport.nack(3, false, true).await.unwrap();
/// assert_eq!(
///     handle.events(),
///     [Event::Nack { tag: 3, multiple: false, requeue: true }]
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `basic.ack`.
    Ack {
        /// The delivery tag.
        tag: u64,
        /// Whether every outstanding tag up to `tag` was acked.
        multiple: bool,
    },
    /// `basic.nack`.
    Nack {
        /// The delivery tag.
        tag: u64,
        /// Whether every outstanding tag up to `tag` was nacked.
        multiple: bool,
        /// Whether the broker was asked to requeue it.
        requeue: bool,
    },
    /// `basic.reject`.
    Reject {
        /// The delivery tag.
        tag: u64,
        /// Whether the broker was asked to requeue it (`false`: dead-letter it).
        requeue: bool,
    },
    /// A publish the mock confirmed.
    Published(Published),
    /// A publish the mock refused, as scripted on its [`MockHandle`](super::MockHandle).
    PublishFailed {
        /// The message that was not taken.
        message: Published,
        /// The error the publisher saw.
        error: String,
    },
}

impl Event {
    /// The published message, for [`Event::Published`].
    ///
    /// ```
    /// use worker_testkit::mock::Event;
    ///
    /// assert!(Event::Ack { tag: 1, multiple: false }.published().is_none());
    /// ```
    pub fn published(&self) -> Option<&Published> {
        match self {
            Event::Published(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Ack { tag, multiple } => {
                write!(f, "ack {tag}")?;
                if *multiple {
                    f.write_str(" (multiple)")?;
                }
                Ok(())
            }
            Event::Nack {
                tag,
                multiple,
                requeue,
            } => {
                write!(f, "nack {tag} (requeue={requeue}")?;
                if *multiple {
                    f.write_str(", multiple")?;
                }
                f.write_str(")")
            }
            Event::Reject { tag, requeue } => write!(f, "reject {tag} (requeue={requeue})"),
            Event::Published(p) => write!(f, "publish {p}"),
            Event::PublishFailed { message, error } => {
                write!(f, "FAILED publish {message}: {error}")
            }
        }
    }
}

/// A message published through the mock channel.
///
/// The fields are exactly what the runtime handed to
/// [`Transport::publish`](worker_core::transport::Transport::publish).
///
/// ```
/// use worker_core::{Outgoing, Properties};
/// use worker_testkit::mock::Published;
///
/// let mut props = Properties::default().with_content_type("application/json");
/// props.headers_mut().insert("rw-attempts", 2u32);
/// let p = Published::from(Outgoing::to_queue("emails.retry.1s", props, &b"{\"to\":\"a@b\"}"[..]));
/// assert_eq!(p.routing_key, "emails.retry.1s");
/// assert_eq!(p.header_u64("rw-attempts"), Some(2));
/// let body: serde_json::Value = p.json();
/// assert_eq!(body["to"], "a@b");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The exchange ("" for the default exchange).
    pub exchange: String,
    /// The routing key (the queue name, on the default exchange).
    pub routing_key: String,
    /// The properties, headers included.
    pub properties: Properties,
    /// The body bytes.
    pub body: Bytes,
    /// Whether it was published as mandatory.
    pub mandatory: bool,
}

impl From<Outgoing> for Published {
    fn from(m: Outgoing) -> Self {
        Published {
            exchange: m.exchange,
            routing_key: m.routing_key,
            properties: m.properties,
            body: m.body,
            mandatory: m.mandatory,
        }
    }
}

impl Published {
    /// The headers.
    ///
    /// ```
    /// # use worker_core::{Outgoing, Properties};
    /// # use worker_testkit::mock::Published;
    /// let p = Published::from(Outgoing::to_queue("q", Properties::default(), &b"1"[..]));
    /// assert!(p.headers().is_empty());
    /// ```
    pub fn headers(&self) -> &Headers {
        self.properties.headers()
    }

    /// A string header.
    ///
    /// ```
    /// # use worker_core::{Outgoing, Properties};
    /// # use worker_testkit::mock::Published;
    /// let mut props = Properties::default();
    /// props.headers_mut().insert("rw-park-reason", "permanent");
    /// let p = Published::from(Outgoing::to_queue("q.parking", props, &b"1"[..]));
    /// assert_eq!(p.header_str("rw-park-reason").as_deref(), Some("permanent"));
    /// ```
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.headers().get_str(name)
    }

    /// A header read as a non-negative integer of any width.
    ///
    /// ```
    /// # use worker_core::{Outgoing, Properties};
    /// # use worker_testkit::mock::Published;
    /// let mut props = Properties::default();
    /// props.headers_mut().insert("rw-redeliveries", 1u8);
    /// let p = Published::from(Outgoing::to_queue("q.retry.1s", props, &b"1"[..]));
    /// assert_eq!(p.header_u64("rw-redeliveries"), Some(1));
    /// ```
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers().get_u64(name)
    }

    /// The body decoded as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON of type `T`; the message shows the body.
    ///
    /// ```
    /// # use worker_core::{Outgoing, Properties};
    /// # use worker_testkit::mock::Published;
    /// let p = Published::from(Outgoing::to_queue("q", Properties::default(), &b"[1,2]"[..]));
    /// assert_eq!(p.json::<Vec<u8>>(), [1, 2]);
    /// ```
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "the message published to {:?} is not the expected JSON ({e}); body: {}",
                self.routing_key,
                preview(&self.body, 200)
            ),
        }
    }
}

impl fmt::Display for Published {
    /// One line: target, task name, ids, the framework's headers and a body preview.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "to {:?}", self.routing_key)?;
        if !self.exchange.is_empty() {
            write!(f, " via exchange {:?}", self.exchange)?;
        }
        let props = &self.properties;
        if let Some(kind) = props.kind() {
            write!(f, " type={kind:?}")?;
        }
        if let Some(c) = props.correlation_id() {
            write!(f, " correlation_id={c:?}")?;
        }
        for name in [PARK_REASON, ERROR_KIND, ATTEMPTS, REDELIVERIES] {
            if let Some(v) = self.headers().get(name) {
                match v.as_str() {
                    Some(s) => write!(f, " {name}={s:?}")?,
                    None => match v.as_u64() {
                        Some(n) => write!(f, " {name}={n}")?,
                        None => write!(f, " {name}={v:?}")?,
                    },
                }
            }
        }
        write!(f, " body={}", preview(&self.body, 60))
    }
}

/// A bounded, lossy rendering of a body for failure messages.
pub(crate) fn preview(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    format!("{out:?} ({} bytes)", body.len())
}

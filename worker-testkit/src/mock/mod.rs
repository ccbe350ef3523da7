//! A recording stand-in for the broker channel.
//!
//! [`pair`] returns a [`MockTransport`], which implements the runtime's
//! broker seam ([`Transport`]), and a [`MockHandle`] that scripts it and
//! asserts on what it saw, in the manner of tower-test's `mock::pair()`.
//! Every ack, nack, reject and publish is recorded as an [`Event`]; publishes
//! are confirmed at once unless the handle scripted a failure.
//!
//! # Assertions
//!
//! Each `assert_*` method takes the earliest recorded event that matches
//! and that no earlier assertion took, so assertions may be written in any
//! order; [`MockHandle::assert_nothing_else`] then checks that every event
//! was accounted for. A failed assertion panics with the list of events the
//! mock did record (those already taken are marked), so the test output
//! says what happened instead of only what did not. When the order matters
//! (a copy confirmed before the original is acked), read
//! [`MockHandle::events`] directly.
//!
//! ```
//! use worker_core::transport::Transport;
//! use worker_core::{Outgoing, Properties};
//! use worker_testkit::mock;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (transport, handle) = mock::pair();
//! handle.fail_publishes_to("emails.parking");
//!
//! let copy = Outgoing::to_queue("emails.parking", Properties::default(), &b"{}"[..]);
//! assert!(transport.publish(copy).await.is_err());
//! transport.reject(7, false).await.unwrap();
//!
//! handle.assert_rejected(7);
//! handle.assert_publish_failed_to("emails.parking");
//! handle.assert_nothing_else();
//! # }
//! ```

mod event;

pub use event::{Event, Published};

use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::{self, BoxFuture, FutureExt};
use worker_core::transport::{SettleError, Transport};
use worker_core::{Error, HeaderValue, Outgoing, Task};

/// A connected mock channel and the handle that scripts and inspects it.
///
/// ```
/// use std::sync::Arc;
/// use worker_core::transport::Transport;
///
/// let (transport, handle) = worker_testkit::mock::pair();
/// let shared: Arc<dyn Transport> = Arc::new(transport);
/// assert!(handle.events().is_empty());
/// # drop(shared);
/// ```
pub fn pair() -> (MockTransport, MockHandle) {
    let shared = Arc::new(Mutex::new(State::default()));
    (
        MockTransport {
            shared: shared.clone(),
        },
        MockHandle { shared },
    )
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Recorded>,
    fail_next: u32,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Recorded {
    event: Event,
    taken: bool,
}

#[derive(Debug)]
struct Rule {
    routing_key: String,
    unroutable: bool,
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    // A failed assertion panics outside the lock, but a test may still
    // catch a panic from elsewhere; the log stays usable either way.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The mock channel: implements [`Transport`] and records every call.
///
/// Cheap to clone; clones share one record. Publishes succeed (are
/// "confirmed") immediately unless the [`MockHandle`] scripted a failure.
///
/// ```
/// use worker_core::transport::Transport;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (transport, handle) = worker_testkit::mock::pair();
/// transport.ack(1, false).await.unwrap();
/// handle.assert_acked(1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MockTransport {
    shared: Arc<Mutex<State>>,
}

impl MockTransport {
    fn record(&self, event: Event) {
        lock(&self.shared).events.push(Recorded {
            event,
            taken: false,
        });
    }

    fn settle(&self, event: Event) -> BoxFuture<'_, Result<(), SettleError>> {
        self.record(event);
        future::ready(Ok(())).boxed()
    }
}

impl Transport for MockTransport {
    fn ack(&self, tag: u64, multiple: bool) -> BoxFuture<'_, Result<(), SettleError>> {
        self.settle(Event::Ack { tag, multiple })
    }

    fn nack(
        &self,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> BoxFuture<'_, Result<(), SettleError>> {
        self.settle(Event::Nack {
            tag,
            multiple,
            requeue,
        })
    }

    fn reject(&self, tag: u64, requeue: bool) -> BoxFuture<'_, Result<(), SettleError>> {
        self.settle(Event::Reject { tag, requeue })
    }

    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<(), Error>> {
        let message = Published::from(message);
        let mut state = lock(&self.shared);
        let error = if state.fail_next > 0 {
            state.fail_next -= 1;
            Some(nacked(&message))
        } else {
            state
                .rules
                .iter()
                .find(|r| r.routing_key == message.routing_key)
                .map(|rule| {
                    if rule.unroutable {
                        Error::Unroutable {
                            exchange: message.exchange.clone(),
                            routing_key: message.routing_key.clone(),
                            reply: "312 NO_ROUTE (scripted by the mock channel)".to_owned(),
                        }
                    } else {
                        nacked(&message)
                    }
                })
        };
        let (event, result) = match error {
            None => (Event::Published(message), Ok(())),
            Some(e) => (
                Event::PublishFailed {
                    message,
                    error: e.to_string(),
                },
                Err(e),
            ),
        };
        state.events.push(Recorded {
            event,
            taken: false,
        });
        future::ready(result).boxed()
    }
}

fn nacked(message: &Published) -> Error {
    Error::Nacked {
        routing_key: message.routing_key.clone(),
    }
}

/// Scripts the [`MockTransport`] and asserts on what it recorded.
///
/// Cheap to clone; clones share one record. See the [module docs](self)
/// for how assertions match events.
///
/// ```
/// use worker_core::transport::Transport;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (transport, handle) = worker_testkit::mock::pair();
/// handle.fail_next_publishes(1);
/// transport.nack(1, false, true).await.unwrap();
/// handle.assert_nacked(1, true);
/// handle.assert_nothing_else();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MockHandle {
    shared: Arc<Mutex<State>>,
}

impl MockHandle {
    // ---- scripting ----

    /// Makes the next `n` publishes fail, whatever their target, as if the
    /// broker had nacked them (`Error::Nacked`).
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_core::{Outgoing, Properties};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// handle.fail_next_publishes(1);
    /// let msg = || Outgoing::to_queue("q", Properties::default(), &b"1"[..]);
    /// assert!(transport.publish(msg()).await.is_err());
    /// assert!(transport.publish(msg()).await.is_ok());
    /// # }
    /// ```
    pub fn fail_next_publishes(&self, n: u32) -> &Self {
        lock(&self.shared).fail_next = n;
        self
    }

    /// Makes every publish with routing key `queue` fail as if the broker
    /// had nacked it, until [`heal`](Self::heal).
    ///
    /// ```
    /// let (_transport, handle) = worker_testkit::mock::pair();
    /// handle.fail_publishes_to("emails.retry.1s").fail_publishes_to("emails.parking");
    /// ```
    pub fn fail_publishes_to(&self, queue: &str) -> &Self {
        self.add_rule(queue, false)
    }

    /// Makes every publish with routing key `queue` fail as unroutable
    /// (`Error::Unroutable`: no queue is bound to that key), until
    /// [`heal`](Self::heal).
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_core::{Error, Outgoing, Properties};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// handle.make_unroutable("nowhere");
    /// let err = transport
    ///     .publish(Outgoing::to_queue("nowhere", Properties::default(), &b"1"[..]))
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::Unroutable { .. }));
    /// # }
    /// ```
    pub fn make_unroutable(&self, queue: &str) -> &Self {
        self.add_rule(queue, true)
    }

    fn add_rule(&self, queue: &str, unroutable: bool) -> &Self {
        let mut state = lock(&self.shared);
        state.rules.retain(|r| r.routing_key != queue);
        state.rules.push(Rule {
            routing_key: queue.to_owned(),
            unroutable,
        });
        drop(state);
        self
    }

    /// Removes every scripted failure: publishes succeed again.
    ///
    /// ```
    /// let (_transport, handle) = worker_testkit::mock::pair();
    /// handle.fail_next_publishes(3).fail_publishes_to("q").heal();
    /// ```
    pub fn heal(&self) -> &Self {
        let mut state = lock(&self.shared);
        state.fail_next = 0;
        state.rules.clear();
        drop(state);
        self
    }

    // ---- plain accessors ----

    /// Every event recorded so far, oldest first (assertions do not remove them).
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_testkit::mock::Event;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.reject(2, false).await.unwrap();
    /// assert_eq!(handle.events(), [Event::Reject { tag: 2, requeue: false }]);
    /// # }
    /// ```
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared)
            .events
            .iter()
            .map(|r| r.event.clone())
            .collect()
    }

    /// The messages the mock confirmed, oldest first (failed publishes are left out).
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_core::{Outgoing, Properties};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.publish(Outgoing::to_queue("a", Properties::default(), &b"1"[..])).await.unwrap();
    /// assert_eq!(handle.published()[0].routing_key, "a");
    /// # }
    /// ```
    pub fn published(&self) -> Vec<Published> {
        lock(&self.shared)
            .events
            .iter()
            .filter_map(|r| r.event.published().cloned())
            .collect()
    }

    /// Forgets every recorded event (scripted failures stay).
    ///
    /// ```
    /// use worker_core::transport::Transport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.ack(1, false).await.unwrap();
    /// handle.clear();
    /// handle.assert_nothing_else();
    /// # }
    /// ```
    pub fn clear(&self) {
        lock(&self.shared).events.clear();
    }

    /// Number of events recorded so far.
    pub(crate) fn len(&self) -> usize {
        lock(&self.shared).events.len()
    }

    /// The events recorded from index `start` on.
    pub(crate) fn events_since(&self, start: usize) -> Vec<Event> {
        lock(&self.shared)
            .events
            .iter()
            .skip(start)
            .map(|r| r.event.clone())
            .collect()
    }

    // ---- assertions ----

    /// Asserts that delivery `tag` was acked (with or without `multiple`).
    ///
    /// # Panics
    ///
    /// When no such ack was recorded (or all were taken by earlier
    /// assertions); the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.ack(9, false).await.unwrap();
    /// handle.assert_acked(9);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_acked(&self, tag: u64) {
        self.take(
            &format!("an ack of delivery {tag}"),
            |e| matches!(e, Event::Ack { tag: t, .. } if *t == tag),
        );
    }

    /// Asserts that delivery `tag` was nacked with this `requeue` flag.
    ///
    /// # Panics
    ///
    /// When no such nack was recorded; the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.nack(4, false, true).await.unwrap();
    /// handle.assert_nacked(4, true);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_nacked(&self, tag: u64, requeue: bool) {
        self.take(
            &format!("a nack of delivery {tag} with requeue={requeue}"),
            |e| matches!(e, Event::Nack { tag: t, requeue: r, .. } if *t == tag && *r == requeue),
        );
    }

    /// Asserts that delivery `tag` was rejected without requeue, that is,
    /// handed to the queue's dead-letter target (the runtime never rejects
    /// with requeue; see [`assert_rejected_requeue`](Self::assert_rejected_requeue)).
    ///
    /// # Panics
    ///
    /// When no such reject was recorded; the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.reject(5, false).await.unwrap();
    /// handle.assert_rejected(5);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_rejected(&self, tag: u64) {
        self.take(
            &format!("a reject of delivery {tag} with requeue=false"),
            |e| matches!(e, Event::Reject { tag: t, requeue: false } if *t == tag),
        );
    }

    /// Asserts that delivery `tag` was rejected with requeue.
    ///
    /// # Panics
    ///
    /// When no such reject was recorded; the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.reject(5, true).await.unwrap();
    /// handle.assert_rejected_requeue(5);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_rejected_requeue(&self, tag: u64) {
        self.take(
            &format!("a reject of delivery {tag} with requeue=true"),
            |e| matches!(e, Event::Reject { tag: t, requeue: true } if *t == tag),
        );
    }

    /// Asserts that a message was published (and confirmed) with routing
    /// key `queue`, and returns it so the test can check its headers and body.
    ///
    /// # Panics
    ///
    /// When no such publish was recorded; the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_core::{Outgoing, Properties};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// let mut props = Properties::default();
    /// props.headers_mut().insert("rw-park-reason", "permanent");
    /// transport.publish(Outgoing::to_queue("q.parking", props, &b"{}"[..])).await.unwrap();
    ///
    /// let parked = handle.assert_published_to("q.parking");
    /// assert_eq!(parked.header_str("rw-park-reason").as_deref(), Some("permanent"));
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_published_to(&self, queue: &str) -> Published {
        let event = self.take(
            &format!("a confirmed publish to {queue:?}"),
            |e| matches!(e, Event::Published(p) if p.routing_key == queue),
        );
        match event {
            Event::Published(p) => p,
            _ => unreachable!("matched a publish"),
        }
    }

    /// Asserts that a message was published (and confirmed) to `queue` with
    /// every one of the given header values, and returns it. Other headers
    /// may be present too. Integers compare by value, whatever their width.
    ///
    /// # Panics
    ///
    /// When no such publish was recorded; the message lists every recorded
    /// event (with the framework's own headers).
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_core::{Outgoing, Properties};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// let mut props = Properties::default();
    /// props.headers_mut().insert("rw-park-reason", "exhausted").insert("rw-attempts", 5u8);
    /// transport.publish(Outgoing::to_queue("q.parking", props, &b"{}"[..])).await.unwrap();
    ///
    /// handle.assert_published_with("q.parking", &[
    ///     ("rw-park-reason", "exhausted".into()),
    ///     ("rw-attempts", 5i64.into()),
    /// ]);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_published_with(&self, queue: &str, headers: &[(&str, HeaderValue)]) -> Published {
        let wanted: Vec<String> = headers.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let event = self.take(
            &format!(
                "a confirmed publish to {queue:?} with {}",
                wanted.join(", ")
            ),
            |e| match e {
                Event::Published(p) if p.routing_key == queue => {
                    let have = p.properties.headers();
                    headers.iter().all(|(name, value)| {
                        have.get(name).is_some_and(|v| {
                            v == *value || (v.as_u64().is_some() && v.as_u64() == value.as_u64())
                        })
                    })
                }
                _ => false,
            },
        );
        match event {
            Event::Published(p) => p,
            _ => unreachable!("matched a publish"),
        }
    }

    /// Asserts that a publish with routing key `queue` was attempted and
    /// failed (as scripted), and returns the message.
    ///
    /// # Panics
    ///
    /// When no such failed publish was recorded; the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    /// use worker_core::{Outgoing, Properties};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// handle.fail_next_publishes(1);
    /// let _ = transport.publish(Outgoing::to_queue("q.retry.1s", Properties::default(), &b"{}"[..])).await;
    /// handle.assert_publish_failed_to("q.retry.1s");
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_publish_failed_to(&self, queue: &str) -> Published {
        let event = self.take(
            &format!("a failed publish to {queue:?}"),
            |e| matches!(e, Event::PublishFailed { message, .. } if message.routing_key == queue),
        );
        match event {
            Event::PublishFailed { message, .. } => message,
            _ => unreachable!("matched a failed publish"),
        }
    }

    /// Asserts that a task of type `T` was enqueued: a confirmed publish to
    /// `T::QUEUE` whose `type` property is `T::NAME`. Returns the message.
    ///
    /// # Panics
    ///
    /// When no such publish was recorded; the message lists every recorded event.
    ///
    /// ```
    /// use worker_core::{Publisher, Task, TaskContext, TaskError};
    ///
    /// struct Ping;
    /// impl Task for Ping {
    ///     type Payload = u32;
    ///     const NAME: &'static str = "ping";
    ///     const QUEUE: &'static str = "pings";
    ///     async fn run(&self, _: TaskContext, _: u32) -> Result<(), TaskError> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// let publisher = Publisher::from_transport(std::sync::Arc::new(transport));
    /// publisher.enqueue::<Ping>(&7).await.unwrap();
    /// let sent = handle.assert_enqueued::<Ping>();
    /// assert_eq!(sent.json::<u32>(), 7);
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_enqueued<T: Task>(&self) -> Published {
        let event = self.take(
            &format!(
                "a confirmed publish of task {:?} to {:?}",
                T::NAME,
                T::QUEUE
            ),
            |e| {
                matches!(e, Event::Published(p)
                    if p.routing_key == T::QUEUE && p.properties.kind() == Some(T::NAME))
            },
        );
        match event {
            Event::Published(p) => p,
            _ => unreachable!("matched a publish"),
        }
    }

    /// Asserts that every recorded event was taken by an earlier assertion.
    ///
    /// # Panics
    ///
    /// When events remain; the message lists them.
    ///
    /// ```
    /// use worker_core::transport::Transport;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (transport, handle) = worker_testkit::mock::pair();
    /// transport.ack(1, false).await.unwrap();
    /// handle.assert_acked(1);
    /// handle.assert_nothing_else();
    /// # }
    /// ```
    #[track_caller]
    pub fn assert_nothing_else(&self) {
        let state = lock(&self.shared);
        let left: Vec<String> = state
            .events
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.taken)
            .map(|(i, r)| format!("  [{}] {}", i + 1, r.event))
            .collect();
        drop(state);
        if !left.is_empty() {
            panic!(
                "expected nothing else on the mock channel, but {} event(s) were not asserted:\n{}",
                left.len(),
                left.join("\n")
            );
        }
    }

    /// Takes the earliest untaken event matching `wanted`, or panics with the record.
    #[track_caller]
    fn take(&self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        let mut state = lock(&self.shared);
        if let Some(r) = state
            .events
            .iter_mut()
            .find(|r| !r.taken && wanted(&r.event))
        {
            r.taken = true;
            return r.event.clone();
        }
        let record = render(&state.events);
        drop(state);
        panic!("expected {what}, but the mock channel recorded {record}");
    }
}

/// The record for a failure message: one numbered line per event.
fn render(events: &[Recorded]) -> String {
    if events.is_empty() {
        return "nothing".to_owned();
    }
    let mut out = format!("{} event(s):", events.len());
    for (i, r) in events.iter().enumerate() {
        let mark = if r.taken { "  (already asserted)" } else { "" };
        out.push_str(&format!("\n  [{}] {}{mark}", i + 1, r.event));
    }
    out
}

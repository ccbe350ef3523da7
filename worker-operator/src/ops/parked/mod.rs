//! Parked messages: list, show, replay and purge.
//!
//! # Reading without taking
//!
//! AMQP 0-9-1 has no "peek". To read a parking queue we take *every*
//! message with `basic.get` without acking it, so it stays owned by the
//! broker, and at the end return what we keep with one
//! `basic.nack(multiple, requeue)`. If the tool dies half way, the broker
//! requeues them when the channel closes: reading can never lose a
//! message. Taking the whole queue, not just the part a page needs, is
//! what keeps its order: RabbitMQ 4.0's quorum queues put returned
//! messages at the tail, so returning the first three would move them
//! behind the rest (3.10 and 4.3, and classic queues, put them back in
//! place).
//!
//! While one operation holds the queue's messages, another would find them
//! missing: every operation (listing, opening a message, replay, delete)
//! first takes the queue's lock, one holder at a time across every process
//! (an exclusive queue named `<parking queue>.lock`, which the broker frees
//! when its holder's connection closes). An
//! operation that waits longer than [`LOCK_WAIT`] gives up with
//! [`Error::Busy`]. The cost is one pass over the whole queue per
//! operation, one at a time: see BENCHMARKS.md for the figures with
//! 100,000 parked messages.
//!
//! On a quorum queue every requeue raises the message's
//! `x-delivery-count`. The topology declares parking queues without a
//! delivery limit on every version, so that costs nothing. A parking queue
//! declared by an older version of the framework on RabbitMQ 4.0-4.2 has
//! the broker's default limit (20) and those versions count the requeue
//! (4.3 no longer counts a multiple nack): there a message returned half
//! its limit is *refreshed* instead of returned, a confirmed copy published
//! to the same queue before the original is acked, so a read can never
//! lose it (the copy moves to the queue's tail; nothing else changes).
//!
//! # Filtering and paging
//!
//! [`list`] reads the whole queue in order and keeps the messages a
//! [`Filter`] lets through; a [`Page`] picks some of them, and the totals
//! are exact. [`replay`] and [`delete`] take a [`Selection`]: every
//! message, some ids, or every message a filter lets through, optionally
//! [bound](Selection::Confirmed) to what an operator confirmed.
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

mod filter;
mod lock;
mod message;
mod peek;

pub use filter::{parse_time, Filter, Page};
pub use lock::LOCK_WAIT;
pub use message::{BodyView, ParkedMessage, Row};

use std::collections::HashSet;

use super::progress::{NoProgress, Progress};
use peek::Peek;
use worker_core::connection::Connector;
use worker_core::error::Error;
use worker_core::headers;
use worker_core::message::{Delivery, Outgoing};
use worker_core::publisher::Publisher;
use worker_core::topology::TaskSpec;

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
/// let copy = worker_operator::ops::parked::replay_copy(&delivery, "emails");
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
        // With worker-core's `otel`: a new trace, linked to the original.
        worker_core::__operator::replay_context(headers);
    })
}
/// What a listing found.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The parking queue.
    pub queue: String,
    /// Whether the parking queue exists at all.
    pub exists: bool,
    /// Messages in the queue when it was read.
    pub total: u32,
    /// Messages the filter let through (all of them when the filter is empty).
    pub matching: u32,
    /// The page asked for.
    pub page: Page,
    /// The page's messages, oldest first.
    pub messages: Vec<ParkedMessage>,
    /// The id of the last matching message that has one: what a
    /// confirmation binds a bulk action to ([`Selection::Confirmed`]).
    pub last_match: Option<String>,
}

/// Which parked messages to replay or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every message parked when the operation starts.
    All,
    /// The messages with these `message_id`s.
    Ids(Vec<String>),
    /// Every message parked when the operation starts that the filter lets through.
    Matching(Filter),
    /// What an operator confirmed: the messages the filter lets through
    /// (every message with an empty filter) from the queue's head up to and
    /// including the one with id `through`, the last match when they
    /// confirmed. Matches parked later are left alone and counted; if
    /// `through` is no longer parked, nothing is done.
    Confirmed {
        /// The filter the operator confirmed.
        filter: Filter,
        /// The id of the last message that matched when they confirmed.
        through: String,
    },
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
    /// With [`Selection::Confirmed`]: matches parked after the
    /// confirmation, left parked.
    pub left_alone: u32,
    /// With [`Selection::Confirmed`]: the last confirmed message is no
    /// longer parked (someone replayed or deleted it meanwhile), so nothing
    /// was done.
    pub stale: bool,
    /// Why the replay stopped early; messages not yet replayed stay parked.
    pub error: Option<Error>,
}

/// What a delete did.
#[derive(Debug, Default)]
pub struct DeleteReport {
    /// The parking queue.
    pub queue: String,
    /// Ids of the messages removed for good (`<no id>` for messages without one).
    pub deleted: Vec<String>,
    /// Requested ids that were not in the parking queue.
    pub not_found: Vec<String>,
    /// With [`Selection::Confirmed`]: matches parked after the
    /// confirmation, left parked.
    pub left_alone: u32,
    /// With [`Selection::Confirmed`]: the last confirmed message is no
    /// longer parked, so nothing was done.
    pub stale: bool,
    /// Why the delete stopped early; messages not yet deleted stay parked.
    pub error: Option<Error>,
}

const NO_ID: &str = "<no id>";
/// Lists the messages of a parking queue that `filter` lets through,
/// the `page` of them, oldest first, without removing or reordering any.
///
/// `parked list` and the dashboard both list through this function.
pub async fn list(
    connector: &Connector,
    queue: &str,
    filter: &Filter,
    page: Page,
) -> Result<Listing, Error> {
    let conn = connector.connection().await?;
    let mut listing = Listing {
        queue: queue.to_owned(),
        exists: false,
        total: 0,
        matching: 0,
        page,
        messages: Vec::new(),
        last_match: None,
    };
    let Some(mut peek) = Peek::open(connector, &conn, queue).await? else {
        return Ok(listing);
    };
    listing.exists = true;
    let end = page.offset.saturating_add(page.limit);
    let mut matching = 0usize;
    let read = loop {
        match peek.next().await {
            Ok(Some(d)) => {
                listing.total += 1;
                let message = ParkedMessage::from_delivery(queue, &d);
                if filter.matches(&message) {
                    if let Some(id) = d.properties.message_id() {
                        listing.last_match = Some(id.to_owned());
                    }
                    if (page.offset..end).contains(&matching) {
                        listing.messages.push(message);
                    }
                    matching += 1;
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    peek.finish().await;
    read?;
    listing.matching = u32::try_from(matching).unwrap_or(u32::MAX);
    Ok(listing)
}

/// Finds a message by `message_id` in the given parking queues, without
/// removing or reordering anything.
pub async fn find(
    connector: &Connector,
    queues: &[String],
    message_id: &str,
) -> Result<Option<ParkedMessage>, Error> {
    let conn = connector.connection().await?;
    for queue in queues {
        let Some(mut peek) = Peek::open(connector, &conn, queue).await? else {
            continue;
        };
        let found = loop {
            match peek.next().await {
                Ok(Some(d)) if d.properties.message_id() == Some(message_id) => {
                    break Ok(Some(ParkedMessage::from_delivery(queue, &d)));
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        peek.finish().await;
        if let Some(found) = found? {
            return Ok(Some(found));
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
    replay_with_progress(connector, spec, selection, &NoProgress).await
}

/// [`replay`], telling `progress` how far it got: it
/// [starts](Progress::start) with the number of messages parked when the
/// replay began and [advances](Progress::advance) by one for every parked
/// message looked at, replayed or (with [`Selection::Ids`]) passed over.
/// With [`Selection::All`] that is one per message replayed.
///
/// ```no_run
/// # use worker_core::Connector;
/// # use worker_core::topology::TaskSpec;
/// use worker_operator::ops::parked::{self, Selection};
/// use worker_operator::ops::progress::Counter;
/// # async fn demo(connector: Connector, spec: TaskSpec) -> Result<(), worker_core::Error> {
/// let counter = Counter::default();
/// let report = parked::replay_with_progress(&connector, &spec, &Selection::All, &counter).await?;
/// assert_eq!(counter.done() as usize, report.replayed.len());
/// # Ok(()) }
/// ```
pub async fn replay_with_progress(
    connector: &Connector,
    spec: &TaskSpec,
    selection: &Selection,
    progress: &dyn Progress,
) -> Result<ReplayReport, Error> {
    let publisher = Publisher::new(connector.clone());
    let taken = take_selected(
        connector,
        &spec.parking,
        selection,
        progress,
        Action::Replay {
            publisher: &publisher,
            spec,
        },
    )
    .await?;
    Ok(ReplayReport {
        queue: spec.parking.clone(),
        replayed: taken.done,
        not_found: taken.not_found,
        left_alone: taken.left_alone,
        stale: taken.stale,
        error: taken.error,
    })
}

/// Removes the selected messages of a parking queue for good.
///
/// Like [`replay`], it reads only the messages parked when it started and
/// acks (removes) each selected one; the others are returned in their
/// order. Errors before any message was touched are returned; later ones
/// stop the delete and are reported in [`DeleteReport::error`].
pub async fn delete(
    connector: &Connector,
    queue: &str,
    selection: &Selection,
) -> Result<DeleteReport, Error> {
    let taken = take_selected(connector, queue, selection, &NoProgress, Action::Delete).await?;
    Ok(DeleteReport {
        queue: queue.to_owned(),
        deleted: taken.done,
        not_found: taken.not_found,
        left_alone: taken.left_alone,
        stale: taken.stale,
        error: taken.error,
    })
}

/// What [`take_selected`] does with each selected message.
enum Action<'a> {
    /// Publish a confirmed replay copy to the task's work queue, then ack.
    Replay {
        publisher: &'a Publisher,
        spec: &'a TaskSpec,
    },
    /// Ack: the message is gone.
    Delete,
}

/// What [`take_selected`] did.
#[derive(Default)]
struct Taken {
    done: Vec<String>,
    not_found: Vec<String>,
    left_alone: u32,
    stale: bool,
    error: Option<Error>,
}

/// Walks the messages parked in `queue` when it starts, once, and applies
/// `action` to each one `selection` picks; gives the others back in order.
async fn take_selected(
    connector: &Connector,
    queue: &str,
    selection: &Selection,
    progress: &dyn Progress,
    action: Action<'_>,
) -> Result<Taken, Error> {
    let mut taken = Taken::default();
    let mut wanted: Option<HashSet<&str>> = match selection {
        Selection::Ids(ids) => Some(ids.iter().map(String::as_str).collect()),
        _ => None,
    };
    let conn = connector.connection().await?;
    let Some(mut peek) = Peek::open(connector, &conn, queue).await? else {
        taken.not_found = leftover(wanted);
        taken.stale = matches!(selection, Selection::Confirmed { .. });
        return Ok(taken);
    };
    let mut pick = Pick::new(queue, selection);
    if let Selection::Confirmed { through, .. } = selection {
        let present = holds(&mut peek, through).await;
        if let Err(e) = peek.rewind().await {
            peek.finish().await;
            return Err(e);
        }
        match present {
            Ok(true) => {}
            Ok(false) => {
                taken.stale = true;
                peek.finish().await;
                return Ok(taken);
            }
            Err(e) => {
                peek.finish().await;
                return Err(e);
            }
        }
    }
    progress.start(u64::from(peek.depth()));
    for _ in 0..peek.depth() {
        let delivery = match peek.next().await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => {
                taken.error = Some(e);
                break;
            }
        };
        let id = delivery.properties.message_id().map(str::to_owned);
        let selected = match wanted.as_mut() {
            Some(w) => id.as_deref().is_some_and(|i| w.remove(i)),
            None => pick.picks(&delivery),
        };
        if !selected {
            progress.advance(1);
            continue;
        }
        if let Err(e) = act(connector, &mut peek, &action, &delivery, &mut taken).await {
            if matches!(e, Error::ReplayLeftOriginal { .. }) {
                progress.advance(1);
            }
            taken.error = Some(e);
            break;
        }
        progress.advance(1);
    }
    if taken.error.is_none() {
        // Matches parked since the operation started.
        while let Ok(Some(d)) = peek.next().await {
            pick.picks(&d);
        }
    }
    taken.left_alone = pick.left_alone;
    peek.finish().await;
    taken.not_found = leftover(wanted);
    Ok(taken)
}

/// The ids asked for and not found, sorted.
fn leftover(wanted: Option<HashSet<&str>>) -> Vec<String> {
    let mut ids: Vec<String> = wanted.into_iter().flatten().map(str::to_owned).collect();
    ids.sort();
    ids
}

/// Whether a message with id `id` is in the queue `peek` reads.
async fn holds(peek: &mut Peek, id: &str) -> Result<bool, Error> {
    while let Some(d) = peek.next().await? {
        if d.properties.message_id() == Some(id) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Which messages a filter-based selection picks, in queue order.
struct Pick<'a> {
    queue: &'a str,
    filter: Option<&'a Filter>,
    /// With [`Selection::Confirmed`]: the last confirmed id, until passed.
    through: Option<&'a str>,
    fenced: bool,
    left_alone: u32,
}

impl<'a> Pick<'a> {
    fn new(queue: &'a str, selection: &'a Selection) -> Pick<'a> {
        let (filter, through) = match selection {
            Selection::Matching(f) => (Some(f), None),
            Selection::Confirmed { filter, through } => (Some(filter), Some(through.as_str())),
            Selection::All | Selection::Ids(_) => (None, None),
        };
        Pick {
            queue,
            filter,
            through,
            fenced: false,
            left_alone: 0,
        }
    }

    /// Whether `delivery` is picked; counts matches past the fence.
    fn picks(&mut self, delivery: &Delivery) -> bool {
        let matches = self.filter.is_none_or(|f| {
            f.is_empty() || f.matches(&ParkedMessage::from_delivery(self.queue, delivery))
        });
        if !matches {
            return false;
        }
        if self.fenced {
            self.left_alone += 1;
            return false;
        }
        if self.through.is_some() && self.through == delivery.properties.message_id() {
            self.fenced = true;
        }
        true
    }
}

/// Applies `action` to one selected message and acks it.
async fn act(
    connector: &Connector,
    peek: &mut Peek,
    action: &Action<'_>,
    delivery: &Delivery,
    taken: &mut Taken,
) -> Result<(), Error> {
    let id = delivery.properties.message_id().map(str::to_owned);
    let shown = id.clone().unwrap_or_else(|| NO_ID.into());
    let queue = peek.queue().to_owned();
    if let Action::Replay { publisher, spec } = action {
        connector.wait_until_unblocked().await;
        publisher
            .publish(replay_copy(delivery, &spec.queue))
            .await?;
    }
    if let Err(e) = peek.ack(delivery.tag).await {
        return Err(match action {
            // The copy is in the work queue and the original stays parked:
            // a duplicate, reported so a person can purge or ignore it.
            Action::Replay { .. } => {
                taken.done.push(shown.clone());
                Error::ReplayLeftOriginal {
                    message_id: shown,
                    queue,
                    source: Box::new(e),
                }
            }
            Action::Delete => e,
        });
    }
    match action {
        Action::Replay { spec, .. } => {
            metrics::counter!(worker_core::metric_names::REPLAYED, "task" => spec.name)
                .increment(1);
            tracing::info!(task = spec.name, message_id = ?id, "replayed parked message to {}", spec.queue);
        }
        Action::Delete => {
            tracing::warn!(queue, message_id = ?id, "deleted parked message");
        }
    }
    taken.done.push(shown);
    Ok(())
}

/// Deletes every message of a parking queue; returns how many there were
/// (`None` when the queue does not exist).
///
/// It waits for the queue's lock like every other operation: a purge while
/// a listing holds the messages would leave those behind.
pub async fn purge(connector: &Connector, queue: &str) -> Result<Option<u32>, Error> {
    let conn = connector.connection().await?;
    let Some(peek) = Peek::open(connector, &conn, queue).await? else {
        return Ok(None);
    };
    let count = peek.purge().await?;
    tracing::warn!(queue, count, "purged parking queue");
    Ok(Some(count))
}
#[cfg(test)]
mod tests {
    use super::*;
    use worker_core::headers::{HeaderValue, Headers};
    use worker_core::message::Properties;

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

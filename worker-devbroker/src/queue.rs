//! Queues: arguments, ready messages in order, consumers.

use std::collections::BTreeMap;

use amq_protocol::types::{AMQPValue, FieldTable};

use super::error::AmqpError;
use super::message::{as_int, as_text, Message};
#[cfg(test)]
use super::DEFAULT_VERSION;
use worker_core::broker::{Capabilities, DeliveryLimit, QUORUM_HIGH_PRIORITY, QUORUM_TOP_PRIORITY};

/// The order of a ready message: lane, rank, sequence (see `Queue::ready`).
type Key = (u8, u8, u64);

/// The rank of a normal-priority message in a quorum priority queue.
const NORMAL: u8 = 1;

/// Classic or quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueType {
    Classic,
    Quorum,
}

/// What a full queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

/// The arguments the broker acts on.
#[derive(Debug, Clone)]
pub(crate) struct QueueArgs {
    pub(crate) kind: QueueType,
    pub(crate) message_ttl: Option<u64>,
    pub(crate) dlx: Option<String>,
    pub(crate) dlrk: Option<String>,
    pub(crate) max_length: Option<u64>,
    pub(crate) max_length_bytes: Option<u64>,
    pub(crate) overflow: Overflow,
    /// Returns allowed before a quorum queue dead-letters a message; `None`
    /// for no limit.
    pub(crate) delivery_limit: Option<u64>,
    /// A classic priority queue's highest priority (`x-max-priority`).
    pub(crate) max_priority: Option<u8>,
    /// Whether a quorum queue serves high-priority messages first (two
    /// levels, [`Capabilities::quorum_priority_levels`], weighted).
    pub(crate) priority_lanes: bool,
    /// Whether a quorum queue has 32 strict priority levels (4.3+).
    pub(crate) strict_priorities: bool,
    /// Whether a message carrying a rejection from a dead-letter cycle is
    /// delivered redelivered ([`Capabilities::rejected_copies_arrive_redelivered`]).
    pub(crate) redeliver_carried: bool,
    /// `x-single-active-consumer`: only the earliest consumer still
    /// subscribed is served; the next takes over when it leaves.
    pub(crate) single_active: bool,
}

/// A quorum queue with priorities serves this many high-priority messages,
/// then one normal one, while both wait (seen on 4.0.5: with six normal
/// then three high messages ready, the order was high, high, normal, high,
/// normal...).
const QUORUM_HIGH_WEIGHT: u8 = 2;

/// Arguments RabbitMQ compares when a queue is declared again; a
/// difference is a 406 PRECONDITION_FAILED.
const COMPARED: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-delivery-limit",
    "x-dead-letter-strategy",
];

fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

fn show(v: &AMQPValue) -> String {
    as_text(v)
        .or_else(|| as_int(v).map(|i| i.to_string()))
        .unwrap_or_else(|| format!("{v:?}"))
}

fn equivalent(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (as_text(a), as_text(b)) {
            (Some(x), Some(y)) => x == y && type_name(a) == type_name(b),
            _ => a == b,
        },
    }
}

/// Checks a redeclaration's arguments against the queue's, like RabbitMQ.
pub(crate) fn check_equivalent(
    queue: &str,
    current: &FieldTable,
    received: &FieldTable,
) -> Result<(), AmqpError> {
    for key in COMPARED {
        let (c, r) = (current.inner().get(*key), received.inner().get(*key));
        let same = match (c, r) {
            (None, None) => true,
            (Some(c), Some(r)) => equivalent(c, r),
            _ => false,
        };
        if !same {
            let describe = |v: Option<&AMQPValue>| match v {
                None => "none".to_owned(),
                Some(v) => format!("the value '{}' of type '{}'", show(v), type_name(v)),
            };
            return Err(AmqpError::precondition(format!(
                "inequivalent arg '{key}' for queue '{queue}' in vhost '/': received {} but current is {}",
                describe(r),
                describe(c)
            )));
        }
    }
    Ok(())
}

fn non_negative(queue: &str, args: &FieldTable, key: &str) -> Result<Option<u64>, AmqpError> {
    match args.inner().get(key) {
        None => Ok(None),
        Some(v) => match as_int(v) {
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Err(AmqpError::precondition(format!(
                "invalid arg '{key}' for queue '{queue}' in vhost '/': {{value_negative_or_not_an_integer,{}}}",
                show(v)
            ))),
        },
    }
}

/// A quorum queue's delivery limit: the declared one, or the version's
/// default without one. A negative limit means none on 4.x; 3.x takes it as
/// a limit of zero (seen on 3.10.8: `-1` dropped a message at its first
/// return).
fn delivery_limit(args: &FieldTable, caps: Capabilities) -> Option<u64> {
    match args.inner().get("x-delivery-limit").and_then(as_int) {
        Some(n) if n >= 0 => Some(n as u64),
        Some(_) if caps.unlimited_delivery_limit_argument().is_some() => None,
        Some(_) => Some(0),
        None => match caps.default_delivery_limit() {
            DeliveryLimit::Unlimited => None,
            DeliveryLimit::Returns(n) => Some(u64::from(n)),
        },
    }
}

impl QueueArgs {
    /// Reads and checks declared arguments, as the broker version of `caps`
    /// understands them.
    pub(crate) fn parse(
        queue: &str,
        args: &FieldTable,
        caps: Capabilities,
    ) -> Result<QueueArgs, AmqpError> {
        let text = |key: &str| -> Result<Option<String>, AmqpError> {
            match args.inner().get(key) {
                None => Ok(None),
                Some(v) => as_text(v).map(Some).ok_or_else(|| {
                    AmqpError::precondition(format!(
                        "invalid arg '{key}' for queue '{queue}' in vhost '/': {{unacceptable_type,{}}}",
                        type_name(v)
                    ))
                }),
            }
        };
        let kind = match text("x-queue-type")?.as_deref() {
            None | Some("classic") => QueueType::Classic,
            Some("quorum") => QueueType::Quorum,
            Some(other) => {
                return Err(AmqpError::precondition(format!(
                    "invalid arg 'x-queue-type' for queue '{queue}' in vhost '/': the memory broker supports 'classic' and 'quorum', not '{other}'"
                )))
            }
        };
        let overflow = match text("x-overflow")?.as_deref() {
            None | Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") if kind == QueueType::Classic => Overflow::RejectPublishDlx,
            Some(other) => {
                return Err(AmqpError::precondition(format!(
                    "invalid arg 'x-overflow' for queue '{queue}' in vhost '/': {{unacceptable_value,<<\"{other}\">>}}"
                )))
            }
        };
        let max_priority = match (kind, args.inner().get("x-max-priority")) {
            (_, None) => None,
            (QueueType::Quorum, Some(_)) => {
                return Err(AmqpError::precondition(format!(
                    "invalid arg 'x-max-priority' for queue '{queue}' in vhost '/' of queue type rabbit_quorum_queue"
                )))
            }
            (QueueType::Classic, Some(_)) => non_negative(queue, args, "x-max-priority")?
                .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
        };
        let dlrk = text("x-dead-letter-routing-key")?;
        let dlx = text("x-dead-letter-exchange")?;
        if dlrk.is_some() && dlx.is_none() {
            return Err(AmqpError::precondition(format!(
                "invalid arg 'x-dead-letter-routing-key' for queue '{queue}' in vhost '/': Key 'x-dead-letter-exchange' is mandatory if 'x-dead-letter-routing-key' is defined"
            )));
        }
        Ok(QueueArgs {
            kind,
            message_ttl: non_negative(queue, args, "x-message-ttl")?,
            dlx,
            dlrk,
            max_length: non_negative(queue, args, "x-max-length")?,
            max_length_bytes: non_negative(queue, args, "x-max-length-bytes")?,
            overflow,
            delivery_limit: match kind {
                QueueType::Quorum => delivery_limit(args, caps),
                QueueType::Classic => None,
            },
            max_priority,
            priority_lanes: kind == QueueType::Quorum
                && caps.quorum_priorities()
                && !caps.quorum_priorities_strict(),
            strict_priorities: kind == QueueType::Quorum && caps.quorum_priorities_strict(),
            redeliver_carried: caps.rejected_copies_arrive_redelivered(),
            single_active: matches!(
                args.inner().get("x-single-active-consumer"),
                Some(AMQPValue::Boolean(true))
            ),
        })
    }
}

/// A ready message and what the queue knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) msg: Message,
    /// Original position (classic queues requeue to it).
    pub(crate) seq: u64,
    /// Clock milliseconds at which it expires.
    pub(crate) expires_at: Option<u64>,
    /// Counted returns so far (quorum queues count them; from 4.3 a nack
    /// is not counted, see `Capabilities::nack_requeue_counts`).
    pub(crate) delivery_count: u64,
    /// Every return so far, counted or not (quorum queues show it as
    /// `x-acquired-count` from 4.3).
    pub(crate) acquired_count: u64,
    pub(crate) redelivered: bool,
}

/// One consumer of a queue.
#[derive(Debug, Clone)]
pub(crate) struct Consumer {
    pub(crate) conn: u64,
    pub(crate) channel: u16,
    pub(crate) tag: String,
    pub(crate) no_ack: bool,
    pub(crate) prefetch: u16,
    pub(crate) unacked: u32,
    pub(crate) exclusive: bool,
}

/// A queue.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) durable: bool,
    pub(crate) exclusive_owner: Option<u64>,
    pub(crate) auto_delete: bool,
    pub(crate) declared: FieldTable,
    pub(crate) args: QueueArgs,
    /// Ready messages in delivery order. Keys: `(0, 0, n)` for quorum
    /// returns (served first, in return order), `(1, rank, seq)` for the
    /// rest, where `rank` is 0 except in priority queues: `255 - priority`
    /// in a classic one (strict order), `31 - priority` in a quorum one
    /// with strict priorities (4.3+), 0 for high and 1 for normal in a
    /// quorum one with two levels (weighted, see [`Queue::next_key`]).
    ready: BTreeMap<Key, Entry>,
    ready_bytes: u64,
    next_seq: u64,
    next_return: u64,
    /// A quorum queue with `reject-publish` that went over its limit
    /// rejects publishes until it drops to 80 % of it (RabbitMQ's soft limit).
    rejecting: bool,
    /// Messages served since a quorum priority queue last served a normal
    /// one while high ones waited (RabbitMQ's dequeue counter).
    served_high: u8,
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) next_consumer: usize,
    pub(crate) had_consumer: bool,
}

impl Queue {
    pub(crate) fn new(
        name: String,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        declared: FieldTable,
        args: QueueArgs,
    ) -> Queue {
        Queue {
            name,
            durable,
            exclusive_owner,
            auto_delete,
            declared,
            args,
            ready: BTreeMap::new(),
            ready_bytes: 0,
            next_seq: 0,
            next_return: 0,
            rejecting: false,
            served_high: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            had_consumer: false,
        }
    }

    /// Consumers that may be served: with single active consumer only the
    /// first (RabbitMQ's `queue.declare-ok` counts only that one too).
    pub(crate) fn servable_consumers(&self) -> usize {
        if self.args.single_active {
            self.consumers.len().min(1)
        } else {
            self.consumers.len()
        }
    }

    pub(crate) fn is_quorum(&self) -> bool {
        self.args.kind == QueueType::Quorum
    }

    pub(crate) fn len(&self) -> usize {
        self.ready.len()
    }

    pub(crate) fn ready(&self) -> impl Iterator<Item = &Entry> {
        self.ready.values()
    }

    /// The message served next.
    pub(crate) fn head(&self) -> Option<&Entry> {
        self.ready.get(&self.next_key()?)
    }

    /// Takes the message served next.
    pub(crate) fn pop_head(&mut self) -> Option<Entry> {
        let key = self.next_key()?;
        let e = self.ready.remove(&key)?;
        self.ready_bytes -= e.msg.body.len() as u64;
        if self.args.priority_lanes && key.0 == 1 {
            self.served_high = if self.served_high == QUORUM_HIGH_WEIGHT {
                0
            } else {
                self.served_high + 1
            };
        }
        Some(e)
    }

    /// The key of the message served next: the first in key order, except
    /// in a quorum queue with priorities, which serves a normal message
    /// instead of a high one after every [`QUORUM_HIGH_WEIGHT`] messages.
    fn next_key(&self) -> Option<Key> {
        let first = *self.ready.keys().next()?;
        if !self.args.priority_lanes || first.0 == 0 || first.1 == NORMAL {
            return Some(first);
        }
        if self.served_high < QUORUM_HIGH_WEIGHT {
            return Some(first);
        }
        let normal = self.ready.range((1, NORMAL, 0)..).next().map(|(k, _)| *k);
        Some(normal.unwrap_or(first))
    }

    /// Where a new message goes among the ready ones of its priority.
    fn rank(&self, msg: &Message) -> u8 {
        let priority = msg.properties.priority().unwrap_or(0);
        if let Some(max) = self.args.max_priority {
            u8::MAX - priority.min(max)
        } else if self.args.strict_priorities {
            // 31 is served first; anything above 31 counts as 31.
            QUORUM_TOP_PRIORITY - priority.min(QUORUM_TOP_PRIORITY)
        } else if self.args.priority_lanes && priority < QUORUM_HIGH_PRIORITY {
            NORMAL
        } else {
            0
        }
    }

    fn insert(&mut self, key: Key, e: Entry) {
        self.ready_bytes += e.msg.body.len() as u64;
        self.ready.insert(key, e);
    }

    /// A new message at the tail.
    pub(crate) fn push(&mut self, msg: Message, expires_at: Option<u64>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (carried, acquired) = if self.is_quorum() {
            (msg.carried_deliveries, msg.carried_acquired)
        } else {
            (0, 0)
        };
        // 4.3 delivers a copy that carries a rejection as redelivered from
        // a classic queue too.
        let redelivered =
            carried > 0 || (msg.carried_deliveries > 0 && self.args.redeliver_carried);
        let rank = self.rank(&msg);
        self.insert(
            (1, rank, seq),
            Entry {
                msg,
                seq,
                expires_at,
                delivery_count: carried,
                acquired_count: acquired,
                redelivered,
            },
        );
    }

    /// A message coming back from a consumer or `basic.get`: classic queues
    /// put it back at its original position; quorum queues serve returns
    /// first, in the order they came back, or put it at the tail when
    /// `to_tail` (3.10 does so for `basic.get` returns).
    pub(crate) fn requeue(&mut self, mut e: Entry, to_tail: bool) {
        e.redelivered = true;
        let rank = self.rank(&e.msg);
        if !self.is_quorum() {
            let seq = e.seq;
            self.insert((1, rank, seq), e);
        } else if to_tail {
            e.seq = self.next_seq;
            self.next_seq += 1;
            self.insert((1, rank, e.seq), e);
        } else {
            let n = self.next_return;
            self.next_return += 1;
            self.insert((0, 0, n), e);
        }
    }

    /// Removes every ready message; returns how many.
    pub(crate) fn purge(&mut self) -> usize {
        let n = self.ready.len();
        self.ready.clear();
        self.ready_bytes = 0;
        n
    }

    fn over(&self, extra_len: u64, extra_bytes: u64) -> bool {
        self.args
            .max_length
            .is_some_and(|m| self.ready.len() as u64 + extra_len > m)
            || self
                .args
                .max_length_bytes
                .is_some_and(|m| self.ready_bytes + extra_bytes > m)
    }

    /// Whether a publish of `bytes` bytes is refused by `reject-publish`.
    pub(crate) fn refuses(&self, bytes: u64) -> bool {
        match self.args.overflow {
            Overflow::DropHead => false,
            _ if self.is_quorum() => self.rejecting,
            _ => self.over(1, bytes),
        }
    }

    /// Whether the head must go to make room (`drop-head`).
    pub(crate) fn must_drop_head(&self) -> bool {
        self.args.overflow == Overflow::DropHead && self.over(0, 0) && !self.ready.is_empty()
    }

    /// Updates the quorum soft limit after a change.
    pub(crate) fn evaluate_limit(&mut self) {
        if !self.is_quorum() || self.args.overflow == Overflow::DropHead {
            return;
        }
        if self.over(0, 0) {
            self.rejecting = true;
        } else if self.rejecting {
            let below = |max: Option<u64>, n: u64| max.is_none_or(|m| n <= m * 8 / 10);
            if below(self.args.max_length, self.ready.len() as u64)
                && below(self.args.max_length_bytes, self.ready_bytes)
            {
                self.rejecting = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use bytes::Bytes;

    fn msg(body: &str) -> Message {
        Message {
            exchange: String::new(),
            routing_keys: vec!["q".into()],
            properties: BasicProperties::default(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            broker_deaths: false,
            carried_deliveries: 0,
            carried_acquired: 0,
        }
    }

    fn table(items: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in items {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn bodies(q: &Queue) -> Vec<String> {
        q.ready()
            .map(|e| String::from_utf8_lossy(&e.msg.body).into_owned())
            .collect()
    }

    #[test]
    fn classic_requeues_to_the_original_position() {
        let args = QueueArgs::parse(
            "q",
            &FieldTable::default(),
            Capabilities::of(DEFAULT_VERSION),
        )
        .unwrap();
        let mut q = Queue::new("q".into(), true, None, false, FieldTable::default(), args);
        for b in ["a", "b", "c"] {
            q.push(msg(b), None);
        }
        let a = q.pop_head().unwrap();
        let b = q.pop_head().unwrap();
        q.requeue(b, false);
        q.requeue(a, false);
        assert_eq!(bodies(&q), ["a", "b", "c"]);
    }

    #[test]
    fn quorum_serves_consumer_returns_first_and_get_returns_last() {
        let quorum = table(&[("x-queue-type", AMQPValue::LongString("quorum".into()))]);
        let args = QueueArgs::parse("q", &quorum, Capabilities::of(DEFAULT_VERSION)).unwrap();
        let mut q = Queue::new("q".into(), true, None, false, quorum, args);
        for b in ["a", "b", "c"] {
            q.push(msg(b), None);
        }
        let a = q.pop_head().unwrap();
        let b = q.pop_head().unwrap();
        q.requeue(b, false);
        q.requeue(a, true);
        assert_eq!(bodies(&q), ["b", "c", "a"]);
    }

    #[test]
    fn int_widths_are_equivalent_but_values_and_absence_are_not() {
        let a = table(&[("x-message-ttl", AMQPValue::LongLongInt(1000))]);
        let b = table(&[("x-message-ttl", AMQPValue::LongInt(1000))]);
        let c = table(&[("x-message-ttl", AMQPValue::LongLongInt(2000))]);
        assert!(check_equivalent("q", &a, &b).is_ok());
        let err = check_equivalent("q", &a, &c).unwrap_err();
        assert_eq!(err.code, 406);
        assert!(
            err.text.contains("inequivalent arg 'x-message-ttl'"),
            "{}",
            err.text
        );
        assert!(check_equivalent("q", &a, &FieldTable::default()).is_err());
        let other = table(&[("x-custom", AMQPValue::LongLongInt(1))]);
        assert!(check_equivalent("q", &FieldTable::default(), &other).is_ok());
    }

    fn prioritised(body: &str, priority: u8) -> Message {
        let mut m = msg(body);
        m.properties = BasicProperties::default().with_priority(priority);
        m
    }

    fn queue_with(items: &[(&str, AMQPValue)], caps: Capabilities) -> Queue {
        let declared = table(items);
        let args = QueueArgs::parse("q", &declared, caps).unwrap();
        Queue::new("q".into(), true, None, false, declared, args)
    }

    fn served(q: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| q.pop_head())
            .map(|e| String::from_utf8_lossy(&e.msg.body).into_owned())
            .collect()
    }

    #[test]
    fn classic_priority_queues_serve_the_highest_first_capped_at_the_maximum() {
        let caps = Capabilities::of(DEFAULT_VERSION);
        let mut q = queue_with(&[("x-max-priority", AMQPValue::LongLongInt(5))], caps);
        for (b, p) in [("a0", 0), ("b9", 9), ("c5", 5), ("d1", 1), ("e0", 0)] {
            q.push(prioritised(b, p), None);
        }
        // 9 counts as the maximum, 5: in order with c5.
        let a = q.pop_head().unwrap();
        q.requeue(a, false);
        assert_eq!(served(&mut q), ["b9", "c5", "d1", "a0", "e0"]);
    }

    #[test]
    fn quorum_priorities_are_two_weighted_levels_on_4_0_and_none_on_3_10() {
        let quorum = [("x-queue-type", AMQPValue::LongString("quorum".into()))];
        let fill = |q: &mut Queue| {
            for n in 0..4 {
                q.push(prioritised(&format!("low{n}"), 0), None);
            }
            for n in 0..3 {
                q.push(prioritised(&format!("high{n}"), 5), None);
            }
        };
        let mut on_4 = queue_with(
            &quorum,
            Capabilities::of(worker_core::broker::Version::new(4, 0, 5)),
        );
        fill(&mut on_4);
        assert_eq!(
            served(&mut on_4),
            ["high0", "high1", "low0", "high2", "low1", "low2", "low3"]
        );
        let mut on_3 = queue_with(
            &quorum,
            Capabilities::of(worker_core::broker::Version::new(3, 10, 8)),
        );
        fill(&mut on_3);
        assert_eq!(served(&mut on_3)[..2], ["low0", "low1"]);
        let refused = QueueArgs::parse(
            "q",
            &table(&[
                quorum[0].clone(),
                ("x-max-priority", AMQPValue::LongLongInt(5)),
            ]),
            Capabilities::of(DEFAULT_VERSION),
        )
        .unwrap_err();
        assert_eq!(refused.code, 406);
        assert!(
            refused.text.contains("invalid arg 'x-max-priority'"),
            "{}",
            refused.text
        );
    }
}

//! Messages in the broker, and what dead-lettering does to them.

use bytes::Bytes;
use std::collections::BTreeMap;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use worker_core::broker::Capabilities;

/// A message as the broker stores it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The exchange it was published (or dead-lettered) to.
    pub(crate) exchange: String,
    /// The publish routing key first, then the `CC` and `BCC` keys.
    pub(crate) routing_keys: Vec<String>,
    pub(crate) properties: BasicProperties,
    pub(crate) body: Bytes,
    /// Whether its `x-death` was written by this broker (dead-lettered
    /// here), rather than set by the client that published it.
    pub(crate) broker_deaths: bool,
    /// The delivery count it carries from quorum queues it was
    /// dead-lettered out of (4.x; always 0 on 3.x).
    pub(crate) carried_deliveries: u64,
    /// The acquired count it carries likewise (`x-acquired-count`, 4.3+).
    pub(crate) carried_acquired: u64,
}

impl Message {
    /// The routing key deliveries show.
    pub(crate) fn routing_key(&self) -> &str {
        self.routing_keys.first().map(String::as_str).unwrap_or("")
    }

    /// The per-message TTL in milliseconds, from the `expiration` property.
    pub(crate) fn ttl_ms(&self) -> Option<u64> {
        self.properties
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse().ok())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties.headers().as_ref()?.inner().get(name)
    }
}

/// Text of a string header value (long or short string).
pub(crate) fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Any integer header value as i64.
pub(crate) fn as_int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => i64::from(*x),
        AMQPValue::ShortShortUInt(x) => i64::from(*x),
        AMQPValue::ShortInt(x) => i64::from(*x),
        AMQPValue::ShortUInt(x) => i64::from(*x),
        AMQPValue::LongInt(x) => i64::from(*x),
        AMQPValue::LongUInt(x) => i64::from(*x),
        AMQPValue::LongLongInt(x) => *x,
        AMQPValue::Timestamp(x) => i64::try_from(*x).ok()?,
        _ => return None,
    })
}

pub(crate) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes()))
}

/// Routing keys from a `CC` or `BCC` header (an array of strings).
pub(crate) fn header_routes(headers: Option<&FieldTable>, name: &str) -> Vec<String> {
    match headers.and_then(|h| h.inner().get(name)) {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().iter().filter_map(as_text).collect(),
        _ => Vec::new(),
    }
}

/// A copy of `p` with other headers and without (or with) an expiration.
pub(crate) fn rebuild(
    p: &BasicProperties,
    headers: Option<FieldTable>,
    expiration: Option<ShortString>,
) -> BasicProperties {
    let mut out = BasicProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = headers {
        out = out.with_headers(v);
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = expiration {
        out = out.with_expiration(v);
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Rejected,
    Expired,
    MaxLen,
    DeliveryLimit,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::MaxLen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

fn entry_text(entry: &AMQPValue, field: &str) -> Option<String> {
    match entry {
        AMQPValue::FieldTable(t) => t.inner().get(field).and_then(as_text),
        _ => None,
    }
}

/// The copy of `msg` that dead-lettering from `queue` to `dlx` publishes,
/// following RabbitMQ:
///
/// - a client-set `x-death` (on a message published with one) is carried
///   on by 3.x; 4.x starts a new history and drops it, as
///   `interprets_client_x_death` says;
/// - `x-death` gets an entry `{count, reason, queue, time, exchange,
///   routing-keys[, original-expiration]}`; entries are keyed by (queue,
///   reason): a repeat moves the existing entry to the front with its
///   count raised by one (its other fields stay as first recorded), a new
///   key goes to the front with count 1;
/// - the first death also sets `x-first-death-reason`, `-queue` and
///   `-exchange`;
/// - the `expiration` property is removed (kept in `original-expiration`);
/// - the copy is routed with `dlrk` if the queue sets one (and loses its
///   `CC` header), else with the message's own routing keys.
pub(crate) fn dead_letter_copy(
    msg: &Message,
    reason: Reason,
    queue: &str,
    dlx: &str,
    dlrk: Option<&str>,
    unix_secs: u64,
    caps: Capabilities,
) -> Message {
    let interprets_client_x_death = caps.interprets_client_x_death();
    let mut headers: BTreeMap<ShortString, AMQPValue> = msg
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    if !msg.broker_deaths && !interprets_client_x_death {
        for name in [
            "x-death",
            "x-first-death-reason",
            "x-first-death-queue",
            "x-first-death-exchange",
        ] {
            headers.remove(name);
        }
    }
    let mut keys = vec![msg.routing_key().to_owned()];
    keys.extend(header_routes(msg.properties.headers().as_ref(), "CC"));

    let mut info: BTreeMap<ShortString, AMQPValue> = BTreeMap::new();
    info.insert("count".into(), AMQPValue::LongLongInt(1));
    info.insert("reason".into(), long_string(reason.as_str()));
    info.insert("queue".into(), long_string(queue));
    info.insert("time".into(), AMQPValue::Timestamp(unix_secs));
    info.insert("exchange".into(), long_string(&msg.exchange));
    info.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(
            keys.iter().map(|k| long_string(k)).collect::<Vec<_>>(),
        )),
    );
    if let Some(e) = msg.properties.expiration() {
        info.insert("original-expiration".into(), long_string(e.as_str()));
    }

    let deaths = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(entries)) => {
            let mut entries: Vec<AMQPValue> = entries.as_slice().to_vec();
            let same = entries.iter().position(|e| {
                entry_text(e, "queue").as_deref() == Some(queue)
                    && entry_text(e, "reason").as_deref() == Some(reason.as_str())
            });
            let front = match same {
                Some(at) => match entries.remove(at) {
                    AMQPValue::FieldTable(t) => {
                        let mut t = t.inner().clone();
                        let count = t.get("count").and_then(as_int).unwrap_or(0);
                        t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
                        AMQPValue::FieldTable(FieldTable::from(t))
                    }
                    _ => AMQPValue::FieldTable(FieldTable::from(info)),
                },
                None => AMQPValue::FieldTable(FieldTable::from(info)),
            };
            entries.insert(0, front);
            entries
        }
        _ => {
            headers.insert("x-first-death-reason".into(), long_string(reason.as_str()));
            headers.insert("x-first-death-queue".into(), long_string(queue));
            headers.insert("x-first-death-exchange".into(), long_string(&msg.exchange));
            vec![AMQPValue::FieldTable(FieldTable::from(info))]
        }
    };
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(deaths)),
    );
    if caps.last_death_headers() {
        headers.insert("x-last-death-reason".into(), long_string(reason.as_str()));
        headers.insert("x-last-death-queue".into(), long_string(queue));
        headers.insert("x-last-death-exchange".into(), long_string(&msg.exchange));
    }
    let routing_keys = match dlrk {
        Some(k) => {
            headers.remove("CC");
            vec![k.to_owned()]
        }
        None => msg.routing_keys.clone(),
    };
    Message {
        exchange: dlx.to_owned(),
        routing_keys,
        properties: rebuild(&msg.properties, Some(FieldTable::from(headers)), None),
        body: msg.body.clone(),
        broker_deaths: true,
        carried_deliveries: 0,
        carried_acquired: 0,
    }
}

/// Whether dead-lettering `msg` (already carrying its new `x-death`) into
/// `target` closes a cycle that no rejection broke; RabbitMQ drops the
/// message for such a target. Only called for reasons other than
/// `rejected`.
pub(crate) fn is_cycle(msg: &Message, target: &str) -> bool {
    let Some(AMQPValue::FieldArray(entries)) = msg.header("x-death") else {
        return false;
    };
    let entries = entries.as_slice();
    let Some(at) = entries
        .iter()
        .position(|e| entry_text(e, "queue").as_deref() == Some(target))
    else {
        return false;
    };
    entries[..=at]
        .iter()
        .all(|e| matches!(entry_text(e, "reason").as_deref(), Some(r) if r != "rejected"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V3: Capabilities = Capabilities::of(super::super::DEFAULT_VERSION);

    fn msg() -> Message {
        Message {
            exchange: String::new(),
            routing_keys: vec!["q".into()],
            properties: BasicProperties::default(),
            body: Bytes::from_static(b"x"),
            broker_deaths: false,
            carried_deliveries: 0,
            carried_acquired: 0,
        }
    }

    fn deaths(m: &Message) -> Vec<(String, String, i64)> {
        match m.header("x-death") {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|e| match e {
                    AMQPValue::FieldTable(t) => (
                        t.inner().get("queue").and_then(as_text).unwrap(),
                        t.inner().get("reason").and_then(as_text).unwrap(),
                        t.inner().get("count").and_then(as_int).unwrap(),
                    ),
                    _ => panic!("not a table"),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn d(q: &str, r: &str, c: i64) -> (String, String, i64) {
        (q.to_owned(), r.to_owned(), c)
    }

    #[test]
    fn repeat_deaths_move_to_the_front_with_a_higher_count() {
        let m1 = dead_letter_copy(&msg(), Reason::Rejected, "q", "", Some("w"), 1, V3);
        let m2 = dead_letter_copy(&m1, Reason::Expired, "w", "", Some("q"), 2, V3);
        let m3 = dead_letter_copy(&m2, Reason::Rejected, "q", "", Some("w"), 3, V3);
        assert_eq!(deaths(&m3), [d("q", "rejected", 2), d("w", "expired", 1)]);
        let m4 = dead_letter_copy(&m3, Reason::Expired, "w", "", Some("q"), 4, V3);
        assert_eq!(deaths(&m4), [d("w", "expired", 2), d("q", "rejected", 2)]);
        assert_eq!(m4.routing_keys, ["q"]);
        assert_eq!(
            m4.header("x-first-death-reason")
                .and_then(as_text)
                .as_deref(),
            Some("rejected")
        );
    }

    #[test]
    fn expiration_moves_into_the_entry() {
        let mut m = msg();
        m.properties = m.properties.with_expiration("50".into());
        let dl = dead_letter_copy(&m, Reason::Expired, "q", "dlx", None, 1, V3);
        assert!(dl.properties.expiration().is_none());
        assert_eq!(dl.exchange, "dlx");
        assert_eq!(dl.routing_keys, ["q"]);
        let Some(AMQPValue::FieldArray(a)) = dl.header("x-death") else {
            panic!("no x-death");
        };
        let AMQPValue::FieldTable(t) = &a.as_slice()[0] else {
            panic!("not a table");
        };
        assert_eq!(
            t.inner()
                .get("original-expiration")
                .and_then(as_text)
                .as_deref(),
            Some("50")
        );
    }

    #[test]
    fn automatic_cycles_are_detected_unless_a_rejection_breaks_them() {
        let m1 = dead_letter_copy(&msg(), Reason::Expired, "a", "", Some("b"), 1, V3);
        let m2 = dead_letter_copy(&m1, Reason::Expired, "b", "", Some("a"), 2, V3);
        assert!(is_cycle(&m2, "a"));
        assert!(!is_cycle(&m2, "c"));
        let r1 = dead_letter_copy(&msg(), Reason::Rejected, "a", "", Some("b"), 1, V3);
        let r2 = dead_letter_copy(&r1, Reason::Expired, "b", "", Some("a"), 2, V3);
        assert!(!is_cycle(&r2, "a"));
    }
}

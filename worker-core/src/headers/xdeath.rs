//! Typed `x-death` entries.
//!
//! RabbitMQ keeps one entry per (queue, reason), newest first; a repeat
//! death moves the entry to the front with its count raised by one.

use std::fmt;

use super::{HeaderValue, Headers, X_DEATH};

/// Why the broker dead-lettered a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeathReason {
    /// Rejected or nacked with `requeue = false`.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// The queue's length limit pushed it out.
    MaxLen,
    /// A quorum queue's `x-delivery-limit` was reached.
    DeliveryLimit,
    /// A reason this version does not know.
    Other(String),
}

impl DeathReason {
    fn parse(s: &str) -> DeathReason {
        match s {
            "rejected" => DeathReason::Rejected,
            "expired" => DeathReason::Expired,
            "maxlen" => DeathReason::MaxLen,
            "delivery_limit" => DeathReason::DeliveryLimit,
            other => DeathReason::Other(other.to_owned()),
        }
    }

    /// The broker's name for the reason.
    pub fn as_str(&self) -> &str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
            DeathReason::Other(s) => s,
        }
    }
}

impl fmt::Display for DeathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `x-death` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XDeath {
    /// The queue the message died in.
    pub queue: String,
    /// Why it died.
    pub reason: DeathReason,
    /// How many times it died there for that reason.
    pub count: u64,
    /// The exchange it had been published to.
    pub exchange: String,
    /// The routing keys it had been published with.
    pub routing_keys: Vec<String>,
    /// When it last died there, seconds since the epoch.
    pub time: Option<u64>,
}

/// Parses `x-death`; anything malformed is skipped with a warning.
pub(super) fn parse(headers: &Headers) -> Vec<XDeath> {
    let Some(value) = headers.get(X_DEATH) else {
        return Vec::new();
    };
    let Some(entries) = value.as_array() else {
        tracing::warn!(value = ?short(&value), "ignoring x-death header that is not an array");
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let parsed = entry.as_table().and_then(entry_from_table);
            if parsed.is_none() {
                tracing::warn!(entry = ?short(entry), "ignoring malformed x-death entry");
            }
            parsed
        })
        .collect()
}

fn entry_from_table(t: &Headers) -> Option<XDeath> {
    let queue = t.get_str("queue")?;
    let reason = DeathReason::parse(&t.get_str("reason")?);
    let count = t.get_u64("count").unwrap_or(1);
    let exchange = t.get_str("exchange").unwrap_or_default();
    let routing_keys = t
        .get("routing-keys")
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    let time = t.get_u64("time");
    Some(XDeath {
        queue,
        reason,
        count,
        exchange,
        routing_keys,
        time,
    })
}

/// A bounded debug rendering so a hostile header cannot flood the logs.
fn short(v: &HeaderValue) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 200 {
        s.truncate(super::truncate_utf8(&s, 200).len());
        s.push('…');
    }
    s
}

impl XDeath {
    /// Builds the header value RabbitMQ would write for these entries.
    ///
    /// Used by test doubles to fake dead-letter history.
    pub fn to_header_value(entries: &[XDeath]) -> HeaderValue {
        HeaderValue::Array(
            entries
                .iter()
                .map(|e| {
                    let mut t = Headers::new();
                    t.insert("queue", e.queue.as_str())
                        .insert("reason", e.reason.as_str())
                        .insert("count", e.count)
                        .insert("exchange", e.exchange.as_str())
                        .insert(
                            "routing-keys",
                            e.routing_keys
                                .iter()
                                .map(|k| HeaderValue::from(k.as_str()))
                                .collect::<Vec<_>>(),
                        );
                    if let Some(time) = e.time {
                        t.insert("time", HeaderValue::Timestamp(time));
                    }
                    HeaderValue::Table(t)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(queue: &str, reason: &str, count: u64) -> XDeath {
        XDeath {
            queue: queue.into(),
            reason: DeathReason::parse(reason),
            count,
            exchange: String::new(),
            routing_keys: vec![queue.into()],
            time: Some(1_700_000_000),
        }
    }

    #[test]
    fn round_trips_entries_in_order() {
        let entries = vec![entry("q.retry.1s", "expired", 3), entry("q", "rejected", 2)];
        let mut h = Headers::new();
        h.insert(X_DEATH, XDeath::to_header_value(&entries));
        assert_eq!(h.x_death(), entries);
    }

    #[test]
    fn malformed_shapes_are_skipped_not_panicking() {
        let mut h = Headers::new();
        h.insert(X_DEATH, "not a list");
        assert!(h.x_death().is_empty());

        let mut missing_queue = Headers::new();
        missing_queue.insert("reason", "expired");
        let mut odd_count = Headers::new();
        odd_count
            .insert("queue", "q")
            .insert("reason", "rejected")
            .insert("count", "seven");
        let mut h = Headers::new();
        h.insert(
            X_DEATH,
            vec![
                HeaderValue::Int(5),
                HeaderValue::Table(missing_queue),
                HeaderValue::Table(odd_count),
            ],
        );
        let parsed = h.x_death();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].count, 1, "unreadable count falls back to 1");
    }

    #[test]
    fn unknown_reasons_are_kept() {
        let mut h = Headers::new();
        h.insert(
            X_DEATH,
            XDeath::to_header_value(&[entry("q", "shovelled", 1)]),
        );
        assert_eq!(
            h.x_death()[0].reason,
            DeathReason::Other("shovelled".into())
        );
    }
}

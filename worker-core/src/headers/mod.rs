//! A typed, read-mostly view of AMQP message headers.
//!
//! lapin's `FieldTable` carries integers in a dozen widths and strings in two
//! encodings; [`Headers`] reads them leniently so that a count written as an
//! `i8` by one client and an `i64` by another reads the same.

mod attempts;
mod names;
mod value;
mod xdeath;

#[cfg(test)]
mod fuzz;

pub use attempts::{AttemptSources, Attempts};
pub use names::*;
pub use value::{HeaderValue, MAX_HEADER_DEPTH};
pub use xdeath::{DeathReason, XDeath};

use lapin::types::{FieldTable, ShortString};

/// Message headers.
///
/// ```
/// use worker_core::Headers;
///
/// let mut headers = Headers::new();
/// headers.insert("tenant", "acme").insert("priority-boost", 3u8);
/// assert_eq!(headers.get_str("tenant"), Some("acme".to_owned()));
/// assert_eq!(headers.get_u64("priority-boost"), Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    table: FieldTable,
}

impl Headers {
    /// Empty headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Wraps a lapin table.
    pub(crate) fn from_field_table(table: FieldTable) -> Self {
        Headers { table }
    }

    /// The lapin table.
    pub(crate) fn field_table(&self) -> &FieldTable {
        &self.table
    }

    /// Unwraps into the lapin table.
    pub(crate) fn into_field_table(self) -> FieldTable {
        self.table
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.table.inner().is_empty()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.table.inner().len()
    }

    /// Sets a header. Names over 255 bytes are cut at a character boundary
    /// (AMQP field names are short strings).
    pub fn insert(&mut self, name: &str, value: impl Into<HeaderValue>) -> &mut Self {
        let name = truncate_utf8(name, 255);
        self.table
            .insert(ShortString::from(name), value.into().into_amqp());
        self
    }

    /// Removes a header, returning whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let mut map = std::mem::take(&mut self.table).inner().clone();
        let had = map.remove(name).is_some();
        self.table = FieldTable::from(map);
        had
    }

    /// Keeps only the headers for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut map = std::mem::take(&mut self.table).inner().clone();
        map.retain(|k, _| keep(k.as_str()));
        self.table = FieldTable::from(map);
    }

    /// Whether a header is present.
    pub fn contains(&self, name: &str) -> bool {
        self.table.contains_key(name)
    }

    /// One header's value; `None` also for a value nesting tables or arrays
    /// deeper than [`MAX_HEADER_DEPTH`] (see [`too_deep`](Self::too_deep)).
    pub fn get(&self, name: &str) -> Option<HeaderValue> {
        self.table
            .inner()
            .get(name)
            .and_then(HeaderValue::from_amqp)
    }

    /// The first header whose value nests tables or arrays deeper than
    /// [`MAX_HEADER_DEPTH`]: such a message is parked as undecodable.
    pub fn too_deep(&self) -> Option<&str> {
        self.table
            .inner()
            .iter()
            .find(|(_, v)| value::nests_deeper(v, MAX_HEADER_DEPTH))
            .map(|(k, _)| k.as_str())
    }

    /// A header read as a non-negative integer of any width (or digits in a string).
    pub fn get_u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.as_u64())
    }

    /// A string header.
    pub fn get_str(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            HeaderValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Header names and values, in name order, without values nesting
    /// deeper than [`MAX_HEADER_DEPTH`].
    pub fn iter(&self) -> impl Iterator<Item = (&str, HeaderValue)> + '_ {
        self.table
            .inner()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), HeaderValue::from_amqp(v)?)))
    }

    /// The `x-death` entries, newest first; malformed entries are skipped with a warning.
    pub fn x_death(&self) -> Vec<XDeath> {
        xdeath::parse(self)
    }

    /// The quorum queue's `x-delivery-count` (absent on a first delivery: 0).
    pub fn delivery_count(&self) -> u64 {
        self.get_count(X_DELIVERY_COUNT).unwrap_or(0)
    }

    /// A counting header (attempts, redeliveries, deliveries): like
    /// [`get_u64`](Self::get_u64), but a value that is present and cannot be
    /// read as a count (negative, text, a table) is logged as a warning
    /// before it is ignored, so a producer writing bad headers gets noticed.
    ///
    /// ```
    /// use worker_core::Headers;
    ///
    /// let mut headers = Headers::new();
    /// headers.insert("rw-attempts", -3i64);
    /// assert_eq!(headers.get_count("rw-attempts"), None); // and a warning
    /// assert_eq!(headers.get_count("missing"), None); // silently
    /// ```
    pub fn get_count(&self, name: &str) -> Option<u64> {
        let value = self.get(name)?;
        let count = value.as_u64();
        if count.is_none() {
            tracing::warn!(
                header = name,
                ?value,
                "ignoring a header that should hold a count"
            );
        }
        count
    }
}

/// Cuts `s` to at most `max` bytes without splitting a character.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::AMQPValue;

    #[test]
    fn integers_of_every_width_read_the_same() {
        let values = [
            AMQPValue::ShortShortInt(7),
            AMQPValue::ShortShortUInt(7),
            AMQPValue::ShortInt(7),
            AMQPValue::ShortUInt(7),
            AMQPValue::LongInt(7),
            AMQPValue::LongUInt(7),
            AMQPValue::LongLongInt(7),
            AMQPValue::Timestamp(7),
            AMQPValue::LongString("7".into()),
        ];
        for v in values {
            let mut t = FieldTable::default();
            t.insert("n".into(), v.clone());
            assert_eq!(Headers::from_field_table(t).get_u64("n"), Some(7), "{v:?}");
        }
    }

    #[test]
    fn negative_and_garbage_counts_read_as_none() {
        let mut h = Headers::new();
        h.insert("neg", -3i32)
            .insert("text", "many")
            .insert("t", true);
        assert_eq!(h.get_u64("neg"), None);
        assert_eq!(h.get_u64("text"), None);
        assert_eq!(h.get_u64("t"), None);
        assert_eq!(h.get_u64("missing"), None);
    }

    #[test]
    fn remove_and_retain() {
        let mut h = Headers::new();
        h.insert("a", 1u8).insert("x-b", 2u8).insert("c", 3u8);
        assert!(h.remove("a"));
        assert!(!h.remove("a"));
        h.retain(|k| !k.starts_with("x-"));
        assert_eq!(
            h.iter().map(|(k, _)| k.to_owned()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn headers_nested_thousands_deep_parse_and_read_as_too_deep() {
        // About what fits RabbitMQ's default frame_max. lapin's parser
        // would overflow its stack on it (and so would dropping it): the
        // connection's guard bounds it first, as it does on the wire.
        let mut bytes = worker_testkit::raw::nested_table(15_000);
        assert!(crate::connection::guard::bound_field_table(&mut bytes));
        let (rest, table) = lapin::types::parsing::parse_field_table(&bytes[..]).unwrap();
        assert!(rest.is_empty());
        let headers = Headers::from_field_table(table);
        assert_eq!(headers.too_deep(), Some("k"));
        assert_eq!(headers.get("k"), None);
        assert_eq!(headers.iter().count(), 0);
        drop(headers);

        // At the limit a value still reads; one level more does not.
        for (depth, readable) in [(MAX_HEADER_DEPTH, true), (MAX_HEADER_DEPTH + 1, false)] {
            let bytes = worker_testkit::raw::nested_table(depth);
            let (_, table) = lapin::types::parsing::parse_field_table(&bytes[..]).unwrap();
            let headers = Headers::from_field_table(table);
            assert_eq!(headers.too_deep().is_none(), readable, "{depth}");
            assert_eq!(headers.get("k").is_some(), readable, "{depth}");
        }
    }

    #[test]
    fn long_names_are_cut_not_panicking() {
        let mut h = Headers::new();
        let name = "é".repeat(200);
        h.insert(&name, 1u8);
        assert_eq!(h.len(), 1);
        assert!(h.iter().next().unwrap().0.len() <= 255);
    }
}

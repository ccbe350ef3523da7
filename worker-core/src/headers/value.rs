//! An owned, lapin-free view of one AMQP header value.

use lapin::types::AMQPValue;

use super::Headers;

/// How many tables and arrays a header value may nest. A message with a
/// deeper header is parked as `undecodable` before its handler runs, and
/// [`Headers::get`] and [`Headers::iter`] skip such a value.
///
/// The connection's guard ([`crate::connection::guard`]) turns anything past
/// [`MAX_TABLE_NESTING`](crate::connection::guard::MAX_TABLE_NESTING) levels
/// into raw bytes before lapin parses it; staying below that means a value
/// cut short by the guard is always caught here.
pub const MAX_HEADER_DEPTH: usize = 64;

const _: () = assert!(MAX_HEADER_DEPTH < crate::connection::guard::MAX_TABLE_NESTING);

/// Whether `value` nests tables or arrays more than `budget` levels deep
/// (a table or array is one level). Looks at most `budget + 1` levels down.
pub(crate) fn nests_deeper(value: &AMQPValue, budget: usize) -> bool {
    let mut children: Box<dyn Iterator<Item = &AMQPValue>> = match value {
        AMQPValue::FieldTable(t) => Box::new(t.inner().values()),
        AMQPValue::FieldArray(a) => Box::new(a.as_slice().iter()),
        _ => return false,
    };
    budget == 0 || children.any(|child| nests_deeper(child, budget - 1))
}

/// One header value, with every AMQP integer width folded into `Int`.
///
/// Unsigned 64-bit values that do not fit an `i64` arrive as `UInt`.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// `t`
    Bool(bool),
    /// Any signed or unsigned integer up to 64 bits that fits an `i64`.
    Int(i64),
    /// An unsigned 64-bit integer over `i64::MAX`.
    UInt(u64),
    /// `f`, `d` and decimals.
    Float(f64),
    /// A string (long or short). Invalid UTF-8 is replaced.
    Str(String),
    /// Raw bytes (`x`).
    Bytes(Vec<u8>),
    /// A seconds-since-epoch timestamp (`T`).
    Timestamp(u64),
    /// An array.
    Array(Vec<HeaderValue>),
    /// A nested table.
    Table(Headers),
    /// No value (`V`).
    Void,
}

impl HeaderValue {
    /// Reads an integer leniently: any integer width, a timestamp, or a
    /// string of digits. Negative or non-numeric values give `None`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            HeaderValue::Int(i) => u64::try_from(*i).ok(),
            HeaderValue::UInt(u) | HeaderValue::Timestamp(u) => Some(*u),
            HeaderValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a table.
    pub fn as_table(&self) -> Option<&Headers> {
        match self {
            HeaderValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The values of an array.
    pub fn as_array(&self) -> Option<&[HeaderValue]> {
        match self {
            HeaderValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value, or `None` when it nests deeper than [`MAX_HEADER_DEPTH`].
    pub(crate) fn from_amqp(value: &AMQPValue) -> Option<HeaderValue> {
        (!nests_deeper(value, MAX_HEADER_DEPTH)).then(|| HeaderValue::convert(value))
    }

    /// Converts a value already known to be within [`MAX_HEADER_DEPTH`].
    fn convert(value: &AMQPValue) -> HeaderValue {
        match value {
            AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
            AMQPValue::ShortShortInt(i) => HeaderValue::Int((*i).into()),
            AMQPValue::ShortShortUInt(i) => HeaderValue::Int((*i).into()),
            AMQPValue::ShortInt(i) => HeaderValue::Int((*i).into()),
            AMQPValue::ShortUInt(i) => HeaderValue::Int((*i).into()),
            AMQPValue::LongInt(i) => HeaderValue::Int((*i).into()),
            AMQPValue::LongUInt(i) => HeaderValue::Int((*i).into()),
            AMQPValue::LongLongInt(i) => HeaderValue::Int(*i),
            AMQPValue::Float(f) => HeaderValue::Float((*f).into()),
            AMQPValue::Double(f) => HeaderValue::Float(*f),
            AMQPValue::DecimalValue(d) => {
                HeaderValue::Float(f64::from(d.value) / 10f64.powi(d.scale.into()))
            }
            AMQPValue::ShortString(s) => HeaderValue::Str(s.as_str().to_owned()),
            AMQPValue::LongString(s) => {
                HeaderValue::Str(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            AMQPValue::FieldArray(a) => {
                HeaderValue::Array(a.as_slice().iter().map(HeaderValue::convert).collect())
            }
            AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
            AMQPValue::FieldTable(t) => HeaderValue::Table(Headers::from_field_table(t.clone())),
            AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
            AMQPValue::Void => HeaderValue::Void,
        }
    }

    pub(crate) fn into_amqp(self) -> AMQPValue {
        match self {
            HeaderValue::Bool(b) => AMQPValue::Boolean(b),
            HeaderValue::Int(i) => AMQPValue::LongLongInt(i),
            HeaderValue::UInt(u) => AMQPValue::Timestamp(u),
            HeaderValue::Float(f) => AMQPValue::Double(f),
            HeaderValue::Str(s) => AMQPValue::LongString(s.into()),
            HeaderValue::Bytes(b) => AMQPValue::ByteArray(b.into()),
            HeaderValue::Timestamp(t) => AMQPValue::Timestamp(t),
            HeaderValue::Array(a) => AMQPValue::FieldArray(
                a.into_iter()
                    .map(HeaderValue::into_amqp)
                    .collect::<Vec<_>>()
                    .into(),
            ),
            HeaderValue::Table(t) => AMQPValue::FieldTable(t.into_field_table()),
            HeaderValue::Void => AMQPValue::Void,
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for HeaderValue {
            fn from(v: $t) -> Self {
                HeaderValue::Int(v.into())
            }
        }
    )*};
}
from_int!(i8, u8, i16, u16, i32, u32, i64);

impl From<u64> for HeaderValue {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(HeaderValue::UInt(v), HeaderValue::Int)
    }
}

impl From<bool> for HeaderValue {
    fn from(v: bool) -> Self {
        HeaderValue::Bool(v)
    }
}

impl From<&str> for HeaderValue {
    fn from(v: &str) -> Self {
        HeaderValue::Str(v.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(v: String) -> Self {
        HeaderValue::Str(v)
    }
}

impl From<f64> for HeaderValue {
    fn from(v: f64) -> Self {
        HeaderValue::Float(v)
    }
}

impl From<Headers> for HeaderValue {
    fn from(v: Headers) -> Self {
        HeaderValue::Table(v)
    }
}

impl From<Vec<HeaderValue>> for HeaderValue {
    fn from(v: Vec<HeaderValue>) -> Self {
        HeaderValue::Array(v)
    }
}

//! The header-depth guard: a filter on the bytes RabbitMQ sends, below
//! lapin's frame parser, that keeps every message header table at most
//! [`MAX_TABLE_NESTING`] levels deep.
//!
//! lapin parses field tables recursively on its I/O thread. A header nested
//! some 15,000 levels fits RabbitMQ's default `frame_max` and the broker
//! accepts it; parsed as is, it overflows that thread's stack and aborts the
//! whole process. The guard reads the connection's plaintext frames before
//! lapin does and, in each content header, turns a table or array that sits
//! deeper than [`MAX_TABLE_NESTING`] into a byte array (`x`) of the same
//! length. The two share one wire layout (a long-uint size, then the
//! bytes), so the rewrite is one type byte in place: the frame keeps its
//! size and everything else passes through untouched. The decoded value is
//! then never deeper than the limit, every walk over it is bounded, and the
//! worker parks such a message as `undecodable` (its own limit,
//! [`MAX_HEADER_DEPTH`](crate::headers::MAX_HEADER_DEPTH), is lower).
//!
//! The guard sits under TLS, not over it: for `amqps://` the worker does the
//! TLS handshake itself, wraps the decrypted stream in the guard and hands
//! lapin a plain stream. It needs nothing from lapin's
//! dependencies beyond their published versions.
//!
//! [`bound_header_depth`] is the rewrite on one content-header payload, for
//! code that reads AMQP frames itself (the testkit's memory broker does).

mod reactor;
mod scan;
mod stream;

pub(crate) use reactor::connect;
#[cfg(test)]
pub(crate) use scan::bound_field_table;
pub use scan::{bound_header_depth, MAX_TABLE_NESTING};
pub(crate) use stream::HeaderDepthGuard;

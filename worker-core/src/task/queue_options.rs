//! Options of a task's work queue itself: message priorities, length
//! limits with their overflow behaviour, and message TTL.
//!
//! Each becomes a queue argument (see `topology::plan`), so changing one
//! on a queue that already exists makes the broker refuse the declaration
//! (`Error::TopologyMismatch`): the queue must be drained and deleted, or
//! the option changed back.
//!
//! Nothing leaves silently: a full queue with [`Overflow::RejectPublish`]
//! makes the publish fail (`Error::Nacked`); with [`Overflow::DropHead`]
//! the oldest message, and with a TTL an expired one, is dead-lettered to
//! the task's parking queue, where `parked list` shows the reason
//! (`dead-lettered: maxlen`, `dead-lettered: expired`).

use std::time::Duration;

/// What a full work queue does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Refuse the publish: the publisher gets a nack and
    /// [`Error::Nacked`](crate::Error::Nacked) (the default).
    #[default]
    RejectPublish,
    /// Dead-letter the oldest message to the parking queue (reason
    /// `maxlen`) to make room. Classic queues only: on a quorum queue it
    /// would turn the work queue's dead-lettering from at-least-once to
    /// at-most-once, which `#[task]` refuses.
    DropHead,
}

impl Overflow {
    /// The value of the `x-overflow` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::RejectPublish => "reject-publish",
            Overflow::DropHead => "drop-head",
        }
    }
}

/// Limits of the work queue: length, bytes, and how long a message may wait.
///
/// They apply to the work queue only, not to the quarantine, wait and
/// parking queues the framework uses for the task's own copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueLimits {
    /// The most ready messages (`x-max-length`).
    pub max_length: Option<u64>,
    /// The most bytes of ready message bodies (`x-max-length-bytes`).
    pub max_length_bytes: Option<u64>,
    /// What happens past either limit (`x-overflow`).
    pub overflow: Overflow,
    /// How long a message may wait in the work queue before it is
    /// dead-lettered to parking with reason `expired` (`x-message-ttl`).
    /// RabbitMQ expires messages at the head of the queue only.
    pub message_ttl: Option<Duration>,
}

impl QueueLimits {
    /// Whether a length limit is set, so that `overflow` matters.
    pub fn is_bounded(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

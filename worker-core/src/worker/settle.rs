//! Turning an outcome into exactly one settlement of the delivery.

use crate::middleware::Outcome;
use crate::transport::{SettleError, Transport};

/// The settlement an outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// `basic.ack`.
    Ack,
    /// `basic.reject(requeue = true)`: back to the queue, charged. The
    /// broker counts a reject toward a quorum queue's delivery limit on
    /// every version (RabbitMQ 4.3 stopped counting nacks), so a delivery
    /// whose copy could not be published cannot come back forever.
    Requeue,
    /// `basic.nack(requeue = true)`: back to the queue, not charged where
    /// the broker allows it: from RabbitMQ 4.3 a nack requeue does not count
    /// toward the delivery limit (before 4.3 every requeue counts). For
    /// deliveries that never started (a clean stop returning prefetched
    /// work).
    Return,
    /// `basic.reject(requeue = false)`: to the queue's dead-letter target.
    DeadLetter,
}

impl Settlement {
    /// What `outcome` calls for. Everything that was handled, redelivered
    /// through a confirmed copy or parked through a confirmed copy is acked.
    pub fn for_outcome(outcome: &Outcome) -> Settlement {
        match outcome {
            Outcome::Succeeded
            | Outcome::Discarded(_)
            | Outcome::Redelivered { .. }
            | Outcome::Parked { .. }
            | Outcome::Quarantined { .. } => Settlement::Ack,
            Outcome::Requeue => Settlement::Requeue,
            Outcome::NotStarted => Settlement::Return,
            Outcome::Failed(_) => Settlement::DeadLetter,
        }
    }

    /// Sends the settlement for one delivery.
    pub async fn apply(self, transport: &dyn Transport, tag: u64) -> Result<(), SettleError> {
        match self {
            Settlement::Ack => transport.ack(tag, false).await,
            Settlement::Requeue => transport.reject(tag, true).await,
            Settlement::Return => transport.nack(tag, false, true).await,
            Settlement::DeadLetter => transport.reject(tag, false).await,
        }
    }
}

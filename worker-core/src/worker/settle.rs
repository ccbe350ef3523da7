//! Turning an outcome into exactly one settlement of the delivery.

use crate::middleware::Outcome;
use crate::transport::{SettleError, Transport};

/// The settlement an outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// `basic.ack`.
    Ack,
    /// `basic.nack(requeue = true)`: back to the queue.
    Requeue,
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
            Outcome::Failed(_) => Settlement::DeadLetter,
        }
    }

    /// Sends the settlement for one delivery.
    pub async fn apply(self, transport: &dyn Transport, tag: u64) -> Result<(), SettleError> {
        match self {
            Settlement::Ack => transport.ack(tag, false).await,
            Settlement::Requeue => transport.nack(tag, false, true).await,
            Settlement::DeadLetter => transport.reject(tag, false).await,
        }
    }
}

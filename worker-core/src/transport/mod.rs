//! The seam between the runtime and the broker.
//!
//! Everything the runtime does to a delivery goes through [`Transport`]:
//! settle it (ack, nack with requeue, reject) or publish a confirmed copy
//! (to a delay tier or to parking). The worker's consumers use a lapin
//! implementation (in the worker module); `worker-testkit` supplies a
//! recording mock. This module depends on nothing but messages and errors.

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::message::Outgoing;

/// Why a settlement could not be sent (usually: the channel is closed, so
/// the broker will redeliver).
#[derive(Debug, thiserror::Error)]
#[error("cannot settle delivery {tag}")]
pub struct SettleError {
    /// The delivery tag.
    pub tag: u64,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The operations the runtime performs on deliveries of one channel.
///
/// Implementations must be cheap to share: the runtime holds one per
/// consumer channel behind an `Arc` and calls it from many tasks.
pub trait Transport: Send + Sync + 'static {
    /// `basic.ack`; with `multiple`, every outstanding tag up to `tag`.
    fn ack(&self, tag: u64, multiple: bool) -> BoxFuture<'_, Result<(), SettleError>>;
    /// `basic.nack`; `requeue` returns it to the queue, otherwise it is dead-lettered.
    fn nack(
        &self,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> BoxFuture<'_, Result<(), SettleError>>;
    /// `basic.reject`; `requeue = false` dead-letters it.
    fn reject(&self, tag: u64, requeue: bool) -> BoxFuture<'_, Result<(), SettleError>>;
    /// Publishes a persistent, mandatory copy and waits for the broker's confirm.
    ///
    /// `Ok` means the broker has taken responsibility for the message.
    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<(), Error>>;
}

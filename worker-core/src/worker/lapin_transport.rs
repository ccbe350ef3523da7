//! The lapin implementation of [`Transport`].

use futures_util::future::BoxFuture;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::Channel;

use crate::error::Error;
use crate::message::Outgoing;
use crate::publisher::Publisher;
use crate::transport::{SettleError, Transport};

/// Settles on the consumer's channel; publishes through the shared [`Publisher`].
#[derive(Debug, Clone)]
pub(crate) struct LapinTransport {
    channel: Channel,
    publisher: Publisher,
}

impl LapinTransport {
    /// Wraps a consumer channel and a publisher.
    pub(crate) fn new(channel: Channel, publisher: Publisher) -> Self {
        LapinTransport { channel, publisher }
    }
}

fn settle_err(tag: u64) -> impl FnOnce(lapin::Error) -> SettleError {
    move |e| SettleError {
        tag,
        source: Box::new(e),
    }
}

impl Transport for LapinTransport {
    fn ack(&self, tag: u64, multiple: bool) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async move {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple })
                .await
                .map_err(settle_err(tag))
        })
    }

    fn nack(
        &self,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async move {
            self.channel
                .basic_nack(tag, BasicNackOptions { multiple, requeue })
                .await
                .map_err(settle_err(tag))
        })
    }

    fn reject(&self, tag: u64, requeue: bool) -> BoxFuture<'_, Result<(), SettleError>> {
        Box::pin(async move {
            self.channel
                .basic_reject(tag, BasicRejectOptions { requeue })
                .await
                .map_err(settle_err(tag))
        })
    }

    fn publish(&self, message: Outgoing) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.publisher.publish(message))
    }
}

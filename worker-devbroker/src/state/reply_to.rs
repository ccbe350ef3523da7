//! RabbitMQ's direct reply-to: a no-ack consumer of the pseudo-queue
//! `amq.rabbitmq.reply-to`, requests that name it in `reply_to` (rewritten
//! to an address of the publishing channel), and replies published to that
//! address through the default exchange, delivered straight to the
//! channel's consumer without a queue.
//!
//! As on RabbitMQ: the consumer must be no-ack, a request naming the
//! pseudo-queue needs that consumer on its channel, a reply to a channel
//! that is gone is dropped, and a `mandatory` reply is returned as
//! `NO_ROUTE` even when it was delivered (no queue took it) before 4.2,
//! and never from 4.2 (`Capabilities::mandatory_direct_reply_returned`).

use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use worker_core::rpc::DIRECT_REPLY_TO;

use super::State;
use crate::error::AmqpError;
use crate::message::Message;
use crate::wire::{content_frames, ss, Out};

/// The prefix of every reply address.
fn address_prefix() -> String {
    format!("{DIRECT_REPLY_TO}.")
}

impl State {
    /// Whether `queue` names the direct reply-to pseudo-queue.
    pub(crate) fn is_direct_reply_to(queue: &str) -> bool {
        queue == DIRECT_REPLY_TO
    }

    /// Whether a publish to the default exchange with `routing_key` is a
    /// reply to a direct reply-to address.
    pub(crate) fn is_reply_address(exchange: &str, routing_key: &str) -> bool {
        exchange.is_empty() && routing_key.starts_with(&address_prefix())
    }

    /// `basic.consume` of the pseudo-queue; the consumer is kept in the
    /// channel's consumers under the pseudo-queue's name.
    pub(crate) fn consume_replies(
        &mut self,
        conn: u64,
        ch: u16,
        c: &basic::Consume,
    ) -> Result<String, AmqpError> {
        if !c.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        let tag = if c.consumer_tag.as_str().is_empty() {
            self.unique("amq.ctag-")
        } else {
            c.consumer_tag.to_string()
        };
        let Some(state) = self.channel_mut(conn, ch) else {
            return Ok(tag);
        };
        if state
            .consumers
            .values()
            .any(|q| Self::is_direct_reply_to(q))
        {
            return Err(AmqpError::precondition(
                "the channel already consumes amq.rabbitmq.reply-to",
            ));
        }
        state
            .consumers
            .insert(tag.clone(), DIRECT_REPLY_TO.to_owned());
        Ok(tag)
    }

    /// The reply consumer's tag on a channel, if it has one.
    fn reply_consumer(&self, conn: u64, ch: u16) -> Option<String> {
        let state = self.conns.get(&conn)?.channels.get(&ch)?;
        state
            .consumers
            .iter()
            .find(|(_, q)| Self::is_direct_reply_to(q))
            .map(|(tag, _)| tag.clone())
    }

    /// A request's `reply_to` of the pseudo-queue becomes the publishing
    /// channel's address; it needs the channel's reply consumer.
    pub(crate) fn address_reply_to(
        &self,
        conn: u64,
        ch: u16,
        properties: BasicProperties,
    ) -> Result<BasicProperties, AmqpError> {
        let names_pseudo_queue = properties
            .reply_to()
            .as_ref()
            .is_some_and(|r| Self::is_direct_reply_to(r.as_str()));
        if !names_pseudo_queue {
            return Ok(properties);
        }
        if self.reply_consumer(conn, ch).is_none() {
            return Err(AmqpError::precondition(
                "fast reply consumer does not exist",
            ));
        }
        let address = format!("{}{conn}.{ch}", address_prefix());
        Ok(properties.with_reply_to(ss(&address)))
    }

    /// Delivers a message published to a reply address to its channel's
    /// reply consumer; a message to a channel that is gone is dropped.
    pub(crate) fn deliver_reply(&mut self, routing_key: &str, msg: &Message) {
        let Some(address) = routing_key.strip_prefix(&address_prefix()) else {
            return;
        };
        let Some((conn, ch)) = address
            .split_once('.')
            .and_then(|(c, h)| Some((c.parse::<u64>().ok()?, h.parse::<u16>().ok()?)))
        else {
            return;
        };
        let Some(tag) = self.reply_consumer(conn, ch) else {
            return;
        };
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let frame_max = connection.frame_max;
        let Some(state) = connection.channels.get_mut(&ch) else {
            return;
        };
        state.next_tag += 1;
        let method = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: ss(&tag),
            delivery_tag: state.next_tag,
            redelivered: false,
            exchange: ss(&msg.exchange),
            routing_key: ss(routing_key),
        }));
        let _ = connection.tx.send(Out::Frames(content_frames(
            ch,
            method,
            msg.properties.clone(),
            &msg.body,
            frame_max,
        )));
    }
}

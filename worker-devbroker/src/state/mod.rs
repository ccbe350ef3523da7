//! The broker's state and the rules that move messages.
//!
//! Everything happens under one lock, synchronously: a publish routes,
//! enqueues, dead-letters, delivers to consumers and confirms before the
//! next frame is looked at, and every frame to a client is queued while the
//! lock is held, so each connection sees events in the order they happened.
//!
//! This module holds the data: the broker, its connections and channels,
//! and deliveries awaiting settlement. The rules live in its submodules,
//! each an `impl State` block: `connections` (connections and channels),
//! `queues` (deleting queues, expiry, enqueueing and dead-lettering, and
//! the queues waiting to be serviced), `delivery` (consumers, delivery,
//! `basic.get` and settling), `publish` (exchanges, routing and
//! publishing) and `reply_to` (RabbitMQ's direct reply-to).

mod connections;
mod consumer_timeout;
mod delivery;
mod publish;
mod queues;
mod reply_to;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use amq_protocol::frame::AMQPFrame;
use tokio::sync::{mpsc, Notify};

use super::clock::Clock;
use super::queue::{Entry, Queue};
use super::routing::{Exchange, Kind};
use super::wire::Out;
use super::DEFAULT_VERSION;
use worker_core::broker::{Capabilities, Version};

/// A delivery not yet acked.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) queue: String,
    pub(crate) entry: Entry,
    /// The consumer's tag, or `None` for `basic.get`.
    pub(crate) consumer: Option<String>,
    /// When it was delivered, on the broker's clock (ms).
    pub(crate) taken_at: u64,
}

/// A channel's state.
#[derive(Debug, Default)]
pub(crate) struct ChannelState {
    /// The broker sent `channel.close` and waits for `close-ok`.
    pub(crate) closing: bool,
    pub(crate) prefetch: u16,
    pub(crate) global_prefetch: u16,
    pub(crate) confirm: bool,
    pub(crate) publish_seq: u64,
    pub(crate) next_tag: u64,
    pub(crate) unacked: BTreeMap<u64, Unacked>,
    /// Consumer tag -> queue.
    pub(crate) consumers: BTreeMap<String, String>,
    /// Tags of deliveries a consumer timeout gave back to their queue
    /// from 4.3, with the channel open: settling one is accepted and does
    /// nothing, as on RabbitMQ.
    pub(crate) released: BTreeSet<u64>,
}

/// A client connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) tx: mpsc::UnboundedSender<Out>,
    pub(crate) frame_max: u32,
    pub(crate) channels: HashMap<u16, ChannelState>,
    pub(crate) kill: Arc<Notify>,
    pub(crate) name: String,
}

impl Conn {
    pub(crate) fn send(&self, frames: Vec<AMQPFrame>) {
        let _ = self.tx.send(Out::Frames(frames));
    }
}

/// Settling a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    /// Back to the queue; `counted` when the return counts toward a quorum
    /// queue's delivery limit (reject, a closed channel; nack before 4.3).
    Requeue {
        counted: bool,
    },
    DeadLetter,
}

/// All of the broker.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) clock: Clock,
    /// The RabbitMQ version whose rules the broker follows.
    pub(crate) caps: Capabilities,
    pub(crate) exchanges: HashMap<String, Exchange>,
    pub(crate) queues: HashMap<String, Queue>,
    pub(crate) conns: HashMap<u64, Conn>,
    dirty: BTreeSet<String>,
    pub(crate) names: u64,
    /// While [`State::tick`] expires messages in order: the moment of the
    /// expiry it is carrying out.
    expiring_at: Option<u64>,
    /// An armed fault: the next `queue.declare` closes its connection.
    pub(crate) drop_at_declare: bool,
}

impl State {
    pub(crate) fn new(clock: Clock, version: Version) -> State {
        let mut exchanges = HashMap::new();
        exchanges.insert(String::new(), Exchange::new(Kind::Direct, true));
        for (name, kind) in [
            ("amq.direct", Kind::Direct),
            ("amq.fanout", Kind::Fanout),
            ("amq.topic", Kind::Topic),
            ("amq.headers", Kind::Headers),
            ("amq.match", Kind::Headers),
        ] {
            exchanges.insert(name.to_owned(), Exchange::new(kind, true));
        }
        State {
            clock,
            caps: Capabilities::of(version),
            exchanges,
            queues: HashMap::new(),
            conns: HashMap::new(),
            dirty: BTreeSet::new(),
            expiring_at: None,
            names: 0,
            drop_at_declare: false,
        }
    }

    /// The RabbitMQ version the broker models (and announces).
    pub(crate) fn version(&self) -> Version {
        self.caps.version().unwrap_or(DEFAULT_VERSION)
    }

    /// A random-looking unique suffix for generated names.
    pub(crate) fn unique(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}-{}", uuid::Uuid::new_v4().simple(), self.names)
    }
}

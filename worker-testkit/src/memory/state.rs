//! The broker's state and the rules that move messages.
//!
//! Everything happens under one lock, synchronously: a publish routes,
//! enqueues, dead-letters, delivers to consumers and confirms before the
//! next frame is looked at, and every frame to a client is queued while the
//! lock is held, so each connection sees events in the order they happened.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, channel, connection, AMQPClass, BasicProperties};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use tokio::sync::{mpsc, Notify};

use super::clock::Clock;
use super::error::AmqpError;
use super::message::{dead_letter_copy, header_routes, is_cycle, Message, Reason};
use super::queue::{Entry, Overflow, Queue};
use super::routing::{Dest, Exchange, Kind};
use super::wire::{content_frames, Out};
use super::DEFAULT_VERSION;
use worker_core::broker::{Capabilities, Version};

/// A short string, cut (on a character boundary) to 255 bytes if needed.
pub(crate) fn ss(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

/// A delivery not yet acked.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) queue: String,
    pub(crate) entry: Entry,
    /// The consumer's tag, or `None` for `basic.get`.
    pub(crate) consumer: Option<String>,
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
    Requeue,
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
            names: 0,
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

    // ------------------------------------------------------------ lifecycle

    pub(crate) fn open_connection(
        &mut self,
        id: u64,
        tx: mpsc::UnboundedSender<Out>,
        frame_max: u32,
        kill: Arc<Notify>,
        name: String,
    ) {
        self.conns.insert(
            id,
            Conn {
                tx,
                frame_max,
                channels: HashMap::new(),
                kill,
                name,
            },
        );
    }

    /// Forgets a connection: its channels' deliveries go back to their
    /// queues, its consumers and exclusive queues go away.
    pub(crate) fn close_connection(&mut self, id: u64) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let mut channels: Vec<u16> = conn.channels.keys().copied().collect();
        channels.sort_unstable();
        for ch in channels {
            self.release_channel(id, ch);
        }
        self.conns.remove(&id);
        let exclusive: Vec<String> = self
            .queues
            .values()
            .filter(|q| q.exclusive_owner == Some(id))
            .map(|q| q.name.clone())
            .collect();
        for q in exclusive {
            self.delete_queue(&q);
        }
        self.pump();
    }

    /// Closes every connection as `rabbitmqctl close_all_connections` does.
    pub(crate) fn close_all_connections(&mut self, reason: &str) -> Vec<Arc<Notify>> {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        let mut kills = Vec::new();
        for id in ids {
            if let Some(conn) = self.conns.get(&id) {
                let e = AmqpError::forced(format!(
                    "broker forced connection closure with reason '{reason}'"
                ));
                conn.send(vec![AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                        reply_code: e.code,
                        reply_text: ss(&e.text),
                        class_id: 0,
                        method_id: 0,
                    })),
                )]);
                kills.push(conn.kill.clone());
            }
            self.close_connection(id);
        }
        kills
    }

    /// Drops every connection at once (the broker is going away).
    pub(crate) fn shutdown(&mut self) {
        for conn in self.conns.values() {
            let _ = conn.tx.send(Out::Shutdown);
            conn.kill.notify_one();
        }
    }

    /// `None` if the channel is not open, else whether it is closing.
    pub(crate) fn channel_status(&self, conn: u64, ch: u16) -> Option<bool> {
        self.conns.get(&conn)?.channels.get(&ch).map(|c| c.closing)
    }

    pub(crate) fn is_connected(&self, conn: u64) -> bool {
        self.conns.contains_key(&conn)
    }

    pub(crate) fn open_channel(&mut self, conn: u64, ch: u16) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.channels.insert(ch, ChannelState::default());
            c.send(vec![AMQPFrame::Method(
                ch,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            )]);
        }
    }

    /// The client closed the channel: release it and confirm.
    pub(crate) fn close_channel(&mut self, conn: u64, ch: u16) {
        self.release_channel(conn, ch);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.channels.remove(&ch);
            c.send(vec![AMQPFrame::Method(
                ch,
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
            )]);
        }
        self.pump();
    }

    /// The client confirmed our `channel.close`.
    pub(crate) fn channel_closed(&mut self, conn: u64, ch: u16) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.channels.remove(&ch);
        }
    }

    /// A channel error: release the channel and send `channel.close`.
    pub(crate) fn channel_error(&mut self, conn: u64, ch: u16, e: &AmqpError) {
        self.release_channel(conn, ch);
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(state) = c.channels.get_mut(&ch) {
                state.closing = true;
            }
            c.send(vec![AMQPFrame::Method(
                ch,
                AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                    reply_code: e.code,
                    reply_text: ss(&e.text),
                    class_id: e.class_id,
                    method_id: e.method_id,
                })),
            )]);
        }
        self.pump();
    }

    /// Cancels a channel's consumers and returns its unacked deliveries.
    fn release_channel(&mut self, conn: u64, ch: u16) {
        let Some(state) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.channels.get_mut(&ch))
        else {
            return;
        };
        let consumers = std::mem::take(&mut state.consumers);
        let unacked = std::mem::take(&mut state.unacked);
        for (tag, queue) in consumers {
            self.remove_consumer(conn, ch, &tag, &queue);
        }
        for (_, u) in unacked {
            self.requeue(u);
        }
    }

    pub(crate) fn channel_mut(&mut self, conn: u64, ch: u16) -> Option<&mut ChannelState> {
        self.conns.get_mut(&conn)?.channels.get_mut(&ch)
    }

    pub(crate) fn send(&self, conn: u64, frames: Vec<AMQPFrame>) {
        if let Some(c) = self.conns.get(&conn) {
            c.send(frames);
        }
    }

    // ------------------------------------------------------------ consumers

    pub(crate) fn remove_consumer(&mut self, conn: u64, ch: u16, tag: &str, queue: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.consumers
            .retain(|c| !(c.conn == conn && c.channel == ch && c.tag == tag));
        if q.consumers.is_empty() {
            q.next_consumer = 0;
            if q.auto_delete && q.had_consumer {
                let name = q.name.clone();
                self.delete_queue(&name);
            }
        }
    }

    /// Deletes a queue: its consumers are cancelled (`basic.cancel`), its
    /// bindings removed; returns how many ready messages it held.
    pub(crate) fn delete_queue(&mut self, name: &str) -> usize {
        let Some(q) = self.queues.remove(name) else {
            return 0;
        };
        for c in &q.consumers {
            if let Some(conn) = self.conns.get_mut(&c.conn) {
                if let Some(state) = conn.channels.get_mut(&c.channel) {
                    state.consumers.remove(&c.tag);
                }
                conn.send(vec![AMQPFrame::Method(
                    c.channel,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: ss(&c.tag),
                        nowait: true,
                    })),
                )]);
            }
        }
        let dest = Dest::Queue(name.to_owned());
        for x in self.exchanges.values_mut() {
            x.bindings.retain(|b| b.dest != dest);
        }
        self.auto_delete_exchanges();
        self.dirty.remove(name);
        q.len()
    }

    pub(crate) fn auto_delete_exchanges(&mut self) {
        loop {
            let unused: Vec<String> = self
                .exchanges
                .iter()
                .filter(|(_, x)| x.auto_delete && x.bindings.is_empty())
                .map(|(n, _)| n.clone())
                .collect();
            if unused.is_empty() {
                return;
            }
            for n in unused {
                self.delete_exchange(&n);
            }
        }
    }

    pub(crate) fn delete_exchange(&mut self, name: &str) {
        self.exchanges.remove(name);
        let dest = Dest::Exchange(name.to_owned());
        for x in self.exchanges.values_mut() {
            x.bindings.retain(|b| b.dest != dest);
        }
    }

    // ------------------------------------------------------------ moving messages

    /// Services every queue something happened to, until nothing moves.
    pub(crate) fn pump(&mut self) {
        while let Some(name) = self.dirty.pop_first() {
            self.service(&name);
        }
    }

    pub(crate) fn mark(&mut self, queue: &str) {
        self.dirty.insert(queue.to_owned());
    }

    /// Time moved: expire what expired.
    pub(crate) fn tick(&mut self) {
        let now = self.clock.now_ms();
        let due: Vec<String> = self
            .queues
            .values()
            .filter(|q| {
                q.head()
                    .and_then(|e| e.expires_at)
                    .is_some_and(|t| t <= now)
            })
            .map(|q| q.name.clone())
            .collect();
        self.dirty.extend(due);
        self.pump();
    }

    /// Expires the head while it has expired (`inclusive`: also messages
    /// expiring right now, which a consumer did not take at once).
    fn expire_heads(&mut self, name: &str, inclusive: bool) {
        let now = self.clock.now_ms();
        loop {
            let Some(q) = self.queues.get_mut(name) else {
                return;
            };
            let expired = q
                .head()
                .and_then(|e| e.expires_at)
                .is_some_and(|t| t < now || (inclusive && t == now));
            if !expired {
                return;
            }
            let Some(e) = q.pop_head() else {
                return;
            };
            self.dead_letter(name, e, Reason::Expired);
        }
    }

    /// Delivers ready messages of `name` to consumers with credit and
    /// expires messages at the head.
    fn service(&mut self, name: &str) {
        loop {
            self.expire_heads(name, false);
            let Some(q) = self.queues.get_mut(name) else {
                return;
            };
            if q.head().is_none() {
                break;
            }
            let Some(at) = pick(q, &self.conns) else {
                break;
            };
            let Some(entry) = q.pop_head() else {
                break;
            };
            self.deliver(name, at, entry);
        }
        self.expire_heads(name, true);
        if let Some(q) = self.queues.get_mut(name) {
            q.evaluate_limit();
        }
    }

    fn deliver(&mut self, name: &str, at: usize, entry: Entry) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let quorum = q.is_quorum();
        let c = &mut q.consumers[at];
        let Some(conn) = self.conns.get_mut(&c.conn) else {
            return;
        };
        let Some(state) = conn.channels.get_mut(&c.channel) else {
            return;
        };
        state.next_tag += 1;
        let tag = state.next_tag;
        let method = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: ss(&c.tag),
            delivery_tag: tag,
            redelivered: entry.redelivered,
            exchange: ss(&entry.msg.exchange),
            routing_key: ss(entry.msg.routing_key()),
        }));
        let props = delivered_properties(&entry, quorum, false, self.caps);
        let _ = conn.tx.send(Out::Frames(content_frames(
            c.channel,
            method,
            props,
            &entry.msg.body,
            conn.frame_max,
        )));
        if !c.no_ack {
            c.unacked += 1;
            state.unacked.insert(
                tag,
                Unacked {
                    queue: name.to_owned(),
                    entry,
                    consumer: Some(c.tag.clone()),
                },
            );
        }
    }

    /// `basic.get`.
    pub(crate) fn get(
        &mut self,
        conn: u64,
        ch: u16,
        name: &str,
        no_ack: bool,
    ) -> Result<(), AmqpError> {
        self.expire_heads(name, true);
        let caps = self.caps;
        let Some(q) = self.queues.get_mut(name) else {
            return Err(super::error::no_queue(name));
        };
        let quorum = q.is_quorum();
        let entry = q.pop_head();
        let remaining = q.len() as u32;
        q.evaluate_limit();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let frame_max = c.frame_max;
        let Some(state) = c.channels.get_mut(&ch) else {
            return Ok(());
        };
        match entry {
            None => {
                c.send(vec![AMQPFrame::Method(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                )]);
            }
            Some(entry) => {
                state.next_tag += 1;
                let tag = state.next_tag;
                let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag: tag,
                    redelivered: entry.redelivered,
                    exchange: ss(&entry.msg.exchange),
                    routing_key: ss(entry.msg.routing_key()),
                    message_count: remaining,
                }));
                let props = delivered_properties(&entry, quorum, true, caps);
                let frames = content_frames(ch, method, props, &entry.msg.body, frame_max);
                if !no_ack {
                    state.unacked.insert(
                        tag,
                        Unacked {
                            queue: name.to_owned(),
                            entry,
                            consumer: None,
                        },
                    );
                }
                c.send(frames);
            }
        }
        self.pump();
        Ok(())
    }

    /// `basic.ack`, `basic.nack`, `basic.reject`.
    pub(crate) fn settle(
        &mut self,
        conn: u64,
        ch: u16,
        tag: u64,
        multiple: bool,
        how: Settle,
    ) -> Result<(), AmqpError> {
        let Some(state) = self.channel_mut(conn, ch) else {
            return Ok(());
        };
        let taken: Vec<Unacked> = if multiple && tag == 0 {
            std::mem::take(&mut state.unacked).into_values().collect()
        } else if !state.unacked.contains_key(&tag) {
            return Err(AmqpError::precondition(format!(
                "unknown delivery tag {tag}"
            )));
        } else if multiple {
            let rest = state.unacked.split_off(&(tag + 1));
            std::mem::replace(&mut state.unacked, rest)
                .into_values()
                .collect()
        } else {
            state.unacked.remove(&tag).into_iter().collect()
        };
        for u in taken {
            if let Some(consumer) = &u.consumer {
                if let Some(q) = self.queues.get_mut(&u.queue) {
                    if let Some(c) = q
                        .consumers
                        .iter_mut()
                        .find(|c| c.conn == conn && c.channel == ch && c.tag == *consumer)
                    {
                        c.unacked = c.unacked.saturating_sub(1);
                    }
                }
                self.mark(&u.queue);
            }
            match how {
                Settle::Ack => {}
                Settle::Requeue => self.requeue(u),
                Settle::DeadLetter => {
                    if self.queues.contains_key(&u.queue) {
                        self.dead_letter(&u.queue, u.entry, Reason::Rejected);
                    }
                }
            }
        }
        self.pump();
        Ok(())
    }

    /// A delivery goes back to its queue (quorum queues count it, and
    /// dead-letter it past `x-delivery-limit`).
    pub(crate) fn requeue(&mut self, u: Unacked) {
        let Some(q) = self.queues.get_mut(&u.queue) else {
            return;
        };
        let mut entry = u.entry;
        if q.is_quorum() {
            entry.delivery_count += 1;
            if q.args
                .delivery_limit
                .is_some_and(|limit| entry.delivery_count > limit)
            {
                self.dead_letter(&u.queue, entry, Reason::DeliveryLimit);
                return;
            }
        }
        let to_tail = u.consumer.is_none() && self.caps.get_returns_go_to_the_tail();
        q.requeue(entry, to_tail);
        self.mark(&u.queue);
    }

    /// The queues a message with these keys and headers reaches from `exchange`.
    pub(crate) fn route(
        &self,
        exchange: &str,
        keys: &[String],
        headers: Option<&FieldTable>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if exchange.is_empty() {
            for k in keys {
                if self.queues.contains_key(k) && !out.contains(k) {
                    out.push(k.clone());
                }
            }
            return out;
        }
        let mut seen = vec![exchange.to_owned()];
        let mut todo = vec![exchange.to_owned()];
        while let Some(x) = todo.pop() {
            let Some(x) = self.exchanges.get(&x) else {
                continue;
            };
            for dest in x.matches(keys, headers) {
                match dest {
                    Dest::Queue(q) => {
                        if self.queues.contains_key(q) && !out.contains(q) {
                            out.push(q.clone());
                        }
                    }
                    Dest::Exchange(e) => {
                        if !seen.contains(e) {
                            seen.push(e.clone());
                            todo.push(e.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Puts a message into a queue; `false` if `reject-publish` refused it.
    pub(crate) fn enqueue(&mut self, name: &str, msg: Message) -> bool {
        let now = self.clock.now_ms();
        let Some(q) = self.queues.get_mut(name) else {
            return false;
        };
        if q.refuses(msg.body.len() as u64) {
            if q.args.overflow == Overflow::RejectPublishDlx {
                let entry = Entry {
                    msg,
                    seq: 0,
                    expires_at: None,
                    delivery_count: 0,
                    redelivered: false,
                };
                self.dead_letter(name, entry, Reason::MaxLen);
            }
            return false;
        }
        let ttl = match (q.args.message_ttl, msg.ttl_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        q.push(msg, ttl.map(|t| now.saturating_add(t)));
        q.evaluate_limit();
        while let Some(e) = self
            .queues
            .get_mut(name)
            .filter(|q| q.must_drop_head())
            .and_then(Queue::pop_head)
        {
            self.dead_letter(name, e, Reason::MaxLen);
        }
        self.mark(name);
        true
    }

    /// Dead-letters a message that left `queue` for `reason`, if the queue
    /// has a dead-letter exchange that exists; otherwise it is dropped.
    pub(crate) fn dead_letter(&mut self, queue: &str, entry: Entry, reason: Reason) {
        let Some(q) = self.queues.get(queue) else {
            return;
        };
        let Some(dlx) = q.args.dlx.clone() else {
            return;
        };
        let dlrk = q.args.dlrk.clone();
        let quorum = q.is_quorum();
        if !self.exchanges.contains_key(&dlx) {
            return;
        }
        let mut copy = dead_letter_copy(
            &entry.msg,
            reason,
            queue,
            &dlx,
            dlrk.as_deref(),
            self.clock.unix_secs(),
            self.caps,
        );
        if self.caps.delivery_count_survives_dead_lettering() {
            copy.carried_deliveries = if quorum {
                entry.delivery_count + u64::from(reason == Reason::Rejected)
            } else {
                entry.msg.carried_deliveries
            };
        }
        let mut targets = self.route(&dlx, &copy.routing_keys, copy.properties.headers().as_ref());
        if reason != Reason::Rejected {
            targets.retain(|t| !is_cycle(&copy, t));
        }
        for t in targets {
            self.enqueue(&t, copy.clone());
        }
    }

    /// `basic.publish` with its content.
    pub(crate) fn publish(
        &mut self,
        conn: u64,
        ch: u16,
        method: &basic::Publish,
        mut properties: BasicProperties,
        body: Vec<u8>,
    ) -> Result<(), AmqpError> {
        let exchange = method.exchange.as_str();
        if method.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        match self.exchanges.get(exchange) {
            None => return Err(super::error::no_exchange(exchange)),
            Some(x) if x.internal => {
                return Err(AmqpError::access_refused(format!(
                    "cannot publish to internal exchange '{exchange}' in vhost '/'"
                )))
            }
            Some(_) => {}
        }
        if let Some(e) = properties.expiration() {
            if e.as_str().parse::<u64>().is_err() {
                return Err(AmqpError::precondition(format!(
                    "invalid expiration '{e}': the memory broker takes a whole number of milliseconds"
                )));
            }
        }
        let mut keys = vec![method.routing_key.to_string()];
        keys.extend(header_routes(properties.headers().as_ref(), "CC"));
        let bcc = header_routes(properties.headers().as_ref(), "BCC");
        if let Some(h) = properties
            .headers()
            .as_ref()
            .filter(|h| h.contains_key("BCC"))
        {
            let mut h = h.inner().clone();
            h.remove("BCC");
            properties = properties.with_headers(FieldTable::from(h));
        }
        let mut route_keys = keys.clone();
        route_keys.extend(bcc);
        let seq = match self.channel_mut(conn, ch) {
            Some(state) if state.confirm => {
                state.publish_seq += 1;
                Some(state.publish_seq)
            }
            _ => None,
        };
        let targets = self.route(exchange, &route_keys, properties.headers().as_ref());
        let msg = Message {
            exchange: exchange.to_owned(),
            routing_keys: route_keys,
            properties,
            body: Bytes::from(body),
            broker_deaths: false,
            carried_deliveries: 0,
        };
        if targets.is_empty() && method.mandatory {
            let frame_max = self.conns.get(&conn).map_or(4096, |c| c.frame_max);
            let ret = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: method.exchange.clone(),
                routing_key: method.routing_key.clone(),
            }));
            self.send(
                conn,
                content_frames(ch, ret, msg.properties.clone(), &msg.body, frame_max),
            );
        }
        let mut accepted = true;
        for t in &targets {
            accepted &= self.enqueue(t, msg.clone());
        }
        if let Some(seq) = seq {
            let reply = if accepted {
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: seq,
                    multiple: false,
                })
            } else {
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                })
            };
            self.send(conn, vec![AMQPFrame::Method(ch, AMQPClass::Basic(reply))]);
        }
        self.pump();
        Ok(())
    }
}

/// The next consumer of `q` (round robin) that may take a message.
fn pick(q: &mut Queue, conns: &HashMap<u64, Conn>) -> Option<usize> {
    let n = q.consumers.len();
    for k in 0..n {
        let at = (q.next_consumer + k) % n;
        let c = &q.consumers[at];
        let Some(state) = conns.get(&c.conn).and_then(|x| x.channels.get(&c.channel)) else {
            continue;
        };
        if state.closing {
            continue;
        }
        let credit = c.no_ack || c.prefetch == 0 || c.unacked < u32::from(c.prefetch);
        let channel_credit =
            state.global_prefetch == 0 || state.unacked.len() < usize::from(state.global_prefetch);
        if credit && (c.no_ack || channel_credit) {
            q.next_consumer = (at + 1) % n;
            return Some(at);
        }
    }
    None
}

/// The properties a delivery shows: quorum queues add `x-delivery-count`
/// once the message came back, and 3.x also on a first `basic.get`.
fn delivered_properties(
    entry: &Entry,
    quorum: bool,
    via_get: bool,
    caps: Capabilities,
) -> BasicProperties {
    let first_get = via_get && caps.delivery_count_on_first_get();
    if quorum && (first_get || entry.delivery_count > 0) {
        let mut headers = entry.msg.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-delivery-count".into(),
            AMQPValue::LongLongInt(i64::try_from(entry.delivery_count).unwrap_or(i64::MAX)),
        );
        entry.msg.properties.clone().with_headers(headers)
    } else {
        entry.msg.properties.clone()
    }
}

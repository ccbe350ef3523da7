//! Consumers and deliveries: round-robin delivery within prefetch,
//! `basic.get`, settling (ack, requeue, dead-letter) and requeueing.

use std::collections::HashMap;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use amq_protocol::types::AMQPValue;
use worker_core::broker::Capabilities;

use super::{Conn, Settle, State, Unacked};
use crate::error::{no_queue, AmqpError};
use crate::message::Reason;
use crate::queue::{Entry, Queue};
use crate::wire::{content_frames, ss, Out};

impl State {
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

    /// Delivers ready messages of `name` to consumers with credit and
    /// expires messages at the head.
    pub(super) fn service(&mut self, name: &str) {
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
        let now = self.clock.now_ms();
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
                    taken_at: now,
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
        let now = self.clock.now_ms();
        let Some(q) = self.queues.get_mut(name) else {
            return Err(no_queue(name));
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
                            taken_at: now,
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
        if !multiple && state.released.remove(&tag) {
            return Ok(());
        }
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
                Settle::Requeue { counted } => self.requeue(u, counted),
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

    /// A delivery goes back to its queue (quorum queues count it when
    /// `counted`, and dead-letter it past `x-delivery-limit`).
    pub(crate) fn requeue(&mut self, u: Unacked, counted: bool) {
        let Some(q) = self.queues.get_mut(&u.queue) else {
            return;
        };
        let mut entry = u.entry;
        if q.is_quorum() {
            entry.acquired_count += 1;
            if !counted {
                let to_tail = u.consumer.is_none() && self.caps.get_returns_go_to_the_tail();
                q.requeue(entry, to_tail);
                self.mark(&u.queue);
                return;
            }
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
}

/// The next consumer of `q` (round robin) that may take a message.
fn pick(q: &mut Queue, conns: &HashMap<u64, Conn>) -> Option<usize> {
    let n = q.servable_consumers();
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
/// once a counted return raised it, and 3.x also on a first `basic.get`;
/// from 4.3 also `x-acquired-count` once the message came back at all.
fn delivered_properties(
    entry: &Entry,
    quorum: bool,
    via_get: bool,
    caps: Capabilities,
) -> BasicProperties {
    let first_get = via_get && caps.delivery_count_on_first_get();
    let delivery_count = quorum && (first_get || entry.delivery_count > 0);
    let acquired_count = quorum && caps.acquired_count_header() && entry.acquired_count > 0;
    if !delivery_count && !acquired_count {
        return entry.msg.properties.clone();
    }
    let mut headers = entry.msg.properties.headers().clone().unwrap_or_default();
    let count = |n: u64| AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX));
    if delivery_count {
        headers.insert("x-delivery-count".into(), count(entry.delivery_count));
    }
    if acquired_count {
        headers.insert("x-acquired-count".into(), count(entry.acquired_count));
    }
    entry.msg.properties.clone().with_headers(headers)
}

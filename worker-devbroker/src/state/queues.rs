//! Queues: deletion, the queues waiting to be serviced, expiry at the
//! head, enqueueing with length limits, and dead-lettering.

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, AMQPClass};

use super::State;
use crate::message::{dead_letter_copy, is_cycle, Message, Reason};
use crate::queue::{Entry, Overflow, Queue};
use crate::routing::Dest;
use crate::wire::ss;

impl State {
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

    /// Services every queue something happened to, until nothing moves.
    pub(crate) fn pump(&mut self) {
        while let Some(name) = self.dirty.pop_first() {
            self.service(&name);
        }
    }

    pub(crate) fn mark(&mut self, queue: &str) {
        self.dirty.insert(queue.to_owned());
    }

    /// Time moved: expire what expired, in the order it expired, each at
    /// its own moment. A message that expires into another TTL queue (the
    /// delay ladder, a wait tier) starts its next wait when the first one
    /// ended, not when the test's `advance` returned, so one long advance
    /// moves a message through as many queues as the time covers.
    pub(crate) fn tick(&mut self) {
        let now = self.clock.now_ms();
        while let Some(at) = self
            .queues
            .values()
            .filter_map(|q| q.head().and_then(|e| e.expires_at))
            .filter(|t| *t <= now)
            .min()
        {
            self.expiring_at = Some(at);
            let due: Vec<String> = self
                .queues
                .values()
                .filter(|q| q.head().and_then(|e| e.expires_at) == Some(at))
                .map(|q| q.name.clone())
                .collect();
            self.dirty.extend(due);
            self.pump();
        }
        self.expiring_at = None;
        self.pump();
    }

    /// The broker's time in milliseconds: the clock's, or while [`tick`]
    /// catches up, the moment of the expiry it is carrying out.
    ///
    /// [`tick`]: State::tick
    pub(crate) fn now_ms(&self) -> u64 {
        self.expiring_at.unwrap_or_else(|| self.clock.now_ms())
    }

    /// Expires the head while it has expired (`inclusive`: also messages
    /// expiring right now, which a consumer did not take at once).
    pub(super) fn expire_heads(&mut self, name: &str, inclusive: bool) {
        let now = self.now_ms();
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

    /// Puts a message into a queue; `false` if `reject-publish` refused it.
    pub(crate) fn enqueue(&mut self, name: &str, msg: Message) -> bool {
        let now = self.now_ms();
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
                    acquired_count: 0,
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
            let rejected = u64::from(reason == Reason::Rejected);
            copy.carried_deliveries = if quorum {
                entry.delivery_count + rejected
            } else if self.caps.rejected_copies_arrive_redelivered() {
                entry.msg.carried_deliveries + rejected
            } else {
                entry.msg.carried_deliveries
            };
            copy.carried_acquired = if quorum {
                entry.acquired_count + rejected
            } else {
                entry.msg.carried_acquired
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
}

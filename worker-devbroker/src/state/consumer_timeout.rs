//! The broker's consumer timeout, as the modelled version applies it
//! (see `Capabilities::consumer_timeout_closes_channel` and
//! `consumer_timeout_on_classic_queues`).

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, AMQPClass};

use super::State;
use crate::error::AmqpError;
use crate::wire::ss;

impl State {
    /// Times out every consumer delivery held unacknowledged for
    /// `timeout_ms` or longer: before 4.3 the channel holding it is closed
    /// with `PRECONDITION_FAILED` (every unacked delivery on it returned,
    /// counted); from 4.3 a quorum queue's timed-out deliveries go back to
    /// their queue uncounted (`x-acquired-count` only), their consumer gets
    /// `basic.cancel` and the channel stays open, and classic queues have
    /// no timeout. Answers how many deliveries timed out.
    pub(crate) fn time_out_consumers(&mut self, timeout_ms: u64) -> usize {
        let now = self.clock.now_ms();
        let closes = self.caps.consumer_timeout_closes_channel();
        let classic_too = self.caps.consumer_timeout_on_classic_queues();
        let mut timed_out: Vec<(u64, u16, u64)> = Vec::new();
        for (&conn, c) in &self.conns {
            for (&ch, state) in &c.channels {
                for (&tag, u) in &state.unacked {
                    let held = u.consumer.is_some() && now.saturating_sub(u.taken_at) >= timeout_ms;
                    let applies =
                        classic_too || self.queues.get(&u.queue).is_some_and(|q| q.is_quorum());
                    if held && applies && !state.closing {
                        timed_out.push((conn, ch, tag));
                    }
                }
            }
        }
        let count = timed_out.len();
        if closes {
            let mut channels: Vec<(u64, u16)> =
                timed_out.iter().map(|&(c, ch, _)| (c, ch)).collect();
            channels.dedup();
            for (conn, ch) in channels {
                let e = AmqpError::precondition(format!(
                    "delivery acknowledgement on channel {ch} timed out. Timeout value used: {timeout_ms} ms"
                ));
                self.channel_error(conn, ch, &e);
            }
        } else {
            for (conn, ch, tag) in timed_out {
                self.release_timed_out(conn, ch, tag);
            }
            self.pump();
        }
        count
    }

    /// From 4.3: gives one timed-out delivery back to its queue uncounted
    /// and cancels its consumer, leaving the channel open.
    fn release_timed_out(&mut self, conn: u64, ch: u16, tag: u64) {
        let Some(state) = self.channel_mut(conn, ch) else {
            return;
        };
        let Some(u) = state.unacked.remove(&tag) else {
            return;
        };
        state.released.insert(tag);
        let consumer = u.consumer.clone().unwrap_or_default();
        let queue = u.queue.clone();
        let cancelled = state.consumers.remove(&consumer).is_some();
        self.requeue(u, false);
        if cancelled {
            self.remove_consumer(conn, ch, &consumer, &queue);
            self.send(
                conn,
                vec![AMQPFrame::Method(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: ss(&consumer),
                        nowait: true,
                    })),
                )],
            );
        }
    }
}

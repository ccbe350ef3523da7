//! Connections and channels: opening, closing, channel errors, and what a
//! closing channel gives back.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{channel, connection, AMQPClass};
use tokio::sync::{mpsc, Notify};

use super::{ChannelState, Conn, State};
use crate::error::AmqpError;
use crate::wire::{ss, Out};

impl State {
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
        // A closed channel counts on every version
        // (`Capabilities::connection_loss_counts`).
        let counted = self.caps.connection_loss_counts();
        for (_, u) in unacked {
            self.requeue(u, counted);
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
}

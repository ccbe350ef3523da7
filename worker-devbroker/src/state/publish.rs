//! Exchanges, routing and publishing: which queues a message reaches,
//! `basic.publish` with `mandatory` returns and publisher confirms, and
//! removing exchanges.

use bytes::Bytes;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use amq_protocol::types::FieldTable;

use super::State;
use crate::error::{no_exchange, AmqpError};
use crate::message::{header_routes, Message};
use crate::routing::Dest;
use crate::wire::content_frames;

impl State {
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
            None => return Err(no_exchange(exchange)),
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
        let properties = self.address_reply_to(conn, ch, properties)?;
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
            carried_acquired: 0,
        };
        if exchange.is_empty() {
            self.deliver_reply(method.routing_key.as_str(), &msg);
        }
        let routed_reply = Self::is_reply_address(exchange, method.routing_key.as_str())
            && !self.caps.mandatory_direct_reply_returned();
        if targets.is_empty() && method.mandatory && !routed_reply {
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
}

//! The AMQP methods a channel can call, other than `basic.publish`.

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{access, basic, channel, confirm, exchange, queue, tx, AMQPClass};
use amq_protocol::types::FieldTable;

use super::error::{no_exchange, no_queue, AmqpError};
use super::queue::{check_equivalent, Consumer, Queue, QueueArgs, QueueType};
use super::routing::{Binding, Dest, Exchange, Kind};
use super::state::{Settle, State};
use super::wire::ss;

const DEFAULT_EXCHANGE: &str = "operation not permitted on the default exchange";

impl State {
    /// Runs one method on an open channel.
    pub(crate) fn method(
        &mut self,
        conn: u64,
        ch: u16,
        method: AMQPClass,
    ) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.get_amqp_class_id(), method.get_amqp_method_id());
        self.dispatch(conn, ch, method)
            .map_err(|e| e.during(class_id, method_id))
    }

    fn reply(&self, conn: u64, ch: u16, nowait: bool, method: AMQPClass) {
        if !nowait {
            self.send(conn, vec![AMQPFrame::Method(ch, method)]);
        }
    }

    fn dispatch(&mut self, conn: u64, ch: u16, method: AMQPClass) -> Result<(), AmqpError> {
        match method {
            AMQPClass::Basic(m) => self.basic(conn, ch, m),
            AMQPClass::Queue(m) => self.queue_method(conn, ch, m),
            AMQPClass::Exchange(m) => self.exchange_method(conn, ch, m),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(m)) => {
                if let Some(state) = self.channel_mut(conn, ch) {
                    state.confirm = true;
                }
                self.reply(
                    conn,
                    ch,
                    m.nowait,
                    AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.reply(
                    conn,
                    ch,
                    false,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.reply(
                    conn,
                    ch,
                    false,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Select(_)) => Err(AmqpError::not_implemented(
                "transactions are not modelled by the memory broker",
            )),
            other => Err(AmqpError::command_invalid(format!(
                "the client may not send method {}.{} on a channel",
                other.get_amqp_class_id(),
                other.get_amqp_method_id()
            ))),
        }
    }

    /// 404 if missing, 405 if another connection's exclusive queue.
    fn usable_queue(&self, conn: u64, name: &str) -> Result<&Queue, AmqpError> {
        let q = self.queues.get(name).ok_or_else(|| no_queue(name))?;
        match q.exclusive_owner {
            Some(owner) if owner != conn => Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{name}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
            ))),
            _ => Ok(q),
        }
    }

    fn basic(&mut self, conn: u64, ch: u16, m: basic::AMQPMethod) -> Result<(), AmqpError> {
        match m {
            basic::AMQPMethod::Qos(qos) => {
                // From 4.3 a global limit is applied per consumer.
                let global = qos.global && self.caps.global_qos();
                if let Some(state) = self.channel_mut(conn, ch) {
                    if global {
                        state.global_prefetch = qos.prefetch_count;
                    } else {
                        state.prefetch = qos.prefetch_count;
                    }
                }
                self.reply(
                    conn,
                    ch,
                    false,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                let queues: Vec<String> = self.queues.keys().cloned().collect();
                queues.iter().for_each(|q| self.mark(q));
                self.pump();
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.consume(conn, ch, c),
            basic::AMQPMethod::Cancel(c) => {
                let tag = c.consumer_tag.to_string();
                let queue = self
                    .channel_mut(conn, ch)
                    .and_then(|s| s.consumers.remove(&tag));
                if let Some(queue) = queue {
                    self.remove_consumer(conn, ch, &tag, &queue);
                }
                self.reply(
                    conn,
                    ch,
                    c.nowait,
                    AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: c.consumer_tag,
                    })),
                );
                self.pump();
                Ok(())
            }
            basic::AMQPMethod::Get(g) => {
                self.usable_queue(conn, g.queue.as_str())?;
                self.get(conn, ch, g.queue.as_str(), g.no_ack)
            }
            basic::AMQPMethod::Ack(a) => {
                self.settle(conn, ch, a.delivery_tag, a.multiple, Settle::Ack)
            }
            basic::AMQPMethod::Nack(n) => {
                let how = if n.requeue {
                    Settle::Requeue {
                        counted: self.caps.nack_requeue_counts(),
                    }
                } else {
                    Settle::DeadLetter
                };
                self.settle(conn, ch, n.delivery_tag, n.multiple, how)
            }
            basic::AMQPMethod::Reject(r) => {
                let how = if r.requeue {
                    Settle::Requeue {
                        counted: self.caps.reject_requeue_counts(),
                    }
                } else {
                    Settle::DeadLetter
                };
                self.settle(conn, ch, r.delivery_tag, false, how)
            }
            basic::AMQPMethod::Recover(r) => {
                self.recover(conn, ch, r.requeue)?;
                self.reply(
                    conn,
                    ch,
                    false,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => self.recover(conn, ch, r.requeue),
            other => Err(AmqpError::command_invalid(format!(
                "the client may not send basic method {}",
                AMQPClass::Basic(other).get_amqp_method_id()
            ))),
        }
    }

    fn recover(&mut self, conn: u64, ch: u16, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        // RabbitMQ returns recovered deliveries as it returns nacked ones
        // (uncounted from 4.3).
        let counted = self.caps.nack_requeue_counts();
        self.settle(conn, ch, 0, true, Settle::Requeue { counted })
    }

    fn consume(&mut self, conn: u64, ch: u16, c: basic::Consume) -> Result<(), AmqpError> {
        let name = c.queue.to_string();
        if State::is_direct_reply_to(&name) {
            let tag = self.consume_replies(conn, ch, &c)?;
            self.reply(
                conn,
                ch,
                c.nowait,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: ss(&tag),
                })),
            );
            return Ok(());
        }
        let q = self.usable_queue(conn, &name)?;
        if q.consumers.iter().any(|x| x.exclusive) || (c.exclusive && !q.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{name}' in vhost '/' in exclusive use"
            )));
        }
        let tag = if c.consumer_tag.as_str().is_empty() {
            self.unique("amq.ctag-")
        } else {
            c.consumer_tag.to_string()
        };
        let Some(state) = self.channel_mut(conn, ch) else {
            return Ok(());
        };
        if state.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        state.consumers.insert(tag.clone(), name.clone());
        let prefetch = state.prefetch;
        if let Some(q) = self.queues.get_mut(&name) {
            q.had_consumer = true;
            q.consumers.push(Consumer {
                conn,
                channel: ch,
                tag: tag.clone(),
                no_ack: c.no_ack,
                prefetch,
                unacked: 0,
                exclusive: c.exclusive,
            });
        }
        self.reply(
            conn,
            ch,
            c.nowait,
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                consumer_tag: ss(&tag),
            })),
        );
        self.mark(&name);
        self.pump();
        Ok(())
    }

    fn queue_method(&mut self, conn: u64, ch: u16, m: queue::AMQPMethod) -> Result<(), AmqpError> {
        match m {
            queue::AMQPMethod::Declare(d) => self.declare_queue(conn, ch, d),
            queue::AMQPMethod::Bind(b) => {
                let (q, x) = (b.queue.to_string(), b.exchange.to_string());
                self.bind(
                    conn,
                    Dest::Queue(q),
                    &x,
                    b.routing_key.as_str(),
                    b.arguments,
                    true,
                )?;
                self.reply(
                    conn,
                    ch,
                    b.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                );
                Ok(())
            }
            queue::AMQPMethod::Unbind(b) => {
                let (q, x) = (b.queue.to_string(), b.exchange.to_string());
                self.bind(
                    conn,
                    Dest::Queue(q),
                    &x,
                    b.routing_key.as_str(),
                    b.arguments,
                    false,
                )?;
                self.reply(
                    conn,
                    ch,
                    false,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
                Ok(())
            }
            queue::AMQPMethod::Purge(p) => {
                let name = p.queue.to_string();
                self.usable_queue(conn, &name)?;
                let n = self.queues.get_mut(&name).map_or(0, Queue::purge);
                if let Some(q) = self.queues.get_mut(&name) {
                    q.evaluate_limit();
                }
                self.reply(
                    conn,
                    ch,
                    p.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                        message_count: n as u32,
                    })),
                );
                Ok(())
            }
            queue::AMQPMethod::Delete(d) => {
                let name = d.queue.to_string();
                let n = match self.queues.get(&name) {
                    None => 0,
                    Some(_) => {
                        let q = self.usable_queue(conn, &name)?;
                        if d.if_unused && !q.consumers.is_empty() {
                            return Err(AmqpError::precondition(format!(
                                "queue '{name}' in vhost '/' in use"
                            )));
                        }
                        if d.if_empty && q.len() > 0 {
                            return Err(AmqpError::precondition(format!(
                                "queue '{name}' in vhost '/' is not empty"
                            )));
                        }
                        self.delete_queue(&name)
                    }
                };
                self.reply(
                    conn,
                    ch,
                    d.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                        message_count: n as u32,
                    })),
                );
                self.pump();
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "the client may not send queue method {}",
                AMQPClass::Queue(other).get_amqp_method_id()
            ))),
        }
    }

    fn declare_queue(&mut self, conn: u64, ch: u16, d: queue::Declare) -> Result<(), AmqpError> {
        if std::mem::take(&mut self.drop_at_declare) {
            return Err(AmqpError::forced(
                "broker forced connection closure with reason 'testkit'",
            ));
        }
        let mut name = d.queue.to_string();
        if name.is_empty() {
            if d.passive {
                return Err(no_queue(""));
            }
            name = self.unique("amq.gen-");
        }
        if self.queues.contains_key(&name) {
            let q = self.usable_queue(conn, &name)?;
            if !d.passive {
                let flag = |what: &str, received: bool, current: bool| {
                    if received == current {
                        Ok(())
                    } else {
                        Err(AmqpError::precondition(format!(
                            "inequivalent arg '{what}' for queue '{name}' in vhost '/': received '{received}' but current is '{current}'"
                        )))
                    }
                };
                flag("durable", d.durable, q.durable)?;
                flag("auto_delete", d.auto_delete, q.auto_delete)?;
                flag("exclusive", d.exclusive, q.exclusive_owner.is_some())?;
                check_equivalent(&name, &q.declared, &d.arguments)?;
            }
        } else if d.passive {
            return Err(no_queue(&name));
        } else {
            if name.starts_with("amq.") && !d.queue.as_str().is_empty() {
                return Err(AmqpError::access_refused(format!(
                    "queue name '{name}' contains reserved prefix 'amq.*'"
                )));
            }
            let args = QueueArgs::parse(&name, &d.arguments, self.caps)?;
            if args.kind == QueueType::Quorum {
                let invalid = if !d.durable {
                    Some("non-durable")
                } else if d.exclusive {
                    Some("exclusive")
                } else if d.auto_delete {
                    Some("auto-delete")
                } else {
                    None
                };
                if let Some(prop) = invalid {
                    return Err(AmqpError::precondition(format!(
                        "invalid property '{prop}' for queue '{name}' in vhost '/'"
                    )));
                }
            }
            if let Some(dlrk) = &args.dlrk {
                if dlrk.len() > 255 {
                    return Err(AmqpError::precondition(format!(
                        "invalid arg 'x-dead-letter-routing-key' for queue '{name}' in vhost '/': longer than 255 bytes"
                    )));
                }
            }
            let owner = d.exclusive.then_some(conn);
            self.queues.insert(
                name.clone(),
                Queue::new(
                    name.clone(),
                    d.durable,
                    owner,
                    d.auto_delete,
                    d.arguments.clone(),
                    args,
                ),
            );
        }
        let q = &self.queues[&name];
        let reply = AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
            queue: ss(&name),
            message_count: q.len() as u32,
            consumer_count: q.servable_consumers() as u32,
        }));
        self.reply(conn, ch, d.nowait, reply);
        Ok(())
    }

    /// Adds (`add`) or removes a binding from exchange `source`.
    fn bind(
        &mut self,
        conn: u64,
        dest: Dest,
        source: &str,
        key: &str,
        args: FieldTable,
        add: bool,
    ) -> Result<(), AmqpError> {
        match &dest {
            Dest::Queue(q) => {
                self.usable_queue(conn, q)?;
            }
            Dest::Exchange(x) => {
                if x.is_empty() {
                    return Err(AmqpError::access_refused(DEFAULT_EXCHANGE));
                }
                if !self.exchanges.contains_key(x) {
                    return Err(no_exchange(x));
                }
            }
        }
        if source.is_empty() {
            return Err(AmqpError::access_refused(DEFAULT_EXCHANGE));
        }
        let Some(x) = self.exchanges.get_mut(source) else {
            return Err(no_exchange(source));
        };
        let binding = Binding {
            dest,
            key: key.to_owned(),
            args,
        };
        if add {
            if !x.bindings.contains(&binding) {
                x.bindings.push(binding);
            }
        } else {
            x.bindings.retain(|b| *b != binding);
            self.auto_delete_exchanges();
        }
        Ok(())
    }

    fn exchange_method(
        &mut self,
        conn: u64,
        ch: u16,
        m: exchange::AMQPMethod,
    ) -> Result<(), AmqpError> {
        match m {
            exchange::AMQPMethod::Declare(d) => self.declare_exchange(conn, ch, d),
            exchange::AMQPMethod::Delete(d) => {
                let name = d.exchange.to_string();
                if name.is_empty() {
                    return Err(AmqpError::access_refused(DEFAULT_EXCHANGE));
                }
                if name.starts_with("amq.") {
                    return Err(AmqpError::access_refused(format!(
                        "exchange name '{name}' contains reserved prefix 'amq.*'"
                    )));
                }
                if let Some(x) = self.exchanges.get(&name) {
                    let used = !x.bindings.is_empty()
                        || self.exchanges.values().any(|o| {
                            o.bindings
                                .iter()
                                .any(|b| b.dest == Dest::Exchange(name.clone()))
                        });
                    if d.if_unused && used {
                        return Err(AmqpError::precondition(format!(
                            "exchange '{name}' in vhost '/' in use"
                        )));
                    }
                    self.delete_exchange(&name);
                }
                self.reply(
                    conn,
                    ch,
                    d.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                );
                Ok(())
            }
            exchange::AMQPMethod::Bind(b) => {
                let dest = Dest::Exchange(b.destination.to_string());
                self.bind(
                    conn,
                    dest,
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    b.arguments,
                    true,
                )?;
                self.reply(
                    conn,
                    ch,
                    b.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                );
                Ok(())
            }
            exchange::AMQPMethod::Unbind(b) => {
                let dest = Dest::Exchange(b.destination.to_string());
                self.bind(
                    conn,
                    dest,
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    b.arguments,
                    false,
                )?;
                self.reply(
                    conn,
                    ch,
                    b.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                );
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "the client may not send exchange method {}",
                AMQPClass::Exchange(other).get_amqp_method_id()
            ))),
        }
    }

    fn declare_exchange(
        &mut self,
        conn: u64,
        ch: u16,
        d: exchange::Declare,
    ) -> Result<(), AmqpError> {
        let name = d.exchange.to_string();
        if name.is_empty() && !d.passive {
            return Err(AmqpError::access_refused(DEFAULT_EXCHANGE));
        }
        if d.passive {
            if !self.exchanges.contains_key(&name) {
                return Err(no_exchange(&name));
            }
        } else {
            let kind = Kind::parse(d.kind.as_str()).ok_or_else(|| {
                AmqpError::command_invalid(format!("invalid exchange type '{}'", d.kind))
            })?;
            match self.exchanges.get(&name) {
                Some(x) => {
                    let differs = |what: &str, received: String, current: String| {
                        if received == current {
                            Ok(())
                        } else {
                            Err(AmqpError::precondition(format!(
                                "inequivalent arg '{what}' for exchange '{name}' in vhost '/': received '{received}' but current is '{current}'"
                            )))
                        }
                    };
                    differs("type", kind.as_str().into(), x.kind.as_str().into())?;
                    differs("durable", d.durable.to_string(), x.durable.to_string())?;
                    differs(
                        "auto_delete",
                        d.auto_delete.to_string(),
                        x.auto_delete.to_string(),
                    )?;
                    differs("internal", d.internal.to_string(), x.internal.to_string())?;
                }
                None => {
                    if name.starts_with("amq.") {
                        return Err(AmqpError::access_refused(format!(
                            "exchange name '{name}' contains reserved prefix 'amq.*'"
                        )));
                    }
                    let mut x = Exchange::new(kind, d.durable);
                    x.auto_delete = d.auto_delete;
                    x.internal = d.internal;
                    self.exchanges.insert(name, x);
                }
            }
        }
        self.reply(
            conn,
            ch,
            d.nowait,
            AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
        );
        Ok(())
    }
}

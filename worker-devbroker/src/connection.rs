//! One client connection: handshake, then frames in, replies out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use super::error::AmqpError;
use super::wire::{self, ss, FrameReader, Out, ReadError, FRAME_MAX, PROTOCOL_HEADER};
use super::Shared;
use worker_core::broker::Version;

const CHANNEL_MAX: u16 = 2047;

/// A publish waiting for its content.
struct Pending {
    method: basic::Publish,
    header: Option<AMQPContentHeader>,
    body: Vec<u8>,
}

enum Flow {
    Go,
    Stop,
}

struct Session {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Out>,
    kill: Arc<Notify>,
    pending: HashMap<u16, Pending>,
    /// We sent `connection.close` and wait for `close-ok`.
    closing: bool,
}

fn method(ch: u16, m: AMQPClass) -> Out {
    Out::Frames(vec![AMQPFrame::Method(ch, m)])
}

fn server_properties(version: Version) -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "per_consumer_qos",
        "authentication_failure_close",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes()));
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props.insert("product".into(), text(crate::PRODUCT));
    props.insert("version".into(), text(&version.to_string()));
    props.insert("platform".into(), text("Rust"));
    props.insert("information".into(), text(crate::INFORMATION));
    props
}

/// How long a closed connection waits for the client to close its socket.
const CLIENT_HANG_UP: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the connection until the client leaves or is closed.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(wire::write_loop(wr, rx));
    let mut reader = FrameReader::new(rd);
    let version = shared.lock().version();
    let Some((frame_max, name)) = handshake(&mut reader, &tx, version).await else {
        let _ = tx.send(Out::Shutdown);
        let _ = writer.await;
        return;
    };
    reader.set_frame_max(frame_max);
    let kill = Arc::new(Notify::new());
    shared
        .lock()
        .open_connection(id, tx.clone(), frame_max, kill.clone(), name);
    let mut session = Session {
        id,
        shared,
        tx,
        kill: kill.clone(),
        pending: HashMap::new(),
        closing: false,
    };
    loop {
        let frame = tokio::select! {
            frame = reader.next() => frame,
            () = kill.notified() => break,
        };
        match frame {
            Ok(frame) => {
                if let Flow::Stop = session.frame(frame) {
                    // close-ok is on its way: let the client hang up first
                    // (it reads a socket closed under it as an error).
                    let hang_up = async { while reader.next().await.is_ok() {} };
                    let _ = tokio::time::timeout(CLIENT_HANG_UP, hang_up).await;
                    break;
                }
            }
            Err(ReadError::Closed) => break,
            Err(ReadError::Bad(code, text)) => {
                let e = AmqpError {
                    hard: true,
                    code,
                    text,
                    class_id: 0,
                    method_id: 0,
                };
                session.hard_error(&e);
            }
        }
    }
    session.shared.lock().close_connection(id);
    let _ = session.tx.send(Out::Shutdown);
    let _ = writer.await;
}

/// Reads the next frame on channel 0, expecting a connection method.
async fn next_connection_method(reader: &mut FrameReader) -> Option<connection::AMQPMethod> {
    loop {
        match reader.next().await.ok()? {
            AMQPFrame::Heartbeat => {}
            AMQPFrame::Method(0, AMQPClass::Connection(m)) => return Some(m),
            _ => return None,
        }
    }
}

/// Start, tune, open. Any credentials are accepted; the vhost must be "/".
async fn handshake(
    reader: &mut FrameReader,
    tx: &mpsc::UnboundedSender<Out>,
    version: Version,
) -> Option<(u32, String)> {
    let header = reader.protocol_header().await.ok()?;
    if header != PROTOCOL_HEADER {
        let _ = tx.send(Out::Raw(PROTOCOL_HEADER.to_vec()));
        return None;
    }
    let _ = tx.send(method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(version),
            mechanisms: LongString::from("PLAIN AMQPLAIN"),
            locales: LongString::from("en_US"),
        })),
    ));
    let connection::AMQPMethod::StartOk(start_ok) = next_connection_method(reader).await? else {
        return None;
    };
    let name = match start_ok.client_properties.inner().get("connection_name") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    };
    let _ = tx.send(method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
            channel_max: CHANNEL_MAX,
            frame_max: FRAME_MAX,
            heartbeat: 0,
        })),
    ));
    let connection::AMQPMethod::TuneOk(tune_ok) = next_connection_method(reader).await? else {
        return None;
    };
    let frame_max = match tune_ok.frame_max {
        0 => FRAME_MAX,
        n => n.clamp(4096, FRAME_MAX),
    };
    if tune_ok.heartbeat > 0 {
        let every = Duration::from_secs(u64::from(tune_ok.heartbeat)) / 2;
        let _ = tx.send(Out::Heartbeat(every));
    }
    let connection::AMQPMethod::Open(open) = next_connection_method(reader).await? else {
        return None;
    };
    if open.virtual_host.as_str() != "/" {
        let e = AmqpError::not_allowed(format!("vhost '{}' not found", open.virtual_host));
        let _ = tx.send(method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: e.code,
                reply_text: ss(&e.text),
                class_id: 10,
                method_id: 40,
            })),
        ));
        let _ = tokio::time::timeout(Duration::from_secs(1), next_connection_method(reader)).await;
        return None;
    }
    let _ = tx.send(method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
    ));
    Some((frame_max, name))
}

impl Session {
    fn frame(&mut self, frame: AMQPFrame) -> Flow {
        if self.closing || !self.shared.lock().is_connected(self.id) {
            // Closed by us (an error, or close_all_connections): wait for close-ok.
            return match frame {
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
                    Flow::Stop
                }
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                    let _ = self.tx.send(method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    ));
                    Flow::Stop
                }
                _ => Flow::Go,
            };
        }
        match frame {
            AMQPFrame::Heartbeat | AMQPFrame::InvalidHeartbeat(_) => Flow::Go,
            AMQPFrame::ProtocolHeader(_) => {
                self.hard_error(&AmqpError::unexpected_frame(
                    "protocol header after handshake",
                ));
                Flow::Go
            }
            AMQPFrame::Method(0, AMQPClass::Connection(m)) => match m {
                connection::AMQPMethod::Close(_) => {
                    self.shared.lock().close_connection(self.id);
                    let _ = self.tx.send(method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    ));
                    Flow::Stop
                }
                connection::AMQPMethod::UpdateSecret(_) => {
                    let _ = self.tx.send(method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                            connection::UpdateSecretOk {},
                        )),
                    ));
                    Flow::Go
                }
                connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_) => {
                    Flow::Go
                }
                _ => {
                    self.hard_error(&AmqpError::command_invalid(
                        "unexpected connection method after the handshake",
                    ));
                    Flow::Go
                }
            },
            AMQPFrame::Method(0, _) | AMQPFrame::Header(0, _) | AMQPFrame::Body(0, _) => {
                self.hard_error(&AmqpError::command_invalid(
                    "channel 0 only carries connection methods",
                ));
                Flow::Go
            }
            AMQPFrame::Method(ch, m) => {
                self.channel_method(ch, m);
                Flow::Go
            }
            AMQPFrame::Header(ch, header) => {
                self.content_header(ch, header);
                Flow::Go
            }
            AMQPFrame::Body(ch, body) => {
                self.content_body(ch, body);
                Flow::Go
            }
        }
    }

    /// A connection error: send `connection.close`, release everything,
    /// and drop the socket if the client does not answer within a second.
    fn hard_error(&mut self, e: &AmqpError) {
        if self.closing {
            return;
        }
        self.closing = true;
        let _ = self.tx.send(method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: e.code,
                reply_text: ss(&e.text),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        ));
        self.shared.lock().close_connection(self.id);
        let kill = self.kill.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            kill.notify_one();
        });
    }

    fn fail(&mut self, ch: u16, e: AmqpError) {
        self.pending.remove(&ch);
        if e.hard {
            self.hard_error(&e);
        } else {
            self.shared.lock().channel_error(self.id, ch, &e);
        }
    }

    fn channel_method(&mut self, ch: u16, m: AMQPClass) {
        if ch > CHANNEL_MAX {
            self.hard_error(&AmqpError::channel_error(format!(
                "channel {ch} is above channel_max {CHANNEL_MAX}"
            )));
            return;
        }
        let status = self.shared.lock().channel_status(self.id, ch);
        match (m, status) {
            (AMQPClass::Channel(channel::AMQPMethod::Open(_)), None) => {
                self.shared.lock().open_channel(self.id, ch);
            }
            (AMQPClass::Channel(channel::AMQPMethod::Open(_)), Some(_)) => {
                self.hard_error(&AmqpError::channel_error("second 'channel.open' seen"));
            }
            (_, None) => {
                self.hard_error(&AmqpError::channel_error("expected 'channel.open'"));
            }
            (AMQPClass::Channel(channel::AMQPMethod::Close(_)), Some(_)) => {
                self.pending.remove(&ch);
                self.shared.lock().close_channel(self.id, ch);
            }
            (AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)), Some(true)) => {
                self.shared.lock().channel_closed(self.id, ch);
            }
            (_, Some(true)) => {}
            (AMQPClass::Basic(basic::AMQPMethod::Publish(p)), Some(false)) => {
                if self.pending.contains_key(&ch) {
                    self.hard_error(&AmqpError::unexpected_frame(
                        "expected content header for class 60, got a method frame instead",
                    ));
                    return;
                }
                self.pending.insert(
                    ch,
                    Pending {
                        method: p,
                        header: None,
                        body: Vec::new(),
                    },
                );
            }
            (m, Some(false)) => {
                if self.pending.contains_key(&ch) {
                    self.hard_error(&AmqpError::unexpected_frame(
                        "expected content for class 60, got a method frame instead",
                    ));
                    return;
                }
                let result = self.shared.lock().method(self.id, ch, m);
                if let Err(e) = result {
                    self.fail(ch, e);
                }
            }
        }
    }

    fn content_header(&mut self, ch: u16, header: AMQPContentHeader) {
        match self.pending.get_mut(&ch) {
            Some(p) if p.header.is_none() => {
                let done = header.body_size == 0;
                p.body
                    .reserve(usize::try_from(header.body_size).unwrap_or(0).min(1 << 24));
                p.header = Some(header);
                if done {
                    self.complete(ch);
                }
            }
            _ => {
                if self.shared.lock().channel_status(self.id, ch) != Some(true) {
                    self.hard_error(&AmqpError::unexpected_frame(
                        "content header without basic.publish",
                    ));
                }
            }
        }
    }

    fn content_body(&mut self, ch: u16, body: Vec<u8>) {
        let Some(p) = self.pending.get_mut(&ch) else {
            if self.shared.lock().channel_status(self.id, ch) != Some(true) {
                self.hard_error(&AmqpError::unexpected_frame("content body without header"));
            }
            return;
        };
        let Some(size) = p.header.as_ref().map(|h| h.body_size) else {
            self.hard_error(&AmqpError::unexpected_frame("content body before header"));
            return;
        };
        p.body.extend_from_slice(&body);
        let len = p.body.len() as u64;
        if len > size {
            self.hard_error(&AmqpError::frame_error(format!(
                "content body of {len} bytes exceeds the announced {size}"
            )));
        } else if len == size {
            self.complete(ch);
        }
    }

    fn complete(&mut self, ch: u16) {
        let Some(p) = self.pending.remove(&ch) else {
            return;
        };
        let Some(header) = p.header else {
            return;
        };
        let result = self
            .shared
            .lock()
            .publish(self.id, ch, &p.method, header.properties, p.body);
        if let Err(e) = result {
            self.fail(ch, e.during(60, 40));
        }
    }
}

//! The memory broker against RabbitMQ: the same scenarios, the same observations.
//!
//! Every scenario is written once against lapin and run twice: on a
//! [`MemoryBroker`] and on the real RabbitMQ at `AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). What each run observed (which
//! queue held which message, in what order, with which `x-death` table,
//! delivery count, headers, redelivered flag, confirms and returns) is
//! recorded as a list of [`Event`]s with the run's unique name prefix
//! removed, and the two lists must be equal. `x-death` times are not
//! compared.
//!
//! Time: a scenario calls `wait(d)`, which advances the memory broker's
//! clock, or sleeps on the real broker (the real runs use TTLs of 50 ms).
//!
//! Without a reachable RabbitMQ the real half is skipped with a note, except
//! under `CI=true`, where a missing broker fails the test. The memory half
//! always runs and also checks the key facts by itself.
//!
//! `DIFF_SHOW=1 cargo test --test differential -- --nocapture` prints both
//! runs' observations.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use worker_testkit::memory::MemoryBroker;

/// One `x-death` entry, without its time.
#[derive(Debug, Clone, PartialEq)]
struct Death {
    queue: String,
    reason: String,
    count: i64,
    exchange: String,
    routing_keys: Vec<String>,
}

/// Something a scenario observed.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// A message taken from `queue` (by basic.get or a consumer).
    Got {
        queue: String,
        body: String,
        redelivered: bool,
        exchange: String,
        routing_key: String,
        /// `x-death`, newest first.
        deaths: Vec<Death>,
        /// Every other header as `type:value`.
        headers: BTreeMap<String, String>,
        expiration: Option<String>,
    },
    /// basic.get found `queue` empty.
    Empty { queue: String },
    /// A publisher confirm: `ack`, `nack`, with `+return <code> <text>` when returned first.
    Confirm { body: String, outcome: String },
    /// A channel error.
    ChannelError { op: String, code: u16 },
    /// Free text.
    Note(String),
}

enum Side {
    Memory(MemoryBroker),
    Real,
}

/// A connection to one broker plus what the scenario saw there.
struct Env {
    side: Side,
    conn: Connection,
    ch: Channel,
    prefix: String,
    queues: Vec<String>,
    exchanges: Vec<String>,
    log: Vec<Event>,
}

/// Queue or binding arguments, short to write.
fn args(items: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in items {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes()))
}

fn i(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

fn render(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(x) => format!("S:{}", String::from_utf8_lossy(x.as_bytes())),
        AMQPValue::ShortString(x) => format!("s:{x}"),
        AMQPValue::LongLongInt(x) => format!("l:{x}"),
        AMQPValue::LongInt(x) => format!("I:{x}"),
        AMQPValue::ShortInt(x) => format!("s16:{x}"),
        AMQPValue::ShortShortInt(x) => format!("b:{x}"),
        AMQPValue::Timestamp(_) => "T:<time>".to_owned(),
        AMQPValue::FieldArray(a) => format!(
            "A:[{}]",
            a.as_slice()
                .iter()
                .map(render)
                .collect::<Vec<_>>()
                .join(",")
        ),
        AMQPValue::FieldTable(t) => format!(
            "F:{{{}}}",
            t.inner()
                .iter()
                .map(|(k, v)| format!("{k}={}", render(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(x)) => String::from_utf8_lossy(x.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(x)) => x.to_string(),
        _ => String::new(),
    }
}

fn int(v: Option<&AMQPValue>) -> i64 {
    match v {
        Some(AMQPValue::LongLongInt(x)) => *x,
        Some(AMQPValue::LongInt(x)) => i64::from(*x),
        Some(AMQPValue::LongUInt(x)) => i64::from(*x),
        Some(AMQPValue::ShortInt(x)) => i64::from(*x),
        Some(AMQPValue::ShortUInt(x)) => i64::from(*x),
        Some(AMQPValue::ShortShortInt(x)) => i64::from(*x),
        Some(AMQPValue::ShortShortUInt(x)) => i64::from(*x),
        _ => -1,
    }
}

fn error_code(e: &lapin::Error) -> u16 {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_id(),
        _ => 0,
    }
}

impl Env {
    async fn open(side: Side, url: &str) -> Result<Env, String> {
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Env {
            side,
            conn,
            ch,
            prefix: format!("dt-{}", uuid::Uuid::new_v4().simple()),
            queues: Vec::new(),
            exchanges: Vec::new(),
            log: Vec::new(),
        })
    }

    fn is_memory(&self) -> bool {
        matches!(self.side, Side::Memory(_))
    }

    /// The run-unique name for `name`.
    fn n(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// `name` without the run prefix.
    fn strip(&self, name: &str) -> String {
        name.replace(&format!("{}.", self.prefix), "")
    }

    fn note(&mut self, text: impl Into<String>) {
        self.log.push(Event::Note(text.into()));
    }

    /// Advances the memory clock, or sleeps on the real broker.
    async fn wait(&self, d: Duration) {
        match &self.side {
            Side::Memory(broker) => {
                // A round trip first: frames sent before it (acks, rejects)
                // have been processed when it returns.
                self.ch
                    .basic_qos(0, BasicQosOptions::default())
                    .await
                    .expect("basic.qos");
                broker.clock().advance(d);
            }
            Side::Real => tokio::time::sleep(d).await,
        }
    }

    /// Lets the real broker finish asynchronous work (dead-lettering after
    /// a reject, expiry timers); nothing to wait for in memory.
    async fn settle(&self) {
        if !self.is_memory() {
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    }

    async fn fresh_channel(&mut self) {
        self.ch = self.conn.create_channel().await.expect("channel");
        self.ch
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
    }

    async fn queue(&mut self, name: &str, arguments: FieldTable) {
        let full = self.n(name);
        self.ch
            .queue_declare(
                full.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .unwrap_or_else(|e| panic!("declare {full}: {e}"));
        self.queues.push(full);
    }

    /// Declares and records a channel error instead of panicking.
    async fn try_queue(&mut self, op: &str, name: &str, arguments: FieldTable, passive: bool) {
        let full = self.n(name);
        let r = self
            .ch
            .queue_declare(
                full.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    passive,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await;
        match r {
            Ok(q) => self.note(format!("{op}: ok, {} messages", q.message_count())),
            Err(e) => {
                self.log.push(Event::ChannelError {
                    op: op.to_owned(),
                    code: error_code(&e),
                });
                self.fresh_channel().await;
            }
        }
    }

    async fn exchange(&mut self, name: &str, kind: ExchangeKind) {
        let full = self.n(name);
        self.ch
            .exchange_declare(
                full.as_str().into(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("declare exchange {full}: {e}"));
        self.exchanges.push(full);
    }

    async fn bind(&mut self, queue: &str, exchange: &str, key: &str, arguments: FieldTable) {
        self.ch
            .queue_bind(
                self.n(queue).as_str().into(),
                self.n(exchange).as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                arguments,
            )
            .await
            .unwrap_or_else(|e| panic!("bind {queue} to {exchange} with {key}: {e}"));
    }

    /// Publishes (persistent, with confirms) and records the confirm.
    /// `exchange` is a scenario name, or "" for the default exchange;
    /// `key` is used as given, or prefixed when it starts with `@`.
    async fn publish(&mut self, exchange: &str, key: &str, body: &str, opts: Publish) {
        let exchange = if exchange.is_empty() {
            String::new()
        } else {
            self.n(exchange)
        };
        let key = match key.strip_prefix('@') {
            Some(k) => self.n(k),
            None => key.to_owned(),
        };
        let mut props = BasicProperties::default().with_delivery_mode(2);
        if let Some(e) = &opts.expiration {
            props = props.with_expiration(e.as_str().into());
        }
        if let Some(h) = opts.headers {
            props = props.with_headers(h);
        }
        if let Some(p) = opts.priority {
            props = props.with_priority(p);
        }
        let confirm = self
            .ch
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions {
                    mandatory: opts.mandatory,
                    immediate: false,
                },
                body.as_bytes(),
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        let outcome = match confirm {
            lapin::Confirmation::Ack(None) => "ack".to_owned(),
            lapin::Confirmation::Nack(None) => "nack".to_owned(),
            lapin::Confirmation::Ack(Some(r)) => {
                format!("ack+return {} {}", r.reply_code, r.reply_text)
            }
            lapin::Confirmation::Nack(Some(r)) => {
                format!("nack+return {} {}", r.reply_code, r.reply_text)
            }
            lapin::Confirmation::NotRequested => "not requested".to_owned(),
        };
        self.log.push(Event::Confirm {
            body: body.to_owned(),
            outcome,
        });
    }

    async fn send(&mut self, queue: &str, body: &str) {
        self.publish("", &format!("@{queue}"), body, Publish::default())
            .await;
    }

    fn record(&mut self, queue: &str, d: &lapin::message::Delivery) {
        let mut deaths = Vec::new();
        let mut headers = BTreeMap::new();
        if let Some(table) = d.properties.headers() {
            for (k, v) in table.inner() {
                if k.as_str() == "x-death" {
                    if let AMQPValue::FieldArray(entries) = v {
                        for e in entries.as_slice() {
                            if let AMQPValue::FieldTable(t) = e {
                                let t = t.inner();
                                let keys = match t.get("routing-keys") {
                                    Some(AMQPValue::FieldArray(a)) => a
                                        .as_slice()
                                        .iter()
                                        .map(|k| self.strip(&text(Some(k))))
                                        .collect(),
                                    _ => Vec::new(),
                                };
                                // Field types matter too: record them beside the values.
                                let types: Vec<String> = t
                                    .iter()
                                    .map(|(k, v)| {
                                        format!("{k}:{}", render(v).split(':').next().unwrap_or(""))
                                    })
                                    .collect();
                                headers
                                    .entry("x-death field types".to_owned())
                                    .or_insert_with(|| types.join(","));
                                deaths.push(Death {
                                    queue: self.strip(&text(t.get("queue"))),
                                    reason: text(t.get("reason")),
                                    count: int(t.get("count")),
                                    exchange: self.strip(&text(t.get("exchange"))),
                                    routing_keys: keys,
                                });
                            }
                        }
                    }
                } else {
                    headers.insert(k.to_string(), self.strip(&render(v)));
                }
            }
        }
        self.log.push(Event::Got {
            queue: queue.to_owned(),
            body: String::from_utf8_lossy(&d.data).into_owned(),
            redelivered: d.redelivered,
            exchange: self.strip(d.exchange.as_str()),
            routing_key: self.strip(d.routing_key.as_str()),
            deaths,
            headers,
            expiration: d.properties.expiration().as_ref().map(|e| e.to_string()),
        });
    }

    /// basic.get one message (recorded), not yet settled.
    async fn get(&mut self, queue: &str) -> Option<lapin::message::Delivery> {
        self.settle().await;
        let got = self
            .ch
            .basic_get(self.n(queue).as_str().into(), BasicGetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("basic.get {queue}: {e}"));
        match got {
            Some(m) => {
                self.record(queue, &m.delivery);
                Some(m.delivery)
            }
            None => {
                self.log.push(Event::Empty {
                    queue: queue.to_owned(),
                });
                None
            }
        }
    }

    /// basic.get that waits (on the real broker, up to 5 s) for a message
    /// that asynchronous broker work (dead-lettering, expiry) is bringing.
    async fn take(&mut self, queue: &str) -> Option<lapin::message::Delivery> {
        if !self.is_memory() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.depth(queue).await == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.get(queue).await
    }

    /// Ready messages in `queue` (not recorded).
    async fn depth(&mut self, queue: &str) -> u32 {
        let ch = self.conn.create_channel().await.expect("channel");
        let n = ch
            .queue_declare(
                self.n(queue).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.message_count())
            .unwrap_or(0);
        let _ = ch.close(200, "depth".into()).await;
        n
    }

    /// On the real broker, waits (up to 5 s) until `queue` holds `n`
    /// messages; the memory broker is already there.
    async fn await_depth(&mut self, queue: &str, n: u32) {
        if self.is_memory() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.depth(queue).await < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes every message of `queue` (recorded and acked) until it is empty.
    async fn drain(&mut self, queue: &str) -> usize {
        let mut n = 0;
        while let Some(d) = self.get(queue).await {
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
            n += 1;
        }
        n
    }

    /// Deletes what the scenario declared and returns the observations.
    async fn finish(self) -> Vec<Event> {
        let ch = self.conn.create_channel().await.expect("cleanup channel");
        for q in &self.queues {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for x in &self.exchanges {
            let _ = ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = self.conn.close(200, "done".into()).await;
        self.log
    }
}

#[derive(Default)]
struct Publish {
    mandatory: bool,
    expiration: Option<String>,
    headers: Option<FieldTable>,
    priority: Option<u8>,
}

/// The version the real broker announces, so that the memory broker can
/// follow the same rules; `None` when it does not answer.
async fn real_version(url: &str) -> Option<worker_core::broker::Version> {
    let uri: lapin::uri::AMQPUri = url.parse().ok()?;
    let tls = lapin::tcp::OwnedTLSConfig::default();
    worker_core::broker::probe_version(&uri, &tls, Duration::from_secs(5)).await
}

fn real_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Runs `scenario` on the memory broker and on RabbitMQ, asserts that both
/// observed the same, and returns the memory broker's observations.
async fn differential<F, Fut>(name: &str, scenario: F) -> Vec<Event>
where
    F: Fn(Env) -> Fut,
    Fut: Future<Output = Env>,
{
    let url = real_url();
    let version = real_version(&url).await;
    let broker = match version {
        Some(v) => MemoryBroker::start_as(v).await,
        None => MemoryBroker::start().await,
    };
    let url = broker.url();
    let memory_env = Env::open(Side::Memory(broker), &url)
        .await
        .expect("connect to the memory broker");
    let memory = tokio::time::timeout(Duration::from_secs(20), scenario(memory_env))
        .await
        .unwrap_or_else(|_| panic!("{name}: the memory run timed out"))
        .finish()
        .await;

    let url = real_url();
    let real_env = match Env::open(Side::Real, &url).await {
        Ok(env) => env,
        Err(e) => {
            worker_testkit::skip::unless_ci(format!(
                "{name}: RabbitMQ at {} unreachable ({e}); compared nothing, checked the memory broker only (apt-get install rabbitmq-server, or set AMQP_URL)",
                worker_core::redact_url(&url)
            ));
            return memory;
        }
    };
    let real = tokio::time::timeout(Duration::from_secs(20), scenario(real_env))
        .await
        .unwrap_or_else(|_| panic!("{name}: the RabbitMQ run timed out"))
        .finish()
        .await;
    if std::env::var_os("DIFF_SHOW").is_some() {
        println!("{name} on the memory broker: {memory:#?}\n{name} on RabbitMQ: {real:#?}");
    }
    if memory != real {
        let width = memory.len().max(real.len());
        let mut table = String::new();
        for k in 0..width {
            let m = memory.get(k).map(|e| format!("{e:?}")).unwrap_or_default();
            let r = real.get(k).map(|e| format!("{e:?}")).unwrap_or_default();
            let mark = if m == r { "  " } else { "!!" };
            table.push_str(&format!("{mark} {k}\n   memory:   {m}\n   rabbitmq: {r}\n"));
        }
        panic!("{name}: the memory broker and RabbitMQ differ\n{table}");
    }
    memory
}

fn got(events: &[Event], queue: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Got { queue: q, body, .. } if q == queue => Some(body.clone()),
            _ => None,
        })
        .collect()
}

fn last_deaths(events: &[Event], queue: &str) -> Vec<(String, String, i64)> {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Got {
                queue: q, deaths, ..
            } if q == queue => Some(
                deaths
                    .iter()
                    .map(|d| (d.queue.clone(), d.reason.clone(), d.count))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn death(queue: &str, reason: &str, count: i64) -> (String, String, i64) {
    (queue.to_owned(), reason.to_owned(), count)
}

// ---------------------------------------------------------------- scenarios

async fn topic_routing(mut env: Env) -> Env {
    env.exchange("events", ExchangeKind::Topic).await;
    for (q, key) in [
        ("star", "order.*"),
        ("hash", "order.#"),
        ("tail", "#.eu"),
        ("mid", "*.paid.*"),
        ("all", "#"),
    ] {
        env.queue(q, FieldTable::default()).await;
        env.bind(q, "events", key, FieldTable::default()).await;
    }
    for key in [
        "order.paid",
        "order",
        "order.paid.eu",
        "invoice.eu",
        "eu",
        "order..eu",
        "x.paid.y",
        "orders.paid",
    ] {
        env.publish("events", key, key, Publish::default()).await;
    }
    for q in ["star", "hash", "tail", "mid", "all"] {
        env.drain(q).await;
    }
    env
}

#[tokio::test]
async fn topic_routing_with_star_and_hash() {
    let events = differential("topic", topic_routing).await;
    assert_eq!(got(&events, "star"), ["order.paid"]);
    assert_eq!(
        got(&events, "hash"),
        ["order.paid", "order", "order.paid.eu", "order..eu"]
    );
    assert_eq!(
        got(&events, "tail"),
        ["order.paid.eu", "invoice.eu", "eu", "order..eu"]
    );
    assert_eq!(got(&events, "mid"), ["order.paid.eu", "x.paid.y"]);
    assert_eq!(got(&events, "all").len(), 8);
}

async fn fanout_direct_headers(mut env: Env) -> Env {
    env.exchange("fan", ExchangeKind::Fanout).await;
    env.exchange("direct", ExchangeKind::Direct).await;
    env.exchange("hdr", ExchangeKind::Headers).await;
    for q in ["f1", "f2", "d1", "d2", "all", "any"] {
        env.queue(q, FieldTable::default()).await;
    }
    env.bind("f1", "fan", "", FieldTable::default()).await;
    env.bind("f2", "fan", "ignored", FieldTable::default())
        .await;
    env.bind("d1", "direct", "red", FieldTable::default()).await;
    env.bind("d2", "direct", "red", FieldTable::default()).await;
    env.bind("d2", "direct", "blue", FieldTable::default())
        .await;
    env.bind(
        "all",
        "hdr",
        "",
        args(&[("x-match", s("all")), ("kind", s("a")), ("size", s("big"))]),
    )
    .await;
    env.bind(
        "any",
        "hdr",
        "",
        args(&[("x-match", s("any")), ("kind", s("a")), ("size", s("big"))]),
    )
    .await;
    env.publish("fan", "whatever", "fan-1", Publish::default())
        .await;
    env.publish("fan", "", "fan-2", Publish::default()).await;
    for key in ["red", "blue", "green"] {
        env.publish("direct", key, key, Publish::default()).await;
    }
    for (body, kind, size) in [
        ("both", "a", "big"),
        ("kind-only", "a", "small"),
        ("none", "b", "small"),
    ] {
        let headers = args(&[("kind", s(kind)), ("size", s(size))]);
        env.publish(
            "hdr",
            "",
            body,
            Publish {
                headers: Some(headers),
                mandatory: true,
                ..Publish::default()
            },
        )
        .await;
    }
    for q in ["f1", "f2", "d1", "d2", "all", "any"] {
        env.drain(q).await;
    }
    env
}

#[tokio::test]
async fn fanout_direct_and_headers_exchanges() {
    let events = differential("fanout", fanout_direct_headers).await;
    assert_eq!(got(&events, "f1"), ["fan-1", "fan-2"]);
    assert_eq!(got(&events, "f2"), ["fan-1", "fan-2"]);
    assert_eq!(got(&events, "d1"), ["red"]);
    assert_eq!(got(&events, "d2"), ["red", "blue"]);
    assert_eq!(got(&events, "all"), ["both"]);
    assert_eq!(got(&events, "any"), ["both", "kind-only"]);
}

/// q dead-letters rejected messages to w; w holds them for a TTL and
/// dead-letters them back to q. Three rounds.
async fn reject_ttl_cycle(mut env: Env, queue_type: &str) -> Env {
    let ttl = 50;
    let (q, w) = (env.n("q"), env.n("w"));
    env.queue(
        "q",
        args(&[
            ("x-queue-type", s(queue_type)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&w)),
        ]),
    )
    .await;
    env.queue(
        "w",
        args(&[
            ("x-queue-type", s(queue_type)),
            ("x-message-ttl", i(ttl)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&q)),
        ]),
    )
    .await;
    env.send("q", "job").await;
    for _round in 0..3 {
        let d = env.take("q").await.expect("the job is in q");
        d.acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        env.settle().await;
        env.wait(Duration::from_millis(ttl as u64 * 4)).await;
    }
    env.await_depth("q", 1).await;
    env.drain("q").await;
    env.drain("w").await;
    env
}

#[tokio::test]
async fn reject_ttl_back_cycle_three_times_classic() {
    let events = differential("cycle-classic", |env| reject_ttl_cycle(env, "classic")).await;
    assert_eq!(
        last_deaths(&events, "q"),
        [death("w", "expired", 3), death("q", "rejected", 3)]
    );
}

#[tokio::test]
async fn reject_ttl_back_cycle_three_times_quorum() {
    let events = differential("cycle-quorum", |env| reject_ttl_cycle(env, "quorum")).await;
    assert_eq!(
        last_deaths(&events, "q"),
        [death("w", "expired", 3), death("q", "rejected", 3)]
    );
}

/// Queue TTL to a dead-letter target, and per-message TTLs that only
/// expire at the head of the queue.
async fn ttl_expiry(mut env: Env) -> Env {
    let dl = env.n("dead");
    env.queue("dead", FieldTable::default()).await;
    env.queue(
        "ttl",
        args(&[
            ("x-message-ttl", i(50)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dl)),
        ]),
    )
    .await;
    env.queue(
        "per-message",
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dl)),
        ]),
    )
    .await;
    env.send("ttl", "t1").await;
    env.send("ttl", "t2").await;
    env.wait(Duration::from_millis(200)).await;
    env.await_depth("dead", 2).await;
    env.drain("ttl").await;
    env.drain("dead").await;

    // A long-lived head blocks a short-lived message behind it.
    env.publish(
        "",
        "@per-message",
        "long",
        Publish {
            expiration: Some("60000".into()),
            ..Publish::default()
        },
    )
    .await;
    env.publish(
        "",
        "@per-message",
        "short",
        Publish {
            expiration: Some("50".into()),
            ..Publish::default()
        },
    )
    .await;
    env.wait(Duration::from_millis(200)).await;
    env.drain("dead").await;
    let head = env.get("per-message").await.expect("the long-lived head");
    head.acker.ack(BasicAckOptions::default()).await.unwrap();
    // Now the expired message is at the head: it goes, and is dead-lettered.
    env.get("per-message").await;
    env.await_depth("dead", 1).await;
    env.drain("dead").await;
    env
}

#[tokio::test]
async fn ttl_expiry_dead_letters_and_only_at_the_head() {
    let events = differential("ttl", ttl_expiry).await;
    assert_eq!(got(&events, "dead"), ["t1", "t2", "short"]);
    assert_eq!(got(&events, "per-message"), ["long"]);
    assert_eq!(
        last_deaths(&events, "dead"),
        [death("per-message", "expired", 1)]
    );
}

/// x-delivery-limit 2: three deliveries, then dead-lettered with reason delivery_limit.
async fn delivery_limit(mut env: Env) -> Env {
    let dl = env.n("limit-dead");
    env.queue("limit-dead", FieldTable::default()).await;
    env.queue(
        "limited",
        args(&[
            ("x-queue-type", s("quorum")),
            ("x-delivery-limit", i(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dl)),
        ]),
    )
    .await;
    env.send("limited", "crash").await;
    let ch = env.conn.create_channel().await.unwrap();
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            env.n("limited").as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for round in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("delivery {} did not come", round + 1))
            .expect("consumer open")
            .expect("delivery");
        env.record("limited", &d);
        if round == 1 {
            d.acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .unwrap();
        } else {
            d.acker
                .reject(BasicRejectOptions { requeue: true })
                .await
                .unwrap();
        }
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    env.note(format!("a fourth delivery: {}", extra.is_ok()));
    let _ = ch.close(200, "done".into()).await;
    env.await_depth("limit-dead", 1).await;
    env.drain("limited").await;
    env.drain("limit-dead").await;
    env
}

#[tokio::test]
async fn quorum_delivery_limit_dead_letters_after_three_counted_deliveries() {
    let events = differential("delivery-limit", delivery_limit).await;
    let caps = worker_core::broker::Capabilities::of(
        real_version(&real_url())
            .await
            .unwrap_or(worker_testkit::memory::DEFAULT_VERSION),
    );
    // The second return is a nack: counted before 4.3, so the third
    // return passes the limit of 2; from 4.3 not, so a fourth delivery
    // comes first (and the scenario's channel close, which counts, passes
    // the limit).
    assert!(events.contains(&Event::Note(format!(
        "a fourth delivery: {}",
        !caps.nack_requeue_counts()
    ))));
    let counts: Vec<Option<String>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Got { queue, headers, .. } if queue == "limited" => {
                Some(headers.get("x-delivery-count").cloned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(counts.len(), 3, "{events:#?}");
    assert_eq!(counts[0], None, "absent on the first delivery");
    assert_eq!(got(&events, "limit-dead"), ["crash"]);
    assert_eq!(
        last_deaths(&events, "limit-dead"),
        [death("limited", "delivery_limit", 1)]
    );
}

async fn drop_head(mut env: Env, queue_type: &str) -> Env {
    let dl = env.n("overflow-dead");
    env.queue("overflow-dead", FieldTable::default()).await;
    env.queue(
        "short",
        args(&[
            ("x-queue-type", s(queue_type)),
            ("x-max-length", i(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dl)),
        ]),
    )
    .await;
    for n in 1..=4 {
        env.send("short", &format!("m{n}")).await;
    }
    env.await_depth("overflow-dead", 2).await;
    env.drain("short").await;
    env.drain("overflow-dead").await;
    env
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_the_oldest_classic() {
    let events = differential("drop-head-classic", |env| drop_head(env, "classic")).await;
    assert_eq!(got(&events, "short"), ["m3", "m4"]);
    assert_eq!(got(&events, "overflow-dead"), ["m1", "m2"]);
    assert_eq!(
        last_deaths(&events, "overflow-dead"),
        [death("short", "maxlen", 1)]
    );
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_the_oldest_quorum() {
    let events = differential("drop-head-quorum", |env| drop_head(env, "quorum")).await;
    assert_eq!(got(&events, "short"), ["m3", "m4"]);
    assert_eq!(got(&events, "overflow-dead"), ["m1", "m2"]);
}

/// Publishes `body` to `queue` with a priority.
async fn send_with_priority(env: &mut Env, queue: &str, body: &str, priority: u8) {
    env.publish(
        "",
        &format!("@{queue}"),
        body,
        Publish {
            priority: Some(priority),
            ..Publish::default()
        },
    )
    .await;
}

/// A classic priority queue serves the highest priority first (a priority
/// above `x-max-priority` counts as the maximum), first in first out
/// within one priority; a quorum queue refuses `x-max-priority`.
async fn classic_priorities(mut env: Env) -> Env {
    env.queue("prio", args(&[("x-max-priority", i(5))])).await;
    for (body, priority) in [("a1", 1), ("b0", 0), ("c5", 5), ("d9", 9), ("e1", 1)] {
        send_with_priority(&mut env, "prio", body, priority).await;
    }
    env.drain("prio").await;
    env.try_queue(
        "quorum with x-max-priority",
        "prio-quorum",
        args(&[("x-queue-type", s("quorum")), ("x-max-priority", i(5))]),
        false,
    )
    .await;
    env
}

#[tokio::test]
async fn classic_priority_queues_serve_the_highest_first() {
    let events = differential("classic-priorities", classic_priorities).await;
    assert_eq!(got(&events, "prio"), ["c5", "d9", "a1", "e1", "b0"]);
    assert!(events.contains(&Event::ChannelError {
        op: "quorum with x-max-priority".into(),
        code: 406
    }));
}

/// Quorum queues: two levels on 4.0 (priority 5 and above is high), two
/// high then one normal while both wait; 32 strict levels on 4.3; no
/// priorities on 3.10.
async fn quorum_priorities(mut env: Env) -> Env {
    env.queue("qprio", args(&[("x-queue-type", s("quorum"))]))
        .await;
    for n in 0..4 {
        send_with_priority(&mut env, "qprio", &format!("low{n}"), 0).await;
    }
    for n in 0..3 {
        send_with_priority(&mut env, "qprio", &format!("high{n}"), 5).await;
    }
    env.drain("qprio").await;
    env
}

#[tokio::test]
async fn quorum_priorities_follow_the_broker_version() {
    let events = differential("quorum-priorities", quorum_priorities).await;
    let version = real_version(&real_url())
        .await
        .unwrap_or(worker_testkit::memory::DEFAULT_VERSION);
    let caps = worker_core::broker::Capabilities::of(version);
    let expected: &[&str] = if caps.quorum_priorities_strict() {
        &["high0", "high1", "high2", "low0", "low1", "low2", "low3"]
    } else if caps.quorum_priorities() {
        &["high0", "high1", "low0", "high2", "low1", "low2", "low3"]
    } else {
        &["low0", "low1", "low2", "low3", "high0", "high1", "high2"]
    };
    assert_eq!(got(&events, "qprio"), expected);
}

/// A task's work queue as `topology::plan` declares it for the task
/// options `priority`, `max_length`, `overflow` and `message_ttl`: what
/// overflows or expires is dead-lettered to its parking queue with reason
/// `maxlen` or `expired`; a refused publish is a nack.
async fn task_queue_limits(mut env: Env, queue_type: worker_core::QueueType) -> Env {
    use worker_core::topology::{plan, TaskSpec};
    use worker_core::{Overflow, QueueLimits, QueueType, TaskOptions};
    let options = TaskOptions {
        queue_type,
        priority: (queue_type == QueueType::Classic).then_some(10),
        limits: QueueLimits {
            max_length: Some(2),
            overflow: match queue_type {
                QueueType::Classic => Overflow::DropHead,
                QueueType::Quorum => Overflow::RejectPublish,
            },
            // Long enough that the publishes overflow before anything
            // expires, even on a loaded machine.
            message_ttl: Some(Duration::from_secs(1)),
            ..QueueLimits::default()
        },
        ..TaskOptions::default()
    };
    let spec = TaskSpec::new("t", &env.n("jobs"), options);
    let work = plan(&spec, worker_core::broker::Capabilities::unknown())[0].wire_arguments();
    env.queue("jobs.parking", FieldTable::default()).await;
    env.queue("jobs", work).await;
    for n in 1..=4 {
        env.send("jobs", &format!("m{n}")).await;
    }
    env.wait(Duration::from_millis(1500)).await;
    let parked = if queue_type == QueueType::Classic {
        4
    } else {
        3
    };
    env.await_depth("jobs.parking", parked).await;
    env.drain("jobs").await;
    env.drain("jobs.parking").await;
    env
}

#[tokio::test]
async fn task_queue_limits_park_what_overflows_or_expires_classic() {
    let events = differential("task-limits-classic", |env| {
        task_queue_limits(env, worker_core::QueueType::Classic)
    })
    .await;
    assert_eq!(got(&events, "jobs.parking"), ["m1", "m2", "m3", "m4"]);
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Got { queue, deaths, .. } if queue == "jobs.parking" => {
                Some(deaths[0].reason.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["maxlen", "maxlen", "expired", "expired"]);
}

#[tokio::test]
async fn task_queue_limits_park_what_overflows_or_expires_quorum() {
    let events = differential("task-limits-quorum", |env| {
        task_queue_limits(env, worker_core::QueueType::Quorum)
    })
    .await;
    // The soft limit takes m3, refuses m4; the three taken expire.
    assert!(events.contains(&Event::Confirm {
        body: "m4".into(),
        outcome: "nack".into()
    }));
    assert_eq!(got(&events, "jobs.parking"), ["m1", "m2", "m3"]);
    assert_eq!(
        last_deaths(&events, "jobs.parking"),
        [death("jobs", "expired", 1)]
    );
}

async fn reject_publish(mut env: Env, queue_type: &str) -> Env {
    env.queue(
        "bounded",
        args(&[
            ("x-queue-type", s(queue_type)),
            ("x-max-length", i(2)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    for n in 1..=4 {
        env.send("bounded", &format!("m{n}")).await;
    }
    env.drain("bounded").await;
    // Room again: accepted.
    env.send("bounded", "m5").await;
    env.drain("bounded").await;
    env
}

#[tokio::test]
async fn max_length_reject_publish_nacks_classic() {
    let events = differential("reject-publish-classic", |env| {
        reject_publish(env, "classic")
    })
    .await;
    assert_eq!(got(&events, "bounded"), ["m1", "m2", "m5"]);
}

#[tokio::test]
async fn max_length_reject_publish_nacks_quorum() {
    let events = differential("reject-publish-quorum", |env| reject_publish(env, "quorum")).await;
    // Quorum queues enforce the limit softly: the publish that takes the
    // queue over it is still accepted, the next one is refused.
    assert_eq!(got(&events, "bounded"), ["m1", "m2", "m3", "m5"]);
}

async fn mandatory(mut env: Env) -> Env {
    env.queue("routed", FieldTable::default()).await;
    env.publish(
        "",
        "@nowhere",
        "lost",
        Publish {
            mandatory: true,
            ..Publish::default()
        },
    )
    .await;
    env.publish("", "@nowhere", "dropped", Publish::default())
        .await;
    env.publish(
        "",
        "@routed",
        "kept",
        Publish {
            mandatory: true,
            ..Publish::default()
        },
    )
    .await;
    env.drain("routed").await;
    env
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_before_the_ack() {
    let events = differential("mandatory", mandatory).await;
    assert_eq!(
        events[0],
        Event::Confirm {
            body: "lost".into(),
            outcome: "ack+return 312 NO_ROUTE".into()
        }
    );
}

/// Requeue by nack and by closing a channel with unacked deliveries.
async fn redelivery(mut env: Env, queue_type: &str) -> Env {
    env.queue("redo", args(&[("x-queue-type", s(queue_type))]))
        .await;
    for n in 1..=3 {
        env.send("redo", &format!("m{n}")).await;
    }
    let first = env.get("redo").await.unwrap();
    let second = env.get("redo").await.unwrap();
    second
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    first
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    env.await_depth("redo", 3).await;
    // Deliveries on a channel that closes go back.
    let ch = env.conn.create_channel().await.unwrap();
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            env.n("redo").as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("delivery")
            .unwrap()
            .unwrap();
        env.record("redo", &d);
    }
    let third = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
    env.note(format!(
        "prefetch 2 held back the third: {}",
        third.is_err()
    ));
    ch.close(200, "bye".into()).await.unwrap();
    env.await_depth("redo", 3).await;
    // A consumer that nacks its second delivery, then its first.
    let ch = env.conn.create_channel().await.unwrap();
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            env.n("redo").as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("delivery")
            .unwrap()
            .unwrap();
        env.record("redo", &d);
        held.push(d);
    }
    for k in [1, 0] {
        held[k]
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("redelivery")
            .unwrap()
            .unwrap();
        env.record("redo", &d);
    }
    ch.close(200, "bye".into()).await.unwrap();
    env.await_depth("redo", 3).await;
    env.drain("redo").await;
    env
}

#[tokio::test]
async fn requeue_and_channel_close_redeliver_classic() {
    let events = differential("redelivery-classic", |env| redelivery(env, "classic")).await;
    assert!(events.contains(&Event::Note("prefetch 2 held back the third: true".into())));
}

#[tokio::test]
async fn requeue_and_channel_close_redeliver_quorum() {
    differential("redelivery-quorum", |env| redelivery(env, "quorum")).await;
}

async fn declare_errors(mut env: Env) -> Env {
    env.queue("declared", args(&[("x-message-ttl", i(1000))]))
        .await;
    env.try_queue(
        "same arguments",
        "declared",
        args(&[("x-message-ttl", AMQPValue::LongInt(1000))]),
        false,
    )
    .await;
    env.try_queue(
        "other ttl",
        "declared",
        args(&[("x-message-ttl", i(2000))]),
        false,
    )
    .await;
    env.try_queue("no ttl", "declared", FieldTable::default(), false)
        .await;
    env.try_queue("passive", "declared", FieldTable::default(), true)
        .await;
    env.try_queue("passive missing", "missing", FieldTable::default(), true)
        .await;
    env.try_queue(
        "other type",
        "declared",
        args(&[("x-message-ttl", i(1000)), ("x-queue-type", s("quorum"))]),
        false,
    )
    .await;
    env.queue("quorum", args(&[("x-queue-type", s("quorum"))]))
        .await;
    env.try_queue(
        "quorum without type",
        "quorum",
        FieldTable::default(),
        false,
    )
    .await;
    env.try_queue(
        "quorum as classic",
        "quorum",
        args(&[("x-queue-type", s("classic"))]),
        false,
    )
    .await;
    env.queue(
        "limited",
        args(&[("x-queue-type", s("quorum")), ("x-delivery-limit", i(5))]),
    )
    .await;
    env.try_queue(
        "other delivery limit",
        "limited",
        args(&[("x-queue-type", s("quorum")), ("x-delivery-limit", i(6))]),
        false,
    )
    .await;
    env.try_queue(
        "other overflow",
        "limited",
        args(&[
            ("x-queue-type", s("quorum")),
            ("x-delivery-limit", i(5)),
            ("x-overflow", s("reject-publish")),
        ]),
        false,
    )
    .await;
    env.try_queue(
        "other strategy",
        "limited",
        args(&[
            ("x-queue-type", s("quorum")),
            ("x-delivery-limit", i(5)),
            ("x-dead-letter-strategy", s("at-least-once")),
        ]),
        false,
    )
    .await;
    let missing = env
        .ch
        .basic_publish(
            env.n("no-exchange").as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    let code = match missing {
        Ok(confirm) => match confirm.await {
            Ok(_) => match env.ch.basic_qos(1, BasicQosOptions::default()).await {
                Ok(()) => 0,
                Err(e) => error_code(&e),
            },
            Err(e) => error_code(&e),
        },
        Err(e) => error_code(&e),
    };
    env.log.push(Event::ChannelError {
        op: "publish to a missing exchange".into(),
        code,
    });
    env.fresh_channel().await;
    env
}

#[tokio::test]
async fn declare_errors_match() {
    let events = differential("declare", declare_errors).await;
    assert!(events.contains(&Event::ChannelError {
        op: "other ttl".into(),
        code: 406
    }));
    assert!(events.contains(&Event::ChannelError {
        op: "passive missing".into(),
        code: 404
    }));
}

/// CC and BCC headers, an exchange-to-exchange binding, dead-lettering that
/// keeps the message's own routing keys, and a TTL cycle with no rejection
/// in it (RabbitMQ drops the message when it would come round again).
async fn routing_extras(mut env: Env) -> Env {
    env.exchange("front", ExchangeKind::Topic).await;
    env.exchange("back", ExchangeKind::Direct).await;
    env.ch
        .exchange_bind(
            env.n("back").as_str().into(),
            env.n("front").as_str().into(),
            "to.#".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.bind");
    for q in ["main", "copy", "hidden", "dl"] {
        env.queue(q, FieldTable::default()).await;
    }
    env.bind("main", "back", "to.main", FieldTable::default())
        .await;
    env.bind("copy", "back", "to.copy", FieldTable::default())
        .await;
    env.bind("hidden", "back", "to.hidden", FieldTable::default())
        .await;
    env.bind("dl", "back", &env.n("expiring"), FieldTable::default())
        .await;
    // copy only gets it by CC, hidden by BCC (which is stripped).
    let mut cc = FieldTable::default();
    cc.insert(
        "CC".into(),
        AMQPValue::FieldArray(vec![s("to.copy"), s("elsewhere")].into()),
    );
    cc.insert(
        "BCC".into(),
        AMQPValue::FieldArray(vec![s("to.hidden")].into()),
    );
    env.publish(
        "front",
        "to.main",
        "cc",
        Publish {
            headers: Some(cc),
            ..Publish::default()
        },
    )
    .await;
    // Dead-lettering with the message's own keys: main -> (reject) -> dlx "back".
    env.queue(
        "expiring",
        args(&[
            ("x-message-ttl", i(50)),
            ("x-dead-letter-exchange", s(&env.n("back"))),
        ]),
    )
    .await;
    env.publish("", "@expiring", "own-keys", Publish::default())
        .await;
    env.wait(Duration::from_millis(200)).await;
    env.await_depth("dl", 1).await;
    for q in ["main", "copy", "hidden", "expiring", "dl"] {
        env.drain(q).await;
    }

    // a and b expire into each other; the second time round it is dropped.
    let (a, b) = (env.n("a"), env.n("b"));
    env.queue(
        "a",
        args(&[
            ("x-message-ttl", i(50)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&b)),
        ]),
    )
    .await;
    env.queue(
        "b",
        args(&[
            ("x-message-ttl", i(50)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&a)),
        ]),
    )
    .await;
    env.send("a", "loop").await;
    for _ in 0..4 {
        env.wait(Duration::from_millis(150)).await;
    }
    env.drain("a").await;
    env.drain("b").await;
    env
}

#[tokio::test]
async fn cc_bcc_exchange_bindings_and_dead_letter_cycles() {
    let events = differential("routing-extras", routing_extras).await;
    assert_eq!(got(&events, "main"), ["cc"]);
    assert_eq!(got(&events, "copy"), ["cc"]);
    assert_eq!(got(&events, "hidden"), ["cc"]);
    assert_eq!(got(&events, "dl"), ["own-keys"]);
    assert_eq!(
        last_deaths(&events, "dl"),
        [death("expiring", "expired", 1)]
    );
    assert!(got(&events, "a").is_empty() && got(&events, "b").is_empty());
}

/// Direct reply-to: a `mandatory` reply to a waiting caller, and one to a
/// caller whose channel closed. Before 4.2 both come back as `NO_ROUTE`
/// (the first is delivered all the same); from 4.2 neither does.
async fn mandatory_direct_replies(mut env: Env) -> Env {
    env.queue("requests", FieldTable::default()).await;
    let requests = env.n("requests");
    let server = env.conn.create_channel().await.unwrap();
    server
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for gone in [false, true] {
        let caller = env.conn.create_channel().await.unwrap();
        let mut replies = caller
            .basic_consume(
                "amq.rabbitmq.reply-to".into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        caller
            .basic_publish(
                "".into(),
                requests.as_str().into(),
                BasicPublishOptions::default(),
                b"?",
                BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
            )
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let request = loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the request never came"
            );
            if let Some(m) = server
                .basic_get(requests.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                break m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let address = request.delivery.properties.reply_to().clone().unwrap();
        if gone {
            caller.close(200, "gone".into()).await.unwrap();
        }
        let confirmation = server
            .basic_publish(
                "".into(),
                address.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                b"reply",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let acked = confirmation.is_ack();
        let returned = confirmation.take_message().map(|m| m.reply_code);
        env.note(format!(
            "caller gone: {gone}, acked: {acked}, returned: {returned:?}"
        ));
        if !gone {
            let delivered = tokio::time::timeout(Duration::from_secs(5), replies.next())
                .await
                .ok()
                .flatten()
                .and_then(Result::ok)
                .map(|d| String::from_utf8_lossy(&d.data).into_owned());
            env.note(format!("delivered: {delivered:?}"));
            caller.close(200, "done".into()).await.unwrap();
        }
    }
    env
}

#[tokio::test]
async fn mandatory_direct_replies_follow_the_broker_version() {
    let events = differential("direct-replies", mandatory_direct_replies).await;
    let version = real_version(&real_url())
        .await
        .unwrap_or(worker_testkit::memory::DEFAULT_VERSION);
    let returned = worker_core::broker::Capabilities::of(version)
        .mandatory_direct_reply_returned()
        .then_some(312);
    for gone in [false, true] {
        let note = format!("caller gone: {gone}, acked: true, returned: {returned:?}");
        assert!(events.contains(&Event::Note(note)), "{events:#?}");
    }
    assert!(events.contains(&Event::Note("delivered: Some(\"reply\")".into())));
}

/// `basic.qos(global = true)` with a prefetch of 1 and consumers on two
/// queues of one channel: honoured (before 4.3), the channel holds one
/// unacked delivery; applied per consumer (4.3), each consumer holds one.
async fn global_qos(mut env: Env) -> Env {
    for q in ["ga", "gb"] {
        env.queue(q, FieldTable::default()).await;
        env.send(q, q).await;
    }
    let ch = env.conn.create_channel().await.unwrap();
    ch.basic_qos(1, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for q in ["ga", "gb"] {
        consumers.push(
            ch.basic_consume(
                env.n(q).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap(),
        );
    }
    // Nothing is acked: a second delivery comes only where the limit is
    // per consumer. A held-back one cannot be awaited, only waited for.
    let held = futures_util::stream::select_all(consumers)
        .take(2)
        .take_until(tokio::time::sleep(Duration::from_millis(500)))
        .count()
        .await;
    env.note(format!("deliveries held: {held}"));
    let _ = ch.close(200, "done".into()).await;
    for q in ["ga", "gb"] {
        env.drain(q).await;
    }
    env
}

#[tokio::test]
async fn global_qos_follows_the_broker_version() {
    let events = differential("global-qos", global_qos).await;
    let version = real_version(&real_url())
        .await
        .unwrap_or(worker_testkit::memory::DEFAULT_VERSION);
    let held = if worker_core::broker::Capabilities::of(version).global_qos() {
        1
    } else {
        2
    };
    assert!(events.contains(&Event::Note(format!("deliveries held: {held}"))));
}

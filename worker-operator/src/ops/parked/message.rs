//! One parked message as the tools show it: what its park headers say, as
//! text and JSON.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::super::format_time;
use worker_core::headers::{self, HeaderValue, Headers};
use worker_core::message::{Delivery, Properties};

/// One parked message, with what the park headers say about it.
#[derive(Debug, Clone)]
pub struct ParkedMessage {
    /// The parking queue it sits in.
    pub queue: String,
    /// Its `message_id` property.
    pub message_id: Option<String>,
    /// The task it was meant for (`rw-park-task`, or the `type` property).
    pub task: Option<String>,
    /// Why it was parked: our reason (`exhausted`, `permanent`,
    /// `undecodable`, ...), or `dead-lettered: <reason>` when the broker
    /// moved it (delivery limit, reject), or `unknown`.
    pub reason: String,
    /// The failure kind of the last error.
    pub error_kind: Option<String>,
    /// The last error's message.
    pub error: Option<String>,
    /// Attempts made before it was parked.
    pub attempts: Option<u64>,
    /// Times it was replayed before.
    pub replays: u64,
    /// When it first failed, seconds since the epoch.
    pub first_failure: Option<u64>,
    /// When it was parked (last failure, or the broker's dead-letter time).
    pub parked_at: Option<u64>,
    /// The host of the worker that parked it.
    pub host: Option<String>,
    /// Its properties, headers included.
    pub properties: Properties,
    /// Its body.
    pub body: Bytes,
}

/// One line of a listing: the fields `parked list` prints and the
/// dashboard shows, built by [`ParkedMessage::row`] for both (and serialized
/// as the rows of `parked list --json` and of the dashboard's JSON API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The parking queue.
    pub queue: String,
    /// Its `message_id` property.
    pub message_id: Option<String>,
    /// The task it was meant for.
    pub task: Option<String>,
    /// Why it was parked.
    pub reason: String,
    /// The failure kind of the last error.
    pub error_kind: Option<String>,
    /// The last error's message.
    pub error: Option<String>,
    /// Attempts made before it was parked.
    pub attempts: Option<u64>,
    /// Times it was replayed before.
    pub replays: u64,
    /// When it first failed (RFC 3339).
    pub first_failure: Option<String>,
    /// When it was parked (RFC 3339).
    pub parked_at: Option<String>,
    /// The host of the worker that parked it.
    pub host: Option<String>,
}

impl ParkedMessage {
    /// The properties an operator is shown (`parked show` and the
    /// dashboard's message page): those that are set, in a fixed order, as
    /// text. Headers are shown apart.
    pub fn shown_properties(&self) -> Vec<(&'static str, String)> {
        let p = &self.properties;
        [
            ("content_type", p.content_type().map(str::to_owned)),
            ("content_encoding", p.content_encoding().map(str::to_owned)),
            ("correlation_id", p.correlation_id().map(str::to_owned)),
            ("reply_to", p.reply_to().map(str::to_owned)),
            ("type", p.kind().map(str::to_owned)),
            ("app_id", p.app_id().map(str::to_owned)),
            ("priority", p.priority().map(|v| v.to_string())),
            ("delivery_mode", p.delivery_mode().map(|v| v.to_string())),
            ("timestamp", p.timestamp().map(format_time)),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect()
    }

    /// Its line in a listing.
    pub fn row(&self) -> Row {
        Row {
            queue: self.queue.clone(),
            message_id: self.message_id.clone(),
            task: self.task.clone(),
            reason: self.reason.clone(),
            error_kind: self.error_kind.clone(),
            error: self.error.clone(),
            attempts: self.attempts,
            replays: self.replays,
            first_failure: self.first_failure.map(format_time),
            parked_at: self.parked_at.map(format_time),
            host: self.host.clone(),
        }
    }

    /// Reads a delivery from a parking queue.
    pub fn from_delivery(queue: &str, delivery: &Delivery) -> ParkedMessage {
        let h = delivery.properties.headers();
        let deaths = h.x_death();
        let reason = h
            .get_str(headers::PARK_REASON)
            .or_else(|| {
                deaths
                    .first()
                    .map(|d| format!("dead-lettered: {}", d.reason))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        ParkedMessage {
            queue: queue.to_owned(),
            message_id: delivery.properties.message_id().map(str::to_owned),
            task: h
                .get_str(headers::PARK_TASK)
                .or_else(|| delivery.properties.kind().map(str::to_owned)),
            reason,
            error_kind: h.get_str(headers::ERROR_KIND),
            error: h.get_str(headers::ERROR_MESSAGE),
            // Our header when a worker parked it; for a message the broker
            // dead-lettered itself, what its x-death and delivery count say.
            attempts: h.get_u64(headers::ATTEMPTS).or_else(|| {
                let queue = &deaths.first()?.queue;
                Some(u64::from(headers::Attempts::read(h, queue).previous())).filter(|n| *n > 0)
            }),
            replays: h.get_u64(headers::REPLAYS).unwrap_or(0),
            first_failure: h.get_u64(headers::FIRST_FAILURE),
            parked_at: h
                .get_u64(headers::LAST_FAILURE)
                .or_else(|| deaths.first().and_then(|d| d.time)),
            host: h.get_str(headers::PARK_HOST),
            properties: delivery.properties.clone(),
            body: delivery.body.clone(),
        }
    }

    /// A one-line summary: id, task, reason, attempts, when, error.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}  task={}  reason={}  attempts={}  parked={}",
            self.message_id.as_deref().unwrap_or("<no id>"),
            self.task.as_deref().unwrap_or("?"),
            self.reason,
            self.attempts
                .map_or_else(|| "?".to_owned(), |a| a.to_string()),
            self.parked_at.map_or_else(|| "?".to_owned(), format_time),
        );
        if self.replays > 0 {
            line.push_str(&format!("  replays={}", self.replays));
        }
        if let Some(error) = &self.error {
            line.push_str(&format!("  error={}", one_line(error, 160)));
        }
        line
    }

    /// The message as JSON: its [`row`](Self::row); `with_body` adds every header, the properties
    /// and the body (as JSON when it parses, else as text or hex).
    pub fn to_json(&self, with_body: bool) -> Value {
        let mut v = serde_json::to_value(self.row()).unwrap_or(Value::Null);
        if with_body {
            let p = &self.properties;
            v["properties"] = json!({
                "content_type": p.content_type(),
                "content_encoding": p.content_encoding(),
                "correlation_id": p.correlation_id(),
                "reply_to": p.reply_to(),
                "type": p.kind(),
                "app_id": p.app_id(),
                "priority": p.priority(),
                "delivery_mode": p.delivery_mode(),
                "timestamp": p.timestamp().map(format_time),
            });
            v["headers"] = headers_to_json(p.headers());
            v["body_bytes"] = json!(self.body.len());
            match std::str::from_utf8(&self.body) {
                Ok(text) => {
                    v["body"] = serde_json::from_str::<Value>(text)
                        .unwrap_or_else(|_| Value::String(text.to_owned()));
                }
                Err(_) => v["body_hex"] = Value::String(hex(&self.body)),
            }
        }
        v
    }

    /// The body for a person, at most its first `max` bytes:
    /// pretty-printed JSON when the whole body fits and parses as JSON,
    /// else the text of those bytes (invalid UTF-8 replaced) and their hex.
    ///
    /// ```
    /// # use worker_operator::ops::parked::{BodyView, ParkedMessage};
    /// # fn with_body(body: &[u8]) -> ParkedMessage {
    /// #     let delivery = worker_core::message::Delivery {
    /// #         tag: 1, exchange: String::new(), routing_key: "q.parking".into(), redelivered: false,
    /// #         properties: worker_core::Properties::default(), body: body.to_vec().into(),
    /// #     };
    /// #     ParkedMessage::from_delivery("q.parking", &delivery)
    /// # }
    /// assert_eq!(with_body(b"{\"a\":1}").body_view(64), BodyView::Json("{\n  \"a\": 1\n}".into()));
    /// let BodyView::Raw { text, hex } = with_body(b"abcdef").body_view(3) else { panic!() };
    /// assert_eq!((text.as_str(), hex.as_str()), ("abc", "616263"));
    /// ```
    pub fn body_view(&self, max: usize) -> BodyView {
        if self.body.len() <= max {
            if let Ok(json) = serde_json::from_slice::<Value>(&self.body) {
                return BodyView::Json(
                    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string()),
                );
            }
        }
        let part = &self.body[..self.body.len().min(max)];
        BodyView::Raw {
            text: String::from_utf8_lossy(part).into_owned(),
            hex: hex(part),
        }
    }

    /// Every header, values as JSON text, in the message's order.
    pub fn header_lines(&self) -> Vec<(String, String)> {
        self.properties
            .headers()
            .iter()
            .map(|(name, value)| (name.to_owned(), headers_to_json(&single(value)).to_string()))
            .collect()
    }

    /// Every header and the body, for a person to read.
    pub fn details(&self) -> String {
        let mut out = String::new();
        let p = &self.properties;
        out.push_str(&format!("queue:          {}\n", self.queue));
        out.push_str(&format!(
            "message id:     {}\n",
            self.message_id.as_deref().unwrap_or("<none>")
        ));
        out.push_str(&format!(
            "task:           {}\n",
            self.task.as_deref().unwrap_or("?")
        ));
        out.push_str(&format!("reason:         {}\n", self.reason));
        if let Some(kind) = &self.error_kind {
            out.push_str(&format!("error kind:     {kind}\n"));
        }
        if let Some(error) = &self.error {
            out.push_str(&format!("error:          {error}\n"));
        }
        out.push_str(&format!(
            "attempts:       {}\n",
            self.attempts
                .map_or_else(|| "?".to_owned(), |a| a.to_string())
        ));
        out.push_str(&format!("replays:        {}\n", self.replays));
        if let Some(t) = self.first_failure {
            out.push_str(&format!("first failure:  {}\n", format_time(t)));
        }
        if let Some(t) = self.parked_at {
            out.push_str(&format!("parked at:      {}\n", format_time(t)));
        }
        out.push_str("properties:\n");
        for (name, value) in self.shown_properties() {
            out.push_str(&format!("  {name}: {value}\n"));
        }
        out.push_str("headers:\n");
        for (name, value) in p.headers().iter() {
            out.push_str(&format!("  {name}: {}\n", headers_to_json(&single(value))));
        }
        out.push_str(&format!("body ({} bytes):\n", self.body.len()));
        match std::str::from_utf8(&self.body) {
            Ok(text) => out.push_str(text),
            Err(_) => out.push_str(&format!("<not UTF-8> {}", hex(&self.body))),
        }
        out.push('\n');
        out
    }
}

/// A parked message's body, as [`ParkedMessage::body_view`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyView {
    /// The body parsed as JSON, pretty-printed.
    Json(String),
    /// A body that is not JSON.
    Raw {
        /// Its text, invalid UTF-8 replaced.
        text: String,
        /// Its bytes in hex.
        hex: String,
    },
}

fn single(value: HeaderValue) -> Headers {
    let mut h = Headers::new();
    h.insert("v", value);
    h
}

/// Header values as JSON (a single-entry table `{"v": ...}` is unwrapped).
fn headers_to_json(headers: &Headers) -> Value {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_owned(), value_to_json(&v)))
        .collect();
    if map.len() == 1 {
        if let Some(v) = map.get("v") {
            return v.clone();
        }
    }
    Value::Object(map)
}

fn value_to_json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::Bool(b) => json!(b),
        HeaderValue::Int(i) => json!(i),
        HeaderValue::UInt(u) => json!(u),
        HeaderValue::Float(f) => json!(f),
        HeaderValue::Str(s) => json!(s),
        HeaderValue::Bytes(b) => json!(hex(b)),
        HeaderValue::Timestamp(t) => json!(format_time(*t)),
        HeaderValue::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        HeaderValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_owned(), value_to_json(&v)))
                .collect(),
        ),
        HeaderValue::Void => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}...")
    }
}

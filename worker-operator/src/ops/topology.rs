//! Does the broker hold the queues the code declares, with the same arguments?
//!
//! Each queue of [`topology::plan`](worker_core::topology::plan) is first declared
//! passively (which creates nothing) to see whether it exists. An existing
//! queue is then declared again, on a throwaway channel, with exactly the
//! arguments the worker would use: RabbitMQ answers a declaration whose
//! arguments differ from the queue's with `406 PRECONDITION_FAILED` and a
//! message naming the argument ("inequivalent arg 'x-delivery-limit' ...").
//! That closes the throwaway channel and changes nothing. AMQP cannot list
//! a queue's arguments, so this is the only way to compare them without the
//! management plugin.
//!
//! Exchanges the tasks bind to are checked the same way; bindings themselves
//! cannot be read over AMQP and are not checked.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use lapin::options::ExchangeDeclareOptions;
use lapin::types::{FieldTable, ShortString};
use lapin::Connection;
use serde_json::{json, Value};

use super::{inspect_queue, NOT_FOUND};
use worker_core::__operator::{
    declare_queue, lapin_kind, open_channel, reply_code, reply_text, PRECONDITION_FAILED,
};
use worker_core::broker::Capabilities;
use worker_core::connection::Connector;
use worker_core::error::Error;
use worker_core::task::ExchangeKind;
use worker_core::topology::TaskSpec;
use worker_core::topology::{plan, QueuePlan};

/// What the broker says about one queue or exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It exists with the expected arguments.
    Matches,
    /// It does not exist.
    Missing,
    /// It exists with other arguments or another type; the broker's message says which.
    Differs(String),
}

/// One checked queue or exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `queue` or `exchange`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The task that declares it.
    pub task: &'static str,
    /// The verdict.
    pub verdict: Verdict,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Matches => write!(f, "ok       {} {}", self.kind, self.name),
            Verdict::Missing => write!(
                f,
                "MISSING  {} {} (task {}): run `topology declare` or start the worker",
                self.kind, self.name, self.task
            ),
            Verdict::Differs(message) => write!(
                f,
                "DIFFERS  {} {} (task {}): {message}; delete and redeclare it (after moving its messages) or change the task's options to match",
                self.kind, self.name, self.task
            ),
        }
    }
}

/// The result of a topology check.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Every queue and exchange checked, in declaration order.
    pub items: Vec<Checked>,
}

impl CheckReport {
    /// Whether everything exists and matches.
    pub fn is_ok(&self) -> bool {
        self.items.iter().all(|c| c.verdict == Verdict::Matches)
    }

    /// Whether something exists with other arguments.
    pub fn has_differences(&self) -> bool {
        self.items
            .iter()
            .any(|c| matches!(c.verdict, Verdict::Differs(_)))
    }

    /// The items that are missing or differ.
    pub fn problems(&self) -> impl Iterator<Item = &Checked> {
        self.items.iter().filter(|c| c.verdict != Verdict::Matches)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.items
                .iter()
                .map(|c| {
                    let (status, message) = match &c.verdict {
                        Verdict::Matches => ("ok", None),
                        Verdict::Missing => ("missing", None),
                        Verdict::Differs(m) => ("differs", Some(m.clone())),
                    };
                    json!({"kind": c.kind, "name": c.name, "task": c.task, "status": status, "message": message})
                })
                .collect(),
        )
    }
}

/// Checks every queue (and bound exchange) the specs declare; creates nothing.
pub async fn check(connector: &Connector, specs: &[Arc<TaskSpec>]) -> Result<CheckReport, Error> {
    let conn = connector.connection().await?;
    let caps = connector.capabilities();
    let mut seen = BTreeSet::new();
    let mut report = CheckReport::default();
    for spec in specs {
        for queue in plan(spec, caps) {
            if !seen.insert(("queue", queue.name.clone())) {
                continue;
            }
            let verdict = check_queue(&conn, &queue, caps).await?;
            report.items.push(Checked {
                kind: "queue",
                name: queue.name,
                task: spec.name,
                verdict,
            });
        }
        if let Some(binding) = &spec.options.binding {
            if !seen.insert(("exchange", binding.exchange.to_string())) {
                continue;
            }
            let verdict = check_exchange(&conn, &binding.exchange, binding.kind).await?;
            report.items.push(Checked {
                kind: "exchange",
                name: binding.exchange.to_string(),
                task: spec.name,
                verdict,
            });
        }
    }
    Ok(report)
}

fn short(field: &'static str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::TooLong {
        field,
        len: value.len(),
    })
}

async fn check_queue(
    conn: &Connection,
    queue: &QueuePlan,
    caps: Capabilities,
) -> Result<Verdict, Error> {
    if inspect_queue(conn, &queue.name).await?.is_none() {
        return Ok(Verdict::Missing);
    }
    let verdict = redeclare(conn, queue).await?;
    if verdict == Verdict::Matches {
        return Ok(verdict);
    }
    if let Some(older) = queue.as_declared_before_limits() {
        if redeclare(conn, &older).await? == Verdict::Matches {
            return Ok(Verdict::Differs(format!(
                "it has no x-delivery-limit (declared by an older version of the framework), so on {caps} the broker's default limit of {} returns applies, and listing parked messages more often than that could drop them (the parked-message tools refresh them first); drain it with `parked replay`, delete it and start the worker, or apply a policy with delivery-limit -1",
                caps.default_delivery_limit()
            )));
        }
    }
    Ok(verdict)
}

/// Declares `queue` again on a throwaway channel: whether the broker finds
/// the arguments equivalent.
pub(crate) async fn redeclare(conn: &Connection, queue: &QueuePlan) -> Result<Verdict, Error> {
    let channel = open_channel(conn).await?;
    match declare_queue(&channel, queue).await {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(Verdict::Matches)
        }
        Err(Error::TopologyMismatch { message, .. }) => Ok(Verdict::Differs(message)),
        Err(e) => Err(e),
    }
}

async fn check_exchange(
    conn: &Connection,
    name: &str,
    kind: ExchangeKind,
) -> Result<Verdict, Error> {
    let exchange = short("exchange name", name)?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Error::broker("channel.open", e))?;
    let passive = channel
        .exchange_declare(
            exchange.clone(),
            lapin_kind(kind),
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match passive {
        Ok(()) => {}
        Err(e) if reply_code(&e) == Some(NOT_FOUND) => return Ok(Verdict::Missing),
        Err(e) => {
            return Err(Error::broker(
                format!("exchange.declare (passive) {name}"),
                e,
            ))
        }
    }
    let result = channel
        .exchange_declare(
            exchange,
            lapin_kind(kind),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    verdict(result, &channel, &format!("exchange {name}")).await
}

async fn verdict(
    result: Result<(), lapin::Error>,
    channel: &lapin::Channel,
    what: &str,
) -> Result<Verdict, Error> {
    match result {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(Verdict::Matches)
        }
        Err(e) if reply_code(&e) == Some(PRECONDITION_FAILED) => {
            Ok(Verdict::Differs(reply_text(&e)))
        }
        Err(e) => Err(Error::broker(format!("redeclaring {what}"), e)),
    }
}

//! Queue depths per task: work queue, quarantine, delay tiers and parking
//! queue, with each queue's effective delivery limit on the broker it runs
//! on (read by redeclaring it with the arguments the code would use, as
//! `topology check` does).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use lapin::Connection;

use super::breakers::WorkerBreakers;
use super::topology::{redeclare, Verdict};
use super::{inspect_queue, QueueDepth};
use worker_core::broker::{Capabilities, DeliveryLimit};
use worker_core::connection::Connector;
use worker_core::error::Error;
use worker_core::format_duration;
use worker_core::topology::TaskSpec;
use worker_core::topology::{plan, QueuePlan, QueueRole};

/// One queue's state; `depth` is `None` when the queue does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// The queue name.
    pub name: String,
    /// Messages and consumers, when the queue exists.
    pub depth: Option<QueueDepth>,
    /// The delivery limit the broker applies to it; `None` for a classic
    /// queue (no limit), a missing queue, or arguments the code does not
    /// know.
    pub delivery_limit: Option<DeliveryLimit>,
}

impl QueueState {
    fn json(&self) -> Value {
        let limit = self.delivery_limit.map(|l| l.to_string());
        match self.depth {
            Some(d) => {
                json!({"name": self.name, "messages": d.messages, "consumers": d.consumers, "delivery_limit": limit})
            }
            None => json!({"name": self.name, "missing": true}),
        }
    }

    fn limit(&self) -> String {
        self.delivery_limit
            .map_or_else(|| "-".to_owned(), |l| l.to_string())
    }

    fn messages(&self) -> String {
        self.depth
            .map_or_else(|| "missing".to_owned(), |d| d.messages.to_string())
    }
}

/// The state of one task's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task name.
    pub task: &'static str,
    /// The work queue.
    pub work: QueueState,
    /// Where deliveries that came back unsettled run alone.
    pub quarantine: QueueState,
    /// Each delay tier's wait queue, shortest first.
    pub tiers: Vec<(Duration, QueueState)>,
    /// The parking queue.
    pub parking: QueueState,
    /// The task's circuit breaker rule, when it has one. Its state lives
    /// in each worker process (their `/readyz`); a queue whose consumers
    /// are all paused by it shows 0 consumers.
    pub breaker: Option<worker_core::BreakerPolicy>,
}

impl TaskStatus {
    /// Whether any of the task's queues is missing.
    pub fn has_missing(&self) -> bool {
        self.work.depth.is_none()
            || self.quarantine.depth.is_none()
            || self.parking.depth.is_none()
            || self.tiers.iter().any(|(_, q)| q.depth.is_none())
    }

    /// The status as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "task": self.task,
            "queue": self.work.json(),
            "quarantine": self.quarantine.json(),
            "parked": self.parking.json(),
            "tiers": self.tiers.iter().map(|(d, q)| {
                let mut v = q.json();
                v["delay"] = json!(format_duration(*d));
                v
            }).collect::<Vec<_>>(),
            "breaker": self.breaker.map(|b| b.to_string()),
        })
    }
}

/// The broker and every task's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What the broker is (its version).
    pub broker: Capabilities,
    /// One entry per task.
    pub tasks: Vec<TaskStatus>,
    /// What the worker processes asked about their breakers answered
    /// ([`breakers::read_all`](super::breakers::read_all)); empty unless
    /// filled in.
    pub workers: Vec<WorkerBreakers>,
}

impl Status {
    /// The status as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "broker": self.broker.to_string(),
            "version": self.broker.version().map(|v| v.to_string()),
            "tasks": self.tasks.iter().map(TaskStatus::to_json).collect::<Vec<_>>(),
            "workers": self.workers.iter().map(WorkerBreakers::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Reads every task's queue depths with passive declares, and their
/// delivery limits by redeclaring them as the code would (nothing is
/// created or changed).
pub async fn status(connector: &Connector, specs: &[Arc<TaskSpec>]) -> Result<Status, Error> {
    let conn = connector.connection().await?;
    let caps = connector.capabilities();
    let mut tasks = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut work = None;
        let mut quarantine = None;
        let mut tiers = Vec::with_capacity(spec.tiers.len());
        let mut parking = None;
        for (queue, delay) in plan(spec, caps).into_iter().zip(queue_delays(spec)) {
            let state = queue_state(&conn, &queue, caps).await?;
            match queue.role {
                QueueRole::Work => work = Some(state),
                QueueRole::Quarantine => quarantine = Some(state),
                QueueRole::Tier => tiers.push((delay.unwrap_or_default(), state)),
                QueueRole::Parking => parking = Some(state),
            }
        }
        let planned = "the plan holds a work, quarantine and parking queue";
        tasks.push(TaskStatus {
            task: spec.name,
            work: work.expect(planned),
            quarantine: quarantine.expect(planned),
            tiers,
            parking: parking.expect(planned),
            breaker: spec.options.breaker,
        });
    }
    Ok(Status {
        broker: caps,
        tasks,
        workers: Vec::new(),
    })
}

/// The delay of each queue of `spec`'s plan, in plan order (`None` but for
/// the tiers).
fn queue_delays(spec: &TaskSpec) -> impl Iterator<Item = Option<Duration>> + '_ {
    [None, None]
        .into_iter()
        .chain(spec.tiers.iter().map(|(d, _)| Some(*d)))
        .chain([None])
}

async fn queue_state(
    conn: &Connection,
    queue: &QueuePlan,
    caps: Capabilities,
) -> Result<QueueState, Error> {
    let depth = inspect_queue(conn, &queue.name).await?;
    let delivery_limit = match depth {
        Some(_) => effective_limit(conn, queue, caps).await?,
        None => None,
    };
    Ok(QueueState {
        name: queue.name.clone(),
        depth,
        delivery_limit,
    })
}

/// The limit the broker applies to an existing queue: the one the code
/// declares when the queue matches it, the broker's default for a parking
/// queue declared by an older version of the framework, else unknown.
async fn effective_limit(
    conn: &Connection,
    queue: &QueuePlan,
    caps: Capabilities,
) -> Result<Option<DeliveryLimit>, Error> {
    if redeclare(conn, queue).await? == Verdict::Matches {
        return Ok(queue.delivery_limit(caps));
    }
    match queue.as_declared_before_limits() {
        Some(older) if redeclare(conn, &older).await? == Verdict::Matches => {
            Ok(older.delivery_limit(caps))
        }
        _ => Ok(None),
    }
}

/// A table for people: the broker, then one line per task.
pub fn render_table(status: &Status) -> String {
    let rows = &status.tasks;
    let mut table = vec![[
        "TASK".to_owned(),
        "QUEUE".to_owned(),
        "READY".to_owned(),
        "CONSUMERS".to_owned(),
        "QUARANTINED".to_owned(),
        "PARKED".to_owned(),
        "LIMIT".to_owned(),
        "PARKING-LIMIT".to_owned(),
        "TIERS".to_owned(),
    ]];
    for row in rows {
        let tiers = if row.tiers.is_empty() {
            "-".to_owned()
        } else {
            row.tiers
                .iter()
                .map(|(d, q)| format!("{}={}", format_duration(*d), q.messages()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        table.push([
            row.task.to_owned(),
            row.work.name.clone(),
            row.work.messages(),
            row.work
                .depth
                .map_or_else(|| "-".to_owned(), |d| d.consumers.to_string()),
            row.quarantine.messages(),
            row.parking.messages(),
            row.work.limit(),
            row.parking.limit(),
            tiers,
        ]);
    }
    let mut widths = [0usize; 9];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("broker: {}\n", status.broker);
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == line.len() - 1 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for row in rows {
        if let Some(breaker) = row.breaker {
            let _ = writeln!(
                out,
                "{}: circuit breaker \"{breaker}\"{}",
                row.task,
                breaker_note(row, &status.workers)
            );
        }
    }
    for w in &status.workers {
        if let Err(e) = &w.answer {
            let _ = writeln!(out, "worker {}: not asked: {e}", w.worker);
        }
    }
    out
}

/// What the workers say of `row`'s breaker (`: open on A; closed on B`),
/// or, when none was asked, a hint for a queue left without consumers.
fn breaker_note(row: &TaskStatus, workers: &[WorkerBreakers]) -> String {
    let states: Vec<String> = workers
        .iter()
        .filter_map(|w| Some(format!("{} on {}", w.state_of(row.task)?, w.worker)))
        .collect();
    if !states.is_empty() {
        return format!(": {}", states.join("; "));
    }
    let paused = row.work.depth.is_some_and(|d| d.consumers == 0);
    if paused && workers.is_empty() {
        ": no consumer now, maybe paused by an open breaker (`status --worker URL` asks a worker)"
            .to_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker_core::broker::Version;

    #[test]
    fn table_lines_up_and_marks_missing_queues() {
        let rows = vec![TaskStatus {
            task: "send_email",
            work: QueueState {
                name: "emails".into(),
                depth: Some(QueueDepth {
                    messages: 12,
                    consumers: 2,
                }),
                delivery_limit: Some(DeliveryLimit::Returns(5)),
            },
            quarantine: QueueState {
                name: "emails.quarantine".into(),
                depth: Some(QueueDepth {
                    messages: 0,
                    consumers: 2,
                }),
                delivery_limit: Some(DeliveryLimit::Returns(5)),
            },
            tiers: vec![(
                Duration::from_secs(10),
                QueueState {
                    name: "emails.retry.10s".into(),
                    depth: None,
                    delivery_limit: None,
                },
            )],
            parking: QueueState {
                name: "emails.parking".into(),
                depth: Some(QueueDepth {
                    messages: 3,
                    consumers: 0,
                }),
                delivery_limit: Some(DeliveryLimit::Unlimited),
            },
            breaker: Some(worker_core::BreakerPolicy::share(50, 20)),
        }];
        let mut status = Status {
            broker: Capabilities::of(Version::new(4, 0, 5)),
            tasks: rows,
            workers: Vec::new(),
        };
        let table = render_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "broker: RabbitMQ 4.0.5");
        assert!(lines[1].starts_with("TASK        QUEUE   READY"), "{table}");
        assert!(
            lines[2].contains("5      unlimited      10s=missing"),
            "{table}"
        );
        assert_eq!(
            lines[3], "send_email: circuit breaker \"50%/20\"",
            "{table}"
        );
        assert!(status.tasks[0].has_missing());
        let json = status.to_json();
        assert_eq!(json["version"], "4.0.5");
        assert_eq!(json["tasks"][0]["parked"]["messages"], 3);
        assert_eq!(json["tasks"][0]["parked"]["delivery_limit"], "unlimited");
        assert_eq!(json["tasks"][0]["breaker"], "50%/20");

        // Asked, the workers say where the breaker stands.
        status.workers = vec![
            WorkerBreakers {
                worker: "http://a:9464".into(),
                answer: Ok(super::super::breakers::Readyz {
                    ready: true,
                    breakers: vec![("send_email".into(), "open".into())],
                }),
            },
            WorkerBreakers {
                worker: "b:9464".into(),
                answer: Err("cannot connect: refused".into()),
            },
        ];
        let table = render_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            &lines[3..],
            [
                "send_email: circuit breaker \"50%/20\": open on http://a:9464",
                "worker b:9464: not asked: cannot connect: refused"
            ],
            "{table}"
        );
        let json = status.to_json();
        assert_eq!(json["workers"][0]["breakers"][0]["state"], "open");
        assert_eq!(json["workers"][1]["error"], "cannot connect: refused");
    }
}

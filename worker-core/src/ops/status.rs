//! Queue depths per task: work queue, quarantine, delay tiers and parking queue.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{inspect_queue, QueueDepth};
use crate::connection::Connector;
use crate::duration::format_duration;
use crate::error::Error;
use crate::runtime::TaskSpec;

/// One queue's state; `depth` is `None` when the queue does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// The queue name.
    pub name: String,
    /// Messages and consumers, when the queue exists.
    pub depth: Option<QueueDepth>,
}

impl QueueState {
    fn json(&self) -> Value {
        match self.depth {
            Some(d) => json!({"name": self.name, "messages": d.messages, "consumers": d.consumers}),
            None => json!({"name": self.name, "missing": true}),
        }
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
        })
    }
}

/// Reads every task's queue depths with passive declares (nothing is created).
pub async fn status(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
) -> Result<Vec<TaskStatus>, Error> {
    let conn = connector.connection().await?;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let state = |name: &str, depth| QueueState {
            name: name.to_owned(),
            depth,
        };
        let work = state(&spec.queue, inspect_queue(&conn, &spec.queue).await?);
        let quarantine = state(
            &spec.quarantine,
            inspect_queue(&conn, &spec.quarantine).await?,
        );
        let mut tiers = Vec::with_capacity(spec.tiers.len());
        for (delay, name) in &spec.tiers {
            tiers.push((*delay, state(name, inspect_queue(&conn, name).await?)));
        }
        let parking = state(&spec.parking, inspect_queue(&conn, &spec.parking).await?);
        out.push(TaskStatus {
            task: spec.name,
            work,
            quarantine,
            tiers,
            parking,
        });
    }
    Ok(out)
}

/// A table for people: one line per task.
pub fn render_table(rows: &[TaskStatus]) -> String {
    let mut table = vec![[
        "TASK".to_owned(),
        "QUEUE".to_owned(),
        "READY".to_owned(),
        "CONSUMERS".to_owned(),
        "QUARANTINED".to_owned(),
        "PARKED".to_owned(),
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
            tiers,
        ]);
    }
    let mut widths = [0usize; 7];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            },
            quarantine: QueueState {
                name: "emails.quarantine".into(),
                depth: Some(QueueDepth {
                    messages: 0,
                    consumers: 2,
                }),
            },
            tiers: vec![(
                Duration::from_secs(10),
                QueueState {
                    name: "emails.retry.10s".into(),
                    depth: None,
                },
            )],
            parking: QueueState {
                name: "emails.parking".into(),
                depth: Some(QueueDepth {
                    messages: 3,
                    consumers: 0,
                }),
            },
        }];
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("TASK        QUEUE   READY"), "{table}");
        assert!(lines[1].contains("10s=missing"), "{table}");
        assert!(rows[0].has_missing());
        assert_eq!(rows[0].to_json()["parked"]["messages"], 3);
    }
}

//! What the pages and the API both show: the overview, a listing, and what
//! an action did. The handlers only render these.

use std::sync::Arc;

use serde::Serialize;

use super::Shared;
use crate::ops::parked::{self, Selection};
use crate::ops::status;
use worker_core::error::Error;
use worker_core::format_duration;
use worker_core::topology::TaskSpec;

/// The overview: the broker and one row per task.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overview {
    /// The broker, as `status` prints it.
    pub(crate) broker: String,
    /// The broker's version.
    pub(crate) version: Option<String>,
    /// Whether rates are known (only in a process that consumes: `run --http`).
    pub(crate) rates: bool,
    /// One row per registered task.
    pub(crate) tasks: Vec<TaskRow>,
}

/// One task in the overview; a count is `null` when its queue is missing.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskRow {
    /// The task name.
    pub(crate) task: String,
    /// Its work queue.
    pub(crate) queue: String,
    /// Messages ready in the work queue.
    pub(crate) ready: Option<u32>,
    /// Consumers of the work queue.
    pub(crate) consumers: Option<u32>,
    /// Messages in the quarantine queue.
    pub(crate) quarantined: Option<u32>,
    /// Messages in the parking queue.
    pub(crate) parked: Option<u32>,
    /// Each wait tier: delay and messages waiting.
    pub(crate) tiers: Vec<TierRow>,
    /// This process's rates and in-flight count, when it consumes.
    pub(crate) rates: Option<super::rates::TaskRates>,
}

/// One wait tier of a task.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TierRow {
    /// Its delay (`5s`, `1m`).
    pub(crate) delay: String,
    /// Messages waiting in it.
    pub(crate) messages: Option<u32>,
}

/// Reads the overview: [`status::status`] plus this process's rates.
pub(crate) async fn overview(shared: &Shared) -> Result<Overview, Error> {
    let status = status::status(&shared.connector, &shared.specs).await?;
    let rates = shared.rates.as_ref().map(super::rates::Rates::now);
    let messages = |q: &status::QueueState| q.depth.map(|d| d.messages);
    Ok(Overview {
        broker: status.broker.to_string(),
        version: status.broker.version().map(|v| v.to_string()),
        rates: rates.is_some(),
        tasks: status
            .tasks
            .iter()
            .map(|t| TaskRow {
                task: t.task.to_owned(),
                queue: t.work.name.clone(),
                ready: messages(&t.work),
                consumers: t.work.depth.map(|d| d.consumers),
                quarantined: messages(&t.quarantine),
                parked: messages(&t.parking),
                tiers: t
                    .tiers
                    .iter()
                    .map(|(d, q)| TierRow {
                        delay: format_duration(*d),
                        messages: messages(q),
                    })
                    .collect(),
                rates: rates.as_ref().map(|r| {
                    r.get(t.task).copied().unwrap_or(super::rates::TaskRates {
                        handled_per_min: 0.0,
                        failed_per_min: 0.0,
                        parked_per_min: 0.0,
                        in_flight: 0.0,
                        over_seconds: 0,
                    })
                }),
            })
            .collect(),
    })
}

/// Replay or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Replay,
    Delete,
}

impl Kind {
    pub(crate) fn parse(text: &str) -> Option<Kind> {
        match text {
            "replay" => Some(Kind::Replay),
            "delete" => Some(Kind::Delete),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Replay => "replay",
            Kind::Delete => "delete",
        }
    }
}

/// What a replay or delete did, message by message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActionResult {
    /// `replay` or `delete`.
    pub(crate) action: &'static str,
    /// The parking queue.
    pub(crate) queue: String,
    /// Where replayed messages went (the work queue); `null` for a delete.
    pub(crate) to: Option<String>,
    /// Ids replayed or deleted.
    pub(crate) done: Vec<String>,
    /// Requested ids that were not parked.
    pub(crate) not_found: Vec<String>,
    /// Matches parked after the operator confirmed, left parked.
    pub(crate) left_alone: u32,
    /// The last confirmed message was no longer parked: nothing was done.
    pub(crate) stale: bool,
    /// Why it stopped early; messages not yet handled stay parked.
    pub(crate) error: Option<String>,
}

/// Replays or deletes `selection` of `spec`'s parking queue.
pub(crate) async fn act(
    shared: &Shared,
    spec: &Arc<TaskSpec>,
    kind: Kind,
    selection: &Selection,
) -> Result<ActionResult, Error> {
    Ok(match kind {
        Kind::Replay => {
            let r = parked::replay(&shared.connector, spec, selection).await?;
            ActionResult {
                action: kind.as_str(),
                queue: r.queue,
                to: Some(spec.queue.to_string()),
                done: r.replayed,
                not_found: r.not_found,
                left_alone: r.left_alone,
                stale: r.stale,
                error: r.error.map(|e| e.to_string()),
            }
        }
        Kind::Delete => {
            let r = parked::delete(&shared.connector, &spec.parking, selection).await?;
            ActionResult {
                action: kind.as_str(),
                queue: r.queue,
                to: None,
                done: r.deleted,
                not_found: r.not_found,
                left_alone: r.left_alone,
                stale: r.stale,
                error: r.error.map(|e| e.to_string()),
            }
        }
    })
}

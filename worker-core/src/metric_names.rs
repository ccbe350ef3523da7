//! Every metric the framework records: its name, kind, labels and meaning.
//!
//! The one list of metric names: the code records them through these
//! constants only (a test fails on a `"rabbit_worker_..."` literal anywhere
//! else in the source), and the README's reference section is checked
//! against [`METRICS`] by `worker-core/tests/readme_reference.rs`.
//!
//! Label values come only from the names of registered tasks and their
//! queues (see the metrics middleware): a producer cannot grow the number
//! of series.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (Prometheus summary or histogram).
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric: name, kind, label names and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The metric name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Label names, in the order they are recorded.
    pub labels: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
}

/// Deliveries taken.
pub const DELIVERIES: &str = "rabbit_worker_deliveries_total";
/// What became of each delivery.
pub const OUTCOMES: &str = "rabbit_worker_outcomes_total";
/// Time from taking a delivery to its outcome.
pub const HANDLER_SECONDS: &str = "rabbit_worker_handler_seconds";
/// Deliveries being handled now.
pub const IN_FLIGHT: &str = "rabbit_worker_in_flight";
/// Publisher confirm latency.
pub const PUBLISH_CONFIRM_SECONDS: &str = "rabbit_worker_publish_confirm_seconds";
/// 1 while the broker blocks the connection.
pub const CONNECTION_BLOCKED: &str = "rabbit_worker_connection_blocked";
/// 1 while a task's parking queue refuses copies.
pub const PARKING_UNAVAILABLE: &str = "rabbit_worker_parking_unavailable";
/// Retry delays cut to the maximum.
pub const DELAY_CLAMPED: &str = "rabbit_worker_delay_clamped_total";
/// Parked messages replayed to their work queue.
pub const REPLAYED: &str = "rabbit_worker_replayed_total";
/// Messages ready in a task's queue, sampled by the worker.
pub const QUEUE_MESSAGES: &str = "rabbit_worker_queue_messages";
/// Consumers of a task's queue, sampled by the worker.
pub const QUEUE_CONSUMERS: &str = "rabbit_worker_queue_consumers";
/// 1 while this process is the elected scheduler of a periodic entry.
pub const SCHEDULER_LEADER: &str = "rabbit_worker_scheduler_leader";
/// When a periodic entry's next tick is due, in Unix seconds.
pub const PERIODIC_NEXT_TICK: &str = "rabbit_worker_periodic_next_tick_seconds";
/// Ticks of a periodic entry this process enqueued.
pub const PERIODIC_TICKS: &str = "rabbit_worker_periodic_ticks_total";
/// Replies to calls, by what they said.
pub const REPLIES: &str = "rabbit_worker_replies_total";
/// A task's circuit breaker: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "rabbit_worker_breaker_state";
/// Changes of a task's circuit breaker, by the state entered.
pub const BREAKER_TRANSITIONS: &str = "rabbit_worker_breaker_transitions_total";

const TASK_QUEUE: &[&str] = &["task", "queue"];
const TASK_QUEUE_ROLE: &[&str] = &["task", "queue", "role"];

/// Every metric the framework records.
pub const METRICS: &[Metric] = &[
    Metric {
        name: DELIVERIES,
        kind: MetricKind::Counter,
        labels: TASK_QUEUE,
        help: "deliveries taken",
    },
    Metric {
        name: OUTCOMES,
        kind: MetricKind::Counter,
        labels: &["task", "queue", "outcome"],
        help: "what became of each delivery, once per delivery: `ack`, `discard`, `redeliver`, `park`, `quarantine`, `requeue`, `return`, `dead-letter`; and `retry` once per in-process retry",
    },
    Metric {
        name: HANDLER_SECONDS,
        kind: MetricKind::Histogram,
        labels: TASK_QUEUE,
        help: "time from taking a delivery to its outcome",
    },
    Metric {
        name: IN_FLIGHT,
        kind: MetricKind::Gauge,
        labels: TASK_QUEUE,
        help: "deliveries being handled now",
    },
    Metric {
        name: PUBLISH_CONFIRM_SECONDS,
        kind: MetricKind::Histogram,
        labels: TASK_QUEUE,
        help: "publisher confirm latency, by the published message's task (`type`) and queue",
    },
    Metric {
        name: CONNECTION_BLOCKED,
        kind: MetricKind::Gauge,
        labels: &[],
        help: "1 while the broker blocks publishing (resource alarm)",
    },
    Metric {
        name: PARKING_UNAVAILABLE,
        kind: MetricKind::Gauge,
        labels: &["task"],
        help: "1 while the task's parking queue refuses copies (the worker is unready)",
    },
    Metric {
        name: DELAY_CLAMPED,
        kind: MetricKind::Counter,
        labels: &["task"],
        help: "retry delays cut to the maximum delay",
    },
    Metric {
        name: REPLAYED,
        kind: MetricKind::Counter,
        labels: &["task"],
        help: "parked messages replayed to the work queue (`parked replay`)",
    },
    Metric {
        name: QUEUE_MESSAGES,
        kind: MetricKind::Gauge,
        labels: TASK_QUEUE_ROLE,
        help: "messages ready in the task's queue, sampled every `depth_interval`; role `work`, `tier`, `quarantine` or `parking`; NaN while the queue does not exist",
    },
    Metric {
        name: QUEUE_CONSUMERS,
        kind: MetricKind::Gauge,
        labels: TASK_QUEUE_ROLE,
        help: "consumers of the task's queue, sampled with `rabbit_worker_queue_messages`",
    },
    Metric {
        name: SCHEDULER_LEADER,
        kind: MetricKind::Gauge,
        labels: &["entry", "task"],
        help: "1 while this process is the elected scheduler of the periodic entry, 0 while another is",
    },
    Metric {
        name: PERIODIC_NEXT_TICK,
        kind: MetricKind::Gauge,
        labels: &["entry", "task"],
        help: "when the periodic entry's next tick is due, in Unix seconds (set by the scheduling process only)",
    },
    Metric {
        name: PERIODIC_TICKS,
        kind: MetricKind::Counter,
        labels: &["entry", "task"],
        help: "ticks of the periodic entry this process enqueued (`missed = \"fire\"` catch-ups included)",
    },
    Metric {
        name: REPLIES,
        kind: MetricKind::Counter,
        labels: &["task", "status"],
        help: "replies to calls (deliveries with `reply_to`): status `ok`, `failed`, `parked`, or `unsent` when the reply could not be published",
    },
    Metric {
        name: BREAKER_STATE,
        kind: MetricKind::Gauge,
        labels: &["task"],
        help: "the task's circuit breaker in this process: 0 closed (consuming), 1 half-open (one probe), 2 open (not consuming)",
    },
    Metric {
        name: BREAKER_TRANSITIONS,
        kind: MetricKind::Counter,
        labels: &["task", "to"],
        help: "changes of the task's circuit breaker, by the state entered: `open`, `half-open`, `closed`",
    },
];

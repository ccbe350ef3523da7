//! Handled, failed and parked rates per task over the last minutes, read
//! from this process's own metrics.
//!
//! The metrics facade cannot be read back, so every few seconds a sampler
//! renders the Prometheus recorder (the text `/metrics` serves) and keeps
//! each task's outcome counters; a rate is the difference between the
//! newest sample and the oldest one still in the window. The numbers are
//! this process's: a `dashboard` process that does not consume has none,
//! and with several replicas each shows its own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::task::JoinHandle;

use worker_core::metric_names::{IN_FLIGHT, OUTCOMES};

/// How far back rates look.
pub const WINDOW: Duration = Duration::from_secs(300);
/// How often the counters are sampled.
const EVERY: Duration = Duration::from_secs(5);

/// One task's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    /// Outcome `ack`.
    pub(crate) handled: f64,
    /// Outcomes that gave the message another try: `retry`, `redeliver`,
    /// `requeue`, `quarantine`.
    pub(crate) failed: f64,
    /// Outcomes `park` and `dead-letter`.
    pub(crate) parked: f64,
    /// Deliveries being handled.
    pub(crate) in_flight: f64,
}

/// Per-minute rates of one task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaskRates {
    /// Deliveries handled (acked after success) per minute.
    pub handled_per_min: f64,
    /// Failed attempts that were tried again, per minute.
    pub failed_per_min: f64,
    /// Deliveries parked per minute.
    pub parked_per_min: f64,
    /// Deliveries being handled now.
    pub in_flight: f64,
    /// Seconds the rates span (up to the window; 0 until two samples exist).
    pub over_seconds: u64,
}

type Sample = (Instant, HashMap<String, Counts>);

/// The sampler and its samples; the sampler stops when this is dropped.
#[derive(Debug)]
pub(crate) struct Rates {
    samples: Arc<Mutex<VecDeque<Sample>>>,
    handle: PrometheusHandle,
    sampler: JoinHandle<()>,
}

impl Drop for Rates {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

impl Rates {
    /// Starts sampling `handle` (inside a tokio runtime).
    pub(crate) fn start(handle: PrometheusHandle) -> Rates {
        let samples: Arc<Mutex<VecDeque<Sample>>> = Arc::default();
        let sampler = tokio::spawn({
            let samples = samples.clone();
            let handle = handle.clone();
            async move {
                let mut tick = tokio::time::interval(EVERY);
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    let counts = parse(&handle.render());
                    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_back((now, counts));
                    while s
                        .front()
                        .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
                    {
                        s.pop_front();
                    }
                }
            }
        });
        Rates {
            samples,
            handle,
            sampler,
        }
    }

    /// Each task's rates now (in-flight read at this moment).
    pub(crate) fn now(&self) -> HashMap<String, TaskRates> {
        let current = parse(&self.handle.render());
        let now = Instant::now();
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = samples.front();
        current
            .into_iter()
            .map(|(task, c)| {
                let (span, before) = match oldest {
                    Some((at, counts)) => (
                        now.duration_since(*at),
                        counts.get(&task).copied().unwrap_or_default(),
                    ),
                    None => (Duration::ZERO, c),
                };
                let per_min = |now: f64, then: f64| {
                    if span.is_zero() {
                        0.0
                    } else {
                        ((now - then).max(0.0) * 60.0 / span.as_secs_f64() * 10.0).round() / 10.0
                    }
                };
                let rates = TaskRates {
                    handled_per_min: per_min(c.handled, before.handled),
                    failed_per_min: per_min(c.failed, before.failed),
                    parked_per_min: per_min(c.parked, before.parked),
                    in_flight: c.in_flight,
                    over_seconds: span.as_secs(),
                };
                (task, rates)
            })
            .collect()
    }
}

/// Each task's counters in a Prometheus text rendering.
pub(crate) fn parse(text: &str) -> HashMap<String, Counts> {
    let mut out: HashMap<String, Counts> = HashMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        if name != OUTCOMES && name != IN_FLIGHT {
            continue;
        }
        let Some(task) = label(labels, "task") else {
            continue;
        };
        let counts = out.entry(task.to_owned()).or_default();
        if name == IN_FLIGHT {
            counts.in_flight += value;
            continue;
        }
        match label(labels, "outcome") {
            Some("ack") => counts.handled += value,
            Some("retry" | "redeliver" | "requeue" | "quarantine") => counts.failed += value,
            Some("park" | "dead-letter") => counts.parked += value,
            _ => {}
        }
    }
    out
}

/// A label's value in `a="x",b="y"}` (task and outcome values are plain names).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_grouped_per_task() {
        let text = "\
# TYPE rabbit_worker_outcomes_total counter
rabbit_worker_outcomes_total{task=\"send\",queue=\"q\",outcome=\"ack\"} 10
rabbit_worker_outcomes_total{task=\"send\",queue=\"q\",outcome=\"retry\"} 3
rabbit_worker_outcomes_total{task=\"send\",queue=\"q\",outcome=\"redeliver\"} 1
rabbit_worker_outcomes_total{task=\"send\",queue=\"q\",outcome=\"park\"} 2
rabbit_worker_outcomes_total{task=\"other\",queue=\"q\",outcome=\"discard\"} 7
rabbit_worker_in_flight{task=\"send\",queue=\"q\"} 4
rabbit_worker_deliveries_total{task=\"send\",queue=\"q\"} 99
";
        let c = parse(text);
        assert_eq!(
            c["send"],
            Counts {
                handled: 10.0,
                failed: 4.0,
                parked: 2.0,
                in_flight: 4.0
            }
        );
        assert_eq!(c["other"], Counts::default());
    }
}

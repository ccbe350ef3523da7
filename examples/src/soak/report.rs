//! The soak's account and the checks it must pass.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use worker_operator::ops::parked::ParkedMessage;

use super::run::PREFETCH;
use super::schedule::FaultKind;
use super::workload::{Kind, ATTEMPT_BUDGET};
use crate::faults::{Account, Record};

/// Peak resident memory a demo worker may reach during a soak: generous
/// (the workers sit near 20 MiB), but a leak over a long soak crosses it.
pub const RSS_BOUND_KIB: u64 = 256 * 1024;

/// The park reason of the delivery-limit backstop. A message that must be
/// parked anyway may end there instead of with its own reason when faults
/// returned the same copy to the broker more often than the limit (it
/// cannot be told from a crash loop); a message that must be handled never may.
const BACKSTOP_REASON: &str = "delivery-limit";

/// What a soak did and whether its account holds.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The seed of the schedule and the workload.
    pub seed: u64,
    /// How long the faults went on.
    pub chaos: Duration,
    /// How long the fleet took to finish after the faults.
    pub drain: Duration,
    /// Published, handled, duplicates, parked, queued, lost.
    pub account: Account,
    /// Faults injected, by kind.
    pub injected: BTreeMap<FaultKind, usize>,
    /// Messages published again because a confirm did not come.
    pub resent: usize,
    /// Parked copies beyond one per id (a park whose ack a fault lost).
    pub parked_copies: usize,
    /// Messages that had to be parked and were, by the delivery-limit
    /// backstop rather than with their own reason.
    pub parked_by_backstop: usize,
    /// Slow messages that succeeded although they outlast their timeout:
    /// a worker starved of CPU past both the timeout and the handler's
    /// sleep finds the handler done first (tokio's `timeout` polls the
    /// work before the deadline), and keeps the result.
    pub slow_succeeded: usize,
    /// SIGTERMs that came before the worker installed its handlers.
    pub stopped_before_start: usize,
    /// Messages the publisher gave up on (never confirmed, not counted as published).
    pub unconfirmed: usize,
    /// The highest resident memory of a worker, in KiB.
    pub peak_rss_kib: u64,
    /// Worker processes started in all.
    pub workers_started: usize,
    /// Workers that exited without being told to.
    pub unexpected_exits: usize,
    /// Handler runs (successful or not) beyond the attempt budget, summed
    /// over messages: what faults cost in runs the budget did not see
    /// (copies run twice, in-process retries of a delivery the broker
    /// then returned and charged once).
    pub runs_beyond_budget: usize,
    /// The most handler runs of one message.
    pub most_runs: usize,
    /// The most duplicates the faults can explain (the at-least-once slack).
    pub slack_bound: usize,
    /// Everything that went wrong; empty when the account holds.
    pub problems: Vec<String>,
    /// The command that replays this soak.
    pub replay: String,
}

impl SoakReport {
    /// Whether the account holds.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Faults injected in all.
    pub fn faults(&self) -> usize {
        self.injected.values().sum()
    }
}

/// Faults after which a worker's unacknowledged deliveries come back: each
/// can turn at most a prefetch window per worker into duplicates.
fn redelivering(kind: FaultKind) -> bool {
    !matches!(kind, FaultKind::Term | FaultKind::MemoryAlarm)
}

/// Whether a park with `reason` after `attempts` (its park header) came
/// when the budget allows. A delivery-limit park comes only once the budget
/// is spent, and its count includes every unsettled return since (a fault
/// can return the delivery again while its park is under way), so it may
/// pass the budget but never fall short of it; any other park must come
/// within the budget.
fn parked_on_time(reason: &str, attempts: u64) -> bool {
    let budget = u64::from(ATTEMPT_BUDGET);
    if reason == BACKSTOP_REASON {
        attempts >= budget
    } else {
        attempts <= budget
    }
}

/// Checks the account against what each message demanded, filling
/// `report.problems` and `report.slack_bound`.
pub(super) fn check(
    report: &mut SoakReport,
    published: &[(String, Kind)],
    record: &Record,
    runs: &Record,
    parked: &[ParkedMessage],
) {
    let a = &report.account;
    let mut problems = Vec::new();
    if a.lost > 0 {
        problems.push(format!("{} messages lost", a.lost));
    }
    if a.queued > 0 {
        problems.push(format!(
            "{} messages still queued after the drain",
            a.queued
        ));
    }
    if report.unexpected_exits > 0 {
        problems.push(format!(
            "{} workers exited by themselves",
            report.unexpected_exits
        ));
    }
    if report.unconfirmed > 0 {
        problems.push(format!("{} messages never confirmed", report.unconfirmed));
    }
    let kinds: HashMap<&str, Kind> = published.iter().map(|(id, k)| (id.as_str(), *k)).collect();
    for p in parked {
        let id = p.message_id.as_deref().unwrap_or("");
        let expected = kinds.get(id).and_then(|k| k.park_reason());
        if expected.is_some() && p.reason == BACKSTOP_REASON {
            report.parked_by_backstop += 1;
        } else if expected != Some(p.reason.as_str()) {
            problems.push(format!(
                "{id} ({:?}) parked as {:?}, expected {}",
                kinds.get(id),
                p.reason,
                expected.map_or("to be handled".to_owned(), |r| format!("{r:?}"))
            ));
        }
        if p.attempts.is_some_and(|n| !parked_on_time(&p.reason, n)) {
            problems.push(format!(
                "{id} parked as {:?} after {:?} attempts (budget {ATTEMPT_BUDGET})",
                p.reason, p.attempts
            ));
        }
    }
    for (id, kind) in published {
        let attempts = record.attempts(id);
        match kind.success_attempt() {
            None if !attempts.is_empty() && *kind == Kind::Slow => report.slow_succeeded += 1,
            None if !attempts.is_empty() => {
                problems.push(format!(
                    "{id} ({kind:?}) must never succeed, ran at {attempts:?}"
                ));
            }
            Some(first) => {
                if let Some(n) = attempts.iter().find(|&&n| n < first || n > ATTEMPT_BUDGET) {
                    problems.push(format!(
                        "{id} ({kind:?}) succeeded at attempt {n}, outside {first}..={ATTEMPT_BUDGET}"
                    ));
                }
            }
            None => {}
        }
    }
    let redeliveries: usize = report
        .injected
        .iter()
        .filter(|(k, _)| redelivering(**k))
        .map(|(_, n)| n)
        .sum();
    report.slack_bound = redeliveries * PREFETCH * 2 + report.resent;
    if a.duplicates + report.parked_copies > report.slack_bound {
        problems.push(format!(
            "{} duplicates and {} parked copies, more than the faults explain ({})",
            a.duplicates, report.parked_copies, report.slack_bound
        ));
    }
    (report.runs_beyond_budget, report.most_runs) = runs.beyond(ATTEMPT_BUDGET as usize);
    if report.runs_beyond_budget > report.slack_bound {
        problems.push(format!(
            "{} handler runs beyond the attempt budget, more than the faults explain ({})",
            report.runs_beyond_budget, report.slack_bound
        ));
    }
    if report.most_runs == 0 && !published.is_empty() {
        problems.push("no handler run was recorded".to_owned());
    }
    if report.peak_rss_kib > RSS_BOUND_KIB {
        problems.push(format!(
            "a worker reached {} KiB resident, above the bound of {RSS_BOUND_KIB} KiB",
            report.peak_rss_kib
        ));
    }
    if report.peak_rss_kib == 0 {
        problems.push("no worker memory was sampled".to_owned());
    }
    report.problems.extend(problems);
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "soak seed {}", self.seed)?;
        writeln!(
            f,
            "  chaos {:.0?}, drain {:.1?}; {}",
            self.chaos, self.drain, self.account
        )?;
        let faults: Vec<String> = self
            .injected
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "  faults {}: {}", self.faults(), faults.join(", "))?;
        writeln!(
            f,
            "  duplicates {} and parked copies {} (slack bound {}), resent after a missing confirm {}, \
             workers started {}, exited by themselves {}, stopped before start-up {}, \
             peak worker RSS {:.1} MiB",
            self.account.duplicates,
            self.parked_copies,
            self.slack_bound,
            self.resent,
            self.workers_started,
            self.unexpected_exits,
            self.stopped_before_start,
            self.peak_rss_kib as f64 / 1024.0
        )?;
        writeln!(
            f,
            "  handler runs beyond the attempt budget {} (slack bound {}), most runs of one message {}",
            self.runs_beyond_budget, self.slack_bound, self.most_runs
        )?;
        if self.slow_succeeded > 0 {
            writeln!(
                f,
                "  slow messages that finished before a starved worker saw their timeout: {}",
                self.slow_succeeded
            )?;
        }
        if self.parked_by_backstop > 0 {
            writeln!(
                f,
                "  parked by the delivery-limit backstop instead of their own reason: {}",
                self.parked_by_backstop
            )?;
        }
        if self.passed() {
            write!(f, "  account holds")
        } else {
            writeln!(f, "  FAILED:")?;
            for p in self.problems.iter().take(30) {
                writeln!(f, "    {p}")?;
            }
            if self.problems.len() > 30 {
                writeln!(f, "    ... {} more", self.problems.len() - 30)?;
            }
            write!(f, "  replay: {}", self.replay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_limit_park_may_pass_the_budget_and_no_other_may() {
        assert!(parked_on_time("exhausted", 5));
        assert!(!parked_on_time("exhausted", 6));
        assert!(parked_on_time("delivery-limit", 5));
        assert!(parked_on_time("delivery-limit", 7));
        assert!(!parked_on_time("delivery-limit", 4));
    }
}

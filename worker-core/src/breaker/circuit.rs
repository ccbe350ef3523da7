//! The breaker's decisions as a pure state machine: outcomes and the time
//! in, transitions and what the consumer may do out. No locks, no I/O, no
//! clock of its own, so that every rule is tested as a table.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::{BreakerPolicy, BreakerState, Verdict};

/// What a consumer of the task's queue may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The breaker is closed: consume as usual.
    Consume,
    /// Take exactly one message as the probe and report its outcome.
    Probe,
    /// Take nothing; ask again at this time, or (`None`) when the state changes.
    Wait(Option<Instant>),
}

/// A change of state and why it happened, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: BreakerState,
    /// Why, for people: "11 of the last 20 outcomes failed".
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One task's breaker: the last outcomes and the phase.
#[derive(Debug)]
pub(crate) struct Circuit {
    policy: BreakerPolicy,
    /// The last counted outcomes, oldest first; `true` for a failure.
    window: VecDeque<bool>,
    phase: Phase,
}

impl Circuit {
    pub(crate) fn new(policy: BreakerPolicy) -> Circuit {
        Circuit {
            window: VecDeque::with_capacity(policy.window as usize),
            policy,
            phase: Phase::Closed,
        }
    }

    #[cfg(test)]
    fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Counts the outcome of a delivery taken while closed. Outcomes that
    /// arrive in another state (handlers that were running when the
    /// breaker opened) change nothing: only the probe decides then.
    pub(crate) fn record(&mut self, verdict: Verdict, now: Instant) -> Option<Transition> {
        let failed = match (self.phase, verdict) {
            (Phase::Closed, Verdict::Success) => false,
            (Phase::Closed, Verdict::Failure) => true,
            _ => return None,
        };
        if self.window.len() == self.policy.window as usize {
            self.window.pop_front();
        }
        self.window.push_back(failed);
        let failures = self.window.iter().filter(|f| **f).count();
        let seen = self.window.len();
        let trips = seen == self.policy.window as usize
            && failures * 100 >= usize::from(self.policy.percent) * seen;
        if !trips {
            return None;
        }
        let reason = if failures == seen {
            format!("the last {seen} outcomes all failed")
        } else {
            format!("{failures} of the last {seen} outcomes failed")
        };
        Some(self.open(now, reason))
    }

    /// What a consumer may do now; `may_probe` is false for a consumer that
    /// never probes (the quarantine queue's). The first caller after the
    /// cool-down moves the breaker to half-open and gets the probe.
    pub(crate) fn admit(&mut self, now: Instant, may_probe: bool) -> (Admit, Option<Transition>) {
        match self.phase {
            Phase::Closed => (Admit::Consume, None),
            Phase::Open { until } if may_probe && now >= until => {
                self.phase = Phase::HalfOpen { probing: true };
                let reason = format!(
                    "the cool-down of {} is over",
                    crate::format_duration(self.policy.cooldown)
                );
                let to = BreakerState::HalfOpen;
                (Admit::Probe, Some(Transition { to, reason }))
            }
            Phase::Open { until } if may_probe => (Admit::Wait(Some(until)), None),
            Phase::HalfOpen { probing: false } if may_probe => {
                self.phase = Phase::HalfOpen { probing: true };
                (Admit::Probe, None)
            }
            _ => (Admit::Wait(None), None),
        }
    }

    /// The probe's outcome: a success closes, a failure opens again with a
    /// fresh cool-down, and a message at fault (neither) lets the next
    /// message probe.
    pub(crate) fn probe_done(&mut self, verdict: Verdict, now: Instant) -> Option<Transition> {
        if self.phase != (Phase::HalfOpen { probing: true }) {
            return None;
        }
        match verdict {
            Verdict::Success => Some(self.close("the probe succeeded".into())),
            Verdict::Failure => Some(self.open(now, "the probe failed".into())),
            Verdict::Neither => {
                self.phase = Phase::HalfOpen { probing: false };
                None
            }
        }
    }

    /// The queue had nothing to probe with: nothing says the downstream is
    /// still broken, so the breaker closes.
    pub(crate) fn probe_found_nothing(&mut self) -> Option<Transition> {
        (self.phase == Phase::HalfOpen { probing: true })
            .then(|| self.close("the queue was empty when the probe was due".into()))
    }

    /// The probe never finished (its channel was lost): the next consumer
    /// may probe again.
    pub(crate) fn probe_abandoned(&mut self) {
        if self.phase == (Phase::HalfOpen { probing: true }) {
            self.phase = Phase::HalfOpen { probing: false };
        }
    }

    fn open(&mut self, now: Instant, reason: String) -> Transition {
        self.window.clear();
        self.phase = Phase::Open {
            until: now + self.policy.cooldown,
        };
        Transition {
            to: BreakerState::Open,
            reason,
        }
    }

    fn close(&mut self, reason: String) -> Transition {
        self.window.clear();
        self.phase = Phase::Closed;
        Transition {
            to: BreakerState::Closed,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use Verdict::{Failure as F, Neither as N, Success as S};

    fn circuit(rule: &str, cooldown_secs: u64) -> Circuit {
        let policy: BreakerPolicy = rule.parse().unwrap();
        Circuit::new(policy.cooldown(Duration::from_secs(cooldown_secs)))
    }

    fn feed(c: &mut Circuit, verdicts: &[Verdict], now: Instant) -> Vec<Transition> {
        verdicts.iter().filter_map(|v| c.record(*v, now)).collect()
    }

    #[test]
    fn trips_only_once_the_window_is_full_and_the_share_is_reached() {
        let now = Instant::now();
        let mut c = circuit("50%/4", 30);
        assert!(feed(&mut c, &[F, F, F], now).is_empty(), "3 seen of 4");
        let t = feed(&mut c, &[S], now);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, BreakerState::Open);
        assert_eq!(t[0].reason, "3 of the last 4 outcomes failed");
    }

    #[test]
    fn a_sliding_window_forgets_old_failures() {
        let now = Instant::now();
        let mut c = circuit("75%/4", 30);
        assert!(feed(&mut c, &[F, F, S, S, F, S, F], now).is_empty());
        assert_eq!(c.state(), BreakerState::Closed);
        assert_eq!(feed(&mut c, &[F], now).len(), 1, "F S F F: 3 of 4");
    }

    #[test]
    fn in_a_row_needs_consecutive_failures_and_poison_counts_as_neither() {
        let now = Instant::now();
        let mut c = circuit("3 in a row", 30);
        assert!(feed(&mut c, &[F, F, S, F, N, F], now).is_empty());
        let t = feed(&mut c, &[N, F], now);
        assert_eq!(t[0].reason, "the last 3 outcomes all failed");
    }

    #[test]
    fn open_waits_the_cooldown_then_gives_exactly_one_probe() {
        let now = Instant::now();
        let mut c = circuit("1 in a row", 30);
        feed(&mut c, &[F], now);
        let until = now + Duration::from_secs(30);
        assert_eq!(c.admit(now, true), (Admit::Wait(Some(until)), None));
        assert_eq!(c.admit(until, false), (Admit::Wait(None), None));
        let (admit, t) = c.admit(until, true);
        assert_eq!(admit, Admit::Probe);
        assert_eq!(t.unwrap().to, BreakerState::HalfOpen);
        assert_eq!(
            c.admit(until, true),
            (Admit::Wait(None), None),
            "one probe at a time"
        );
    }

    #[test]
    fn probe_success_closes_failure_reopens_with_a_fresh_cooldown() {
        let now = Instant::now();
        let mut c = circuit("1 in a row", 10);
        feed(&mut c, &[F], now);
        let later = now + Duration::from_secs(10);
        c.admit(later, true);
        assert_eq!(c.probe_done(F, later).unwrap().reason, "the probe failed");
        let again = later + Duration::from_secs(10);
        assert_eq!(c.admit(later, true), (Admit::Wait(Some(again)), None));
        c.admit(again, true);
        assert_eq!(c.probe_done(S, again).unwrap().to, BreakerState::Closed);
        assert_eq!(c.admit(again, true), (Admit::Consume, None));
    }

    #[test]
    fn a_poison_probe_lets_the_next_message_probe_and_an_empty_queue_closes() {
        let now = Instant::now();
        let mut c = circuit("1 in a row", 1);
        feed(&mut c, &[F], now);
        let later = now + Duration::from_secs(1);
        c.admit(later, true);
        assert_eq!(c.probe_done(N, later), None);
        assert_eq!(c.admit(later, true), (Admit::Probe, None));
        assert_eq!(c.probe_found_nothing().unwrap().to, BreakerState::Closed);
    }

    #[test]
    fn outcomes_of_handlers_started_before_the_trip_change_nothing() {
        let now = Instant::now();
        let mut c = circuit("1 in a row", 1);
        feed(&mut c, &[F], now);
        assert!(feed(&mut c, &[S, S, F], now).is_empty());
        assert_eq!(c.state(), BreakerState::Open);
    }

    #[test]
    fn an_abandoned_probe_can_be_taken_again() {
        let now = Instant::now();
        let mut c = circuit("1 in a row", 1);
        feed(&mut c, &[F], now);
        c.admit(now + Duration::from_secs(1), true);
        c.probe_abandoned();
        assert_eq!(c.admit(now, true), (Admit::Probe, None));
    }
}

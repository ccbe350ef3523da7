//! The failure policy: what happens to a delivery, decided in one place.
//!
//! Every rule about attempts lives here, as two pure functions in the
//! spirit of tower's retry `Policy`: [`admit`] before the handler runs and
//! [`after_failure`] once an attempt failed. Each answers with a [`Step`];
//! the layers of the default stack only carry steps out (the retry layer
//! sleeps and runs again, the redeliver layer copies to a wait queue, the
//! quarantine layer to the quarantine queue, the park layer to parking),
//! so a reader learns what becomes of a failure here, not across five
//! files. The tables in the tests below are the whole policy.
//!
//! Why so few in-process retries? An in-process sleep holds a prefetch
//! slot and counts against the broker's consumer timeout; longer waits
//! belong in the broker's wait queues. Why is a returned delivery not
//! charged? It may never have started (it sat in a prefetch window when the
//! connection dropped); it runs alone in quarantine instead, where its
//! returns do count.

use std::time::Duration;

use rand::Rng;

use super::job::{Failure, FailureCause};
use crate::task::{FailureKind, RetryPolicy};

/// The longest a message waits for a `retry_after` or an `rw-not-before`:
/// seven days. Longer waits are cut to it (logged and counted as
/// `rabbit_worker_delay_clamped_total`), so nothing cycles through the
/// tiers forever.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to do with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the handler.
    Run,
    /// Run the handler again in this process after `after`.
    RetryHere {
        /// The backoff (or the wait the handler asked for).
        after: Duration,
    },
    /// Copy the delivery to the wait queue of `tier` (its TTL brings it
    /// back), then ack.
    Wait {
        /// The tier's delay.
        tier: Duration,
        /// When the wait asked for is longer than the tier: how long from
        /// now the message must not run (`rw-not-before`).
        not_before: Option<Duration>,
        /// Whether this charges an attempt: `false` for a delivery that
        /// came back before it was due and goes round again without
        /// running.
        charged: bool,
    },
    /// Copy the delivery to the task's quarantine queue, recording
    /// `attempts` made, then ack.
    Quarantine {
        /// Attempts the copy carries in `rw-attempts`.
        attempts: u32,
    },
    /// Copy the delivery to parking with `reason` (`rw-park-reason`), then ack.
    Park {
        /// Why.
        reason: &'static str,
    },
}

/// Where a delivery stands when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arrival {
    /// The attempt it would run as (1-based).
    pub attempt: u32,
    /// Whether it came from the task's quarantine queue.
    pub from_quarantine: bool,
    /// Whether the broker returned it unsettled before.
    pub returned: bool,
    /// Whether the work queue is a classic queue (no delivery count).
    pub classic: bool,
    /// How long until its `rw-not-before`, when that is still ahead.
    pub not_due_for: Option<Duration>,
}

/// What happens to a delivery before its handler runs.
///
/// In order: a message past its attempt budget is parked (`delivery-limit`),
/// a returned delivery goes to quarantine to run alone, one that is not
/// due yet waits in a tier again (uncharged), anything else runs.
pub fn admit(arrival: Arrival, policy: &RetryPolicy) -> Step {
    if arrival.attempt > policy.max_attempts {
        return Step::Park {
            reason: "delivery-limit",
        };
    }
    match (arrival.from_quarantine, arrival.returned) {
        (false, true) => {
            return Step::Quarantine {
                attempts: arrival.attempt.saturating_sub(1),
            }
        }
        // A classic quarantine queue has no delivery count: a fresh copy
        // with one more attempt recorded stands in for it.
        (true, true) if arrival.classic => {
            return Step::Quarantine {
                attempts: arrival.attempt,
            }
        }
        _ => {}
    }
    if let Some(left) = arrival.not_due_for {
        let left = left.min(MAX_DELAY);
        if let Some(tier) = policy.tier_at_least(left) {
            return Step::Wait {
                tier,
                not_before: None,
                charged: false,
            };
        }
    }
    Step::Run
}

/// Where a delivery stands after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Handler runs within this delivery so far.
    pub tries_here: u32,
    /// Trips through the delay tiers so far.
    pub redeliveries: u32,
    /// No more in-process retries: the worker is stopping, or the
    /// delivery's hold budget would end before the retry starts.
    pub stopping: bool,
}

/// What happens after `failure`: retry here, wait in a tier, or park.
///
/// Only transient failures are retried, and only while attempts are left:
/// first in process (up to `in_process_attempts` runs per delivery, with
/// the task's backoff, or the wait the handler asked for when it fits the
/// backoff's cap), then through the delay tiers (a tier per trip, or the
/// shortest tier covering the wait asked for, with `rw-not-before` when
/// even the longest is shorter). Everything else is parked with the
/// failure's reason. `jitter` draws the backoff's randomness.
pub fn after_failure<R: Rng + ?Sized>(
    failure: &Failure,
    progress: Progress,
    policy: &RetryPolicy,
    jitter: &mut R,
) -> Step {
    let park = Step::Park {
        reason: failure.park_reason(),
    };
    if failure.kind != FailureKind::Transient
        || failure.cause == FailureCause::DeliveryLimit
        || failure.attempt >= policy.max_attempts
    {
        return park;
    }
    let asked = failure.retry_after.map(|wait| wait.min(MAX_DELAY));
    if progress.tries_here < policy.in_process_attempts && !progress.stopping {
        match asked {
            Some(wait) if wait > policy.backoff.max => {}
            Some(wait) => {
                return Step::RetryHere {
                    after: wait.max(policy.backoff.min),
                }
            }
            None => {
                return Step::RetryHere {
                    after: policy.backoff.delay(progress.tries_here, jitter),
                }
            }
        }
    }
    let tier = match asked {
        Some(wait) => policy.tier_at_least(wait),
        None => policy.tier_for(progress.redeliveries),
    };
    match tier {
        Some(tier) => Step::Wait {
            tier,
            not_before: asked.filter(|wait| *wait > tier),
            charged: true,
        },
        None => park,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Three runs here (backoff 1s..4s, no jitter), tiers 10s and 60s, at
    /// most 5 attempts.
    fn policy() -> RetryPolicy {
        let mut backoff = Backoff::new(secs(1), secs(4));
        backoff.jitter = 0.0;
        RetryPolicy::default()
            .in_process(3)
            .backoff(backoff)
            .tiers([secs(10), secs(60)])
            .max_attempts(5)
    }

    fn failure(kind: FailureKind, cause: FailureCause, attempt: u32) -> Failure {
        Failure::new(kind, cause, "boom", attempt)
    }

    fn asking(wait: Duration, attempt: u32) -> Failure {
        let mut f = failure(FailureKind::Transient, FailureCause::Handler, attempt);
        f.retry_after = Some(wait);
        f
    }

    fn run(tries_here: u32, redeliveries: u32) -> Progress {
        Progress {
            tries_here,
            redeliveries,
            stopping: false,
        }
    }

    const fn wait(tier: u64, not_before: Option<Duration>) -> Step {
        Step::Wait {
            tier: Duration::from_secs(tier),
            not_before,
            charged: true,
        }
    }

    const fn park(reason: &'static str) -> Step {
        Step::Park { reason }
    }

    #[test]
    fn after_a_failure() {
        use FailureCause::*;
        use FailureKind::*;
        let stopping = Progress {
            stopping: true,
            ..run(1, 0)
        };
        let rows: Vec<(&str, Failure, Progress, Step)> = vec![
            (
                "first transient failure: retry here after the backoff's minimum",
                failure(Transient, Handler, 1),
                run(1, 0),
                Step::RetryHere { after: secs(1) },
            ),
            (
                "second: the backoff doubles",
                failure(Transient, Handler, 2),
                run(2, 0),
                Step::RetryHere { after: secs(2) },
            ),
            (
                "in-process runs used up: the first tier",
                failure(Transient, Handler, 3),
                run(3, 0),
                wait(10, None),
            ),
            (
                "after a trip: the next tier",
                failure(Transient, Timeout, 4),
                run(1, 1),
                Step::RetryHere { after: secs(1) },
            ),
            (
                "tiers repeat the last",
                failure(Transient, Panic, 4),
                run(3, 5),
                wait(60, None),
            ),
            (
                "stopping: no retry here, wait in a tier",
                failure(Transient, Handler, 1),
                stopping,
                wait(10, None),
            ),
            (
                "the last attempt failed: exhausted",
                failure(Transient, Handler, 5),
                run(1, 1),
                park("exhausted"),
            ),
            (
                "permanent: parked at once",
                failure(Permanent, Handler, 1),
                run(1, 0),
                park("permanent"),
            ),
            (
                "undecodable: parked at once",
                failure(Permanent, Decode, 1),
                run(1, 0),
                park("undecodable"),
            ),
            (
                "too large",
                failure(Permanent, TooLarge, 1),
                run(1, 0),
                park("too-large"),
            ),
            (
                "unknown task",
                failure(Permanent, UnknownTask, 1),
                run(1, 0),
                park("unknown-task"),
            ),
            (
                "past the delivery limit",
                failure(Permanent, DeliveryLimit, 6),
                run(1, 0),
                park("delivery-limit"),
            ),
            (
                "asked to wait within the backoff: that wait",
                asking(secs(3), 1),
                run(1, 0),
                Step::RetryHere { after: secs(3) },
            ),
            (
                "asked to wait less than the minimum: the minimum",
                asking(Duration::from_millis(10), 1),
                run(1, 0),
                Step::RetryHere { after: secs(1) },
            ),
            (
                "asked to wait past the backoff: the shortest tier covering it",
                asking(secs(30), 1),
                run(1, 0),
                wait(60, None),
            ),
            (
                "asked to wait past every tier: the longest, not before then",
                asking(secs(3600), 1),
                run(1, 0),
                wait(60, Some(secs(3600))),
            ),
            (
                "asked to wait forever: cut to the maximum",
                asking(Duration::MAX, 1),
                run(1, 0),
                wait(60, Some(MAX_DELAY)),
            ),
        ];
        let mut rng = StdRng::seed_from_u64(0);
        for (name, failure, progress, expected) in rows {
            assert_eq!(
                after_failure(&failure, progress, &policy(), &mut rng),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn without_tiers_an_exhausted_failure_is_parked() {
        let policy = RetryPolicy::default()
            .in_process(1)
            .tiers([])
            .max_attempts(5);
        let f = failure(FailureKind::Transient, FailureCause::Handler, 1);
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            after_failure(&f, run(1, 0), &policy, &mut rng),
            park("exhausted")
        );
    }

    #[test]
    fn before_a_run() {
        let arrive = |attempt, from_quarantine, returned, classic, not_due_for| Arrival {
            attempt,
            from_quarantine,
            returned,
            classic,
            not_due_for,
        };
        let rows: Vec<(&str, Arrival, Step)> = vec![
            (
                "a first delivery runs",
                arrive(1, false, false, false, None),
                Step::Run,
            ),
            (
                "the last attempt runs",
                arrive(5, false, false, false, None),
                Step::Run,
            ),
            (
                "past the budget: parked unrun",
                arrive(6, false, false, false, None),
                park("delivery-limit"),
            ),
            (
                "past the budget, even returned",
                arrive(6, false, true, false, None),
                park("delivery-limit"),
            ),
            (
                "returned to the work queue: quarantined, uncharged",
                arrive(3, false, true, false, None),
                Step::Quarantine { attempts: 2 },
            ),
            (
                "returned in a quorum quarantine: runs (the queue counts)",
                arrive(3, true, true, false, None),
                Step::Run,
            ),
            (
                "returned in a classic quarantine: a fresh copy, charged",
                arrive(3, true, true, true, None),
                Step::Quarantine { attempts: 3 },
            ),
            (
                "not due for 30s: the 60s tier again, uncharged",
                arrive(2, false, false, false, Some(secs(30))),
                Step::Wait {
                    tier: secs(60),
                    not_before: None,
                    charged: false,
                },
            ),
            (
                "not due for a year: still the longest tier",
                arrive(2, false, false, false, Some(secs(365 * 24 * 3600))),
                Step::Wait {
                    tier: secs(60),
                    not_before: None,
                    charged: false,
                },
            ),
        ];
        for (name, arrival, expected) in rows {
            assert_eq!(admit(arrival, &policy()), expected, "{name}");
        }
    }
}

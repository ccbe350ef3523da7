//! Ticks of a fixed period, aligned to the Unix epoch, and which of them a
//! scheduler enqueues when it takes over.
//!
//! Why aligned to the epoch? Every worker then computes the same ticks
//! without talking to the others, and a tick's scheduled time (its id) is
//! the same whichever process enqueues it.

use super::{Missed, MAX_CATCH_UP};

/// The first tick at or after `secs` of a period of `every` seconds.
pub fn tick_at_or_after(secs: u64, every: u64) -> u64 {
    secs.div_ceil(every) * every
}

/// The first tick strictly after `secs`.
pub fn tick_after(secs: u64, every: u64) -> u64 {
    (secs / every + 1) * every
}

/// Where a new scheduler starts an entry: the first tick it enqueues, given
/// the last tick enqueued before (`last`, from the last-tick queue) and the
/// time now. Returns the first tick and how many ticks it skips.
///
/// - Never enqueued: the next tick to come (at or after now).
/// - `fire`: the tick after `last`, however far behind (caught up at once,
///   one message per missed tick), but at most [`MAX_CATCH_UP`] ticks back.
/// - `skip`: the tick after `last` if it is not due yet or due right now
///   (this second), else the next tick to come.
pub fn resume(last: Option<u64>, now: u64, every: u64, missed: Missed) -> (u64, u64) {
    let upcoming = tick_at_or_after(now, every);
    let Some(last) = last else {
        return (upcoming, 0);
    };
    let after_last = tick_after(last, every);
    if after_last >= now.saturating_sub(every - 1) {
        return (after_last, 0);
    }
    match missed {
        Missed::Skip => (upcoming, (upcoming - after_last) / every),
        Missed::Fire => {
            let oldest = upcoming.saturating_sub(MAX_CATCH_UP * every);
            let first = after_last.max(oldest);
            (first, (first - after_last) / every)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_aligned_to_the_epoch() {
        assert_eq!(tick_at_or_after(100, 60), 120);
        assert_eq!(tick_at_or_after(120, 60), 120);
        assert_eq!(tick_after(120, 60), 180);
        assert_eq!(tick_at_or_after(7, 1), 7);
        assert_eq!(tick_after(7, 1), 8);
    }

    #[test]
    fn where_a_new_scheduler_starts() {
        use Missed::*;
        let rows = [
            (
                "never enqueued: the next tick",
                None,
                100,
                60,
                Fire,
                (120, 0),
            ),
            ("never enqueued, skip too", None, 100, 60, Skip, (120, 0)),
            (
                "up to date: the tick after the last",
                Some(60),
                100,
                60,
                Fire,
                (120, 0),
            ),
            (
                "due this very second: fired",
                Some(60),
                120,
                60,
                Skip,
                (120, 0),
            ),
            (
                "one second-tick behind within the period",
                Some(9),
                10,
                1,
                Skip,
                (10, 0),
            ),
            (
                "missed 3, fire: from the first missed",
                Some(0),
                200,
                60,
                Fire,
                (60, 0),
            ),
            (
                "missed 3, skip: the next to come",
                Some(0),
                200,
                60,
                Skip,
                (240, 3),
            ),
            (
                "missed 5 one-second ticks, fire",
                Some(10),
                16,
                1,
                Fire,
                (11, 0),
            ),
            (
                "missed far too many, fire: at most 100 back",
                Some(0),
                10_000,
                1,
                Fire,
                (9_900, 9_899),
            ),
        ];
        for (name, last, now, every, missed, expected) in rows {
            assert_eq!(resume(last, now, every, missed), expected, "{name}");
        }
    }
}

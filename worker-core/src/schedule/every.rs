//! Ticks of a fixed period, aligned to the Unix epoch, and which ticks of
//! any schedule a scheduler enqueues when it takes over.
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

/// The most ticks [`resume`] steps through to count missed ones.
const MAX_STEPS: u64 = 1_000_000;

/// Where a new scheduler starts an entry whose ticks `next_after` gives:
/// the first tick it enqueues (`None`: the schedule has no more), given
/// the last tick enqueued before (`last`, from the last-tick queue) and
/// the time now, and how many missed ticks it skips.
///
/// - Never enqueued: the next tick to come (at or after now).
/// - The tick after `last` is due this second or later: that tick.
/// - Else, `fire`: every missed tick from there, late, but at most the
///   [`MAX_CATCH_UP`] most recent; `skip`: the next tick to come.
pub fn resume(
    last: Option<u64>,
    now: u64,
    missed: Missed,
    next_after: impl Fn(u64) -> Option<u64>,
) -> (Option<u64>, u64) {
    let upcoming = next_after(now.saturating_sub(1));
    let Some(last) = last else {
        return (upcoming, 0);
    };
    let Some(after_last) = next_after(last) else {
        return (None, 0);
    };
    if after_last + 1 >= now {
        return (Some(after_last), 0);
    }
    // The missed ticks, oldest first: after_last ..= the last before now.
    let mut missed_ticks = Vec::new();
    let mut tick = Some(after_last);
    while let Some(t) = tick.filter(|t| *t < now) {
        if missed_ticks.len() as u64 >= MAX_STEPS {
            break;
        }
        missed_ticks.push(t);
        tick = next_after(t);
    }
    let total = missed_ticks.len() as u64;
    match missed {
        Missed::Skip => (upcoming, total),
        Missed::Fire => {
            let skipped = total.saturating_sub(MAX_CATCH_UP);
            (Some(missed_ticks[skipped as usize]), skipped)
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
        type Row = (
            &'static str,
            Option<u64>,
            u64,
            u64,
            Missed,
            (Option<u64>, u64),
        );
        let rows: [Row; 9] = [
            (
                "never enqueued: the next tick",
                None,
                100,
                60,
                Fire,
                (Some(120), 0),
            ),
            (
                "never enqueued, skip too",
                None,
                100,
                60,
                Skip,
                (Some(120), 0),
            ),
            (
                "up to date: the tick after the last",
                Some(60),
                100,
                60,
                Fire,
                (Some(120), 0),
            ),
            (
                "due this very second: fired, even with skip",
                Some(60),
                120,
                60,
                Skip,
                (Some(120), 0),
            ),
            (
                "a second late with one-second ticks: fired",
                Some(9),
                11,
                1,
                Skip,
                (Some(10), 0),
            ),
            (
                "missed 3, fire: from the first missed",
                Some(0),
                200,
                60,
                Fire,
                (Some(60), 0),
            ),
            (
                "missed 3, skip: the next to come",
                Some(0),
                200,
                60,
                Skip,
                (Some(240), 3),
            ),
            (
                "missed 5 one-second ticks, fire",
                Some(10),
                16,
                1,
                Fire,
                (Some(11), 0),
            ),
            (
                "missed far too many, fire: the 100 most recent",
                Some(0),
                10_000,
                1,
                Fire,
                (Some(9_900), 9_899),
            ),
        ];
        for (name, last, now, every, missed, expected) in rows {
            let next = |t| Some(tick_after(t, every));
            assert_eq!(resume(last, now, missed, next), expected, "{name}");
        }
    }

    #[test]
    fn a_schedule_that_ends_resumes_nowhere() {
        let once = |t: u64| (t < 50).then_some(50);
        assert_eq!(resume(Some(50), 100, Missed::Fire, once), (None, 0));
        assert_eq!(resume(None, 100, Missed::Fire, once), (None, 0));
    }
}

//! Cron schedules in a time zone: `cron = "0 */5 * * * *"`, `tz = "Europe/Paris"`.
//!
//! Why croner on jiff? croner parses the usual five fields and an optional
//! sixth for seconds (and `L`, `W`, `#`), and finds the next occurrence in
//! a zoned time, across daylight-saving changes (a time that does not
//! exist is taken at the first instant after it, a repeated one once).
//! jiff gives the IANA zones from the system's time zone database
//! (`/usr/share/zoneinfo`), so nothing is compiled in; chrono with
//! chrono-tz would compile the whole database into every binary. Both
//! built in about 10 s here.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::error::Error;

/// A parsed cron pattern and the zone its fields are read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    zone: TimeZone,
    pattern: String,
    zone_name: String,
}

impl CronSchedule {
    /// Parses `pattern` (5 fields, or 6 with seconds first) read in the
    /// IANA zone `tz` (`UTC` when `None`).
    ///
    /// ```
    /// use worker_core::schedule::cron::CronSchedule;
    /// let every_5_min = CronSchedule::parse("0 */5 * * * *", Some("Europe/Paris")).unwrap();
    /// // 2026-01-01T00:01:00Z is 01:01 in Paris: the next tick is 00:05:00Z.
    /// assert_eq!(every_5_min.next_after(1_767_225_660), Some(1_767_225_900));
    /// assert!(CronSchedule::parse("61 * * * *", None).is_err());
    /// assert!(CronSchedule::parse("* * * * *", Some("Mars/Olympus")).is_err());
    /// ```
    pub fn parse(pattern: &str, tz: Option<&str>) -> Result<CronSchedule, Error> {
        let cron: croner::Cron = pattern
            .parse()
            .map_err(|e| Error::Config(format!("cron pattern {pattern:?}: {e}")))?;
        let zone_name = tz.unwrap_or("UTC").to_owned();
        let zone = TimeZone::get(&zone_name)
            .map_err(|e| Error::Config(format!("time zone {zone_name:?}: {e}")))?;
        Ok(CronSchedule {
            cron,
            zone,
            pattern: pattern.to_owned(),
            zone_name,
        })
    }

    /// The first tick strictly after `secs` (Unix seconds); `None` when
    /// the pattern never matches again.
    pub fn next_after(&self, secs: u64) -> Option<u64> {
        let at = Timestamp::from_second(i64::try_from(secs).ok()?).ok()?;
        let zoned = Zoned::new(at, self.zone.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        u64::try_from(next.timestamp().as_second()).ok()
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The zone's name.
    pub fn zone(&self) -> &str {
        &self.zone_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-29T00:00:00Z: Paris moves from +01:00 to +02:00 at 01:00Z.
    const DST_DAY: u64 = 1_774_742_400;

    #[test]
    fn a_daily_time_follows_the_zone_across_daylight_saving() {
        let nine = CronSchedule::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:00 Paris is 08:00Z on the 28th (winter), 07:00Z on the 29th.
        let first = nine.next_after(DST_DAY - 86_400).unwrap();
        assert_eq!(first, DST_DAY - 86_400 + 8 * 3600);
        assert_eq!(nine.next_after(first).unwrap(), DST_DAY + 7 * 3600);
    }

    #[test]
    fn seconds_are_optional_and_utc_is_the_default() {
        let s = CronSchedule::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(s.next_after(DST_DAY), Some(DST_DAY + 10));
        assert_eq!(s.zone(), "UTC");
        let m = CronSchedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(m.next_after(DST_DAY), Some(DST_DAY + 900));
    }
}

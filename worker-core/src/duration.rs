//! Durations written as `250ms`, `30s`, `5m`, `1h` or `2d`.
//!
//! This file is also compiled into `worker-macros` (by `#[path]`), so the
//! `#[task]` attribute checks durations at compile time with the very same
//! rules the runtime uses for flags and environment variables.

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(worker_core::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(worker_core::parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert!(worker_core::parse_duration("5 minutes").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let hint = "write a whole number and a unit: 250ms, 30s, 5m, 1h or 2d";
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: {hint}"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration unit in {text:?}: {hint}")),
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Parses a rate, `<count>/s` or `<count>/m`: how many starts per second or
/// per minute. Returns the count and the period. Shared with `#[task]`'s
/// `rate` option, like durations.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(worker_core::parse_rate("100/s"), Ok((100, Duration::from_secs(1))));
/// assert_eq!(worker_core::parse_rate("30/m"), Ok((30, Duration::from_secs(60))));
/// assert!(worker_core::parse_rate("0/s").is_err());
/// assert!(worker_core::parse_rate("10/h").is_err());
/// ```
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let text = text.trim();
    let hint = "write a whole number of starts per second or per minute: \"100/s\" or \"30/m\"";
    let Some((count, unit)) = text.split_once('/') else {
        return Err(format!("invalid rate {text:?}: {hint}"));
    };
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        _ => return Err(format!("invalid rate unit in {text:?}: {hint}")),
    };
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {text:?}: {hint}"))?;
    if count == 0 {
        return Err(format!(
            "rate {text:?} would never start the task: {hint}, or leave the option out for no limit"
        ));
    }
    Ok((count, per))
}

/// Formats a duration in the largest unit that divides it exactly (`1500ms`, `10s`, `1h`).
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(worker_core::format_duration(Duration::from_secs(600)), "10m");
/// assert_eq!(worker_core::format_duration(Duration::from_millis(1500)), "1500ms");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "write a whole number and a unit: 250ms, 30s, 5m, 1h or 2d";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_a_whole_number_and_one_unit() {
        let cases = [
            ("250ms", ms(250)),
            ("30s", ms(30_000)),
            ("5m", ms(300_000)),
            ("1h", ms(3_600_000)),
            ("2d", ms(172_800_000)),
            ("0s", Duration::ZERO),
            (" 30s ", ms(30_000)),
            ("007s", ms(7_000)),
            ("18446744073709551615ms", ms(u64::MAX)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text:?}");
        }
    }

    /// The `#[task]` UI tests pin these messages (`invalid_duration.stderr`,
    /// `several_errors.stderr`), and the CLI shows them for flags.
    #[test]
    fn rejects_everything_else_with_a_hint() {
        let bad_number = ["", "s", "-1s", "+1s", "99999999999999999999s"];
        for text in bad_number {
            let expected = format!("invalid duration {:?}: {HINT}", text.trim());
            assert_eq!(parse_duration(text), Err(expected), "{text:?}");
        }
        // Spaces, long unit names, several units, fractions and units below
        // a millisecond are not durations here.
        let bad_unit = [
            "5",
            "5 minutes",
            "1 hour",
            "30 s",
            "1h30m",
            "1h 30m",
            "1.5s",
            "500us",
            "5S",
            "1w",
        ];
        for text in bad_unit {
            let expected = format!("invalid duration unit in {text:?}: {HINT}");
            assert_eq!(parse_duration(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Err("duration \"18446744073709551615s\" is too large".to_owned())
        );
    }

    /// Tier queues are named `<queue>.retry.<format_duration(delay)>`: this
    /// output is part of the broker topology and must not change.
    #[test]
    fn formats_in_the_largest_unit_that_divides_exactly() {
        let cases = [
            (ms(600_000), "10m"),
            (ms(1_500), "1500ms"),
            (ms(500), "500ms"),
            (ms(1_000), "1s"),
            (ms(90_000), "90s"),
            (ms(60_000), "1m"),
            (ms(5_400_000), "90m"),
            (ms(3_600_000), "1h"),
            (ms(90_000_000), "25h"),
            (ms(86_400_000), "1d"),
            (ms(86_400_001), "86400001ms"),
            (Duration::ZERO, "0ms"),
        ];
        for (d, expected) in cases {
            assert_eq!(format_duration(d), expected, "{d:?}");
        }
    }

    #[test]
    fn formatted_durations_parse_back_to_themselves() {
        for n in [
            0, 1, 250, 1_500, 30_000, 90_000, 5_400_000, 86_400_000, 86_400_001,
        ] {
            assert_eq!(parse_duration(&format_duration(ms(n))), Ok(ms(n)));
        }
    }
}

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
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

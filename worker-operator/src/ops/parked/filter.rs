//! Choosing parked messages: a [`Filter`] on what their park headers and
//! body say, and a [`Page`] of the matches.
//!
//! One filter serves every surface: `parked list`, `parked replay` and
//! `parked delete` on the command line, and the dashboard's pages and JSON
//! API, so a filter picks the same messages wherever it is typed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::ParkedMessage;

/// Which parked messages to look at; every condition given must hold.
///
/// ```
/// use worker_operator::ops::parked::Filter;
/// let filter = Filter { reason: Some("permanent".into()), text: Some("DECLINED".into()), ..Filter::default() };
/// assert!(!filter.is_empty());
/// assert!(Filter::default().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// The park reason, exactly (`exhausted`, `permanent`, `undecodable`,
    /// `dead-lettered: delivery_limit`, ...).
    pub reason: Option<String>,
    /// Text the error message or the body contains, ignoring case.
    pub text: Option<String>,
    /// Parked at or after this time, seconds since the epoch.
    pub since: Option<u64>,
    /// Parked at or before this time, seconds since the epoch.
    pub until: Option<u64>,
}

impl Filter {
    /// Whether the filter lets every message through.
    pub fn is_empty(&self) -> bool {
        self.reason.is_none() && self.text.is_none() && self.since.is_none() && self.until.is_none()
    }

    /// Whether `message` passes. A message without a park time fails a
    /// time range (nothing says it is inside).
    pub fn matches(&self, message: &ParkedMessage) -> bool {
        if self.reason.as_ref().is_some_and(|r| *r != message.reason) {
            return false;
        }
        if let Some(text) = &self.text {
            let needle = text.to_lowercase();
            let in_error = message
                .error
                .as_ref()
                .is_some_and(|e| e.to_lowercase().contains(&needle));
            if !in_error
                && !String::from_utf8_lossy(&message.body)
                    .to_lowercase()
                    .contains(&needle)
            {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = message.parked_at else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at > u) {
                return false;
            }
        }
        true
    }

    /// Drops empty conditions (a form's blank field means "any").
    pub fn normalized(mut self) -> Filter {
        for field in [&mut self.reason, &mut self.text] {
            if field.as_ref().is_some_and(|v| v.trim().is_empty()) {
                *field = None;
            }
        }
        self
    }
}

/// Which of the matching messages a listing returns, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Matches to pass over first.
    pub offset: usize,
    /// Matches to return at most.
    pub limit: usize,
}

impl Page {
    /// The first `limit` matches.
    pub fn first(limit: usize) -> Page {
        Page { offset: 0, limit }
    }
}

/// Reads a point in time for a filter: an RFC 3339 time
/// (`2026-11-27T10:00:00Z`, or without the zone, taken as UTC), or a
/// duration meaning that long before `now` (`90s`, `15m`, `2h`, `1d`).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use worker_operator::ops::parked::parse_time;
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// assert_eq!(parse_time("2023-11-14T22:13:20Z", now), Ok(1_700_000_000));
/// assert_eq!(parse_time("1h", now), Ok(1_700_000_000 - 3600));
/// assert!(parse_time("yesterday", now).is_err());
/// ```
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(seconds(at));
    }
    match worker_core::parse_duration(text) {
        Ok(ago) => Ok(seconds(now.checked_sub(ago).unwrap_or(UNIX_EPOCH))),
        Err(_) => Err(format!(
            "invalid time {text:?}: write an RFC 3339 time (2026-11-27T10:00:00Z) or a duration ago (15m, 2h)"
        )),
    }
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker_core::headers::{self, Headers};
    use worker_core::message::{Delivery, Properties};

    fn parked(reason: &str, error: &str, body: &str, at: Option<u64>) -> ParkedMessage {
        let mut h = Headers::new();
        h.insert(headers::PARK_REASON, reason)
            .insert(headers::ERROR_MESSAGE, error);
        if let Some(at) = at {
            h.insert(headers::LAST_FAILURE, at);
        }
        let delivery = Delivery {
            tag: 1,
            exchange: String::new(),
            routing_key: "q.parking".into(),
            redelivered: false,
            properties: Properties::default().with_headers(h),
            body: body.as_bytes().to_vec().into(),
        };
        ParkedMessage::from_delivery("q.parking", &delivery)
    }

    #[test]
    fn every_condition_must_hold() {
        let m = parked(
            "permanent",
            "Card DECLINED",
            r#"{"order":"A-17"}"#,
            Some(100),
        );
        let f = |reason: Option<&str>, text: Option<&str>, since, until| Filter {
            reason: reason.map(str::to_owned),
            text: text.map(str::to_owned),
            since,
            until,
        };
        assert!(f(None, None, None, None).matches(&m));
        assert!(f(Some("permanent"), Some("declined"), Some(100), Some(100)).matches(&m));
        assert!(
            f(None, Some("a-17"), None, None).matches(&m),
            "text is searched in the body too"
        );
        assert!(!f(Some("exhausted"), None, None, None).matches(&m));
        assert!(!f(None, Some("timeout"), None, None).matches(&m));
        assert!(!f(None, None, Some(101), None).matches(&m));
        assert!(!f(None, None, None, Some(99)).matches(&m));
    }

    #[test]
    fn a_time_range_excludes_messages_without_a_park_time() {
        let m = parked("permanent", "x", "{}", None);
        let filter = Filter {
            since: Some(0),
            ..Filter::default()
        };
        assert!(!filter.matches(&m));
    }

    #[test]
    fn blank_form_fields_mean_any() {
        let filter = Filter {
            reason: Some(String::new()),
            text: Some("  ".into()),
            ..Filter::default()
        }
        .normalized();
        assert!(filter.is_empty());
    }
}

//! Query strings and form bodies: the filter, the page and the ids.

use std::time::SystemTime;

use crate::ops::parked::{parse_time, Filter, Page};

/// The default and largest page sizes.
pub(crate) const DEFAULT_LIMIT: usize = 50;
pub(crate) const MAX_LIMIT: usize = 500;

/// `name=value` pairs, in order, repeats kept (`ids=a&ids=b`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(text: &[u8]) -> Params {
        Params(form_urlencoded::parse(text).into_owned().collect())
    }

    pub(crate) fn from_query(query: Option<&str>) -> Params {
        Params::parse(query.unwrap_or("").as_bytes())
    }

    /// The first non-blank value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-blank value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// `reason`, `text`, `since` and `until`.
    pub(crate) fn filter(&self) -> Result<Filter, String> {
        let now = SystemTime::now();
        let time = |name: &str| -> Result<Option<u64>, String> {
            self.get(name)
                .map(|t| {
                    // A browser's datetime-local field has no seconds and no zone (UTC here).
                    let t = if t.len() == 16 && t.as_bytes()[10] == b'T' {
                        format!("{t}:00Z")
                    } else {
                        t.to_owned()
                    };
                    parse_time(&t, now).map_err(|e| format!("{name}: {e}"))
                })
                .transpose()
        };
        Ok(Filter {
            reason: self.get("reason").map(str::to_owned),
            text: self.get("text").map(str::to_owned),
            since: time("since")?,
            until: time("until")?,
        }
        .normalized())
    }

    /// `offset` and `limit` (1..=500, default 50).
    pub(crate) fn page(&self) -> Result<Page, String> {
        let number = |name: &str, default: usize| -> Result<usize, String> {
            self.get(name).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
            })
        };
        let limit = number("limit", DEFAULT_LIMIT)?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
        }
        Ok(Page {
            offset: number("offset", 0)?,
            limit,
        })
    }
}

/// The query string that selects `filter` (times as seconds since the epoch
/// are not used: they come back as RFC 3339, which [`Params::filter`] reads).
pub(crate) fn filter_query(filter: &Filter) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(r) = &filter.reason {
        q.append_pair("reason", r);
    }
    if let Some(t) = &filter.text {
        q.append_pair("text", t);
    }
    if let Some(s) = filter.since {
        q.append_pair("since", &crate::ops::format_time(s));
    }
    if let Some(u) = filter.until {
        q.append_pair("until", &crate::ops::format_time(u));
    }
    q.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_page_round_trip() {
        let p = Params::parse(
            b"reason=permanent&text=Declined&since=2023-11-14T22%3A13&until=&ids=a&ids=b&ids=&offset=50&limit=25",
        );
        let f = p.filter().unwrap();
        assert_eq!(f.reason.as_deref(), Some("permanent"));
        assert_eq!(f.since, Some(1_699_999_980));
        assert_eq!(f.until, None);
        assert_eq!(p.all("ids"), ["a", "b"]);
        assert_eq!(
            p.page().unwrap(),
            Page {
                offset: 50,
                limit: 25
            }
        );
        let again = Params::parse(filter_query(&f).as_bytes()).filter().unwrap();
        assert_eq!(again, f);
        assert!(Params::parse(b"limit=0").page().is_err());
        assert!(Params::parse(b"offset=x").page().is_err());
        assert!(Params::parse(b"since=soon").filter().is_err());
    }
}

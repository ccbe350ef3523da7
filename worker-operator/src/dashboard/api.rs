//! The JSON API under `/api/`: what the pages do, for scripts.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /api/session` | `{"csrf": "...", "read_only": false}`: the token a `POST` without bearer auth must send as `X-CSRF-Token` |
//! | `GET /api/tasks` | the overview: broker, and per task its queue, ready, consumers, quarantined, parked, tiers, rates |
//! | `GET /api/tasks/{task}/parked?reason=&text=&since=&until=&offset=&limit=` | a page of parked messages (rows as `parked list --json` prints them), with `total` and `matching` |
//! | `GET /api/tasks/{task}/parked/messages/{id}` | one message: every header, the properties and the body |
//! | `POST /api/tasks/{task}/parked/replay` | body `{"ids": [...]}`, `{"filter": {...}}` or `{"all": true}`: what was replayed, what was not found |
//! | `POST /api/tasks/{task}/parked/delete` | the same body: what was deleted, what was not found |
//!
//! `since` and `until` take an RFC 3339 time or a duration ago (`2h`).
//! Errors answer `{"error": "..."}` with `400` (bad input), `403`
//! (read-only, cross-site, no CSRF token), `404` (unknown task or
//! message) or `503` (broker unreachable).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::Limited;
use super::params::Params;
use super::views::{self, Kind};
use super::Shared;
use crate::ops::{self, parked};
use worker_core::error::Error;
use worker_core::topology::TaskSpec;

/// A JSON answer.
fn answer(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{value:#}\n"),
    )
        .into_response()
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, json!({ "error": message.into() }))
}

/// A broker or configuration error as an answer.
pub(crate) fn broker_failure(e: &Error) -> Response {
    failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The task named `name`, or a `404` answer listing the known ones.
pub(crate) fn task<'a>(shared: &'a Shared, name: &str) -> Result<&'a Arc<TaskSpec>, String> {
    ops::find_task(&shared.specs, name).ok_or_else(|| {
        let names: Vec<&str> = shared.specs.iter().map(|s| s.name).collect();
        format!(
            "unknown task {name:?}; registered tasks: {}",
            names.join(", ")
        )
    })
}

pub(crate) async fn session(State(shared): State<Arc<Shared>>) -> Response {
    answer(
        StatusCode::OK,
        json!({ "csrf": shared.csrf, "read_only": shared.read_only }),
    )
}

pub(crate) async fn tasks(State(shared): State<Arc<Shared>>) -> Response {
    match views::overview(&shared).await {
        Ok(o) => answer(StatusCode::OK, json!(o)),
        Err(e) => broker_failure(&e),
    }
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s,
        Err(e) => return failure(StatusCode::NOT_FOUND, e),
    };
    let params = Params::from_query(query.as_deref());
    let (filter, page) = match params.filter().and_then(|f| Ok((f, params.page()?))) {
        Ok(v) => v,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    match parked::list(&shared.connector, &spec.parking, &filter, page).await {
        Ok(l) => answer(StatusCode::OK, listing_json(&l)),
        Err(e) => broker_failure(&e),
    }
}

/// A listing as JSON: the same rows `parked list --json` prints.
pub fn listing_json(listing: &parked::Listing) -> Value {
    json!({
        "queue": listing.queue,
        "exists": listing.exists,
        "total": listing.total,
        "matching": listing.matching,
        "last_match": listing.last_match,
        "offset": listing.page.offset,
        "limit": listing.page.limit,
        "messages": listing.messages.iter().map(|m| m.to_json(false)).collect::<Vec<_>>(),
    })
}

pub(crate) async fn show(
    State(shared): State<Arc<Shared>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s,
        Err(e) => return failure(StatusCode::NOT_FOUND, e),
    };
    match parked::find(&shared.connector, std::slice::from_ref(&spec.parking), &id).await {
        Ok(Some(m)) => answer(StatusCode::OK, m.to_json(true)),
        Ok(None) => failure(
            StatusCode::NOT_FOUND,
            format!("no parked message with id {id:?} in {}", spec.parking),
        ),
        Err(e) => broker_failure(&e),
    }
}

/// The body of a replay or delete.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ActionBody {
    ids: Vec<String>,
    filter: Option<FilterBody>,
    all: bool,
    /// With `filter` or `all`: the id of the last match the caller saw
    /// (a listing's `last_match`); later matches are left alone.
    through: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FilterBody {
    reason: Option<String>,
    text: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl ActionBody {
    fn selection(self) -> Result<parked::Selection, String> {
        let through = self.through.filter(|t| !t.is_empty());
        let bound = |filter: parked::Filter| match &through {
            Some(t) => parked::Selection::Confirmed {
                filter,
                through: t.clone(),
            },
            None if filter.is_empty() => parked::Selection::All,
            None => parked::Selection::Matching(filter),
        };
        match (self.ids.is_empty(), self.filter, self.all) {
            (false, None, false) if through.is_none() => Ok(parked::Selection::Ids(self.ids)),
            (true, Some(f), false) => {
                let now = std::time::SystemTime::now();
                let time = |t: Option<String>| t.map(|t| parked::parse_time(&t, now)).transpose();
                let filter = parked::Filter {
                    reason: f.reason,
                    text: f.text,
                    since: time(f.since)?,
                    until: time(f.until)?,
                }
                .normalized();
                if filter.is_empty() {
                    return Err(
                        "the filter is empty; send {\"all\": true} to pick every message"
                            .to_owned(),
                    );
                }
                Ok(bound(filter))
            }
            (true, None, true) => Ok(bound(parked::Filter::default())),
            _ => Err(
                "send exactly one of {\"ids\": [...]}, {\"filter\": {...}} or {\"all\": true}"
                    .to_owned(),
            ),
        }
    }
}

pub(crate) async fn replay(
    state: State<Arc<Shared>>,
    path: Path<String>,
    Limited(body): Limited,
) -> Response {
    action(state, path, body, Kind::Replay).await
}

pub(crate) async fn delete(
    state: State<Arc<Shared>>,
    path: Path<String>,
    Limited(body): Limited,
) -> Response {
    action(state, path, body, Kind::Delete).await
}

async fn action(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Vec<u8>,
    kind: Kind,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s.clone(),
        Err(e) => return failure(StatusCode::NOT_FOUND, e),
    };
    let selection = match serde_json::from_slice::<ActionBody>(&body)
        .map_err(|e| format!("the body is not a valid action: {e}"))
        .and_then(ActionBody::selection)
    {
        Ok(s) => s,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    match views::act(&shared, &spec, kind, &selection).await {
        Ok(result) => answer(StatusCode::OK, json!(result)),
        Err(e) => broker_failure(&e),
    }
}

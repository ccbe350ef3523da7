//! The server-rendered pages (askama templates under `worker-operator/templates/`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::api::task;
use super::body::Limited;
use super::params::{filter_query, Params};
use super::views::{self, Kind, Overview};
use super::Shared;
use crate::ops;
use crate::ops::parked::{self, BodyView, Filter, Listing, Row, Selection};
use worker_core::topology::TaskSpec;

/// Renders a template, or a plain 500 when it cannot (a bug).
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("template error: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: String,
    message: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    render(
        status,
        &ErrorPage {
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            message: message.into(),
        },
    )
}

pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page; the overview is at /")
}

fn count(n: Option<u32>) -> String {
    n.map_or_else(|| "missing".to_owned(), |n| n.to_string())
}

fn rate(v: f64) -> String {
    v.to_string()
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    title: String,
    broker: String,
    rates: bool,
    rows: Vec<OverviewRow>,
}

struct OverviewRow {
    task: String,
    queue: String,
    ready: String,
    consumers: String,
    in_flight: String,
    handled: String,
    failed: String,
    parked_rate: String,
    tiers: String,
    quarantined: String,
    parked: String,
}

fn overview_rows(o: &Overview) -> Vec<OverviewRow> {
    o.tasks
        .iter()
        .map(|t| OverviewRow {
            task: t.task.clone(),
            queue: t.queue.clone(),
            ready: count(t.ready),
            consumers: count(t.consumers),
            in_flight: t
                .rates
                .map_or_else(|| "-".to_owned(), |r| r.in_flight.to_string()),
            handled: t
                .rates
                .map_or_else(|| "-".to_owned(), |r| rate(r.handled_per_min)),
            failed: t
                .rates
                .map_or_else(|| "-".to_owned(), |r| rate(r.failed_per_min)),
            parked_rate: t
                .rates
                .map_or_else(|| "-".to_owned(), |r| rate(r.parked_per_min)),
            tiers: if t.tiers.is_empty() {
                "-".to_owned()
            } else {
                t.tiers
                    .iter()
                    .map(|d| format!("{}: {}", d.delay, count(d.messages)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            quarantined: count(t.quarantined),
            parked: count(t.parked),
        })
        .collect()
}

pub(crate) async fn overview(State(shared): State<Arc<Shared>>) -> Response {
    match views::overview(&shared).await {
        Ok(o) => render(
            StatusCode::OK,
            &OverviewPage {
                title: "Tasks".to_owned(),
                broker: o.broker.clone(),
                rates: o.rates,
                rows: overview_rows(&o),
            },
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Template)]
#[template(path = "parked.html")]
struct ParkedPage {
    title: String,
    task: String,
    queue: String,
    exists: bool,
    read_only: bool,
    csrf: String,
    /// The filter's fields as typed back into the form.
    reason: String,
    text: String,
    since: String,
    until: String,
    reasons: Vec<String>,
    total: u32,
    matching: String,
    first: usize,
    last: usize,
    rows: Vec<Row>,
    prev: Option<String>,
    next: Option<String>,
}

pub(crate) async fn parked(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s.clone(),
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let params = Params::from_query(query.as_deref());
    let (filter, page) = match params.filter().and_then(|f| Ok((f, params.page()?))) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let listing = match parked::list(&shared.connector, &spec.parking, &filter, page).await {
        Ok(l) => l,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    render(
        StatusCode::OK,
        &parked_page(&shared, &spec, &filter, &params, &listing),
    )
}

fn parked_page(
    shared: &Shared,
    spec: &TaskSpec,
    filter: &Filter,
    params: &Params,
    listing: &Listing,
) -> ParkedPage {
    let page = listing.page;
    let fq = filter_query(filter);
    let link = |offset: usize| {
        let sep = if fq.is_empty() { "" } else { "&" };
        format!("?{fq}{sep}offset={offset}&limit={}", page.limit)
    };
    let shown = listing.messages.len();
    let more = page.offset + shown < listing.matching as usize;
    // Suggestions for the reason field: the reasons on this page.
    let reasons: Vec<String> = listing
        .messages
        .iter()
        .map(|m| m.reason.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    ParkedPage {
        title: format!("Parked: {}", spec.name),
        task: spec.name.to_owned(),
        queue: listing.queue.clone(),
        exists: listing.exists,
        read_only: shared.read_only,
        csrf: shared.csrf.clone(),
        reason: filter.reason.clone().unwrap_or_default(),
        text: filter.text.clone().unwrap_or_default(),
        since: params.get("since").unwrap_or_default().to_owned(),
        until: params.get("until").unwrap_or_default().to_owned(),
        reasons,
        total: listing.total,
        matching: listing.matching.to_string(),
        first: if shown == 0 { 0 } else { page.offset + 1 },
        last: page.offset + shown,
        rows: listing.messages.iter().map(|m| m.row()).collect(),
        prev: (page.offset > 0).then(|| link(page.offset.saturating_sub(page.limit))),
        next: more.then(|| link(page.offset + page.limit)),
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    title: String,
    task: String,
    queue: String,
    action: &'static str,
    what: String,
    count: String,
    csrf: String,
    ids: Vec<String>,
    scope: String,
    through: String,
    reason: String,
    text: String,
    since: String,
    until: String,
    back: String,
}

/// The form's action: `action`, `scope` (`selected` or `matching`), `ids`,
/// the filter and `through`, the last match the operator confirmed (the
/// CSRF token comes in the action's query, checked by the guard before the
/// body is read).
struct Requested {
    kind: Kind,
    selection: Selection,
    params: Params,
}

fn requested(body: &[u8]) -> Result<Requested, (StatusCode, &'static str)> {
    let params = Params::parse(body);
    let Some(kind) = params.get("action").and_then(Kind::parse) else {
        return Err((StatusCode::BAD_REQUEST, "unknown action"));
    };
    let through = params.get("through").filter(|t| !t.is_empty());
    let selection = match params.get("scope") {
        Some("matching") => match params.filter() {
            Ok(filter) if through.is_some() => Selection::Confirmed {
                filter,
                through: through.unwrap_or_default().to_owned(),
            },
            Ok(f) if f.is_empty() => Selection::All,
            Ok(f) => Selection::Matching(f),
            Err(_) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "the filter's times do not parse: use RFC 3339 or a duration ago",
                ))
            }
        },
        _ => {
            let ids = params.all("ids");
            if ids.is_empty() {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "no message selected: tick some boxes, or use the buttons for every matching message",
                ));
            }
            Selection::Ids(ids)
        }
    };
    Ok(Requested {
        kind,
        selection,
        params,
    })
}

pub(crate) async fn confirm(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Limited(body): Limited,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s.clone(),
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let req = match requested(&body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why),
    };
    let (what, count, ids, through) = match &req.selection {
        Selection::Ids(ids) => (
            format!("the {} selected message(s)", ids.len()),
            ids.len().to_string(),
            ids.clone(),
            String::new(),
        ),
        Selection::All | Selection::Matching(_) | Selection::Confirmed { .. } => {
            let filter = match &req.selection {
                Selection::Matching(f) | Selection::Confirmed { filter: f, .. } => f.clone(),
                _ => Filter::default(),
            };
            let listing = match parked::list(
                &shared.connector,
                &spec.parking,
                &filter,
                parked::Page::first(0),
            )
            .await
            {
                Ok(l) => l,
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            let n = listing.matching;
            if n == 0 {
                return error(
                    StatusCode::CONFLICT,
                    "no parked message matches now: nothing to confirm",
                );
            }
            let what = if filter.is_empty() {
                format!("the {n} message(s) parked now")
            } else {
                format!("the {n} message(s) matching the filter now")
            };
            (
                what,
                n.to_string(),
                Vec::new(),
                listing.last_match.unwrap_or_default(),
            )
        }
    };
    let p = &req.params;
    let field = |name: &str| p.get(name).unwrap_or_default().to_owned();
    // Times as the absolute times they meant when confirmed ("1h" would
    // move on by the time of the click).
    let time = |name: &str, t: Option<u64>| t.map_or_else(|| field(name), ops::format_time);
    let filter = p.filter().unwrap_or_default();
    render(
        StatusCode::OK,
        &ConfirmPage {
            title: format!("Confirm {}", req.kind.as_str()),
            task: spec.name.to_owned(),
            queue: spec.parking.clone(),
            action: req.kind.as_str(),
            what,
            count,
            csrf: shared.csrf.clone(),
            ids,
            scope: field("scope"),
            through,
            reason: field("reason"),
            text: field("text"),
            since: time("since", filter.since),
            until: time("until", filter.until),
            back: format!("/tasks/{}/parked", spec.name),
        },
    )
}

#[derive(Template)]
#[template(path = "result.html")]
struct ResultPage {
    title: String,
    task: String,
    result: views::ActionResult,
    done_word: &'static str,
}

pub(crate) async fn act(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Limited(body): Limited,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s.clone(),
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let req = match requested(&body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why),
    };
    match views::act(&shared, &spec, req.kind, &req.selection).await {
        Ok(result) => render(
            StatusCode::OK,
            &ResultPage {
                title: format!("{} result", req.kind.as_str()),
                task: spec.name.to_owned(),
                done_word: match req.kind {
                    Kind::Replay => "replayed",
                    Kind::Delete => "deleted",
                },
                result,
            },
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: String,
    task: String,
    id: String,
    row: Row,
    read_only: bool,
    csrf: String,
    properties: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body_bytes: usize,
    /// Whether only the first [`BODY_SHOWN`] bytes are shown.
    body_cut: bool,
    body_json: Option<String>,
    body_text: String,
    body_hex: String,
}

/// How much of a body a message page shows; the rest is a download.
const BODY_SHOWN: usize = 64 << 10;

/// A parked message's whole body, as a download (never rendered: served as
/// bytes, with no type a browser would run).
pub(crate) async fn body_download(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let Some(id) = params.get("id").map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "which message? add ?id=MESSAGE_ID");
    };
    let spec = match task(&shared, &name) {
        Ok(s) => s.clone(),
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    match parked::find(&shared.connector, std::slice::from_ref(&spec.parking), &id).await {
        Ok(Some(m)) => (
            [
                (axum::http::header::CONTENT_TYPE, "application/octet-stream"),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    "attachment; filename=\"parked-body.bin\"",
                ),
                (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            m.body.to_vec(),
        )
            .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no parked message with id {id:?} in {}", spec.parking),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// One parked message, named by the `id` query parameter: the form every
/// page links to, since any id (`a/b`, `..`, `?`, `#`) survives a query
/// parameter percent-encoded, while a browser resolves a path segment of
/// `..` (even written `%2E%2E`) before sending it.
pub(crate) async fn message_by_query(
    shared: State<Arc<Shared>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let Some(id) = params.get("id").map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "which message? add ?id=MESSAGE_ID".to_owned(),
        );
    };
    message(shared, Path((name, id))).await
}

pub(crate) async fn message(
    State(shared): State<Arc<Shared>>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let spec = match task(&shared, &name) {
        Ok(s) => s.clone(),
        Err(e) => return error(StatusCode::NOT_FOUND, e),
    };
    let found = parked::find(&shared.connector, std::slice::from_ref(&spec.parking), &id).await;
    let m = match found {
        Ok(Some(m)) => m,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no parked message with id {id:?} in {} (replayed or deleted?)",
                    spec.parking
                ),
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let properties: Vec<(String, String)> = m
        .shown_properties()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let (body_json, body_text, body_hex) = match m.body_view(BODY_SHOWN) {
        BodyView::Json(pretty) => (Some(pretty), String::new(), String::new()),
        BodyView::Raw { text, hex } => (None, text, hex),
    };
    render(
        StatusCode::OK,
        &MessagePage {
            title: format!("Parked message {id}"),
            task: spec.name.to_owned(),
            id,
            row: m.row(),
            read_only: shared.read_only,
            csrf: shared.csrf.clone(),
            properties,
            headers: m.header_lines(),
            body_bytes: m.body.len(),
            body_cut: m.body.len() > BODY_SHOWN,
            body_json,
            body_text,
            body_hex,
        },
    )
}

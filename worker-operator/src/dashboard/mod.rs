//! A web dashboard for operators: tasks, queues and parked messages, with
//! inspect, filter, replay and delete in bulk.
//!
//! | path | what |
//! | --- | --- |
//! | `/` | overview: every task's queue, depth, consumers, in-flight, rates, wait tiers, parked count; refreshes itself |
//! | `/tasks/{task}/parked` | parked messages of a task: filter, page, select, replay or delete |
//! | `/tasks/{task}/parked/message?id={id}` | one parked message: every header and the body (what the pages link to; `/tasks/{task}/parked/messages/{id}` also works for ids a path segment can hold) |
//! | `/api/...` | the JSON API the pages use (see [`api`]) |
//!
//! It is a [`Router`] ([`Dashboard::router`]) that `run --http` merges with
//! the probes and `dashboard --http` serves alone; both go through
//! [`http::serve_router`](crate::http::serve_router), with its limits.
//!
//! Everything it shows or does goes through [`ops`](crate::ops): the
//! overview is [`ops::status`](crate::ops::status), the lists are
//! [`ops::parked::list`](crate::ops::parked::list) (what `parked list`
//! prints, row for row), replay and delete are
//! [`ops::parked::replay`](crate::ops::parked::replay) and
//! [`ops::parked::delete`](crate::ops::parked::delete): reading never
//! takes or reorders a message, and a replayed original is removed only
//! after its copy is confirmed.
//!
//! Access and cross-site protection: see [`auth`]. Pages are server
//! rendered (askama templates compiled into the binary) and work without
//! JavaScript; a little inline script refreshes the overview and checks
//! every box of a page.

pub mod api;
pub mod auth;
mod body;
mod pages;
mod params;
pub mod rates;
mod views;

pub use auth::Access;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use auth::Verdict;
use rates::Rates;
use worker_core::connection::Connector;
use worker_core::topology::TaskSpec;

/// A dashboard over some tasks; [`router`](Dashboard::router) makes it servable.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use worker_core::Connector;
/// # use worker_core::topology::TaskSpec;
/// # async fn demo(connector: Connector, specs: Vec<Arc<TaskSpec>>) -> Result<(), worker_core::Error> {
/// use worker_operator::dashboard::{Access, Dashboard};
/// let addr = "127.0.0.1:9465".parse().unwrap();
/// let access = Access::for_address(addr, None)?;
/// let routes = Dashboard::new(connector, specs, access).read_only(true).router();
/// let server = worker_operator::http::serve_router(addr, routes, "the dashboard").await?;
/// # server.shutdown().await; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Dashboard {
    connector: Connector,
    specs: Vec<Arc<TaskSpec>>,
    access: Access,
    read_only: bool,
    metrics: Option<PrometheusHandle>,
}

impl Dashboard {
    /// A dashboard over `specs`, reaching the broker through `connector`.
    pub fn new(connector: Connector, specs: Vec<Arc<TaskSpec>>, access: Access) -> Dashboard {
        Dashboard {
            connector,
            specs,
            access,
            read_only: false,
            metrics: None,
        }
    }

    /// Hides every action; the API refuses them with `403`.
    pub fn read_only(mut self, read_only: bool) -> Dashboard {
        self.read_only = read_only;
        self
    }

    /// Shows handled, failed and parked rates read from this process's
    /// Prometheus recorder (see [`rates`]).
    pub fn metrics(mut self, handle: Option<PrometheusHandle>) -> Dashboard {
        self.metrics = handle;
        self
    }

    /// The pages and the API, behind the access checks. Call it inside a
    /// tokio runtime: it starts the rates sampler, which stops when the
    /// router is dropped.
    pub fn router(self) -> Router {
        let shared = Arc::new(Shared {
            rates: self.metrics.map(Rates::start),
            connector: self.connector,
            specs: self.specs,
            access: self.access,
            read_only: self.read_only,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
        });
        Router::new()
            .route("/", get(pages::overview))
            .route("/tasks/{task}/parked", get(pages::parked))
            .route("/tasks/{task}/parked/confirm", post(pages::confirm))
            .route("/tasks/{task}/parked/act", post(pages::act))
            .route("/tasks/{task}/parked/messages/{id}", get(pages::message))
            .route("/tasks/{task}/parked/message", get(pages::message_by_query))
            .route(
                "/tasks/{task}/parked/message/body",
                get(pages::body_download),
            )
            .route("/api/session", get(api::session))
            .route("/api/tasks", get(api::tasks))
            .route("/api/tasks/{task}/parked", get(api::list))
            .route("/api/tasks/{task}/parked/messages/{id}", get(api::show))
            .route("/api/tasks/{task}/parked/replay", post(api::replay))
            .route("/api/tasks/{task}/parked/delete", post(api::delete))
            .fallback(pages::not_found)
            .layer(DefaultBodyLimit::max(body::MAX_BODY))
            .layer(middleware::from_fn_with_state(shared.clone(), guard))
            .with_state(shared)
    }
}

/// What every handler reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) connector: Connector,
    pub(crate) specs: Vec<Arc<TaskSpec>>,
    pub(crate) access: Access,
    pub(crate) read_only: bool,
    /// This process's CSRF token.
    pub(crate) csrf: String,
    pub(crate) rates: Option<Rates>,
}

/// Access, read-only and cross-site checks before any handler, and the
/// headers every answer carries.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let refused = match shared.access.admits(headers) {
        Verdict::Admitted => None,
        Verdict::Unauthorized => {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its token: Authorization: Bearer TOKEN, or the token as the basic-auth password\n",
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Basic realm=\"rabbit-worker dashboard\", charset=\"UTF-8\"",
                ),
            );
            Some(r)
        }
        Verdict::Forbidden(why) => {
            Some((StatusCode::FORBIDDEN, format!("{why}\n")).into_response())
        }
    };
    let refused = refused.or_else(|| {
        let method = request.method();
        if shared.read_only
            && method != axum::http::Method::GET
            && method != axum::http::Method::HEAD
        {
            return Some(
                (
                    StatusCode::FORBIDDEN,
                    "this dashboard is read-only: no replay or delete\n",
                )
                    .into_response(),
            );
        }
        if let Some(why) = auth::cross_site(method, headers) {
            return Some((StatusCode::FORBIDDEN, format!("{why}\n")).into_response());
        }
        // The CSRF token comes with the head (a header, or the query of the
        // form's action), so a request without it is refused before a byte
        // of its body is read.
        let acts = method != axum::http::Method::GET && method != axum::http::Method::HEAD;
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                let query = request.uri().query().unwrap_or_default();
                params::Params::parse(query.as_bytes())
                    .get("csrf")
                    .map(str::to_owned)
            });
        (acts && !auth::csrf_ok(&shared.access, &shared.csrf, given.as_deref(), headers)).then(|| {
            (
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: scripts send X-CSRF-Token (GET /api/session tells it); \
                 a page form that is out of date needs a reload\n",
            )
                .into_response()
        })
    });
    let mut response = match refused {
        Some(r) => r,
        None => next.run(request).await,
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

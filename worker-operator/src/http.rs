//! A small HTTP endpoint for metrics and probes.
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | Prometheus text format, from the `metrics-exporter-prometheus` recorder |
//! | `/healthz` | `200` while the process runs (liveness) |
//! | `/readyz` | `200` while the worker is connected and consuming, else `503` (readiness) |
//!
//! The routes are an axum [`Router`] ([`router`]), served by hyper's
//! HTTP/1 server, which parses requests and writes responses; the
//! dashboard can mount the same router. [`serve`] adds what an endpoint
//! facing probes and scrapers needs, so an idle, slow or hostile client
//! cannot hold memory or a task for long, nor keep a probe waiting:
//!
//! - HTTP/1.0 and 1.1 `GET` and `HEAD` only (`405` otherwise), one request
//!   per connection (`Connection: close`, which every scraper and probe
//!   handles);
//! - the request head is capped at 8 KiB (`431`) and must arrive within
//!   2 seconds (hyper's header read timeout, which starts when the
//!   connection is accepted): a client that sends nothing or too little is
//!   disconnected without an answer, and a whole connection lasts at most
//!   7 seconds;
//! - connections are accepted as soon as they arrive, so idle clients
//!   cannot keep a probe waiting in the listen backlog; at most 1024 are
//!   served at once, and one over that gets `503` at once;
//! - responses always carry `Content-Length` and `Cache-Control: no-store`.
//!
//! Anything richer (TLS, authentication) belongs in front of it: bind it to
//! a private address. The [dashboard](crate::dashboard) brings its own
//! access checks; [`serve_router`] serves it (alone, or merged with
//! [`probe_routes`] by `run --http`) with the same limits, but `POST` too
//! and connections of up to 5 minutes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), worker_core::Error> {
//! let (ready_tx, ready) = tokio::sync::watch::channel(false);
//! let metrics = worker_operator::http::prometheus().ok();
//! let breakers = std::sync::Arc::default(); // or Worker::breakers()
//! let server = worker_operator::http::serve("127.0.0.1:9464".parse().unwrap(), metrics, ready, breakers).await?;
//! ready_tx.send_replace(true); // once the worker consumes
//! println!("serving on http://{}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use worker_core::breaker::Breakers;
use worker_core::error::Error;

/// The largest request head read (hyper's smallest read buffer limit).
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole connection may last: the head's 2 seconds, then 5 for
/// writing the response to a client that reads slowly.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(7);
/// How long a connection to a [`serve_router`] app may last: a dashboard
/// replay of many messages answers when it is done.
const WORK_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_CONNECTIONS: usize = 1024;
/// How often the recorder's histogram samples are folded into their
/// summaries; between two upkeeps they are kept one by one.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// The content type of `/metrics`.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Installs the Prometheus recorder as the process's global `metrics`
/// recorder (once; later calls return the same handle).
///
/// A background thread folds histogram samples into their summaries every
/// second, so memory stays flat whether or not anyone scrapes `/metrics`
/// (without it, every handler duration would be kept until the next scrape).
///
/// Fails when another recorder was installed first; the framework's metrics
/// then go to that recorder and `/metrics` answers `404`.
pub fn prometheus() -> Result<PrometheusHandle, Error> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| {
        Error::Config(format!(
            "cannot install the Prometheus recorder ({e}); another metrics recorder is installed"
        ))
    })?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| Error::Config(format!("cannot start the metrics upkeep thread: {e}")))?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// A running HTTP endpoint; stop it with [`shutdown`](HttpServer::shutdown).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl HttpServer {
    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// What the handlers read: the recorder's handle and the readiness flag.
#[derive(Clone)]
struct Endpoint {
    metrics: Option<PrometheusHandle>,
    ready: watch::Receiver<bool>,
    breakers: Arc<Breakers>,
}

/// The endpoint's routes: `/metrics`, `/healthz` and `/readyz`, `404` for
/// any other path, `405` for any method but `GET` and `HEAD`, and
/// `Cache-Control: no-store` and `Connection: close` on every response.
///
/// [`serve`] serves it with the limits the module docs list; serve it
/// yourself, or merge it into a larger router, when the endpoint shares a
/// port with something else.
///
/// `ready` drives `/readyz`, whose body lists the state of every circuit
/// breaker in `breakers` ([`Worker::breakers`](worker_core::Worker::breakers));
/// without `metrics`, `/metrics` answers `404`.
pub fn router(
    metrics: Option<PrometheusHandle>,
    ready: watch::Receiver<bool>,
    breakers: Arc<Breakers>,
) -> Router {
    probe_routes(metrics, ready, breakers)
        .fallback(not_found)
        .layer(middleware::from_fn(get_and_head_only))
}

/// The three routes of [`router`] (`GET` and `HEAD` only, not cached),
/// without a fallback: for merging into a router that has its own, as
/// `run --http` does with the [dashboard](crate::dashboard).
pub fn probe_routes(
    metrics: Option<PrometheusHandle>,
    ready: watch::Receiver<bool>,
    breakers: Arc<Breakers>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Endpoint {
            metrics,
            ready,
            breakers,
        })
        .layer(middleware::from_fn(get_and_head_only))
}

/// What a connection over the limit is served: `503` whatever it asks.
fn busy() -> Router {
    Router::new()
        .fallback(|| async { text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n") })
        .layer(middleware::from_fn(get_and_head_only))
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` in the background.
///
/// `ready` drives `/readyz`; pass [`RunningWorker::readiness`](worker_core::worker::RunningWorker::readiness)
/// or a channel you forward it into. `/readyz` lists the states of
/// `breakers`. Without `metrics`, `/metrics` answers `404`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    ready: watch::Receiver<bool>,
    breakers: Arc<Breakers>,
) -> Result<HttpServer, Error> {
    let server = bind(addr, router(metrics, ready, breakers), CONNECTION_TIMEOUT).await?;
    tracing::info!(addr = %server.addr, "serving /metrics, /healthz and /readyz");
    Ok(server)
}

/// Binds `addr` and serves `app` in the background, with the limits of the
/// module docs but one: a connection may last up to 5 minutes, for routes
/// that work before they answer (the dashboard's replay). `what` names the
/// app in the log line.
pub async fn serve_router(addr: SocketAddr, app: Router, what: &str) -> Result<HttpServer, Error> {
    let server = bind(addr, app, WORK_CONNECTION_TIMEOUT).await?;
    tracing::info!(addr = %server.addr, "serving {what}");
    Ok(server)
}

async fn bind(addr: SocketAddr, app: Router, timeout: Duration) -> Result<HttpServer, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::Config(format!(
            "cannot listen on {addr} for the HTTP endpoint: {e}; choose another --http address"
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("cannot read the HTTP endpoint's address: {e}")))?;
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(accept(listener, app, stopped, timeout));
    Ok(HttpServer {
        addr: local,
        stop,
        handle,
    })
}

/// Accepts connections until `stopped`, each served on its own task.
async fn accept(
    listener: TcpListener,
    app: Router,
    mut stopped: watch::Receiver<bool>,
    timeout: Duration,
) {
    let busy = busy();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Accept first, then look for a slot: waiting for a slot before
        // accepting let idle clients keep `/healthz` in the backlog.
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let permit = permits.clone().try_acquire_owned().ok();
                let routes = if permit.is_some() {
                    app.clone()
                } else {
                    busy.clone()
                };
                tokio::spawn(async move {
                    connection(stream, routes, timeout).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTP endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one request on `stream` with hyper's HTTP/1 server, then closes it.
async fn connection(stream: TcpStream, routes: Router, timeout: Duration) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .title_case_headers(true);
    let served = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(routes));
    match tokio::time::timeout(timeout, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "HTTP endpoint: connection failed"),
        Err(_) => tracing::debug!("HTTP endpoint: connection took too long; closed"),
    }
}

/// Refuses methods but `GET` and `HEAD` before routing, and marks every
/// response as not to be cached and the last on its connection.
async fn get_and_head_only(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::GET || request.method() == Method::HEAD {
        next.run(request).await
    } else {
        let mut refused = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        refused
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        refused
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// `200` while ready, else `503`; the body says which, then lists every
/// circuit breaker's state. An open breaker leaves the worker ready: the
/// process is fine, and restarting it would not help.
async fn readyz(State(endpoint): State<Endpoint>) -> Response {
    let (status, mut body) = if *endpoint.ready.borrow() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not connected to RabbitMQ or not consuming\n".to_owned(),
        )
    };
    for (task, state) in endpoint.breakers.states() {
        let _ = writeln!(body, "breaker {task}: {}", state.as_str());
    }
    (status, body).into_response()
}

async fn render_metrics(State(endpoint): State<Endpoint>) -> Response {
    match &endpoint.metrics {
        Some(handle) => {
            ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], handle.render()).into_response()
        }
        None => text(StatusCode::NOT_FOUND, "metrics are not exported here\n"),
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found: try /metrics, /healthz or /readyz\n",
    )
}

/// A `text/plain; charset=utf-8` response.
fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use super::*;

    /// The status, `Allow` header and body `router` answers `method path` with.
    async fn call(ready: bool, method: &str, path: &str) -> (u16, Option<String>, String) {
        call_with(ready, Arc::default(), method, path).await
    }

    async fn call_with(
        ready: bool,
        breakers: Arc<Breakers>,
        method: &str,
        path: &str,
    ) -> (u16, Option<String>, String) {
        let (_tx, rx) = watch::channel(ready);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router(None, rx, breakers).oneshot(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "no-store",
            "{method} {path}"
        );
        assert_eq!(headers[header::CONNECTION], "close", "{method} {path}");
        let allow = headers
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), MAX_HEAD)
            .await
            .unwrap();
        (status, allow, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn routes_and_methods() {
        assert_eq!(call(false, "GET", "/healthz").await.0, 200);
        assert_eq!(call(false, "GET", "/readyz").await.0, 503);
        assert_eq!(call(true, "GET", "/readyz?verbose").await.0, 200);
        assert_eq!(call(false, "GET", "/metrics").await.0, 404);
        let (status, allow, _) = call(false, "POST", "/healthz").await;
        assert_eq!((status, allow.as_deref()), (405, Some("GET, HEAD")));
        assert_eq!(call(false, "DELETE", "/nope").await.0, 405);
        assert_eq!(call(false, "GET", "/nope").await.0, 404);
        assert_eq!(
            call(false, "HEAD", "/healthz").await,
            (200, None, String::new())
        );
    }

    #[tokio::test]
    async fn readyz_lists_breakers_and_an_open_one_keeps_the_worker_ready() {
        let breakers: Arc<Breakers> = Arc::default();
        let options = worker_core::TaskOptions {
            breaker: Some(worker_core::BreakerPolicy::in_a_row(1)),
            ..worker_core::TaskOptions::default()
        };
        let fragile = worker_core::topology::TaskSpec::new("fragile", "fragile", options);
        let plain = worker_core::topology::TaskSpec::new(
            "plain",
            "plain",
            worker_core::TaskOptions::default(),
        );
        assert!(breakers.get(&plain).is_none());
        let breaker = breakers.get(&fragile).expect("a breaker");
        let (status, _, body) = call_with(true, breakers.clone(), "GET", "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ready\nbreaker fragile: closed\n")
        );

        breaker.record(&worker_core::Outcome::Requeue);
        let (status, _, body) = call_with(true, breakers.clone(), "GET", "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ready\nbreaker fragile: open\n")
        );
        let (status, _, body) = call_with(false, breakers, "GET", "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.ends_with("breaker fragile: open\n"), "{body}");
    }

    /// Sends `request` on a new connection; everything the server writes
    /// before it closes the connection.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(1), stream.read_to_string(&mut out))
            .await
            .expect("answered and closed within a second")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn malformed_requests_are_refused() {
        let (_ready_tx, ready) = watch::channel(true);
        let server = serve("127.0.0.1:0".parse().unwrap(), None, ready, Arc::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        for request in [
            "garbage\r\n\r\n",
            "GET  /healthz HTTP/1.1\r\n\r\n",
            "GET /healthz HTTP/2\r\n\r\n",
        ] {
            let answer = exchange(addr, request.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
        }
        server.shutdown().await;
    }

    /// 200 clients that connect and send nothing: probes still answer at
    /// once, and the idle connections are closed after `HEAD_TIMEOUT`.
    #[tokio::test]
    async fn idle_clients_never_starve_the_probes() {
        let (_ready_tx, ready) = watch::channel(true);
        let server = serve("127.0.0.1:0".parse().unwrap(), None, ready, Arc::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        for path in ["/healthz", "/readyz"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            let answer = exchange(addr, request.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        }
        // Every idle connection is closed, without an answer (hyper sends
        // none when the head does not arrive in time).
        tokio::time::timeout(HEAD_TIMEOUT + Duration::from_secs(2), async {
            for mut stream in idle {
                let mut out = String::new();
                stream.read_to_string(&mut out).await.unwrap();
                assert_eq!(out, "");
            }
        })
        .await
        .expect("idle connections time out");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn head_end_is_found_with_either_line_ending() {
        let (_ready_tx, ready) = watch::channel(true);
        let server = serve("127.0.0.1:0".parse().unwrap(), None, ready, Arc::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        for request in ["GET /healthz HTTP/1.1\r\n\r\n", "GET /healthz HTTP/1.1\n\n"] {
            let answer = exchange(addr, request.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{request:?}: {answer}");
            assert!(answer.ends_with("\r\n\r\nok\n"), "{request:?}: {answer}");
        }
        server.shutdown().await;
    }
}

//! A small HTTP endpoint for metrics and probes.
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | Prometheus text format, from the `metrics-exporter-prometheus` recorder |
//! | `/healthz` | `200` while the process runs (liveness) |
//! | `/readyz` | `200` while the worker is connected and consuming, else `503` (readiness) |
//!
//! # Why not hyper
//!
//! Three fixed `GET` routes with tiny bodies do not need an HTTP stack:
//! hyper 1 needs hyper-util, http-body-util and a service adapter on top,
//! which is more code than the whole responder here, and more compile time
//! for every user of the framework. This responder is deliberately narrow
//! and defensive instead:
//!
//! - HTTP/1.0 and 1.1 `GET` and `HEAD` only (`405` otherwise), one request
//!   per connection (`Connection: close`, which every scraper and probe
//!   handles), no request bodies;
//! - the request head is capped at 8 KiB (`431`) and must arrive within
//!   2 seconds (`408`), so an idle, slow or hostile client cannot hold
//!   memory or a task for long;
//! - connections are accepted as soon as they arrive, so idle clients
//!   cannot keep a probe waiting in the listen backlog; at most 1024 are
//!   served at once, and one over that gets `503` at once;
//! - responses always carry `Content-Length` and `Cache-Control: no-store`.
//!
//! Anything richer (TLS, authentication) belongs in front of it: bind it to
//! a private address.
//!
//! ```no_run
//! # async fn demo() -> Result<(), worker_core::Error> {
//! let (ready_tx, ready) = tokio::sync::watch::channel(false);
//! let metrics = worker_core::http::prometheus().ok();
//! let server = worker_core::http::serve("127.0.0.1:9464".parse().unwrap(), metrics, ready).await?;
//! ready_tx.send_replace(true); // once the worker consumes
//! println!("serving on http://{}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::Error;

const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 1024;
/// How often the recorder's histogram samples are folded into their
/// summaries; between two upkeeps they are kept one by one.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

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

struct Shared {
    metrics: Option<PrometheusHandle>,
    ready: watch::Receiver<bool>,
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` in the background.
///
/// `ready` drives `/readyz`; pass [`RunningWorker::readiness`](crate::worker::RunningWorker::readiness)
/// or a channel you forward it into. Without `metrics`, `/metrics` answers `404`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    ready: watch::Receiver<bool>,
) -> Result<HttpServer, Error> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::Config(format!(
            "cannot listen on {addr} for the HTTP endpoint: {e}; choose another --http address"
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("cannot read the HTTP endpoint's address: {e}")))?;
    let (stop, mut stopped) = watch::channel(false);
    let shared = Arc::new(Shared { metrics, ready });
    let handle = tokio::spawn(async move {
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
                    let shared = shared.clone();
                    let permit = permits.clone().try_acquire_owned();
                    tokio::spawn(async move {
                        match permit {
                            Ok(_permit) => respond(stream, &shared).await,
                            Err(_) => {
                                send(stream, false, text(503, "too many connections\n")).await;
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!(addr = %local, "serving /metrics, /healthz and /readyz");
    Ok(HttpServer {
        addr: local,
        stop,
        handle,
    })
}

/// A response: status, content type, body.
type Reply = (u16, &'static str, String);

async fn respond(mut stream: TcpStream, shared: &Shared) {
    let (head_only, reply) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await
    {
        Err(_) => (false, text(408, "request head not received in time\n")),
        Ok(Err(reply)) => (false, reply),
        Ok(Ok(head)) => route(&head, shared),
    };
    send(stream, head_only, reply).await;
}

/// Writes `reply` (without its body for `HEAD`) and closes the connection.
async fn send(mut stream: TcpStream, head_only: bool, reply: Reply) {
    let (status, content_type, body) = reply;
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(out.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Reads up to the blank line ending the request head.
async fn read_head(stream: &mut TcpStream) -> Result<String, Reply> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| text(400, "unreadable request\n"))?;
        if n == 0 {
            return Err(text(400, "incomplete request head\n"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_end(&buf) {
            buf.truncate(end);
            return String::from_utf8(buf).map_err(|_| text(400, "request head is not UTF-8\n"));
        }
        if buf.len() > MAX_HEAD {
            return Err(text(431, "request head too large\n"));
        }
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

/// Picks the reply for a request head; `true` for `HEAD` (no body sent).
fn route(head: &str, shared: &Shared) -> (bool, Reply) {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (false, text(400, "malformed request line\n"));
    };
    if !version.starts_with("HTTP/1.") {
        return (false, text(505, "only HTTP/1.x is served\n"));
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return (false, text(405, "only GET and HEAD are served\n")),
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    let reply = match path {
        "/healthz" => text(200, "ok\n"),
        "/readyz" => {
            if *shared.ready.borrow() {
                text(200, "ready\n")
            } else {
                text(
                    503,
                    "not ready: not connected to RabbitMQ or not consuming\n",
                )
            }
        }
        "/metrics" => match &shared.metrics {
            Some(handle) => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            ),
            None => text(404, "metrics are not exported here\n"),
        },
        _ => text(404, "not found: try /metrics, /healthz or /readyz\n"),
    };
    (head_only, reply)
}

fn text(status: u16, body: &str) -> Reply {
    (status, "text/plain; charset=utf-8", body.to_owned())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(ready: bool) -> Shared {
        let (_tx, rx) = watch::channel(ready);
        Shared {
            metrics: None,
            ready: rx,
        }
    }

    #[test]
    fn routes_and_methods() {
        let s = shared(false);
        assert_eq!(route("GET /healthz HTTP/1.1\r\nHost: x", &s).1 .0, 200);
        assert_eq!(route("GET /readyz HTTP/1.1", &s).1 .0, 503);
        assert_eq!(
            route("GET /readyz?verbose HTTP/1.0", &shared(true)).1 .0,
            200
        );
        assert_eq!(route("GET /metrics HTTP/1.1", &s).1 .0, 404);
        assert_eq!(route("POST /healthz HTTP/1.1", &s).1 .0, 405);
        assert_eq!(route("GET /nope HTTP/1.1", &s).1 .0, 404);
        assert_eq!(route("GET /healthz HTTP/2", &s).1 .0, 505);
        assert_eq!(route("GET  /healthz HTTP/1.1", &s).1 .0, 400);
        assert_eq!(route("garbage", &s).1 .0, 400);
        let (head_only, reply) = route("HEAD /healthz HTTP/1.1", &s);
        assert!(head_only);
        assert_eq!(reply.0, 200);
    }

    /// 200 clients that connect and send nothing: probes still answer at
    /// once, and the idle connections are closed after `HEAD_TIMEOUT`.
    #[tokio::test]
    async fn idle_clients_never_starve_the_probes() {
        let (_ready_tx, ready) = watch::channel(true);
        let server = serve("127.0.0.1:0".parse().unwrap(), None, ready)
            .await
            .unwrap();
        let addr = server.local_addr();
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        for path in ["/healthz", "/readyz"] {
            let answer = tokio::time::timeout(Duration::from_secs(1), async {
                let mut probe = TcpStream::connect(addr).await.unwrap();
                let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                probe.write_all(request.as_bytes()).await.unwrap();
                let mut out = String::new();
                probe.read_to_string(&mut out).await.unwrap();
                out
            })
            .await
            .unwrap_or_else(|_| panic!("{path} did not answer within a second"));
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        }
        // Every idle connection is answered 408 and closed.
        tokio::time::timeout(HEAD_TIMEOUT + Duration::from_secs(2), async {
            for mut stream in idle {
                let mut out = String::new();
                stream.read_to_string(&mut out).await.unwrap();
                assert!(out.starts_with("HTTP/1.1 408"), "{out}");
            }
        })
        .await
        .expect("idle connections time out");
        server.shutdown().await;
    }

    #[test]
    fn head_end_is_found_with_either_line_ending() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n"), None);
    }
}

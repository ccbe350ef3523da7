//! The HTTP endpoint over real TCP: /healthz, /readyz following the worker,
//! /metrics in Prometheus text, and the responder's refusals.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use worker_core::{Publisher, TaskContext, TaskError};
use worker_operator::cli::{exit, App};

/// Succeeds; `"flaky"` fails its first attempt and is retried in process.
#[worker_core::task(name = "cli.http.ping", queue = "cli.http.ping", max_attempts = 2, in_process = 2, backoff = "1ms..5ms", tiers = [])]
async fn ping(ctx: TaskContext, text: String) -> Result<(), TaskError> {
    if text == "flaky" && ctx.attempt() == 1 {
        return Err(TaskError::transient("first try fails"));
    }
    Ok(())
}

/// The value of one Prometheus sample: `name{...}` with every given label.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.is_empty())
                && labels.iter().all(|l| series.contains(l))
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// Sends raw bytes, returns (status, whole response).
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("response in time")
    .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    (status, response)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: probe\r\n\r\n").as_bytes(),
    )
    .await
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn responder_answers_probes_and_refuses_the_rest() {
    let (ready_tx, ready) = watch::channel(false);
    let server = worker_operator::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        None,
        ready,
        Default::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();

    let (status, response) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("Content-Length: 3\r\n"), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");

    assert_eq!(get(addr, "/readyz").await.0, 503);
    ready_tx.send_replace(true);
    assert_eq!(get(addr, "/readyz?full=1").await.0, 200);
    ready_tx.send_replace(false);
    assert_eq!(get(addr, "/readyz").await.0, 503);

    assert_eq!(get(addr, "/metrics").await.0, 404, "no recorder given");
    assert_eq!(get(addr, "/admin").await.0, 404);
    let (status, response) =
        raw(addr, b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status, 405);
    assert!(response.contains("Allow: GET, HEAD\r\n"), "{response}");
    let (status, response) = raw(addr, b"HEAD /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(
        response.ends_with("\r\n\r\n"),
        "no body for HEAD: {response:?}"
    );
    assert_eq!(raw(addr, b"hello\r\n\r\n").await.0, 400);
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(raw(addr, huge.as_bytes()).await.0, 431);

    server.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "closed after shutdown"
    );
}

#[tokio::test]
async fn run_serves_metrics_health_and_readiness() {
    support::delete_queues(&[
        "cli.http.ping",
        "cli.http.ping.quarantine",
        "cli.http.ping.parking",
    ])
    .await;
    let addr = free_port();
    let addr_text = addr.to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = App::new("w").register(Ping);
    let parsed = app
        .try_parse_from(["w", "run", "--http", &addr_text, "--grace-period", "2s"])
        .unwrap();
    let run = tokio::spawn(app.execute(parsed, async move {
        let _ = stop_rx.await;
    }));

    // Liveness answers as soon as the endpoint is up; readiness once consuming.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(addr).await.is_ok() && get(addr, "/readyz").await.0 == 200 {
            break;
        }
        assert!(
            !run.is_finished(),
            "run ended early: {:?}",
            run.await.unwrap()
        );
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(addr, "/healthz").await.0, 200);

    // Handle one message that needs an in-process retry, so the framework's
    // metrics have values.
    Publisher::from_env()
        .enqueue::<Ping>(&"flaky".to_owned())
        .await
        .unwrap();
    let task = "task=\"cli.http.ping\"";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        if sample(
            &body,
            "rabbit_worker_outcomes_total",
            &[task, "outcome=\"ack\""],
        ) == Some(1.0)
        {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ack counted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let queue = "queue=\"cli.http.ping\"";
    for (name, labels, value) in [
        ("rabbit_worker_deliveries_total", &[task, queue][..], 1.0),
        (
            "rabbit_worker_outcomes_total",
            &[task, "outcome=\"retry\""][..],
            1.0,
        ),
        (
            "rabbit_worker_outcomes_total",
            &[task, "outcome=\"park\""][..],
            0.0,
        ),
        ("rabbit_worker_in_flight", &[task][..], 0.0),
        ("rabbit_worker_handler_seconds_count", &[task][..], 1.0),
        (
            "rabbit_worker_publish_confirm_seconds_count",
            &[task, queue][..],
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&metrics, name, labels),
            Some(value),
            "{name} {labels:?} in {metrics}"
        );
    }
    assert!(
        metrics.contains("Content-Type: text/plain; version=0.0.4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE rabbit_worker_deliveries_total counter"),
        "{metrics}"
    );
    assert!(metrics.contains("task=\"cli.http.ping\""), "{metrics}");

    stop_tx.send(()).unwrap();
    let out = run.await.unwrap();
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the endpoint stops with the worker"
    );
    support::delete_queues(&[
        "cli.http.ping",
        "cli.http.ping.quarantine",
        "cli.http.ping.parking",
    ])
    .await;
}

#[tokio::test]
async fn an_address_in_use_is_a_configuration_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let app = App::new("w").register(Ping);
    let parsed = app.try_parse_from(["w", "run", "--http", &addr]).unwrap();
    let out = app.execute(parsed, async {}).await;
    assert_eq!(out.code, exit::CONFIG, "{out:?}");
    assert!(out.stderr.contains("--http"), "{out:?}");
}

//! Hundreds of slow clients against `demo-worker run --http`: the worker's
//! memory stays bounded while they trickle their heads and bodies, and
//! `/healthz` keeps answering. Linux only (the RSS comes from /proc).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slow clients of each kind.
const CLIENTS: usize = 200;
/// How long the clients trickle.
const TRICKLE: Duration = Duration::from_secs(6);
/// The bound on the worker's RSS growth.
const BOUND_KIB: u64 = 64 << 10;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One request on a fresh connection; the status code and body.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A client that sends `head` then trickles `trickle`, one byte per 50 ms.
async fn slow_client(port: u16, head: String, trickle: Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for b in trickle {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.write_all(&[b]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_slow_clients_leave_the_worker_s_memory_bounded_and_healthz_answering() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-worker"))
        .args(["run", "--http", &format!("127.0.0.1:{port}")])
        .env("AMQP_URL", worker_core::connection::default_url())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("demo-worker starts");
    let pid = worker.id().expect("a pid");
    worker_testkit::wait::eventually(
        Duration::from_secs(60),
        "the worker serves /healthz",
        || async move { matches!(get(port, "/healthz").await, Some((200, _))) },
    )
    .await;
    let (_, session) = get(port, "/api/session").await.expect("a session");
    let csrf: serde_json::Value = serde_json::from_str(&session).expect("JSON");
    let csrf = csrf["csrf"].as_str().expect("a CSRF token").to_owned();
    let before = rss_kib(pid);

    let bytes = (TRICKLE.as_millis() / 50) as usize;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        // A head that never ends.
        let head = format!("GET /tasks/demo.record/parked?n={i} HTTP/1.1\r\n");
        clients.push(tokio::spawn(slow_client(port, head, vec![b'X'; bytes])));
        // A body that takes its time, on an action that passed every check.
        let head = format!(
            "POST /api/tasks/demo.record/parked/delete HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nX-CSRF-Token: {csrf}\r\nContent-Length: 200000\r\n\r\n"
        );
        clients.push(tokio::spawn(slow_client(port, head, vec![b' '; bytes])));
    }
    let mut peak = before;
    let started = tokio::time::Instant::now();
    while started.elapsed() < TRICKLE {
        let asked = tokio::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(2), get(port, "/healthz")).await;
        assert!(
            matches!(answer, Ok(Some((200, _)))),
            "/healthz answered {answer:?} under {} slow clients",
            2 * CLIENTS
        );
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "/healthz took {:?}",
            asked.elapsed()
        );
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for c in clients {
        c.abort();
    }
    let grew = peak.saturating_sub(before);
    eprintln!(
        "worker RSS: {before} KiB before, peak {peak} KiB with {} slow clients (+{grew} KiB)",
        2 * CLIENTS
    );
    assert!(grew < BOUND_KIB, "the worker grew by {grew} KiB");
    assert!(matches!(get(port, "/healthz").await, Some((200, _))));
    let _ = worker.kill().await;
}

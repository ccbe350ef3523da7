//! Local development with nothing installed: the demo worker, its command
//! line (`enqueue`, `parked list`, `status`), its HTTP endpoint and
//! dashboard, and a Python producer (pika) all work against the development
//! broker (`worker_devbroker`, served on a port as `rabbit-worker-devbroker`
//! serves it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use worker_core::broker::Version;
use worker_devbroker::MemoryBroker;
use worker_testkit::wait::eventually;

const DEMO: &str = env!("CARGO_BIN_EXE_demo-worker");
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn demo(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(DEMO);
    cmd.args(args)
        .env("AMQP_URL", url)
        .env("DEMO_TICK_EVERY", "off")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn demo_ok(url: &str, args: &[&str]) -> String {
    let out = demo(url, args).output().expect("demo-worker runs");
    assert!(
        out.status.success(),
        "demo-worker {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plain HTTP/1.0 GET: the status line's code and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Publishes one email through pika; `false` (outside CI only) when pika
/// is not installed here.
fn publish_with_pika(url: &str) -> bool {
    let script = format!(
        "import pika\nc = pika.BlockingConnection(pika.URLParameters({url:?}))\nch = c.channel()\nch.confirm_delivery()\nch.basic_publish('', 'demo.emails', b'{{\"to\":\"py@example.com\",\"subject\":\"from python\"}}', pika.BasicProperties(content_type='application/json', type='demo.send_email', message_id='from-pika', delivery_mode=2))\nc.close()\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("No module named 'pika'") {
        worker_testkit::skip::unless_ci(
            "pika is not installed here, so the Python producer's part was skipped (python3 -m pip install pika)",
        );
        return false;
    }
    assert!(
        out.status.success(),
        "pika publishes to the development broker (.ci/run installs pika): {stderr}"
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_worker_its_command_line_the_dashboard_and_pika_work_on_the_devbroker() {
    let broker =
        MemoryBroker::serve_on(([127, 0, 0, 1], free_port()).into(), Version::new(4, 0, 5))
            .await
            .expect("the development broker listens");
    let url = broker.url();
    let http = free_port();
    let dir = std::env::temp_dir().join(format!("rw-devbroker-story-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let mut worker = demo(
        &url,
        &[
            "run",
            "--task",
            "demo.send_email",
            "--http",
            &format!("127.0.0.1:{http}"),
        ],
    )
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .expect("the demo worker starts");
    eventually(WAIT, "the demo worker consumes demo.emails", || {
        let n = broker.consumer_count("demo.emails");
        async move { n == 1 }
    })
    .await;

    demo_ok(
        &url,
        &[
            "enqueue",
            "demo.send_email",
            r#"{"to":"ada@example.com","subject":"hi"}"#,
            "--id",
            "good",
        ],
    );
    demo_ok(
        &url,
        &[
            "enqueue",
            "demo.send_email",
            r#"{"to":"nobody","subject":"hi"}"#,
            "--id",
            "bad",
        ],
    );
    let sent = if publish_with_pika(&url) { 2 } else { 1 };

    eventually(WAIT, "the emails sent, one parked", || {
        let (_, metrics) = get(http, "/metrics");
        let parked = broker.queue_depth("demo.emails.parking");
        async move {
            let acked = metrics.lines().any(|l| {
                l.starts_with("rabbit_worker_outcomes_total")
                    && l.contains(r#"outcome="ack""#)
                    && l.contains(r#"task="demo.send_email""#)
                    && l.ends_with(&format!(" {sent}"))
            });
            acked && parked == 1
        }
    })
    .await;

    let listed: serde_json::Value = serde_json::from_str(&demo_ok(
        &url,
        &["parked", "list", "demo.send_email", "--json"],
    ))
    .unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["messages"][0]["message_id"], "bad");
    assert_eq!(listed["messages"][0]["reason"], "permanent");

    let status: serde_json::Value =
        serde_json::from_str(&demo_ok(&url, &["status", "--json"])).unwrap();
    let tasks = status["tasks"].as_array().expect("status lists tasks");
    let email = tasks
        .iter()
        .find(|t| t["name"] == "demo.send_email" || t["task"] == "demo.send_email")
        .unwrap_or_else(|| panic!("status shows demo.send_email: {status}"));
    assert_eq!(email["parked"]["messages"], 1, "{email}");

    let (code, page) = get(http, "/");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("demo.send_email"),
        "the dashboard lists the task"
    );
    let (code, api) = get(http, "/api/tasks/demo.send_email/parked");
    assert_eq!(code, 200, "{api}");
    assert!(api.contains("\"bad\""), "{api}");

    let pid = worker.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    let output = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
    assert!(status.success(), "a clean stop: {status}\n{output}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

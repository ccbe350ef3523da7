//! The `rabbit-worker-devbroker` binary: it says what it is, serves AMQP on
//! the port it is given, refuses to listen beyond loopback unless told to,
//! fails clearly on a taken port, and forgets everything when it stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_rabbit-worker-devbroker");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running devbroker and its first line of output.
struct Running {
    child: Child,
    first_line: String,
}

impl Running {
    fn start(port: u16) -> Running {
        let mut child = Command::new(BIN)
            .args(["--port", &port.to_string()])
            .env_remove("DEVBROKER_PORT")
            .env_remove("DEVBROKER_BIND")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the devbroker starts");
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        Running { child, first_line }
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "a stop is a clean exit: {status}");
    }
}

/// The payload of the broker's `connection.start` frame.
fn connection_start(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let mut header = [0u8; 7];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 1, "a method frame");
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut payload = vec![0u8; size];
    stream.read_exact(&mut payload).unwrap();
    payload
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn it_announces_itself_serves_amqp_and_stops_cleanly() {
    let port = free_port();
    let running = Running::start(port);
    for part in [
        "rabbit-worker devbroker",
        "in-memory, not durable, for development and tests",
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        "modelled on RabbitMQ 4.0.5",
    ] {
        assert!(
            running.first_line.contains(part),
            "{part:?} in {:?}",
            running.first_line
        );
    }
    let start = connection_start(port);
    assert!(contains(&start, "rabbit-worker devbroker"), "product");
    assert!(
        contains(&start, "in-memory, not durable, for development and tests"),
        "information"
    );
    assert!(contains(&start, "4.0.5"), "version");
    running.stop();
}

#[test]
fn a_message_does_not_outlive_a_restart() {
    let port = free_port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let running = Running::start(port);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let depth = |url: String| {
        runtime.block_on(async move {
            use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
            let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            let q = ch
                .queue_declare(
                    "kept".into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .unwrap();
            let before = q.message_count();
            ch.basic_publish(
                "".into(),
                "kept".into(),
                BasicPublishOptions::default(),
                b"hello",
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
            let _ = conn.close(200, "bye".into()).await;
            before
        })
    };
    assert_eq!(depth(url.clone()), 0);
    assert_eq!(depth(url.clone()), 1, "kept while it runs");
    running.stop();
    let running = Running::start(port);
    assert_eq!(
        depth(url),
        0,
        "a durable, persistent message is gone after a restart"
    );
    running.stop();
}

#[test]
fn it_listens_beyond_loopback_only_when_told_to() {
    let out = Command::new(BIN)
        .args(["--bind", "0.0.0.0", "--port", &free_port().to_string()])
        .env_remove("DEVBROKER_PORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--allow-remote"),
        "{stderr}"
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["--port", &port.to_string()])
        .env_remove("DEVBROKER_PORT")
        .env_remove("DEVBROKER_BIND")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")) && stderr.contains("--port"),
        "{stderr}"
    );
}

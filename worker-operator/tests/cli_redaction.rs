//! Credentials never reach logs, errors or debug output.
//!
//! Every log line of this test binary, at every level and from every crate
//! (lapin included), goes to one buffer; the test then drives the paths
//! that show URLs: connecting, failing to connect, the worker's start line,
//! configuration warnings, error messages and `Debug` output.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;
use worker_core::connection::{ConnectionSettings, Connector, Secret};
use worker_core::{ConnectionConfig, Task, TaskContext, TaskError};
use worker_operator::cli::{exit, App};

/// The password put in URLs; it must never be printed.
const STALE: &str = "Stale-S3cret-in-url";
/// The password of a user that does not exist.
const WRONG: &str = "Wr0ng-S3cret-pw";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    })
}

fn text(buffer: &Buffer) -> String {
    String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned()
}

struct Noop;

impl Task for Noop {
    type Payload = u8;
    const NAME: &'static str = "cli.redaction.noop";
    const QUEUE: &'static str = "cli.redaction.noop";
    async fn run(&self, _: TaskContext, _: u8) -> Result<(), TaskError> {
        Ok(())
    }
}

#[tokio::test]
async fn passwords_never_appear_in_logs_errors_or_debug_output() {
    let logs = logs();
    let mut shown: Vec<String> = Vec::new();

    // A successful connection whose URL carries a stale password that the
    // password file overrides.
    let dir = std::env::temp_dir().join(format!("cli-redaction-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, "guest\n").unwrap();
    let url = format!("amqp://guest:{STALE}@127.0.0.1:5672/%2f");
    let settings = ConnectionSettings {
        urls: vec![url.clone()],
        password_file: Some(pw_file.clone()),
        ..ConnectionSettings::default()
    };
    shown.push(format!("{settings:?}"));
    let config = settings.resolve().unwrap();
    shown.push(format!("{config:?}"));
    let connector = Connector::new(config);
    connector
        .connection()
        .await
        .expect("the password file's password works");
    shown.push(format!("{connector:?}"));
    connector.close().await;

    // The CLI's `run` logs its URLs at start; `status` fails on a bad login.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = App::new("w").ignore_env().register(Noop);
    let pw = pw_file.to_str().unwrap();
    let parsed = app
        .try_parse_from([
            "w",
            "run",
            "--url",
            &url,
            "--password-file",
            pw,
            "--log-level",
            "trace",
        ])
        .unwrap();
    stop_tx.send(()).unwrap();
    let out = app
        .execute(parsed, async move {
            let _ = stop_rx.await;
        })
        .await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    shown.push(out.stdout);
    shown.push(out.stderr);

    let bad = format!("amqp://nobody:{WRONG}@127.0.0.1:5672/%2f");
    let app = App::new("w").ignore_env().register(Noop);
    let parsed = app.try_parse_from(["w", "status", "--url", &bad]).unwrap();
    let out = app.execute(parsed, async {}).await;
    assert_eq!(out.code, exit::UNAVAILABLE, "{out:?}");
    assert!(out.stderr.contains("nobody:***@127.0.0.1"), "{out:?}");
    shown.push(out.stderr);

    let err = Connector::new(ConnectionConfig::new(&bad))
        .connection()
        .await
        .unwrap_err();
    tracing::error!(error = %err, "connect failed");
    tracing::error!(error = ?err, "connect failed (debug)");
    shown.push(format!("{err} {err:?}"));

    // Warnings and overrides.
    let remote = ConnectionConfig::new(format!("amqp://guest:{STALE}@mq.example.com"))
        .with_credentials("app", Secret::new(WRONG));
    shown.push(format!("{remote:?}"));
    let guest_remote = ConnectionConfig::new(format!("amqp://guest:{STALE}@mq.example.com"));
    shown.extend(guest_remote.warnings());
    // guest off loopback, and credentials in clear text.
    assert_eq!(guest_remote.warnings().len(), 2);

    let logged = text(logs);
    assert!(
        logged.contains("connected to RabbitMQ") && logged.contains("worker starting"),
        "the paths under test logged nothing:\n{logged}"
    );
    assert!(logged.contains("guest:***@127.0.0.1:5672"), "{logged}");
    for secret in [STALE, WRONG] {
        assert!(
            !logged.contains(secret),
            "{secret} leaked into the logs:\n{logged}"
        );
        for s in &shown {
            assert!(!s.contains(secret), "{secret} leaked into: {s}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
    support::delete_queues(&[
        "cli.redaction.noop",
        "cli.redaction.noop.quarantine",
        "cli.redaction.noop.parking",
    ])
    .await;
}

/// A password holding `/` or `,` unencoded: `status` fails without showing
/// it (in its error, or in the parsed command line's `Debug`), and says how
/// to encode it when the URL cannot be parsed.
#[tokio::test]
async fn passwords_with_reserved_characters_never_show() {
    for (url, code) in [
        ("amqp://app:Ab3/xY+zq9@127.0.0.1:1/%2f", exit::CONFIG),
        ("amqp://app:Ab3,xY+zq9@127.0.0.1:1/%2f", exit::UNAVAILABLE),
        (
            "amqp://h0,amqp://app:Ab3,xY/zq9@127.0.0.1:1/%2f",
            exit::CONFIG,
        ),
    ] {
        let app = App::new("w").ignore_env().register(Noop);
        let parsed = app.try_parse_from(["w", "status", "--url", url]).unwrap();
        let debug = format!("{parsed:?}");
        let out = app.execute(parsed, async {}).await;
        assert_eq!(out.code, code, "{out:?}");
        for shown in [&debug, &out.stdout, &out.stderr] {
            assert!(!shown.contains("xY"), "the password leaked: {shown}");
        }
        if code == exit::CONFIG {
            assert!(out.stderr.contains("percent-encode"), "{out:?}");
            assert!(out.stderr.contains("%2F"), "{out:?}");
        }
    }
}

/// `--require-tls` turns the clear-text warning into a configuration error.
#[tokio::test]
async fn require_tls_refuses_credentials_in_clear_text() {
    let url = format!("amqp://app:{STALE}@mq.example.invalid:5672/%2f");
    let app = App::new("w").ignore_env().register(Noop);
    let parsed = app
        .try_parse_from(["w", "status", "--require-tls", "--url", &url])
        .unwrap();
    let out = app.execute(parsed, async {}).await;
    assert_eq!(out.code, exit::CONFIG, "{out:?}");
    assert!(out.stderr.contains("clear text"), "{out:?}");
    assert!(!out.stderr.contains(STALE), "{out:?}");
}

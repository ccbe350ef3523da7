//! The framework from a user's own crate: `user-crates/worker` and
//! `user-crates/renamed`, copied out of this repository (so neither this
//! workspace, its `.cargo/config.toml` nor a `[patch]` applies), built with
//! their own lock files into their own target directory, and run.
//!
//! - `the_user_crates_build_and_pass_their_own_tests`: the worker crate's
//!   handler tests (testkit harness and mock channel) pass; its manifest
//!   names no tower, tracing, serde_json or lapin; the renamed crate builds
//!   with `crate = "rw"` and fails to build without it.
//! - `the_users_worker_binary_runs_the_whole_story`: the user's binary
//!   against RabbitMQ: enqueue, handle, retry, park a permanent failure and
//!   a header table nested 15,000 levels (the process survives), list both
//!   parked messages, replay one after the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use worker_testkit::wait::eventually;

/// How long the broker story may take at each step.
const WAIT: Duration = Duration::from_secs(60);

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("examples sits in the repository")
}

/// The user crates' own target directory (under ours, so `cargo clean`
/// removes it and the second broker run reuses the build).
fn target_dir() -> PathBuf {
    repository().join("target").join("user-crates")
}

/// A copy of `user-crates/<name>` outside the repository, its path
/// dependencies on the framework rewritten to absolute paths.
fn copy_out(name: &str) -> PathBuf {
    let from = repository().join("user-crates").join(name);
    let to = std::env::temp_dir()
        .join(format!("rw-user-crates-{}", std::process::id()))
        .join(name);
    copy_dir(&from, &to);
    let manifest = to.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let framework = format!("\"{}/worker-", repository().display());
    std::fs::write(&manifest, text.replace("\"../../worker-", &framework)).unwrap();
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

/// Runs cargo in `dir` with the user crates' target directory, as a user
/// would: `--locked` against the crate's own lock file.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    Command::new(cargo)
        .args(args)
        .arg("--locked")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        // No debug info for a build only run here: it keeps the directory small.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs")
}

fn text(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hint = if stderr.contains("cannot update the lock file") {
        "\n(the framework's crates changed their dependencies: refresh the user crate's lock \
         file with `cargo metadata --format-version 1 >/dev/null` in user-crates/<name>, and commit it)"
    } else {
        ""
    };
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{stderr}{hint}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    )
}

/// The user's worker binary, built once per test process.
fn user_worker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = copy_out("worker");
        let out = cargo(&dir, &["build", "--bins"]);
        assert!(
            out.status.success(),
            "the user's worker builds: {}",
            text(&out)
        );
        target_dir().join("debug").join("user-worker")
    })
}

#[test]
fn the_user_crates_build_and_pass_their_own_tests() {
    let manifest = std::fs::read_to_string(repository().join("user-crates/worker/Cargo.toml"))
        .expect("the user crate's manifest");
    let manifest: String = manifest
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for needless in ["tower", "tracing", "serde_json", "lapin", "[patch"] {
        assert!(
            !manifest.contains(needless),
            "the user's manifest names {needless}: #[task] must need only worker-core"
        );
    }

    let worker = copy_out("worker");
    let out = cargo(&worker, &["test"]);
    assert!(
        out.status.success(),
        "the user's tests pass: {}",
        text(&out)
    );
    let report = text(&out);
    assert!(
        report.contains("test result: ok. 3 passed"),
        "the three handler tests ran: {report}"
    );

    let renamed = copy_out("renamed");
    let out = cargo(&renamed, &["test"]);
    assert!(
        out.status.success(),
        "with `rw = {{ package = \"worker-core\" }}` and `crate = \"rw\"` it builds: {}",
        text(&out)
    );
    let out = cargo(&renamed, &["check", "--features", "without-crate-option"]);
    assert!(
        !out.status.success(),
        "without `crate = \"rw\"` it must not build"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("worker_core"),
        "the error names the missing worker_core: {stderr}"
    );
}

/// The broker's URL for this run (the runner sets one per broker version).
fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| worker_core::connection::default_url())
}

async fn connect(url: &str) -> Connection {
    match Connection::connect(url, ConnectionProperties::default()).await {
        Ok(conn) => conn,
        Err(e) => panic!("RabbitMQ must answer at {url} for this test: {e}"),
    }
}

async fn depth(conn: &Connection, queue: &str) -> (u32, u32) {
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = ch.close(200, "".into()).await;
    q.map_or((0, 0), |q| (q.message_count(), q.consumer_count()))
}

/// The user's binary with the broker and the files it reports to.
struct UserWorker {
    bin: &'static Path,
    url: String,
    dir: PathBuf,
}

impl UserWorker {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.args(args)
            .env("AMQP_URL", &self.url)
            .env("USER_WORKER_LOG", self.dir.join("log.tsv"))
            .env("USER_WORKER_FIXED", self.dir.join("fixed"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("the user's worker runs");
        assert!(out.status.success(), "user-worker {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log.tsv")).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_worker_binary_runs_the_whole_story() {
    let url = amqp_url();
    let conn = connect(&url).await;
    let ch = conn.create_channel().await.unwrap();
    for queue in [
        "user.greet",
        "user.greet.parking",
        "user.greet.retry.1s",
        "user.add",
        "user.add.parking",
    ] {
        ch.queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(format!("rw-user-worker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let user = UserWorker {
        bin: user_worker(),
        url: url.clone(),
        dir: dir.clone(),
    };

    let log = std::fs::File::create(dir.join("worker.log")).unwrap();
    let mut worker = user
        .command(&["run"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the user's worker starts");
    eventually(WAIT, "the user's worker consumes user.greet", || {
        let conn = &conn;
        async move { depth(conn, "user.greet").await.1 == 1 }
    })
    .await;

    user.run(&["enqueue", "user.greet", r#"{"name":"ada"}"#]);
    user.run(&[
        "enqueue",
        "user.greet",
        r#"{"name":"bob","fail_first":true}"#,
    ]);
    user.run(&[
        "enqueue",
        "user.greet",
        r#"{"name":""}"#,
        "--id",
        "nameless",
    ]);
    let headers = worker_testkit::raw::nested_table(15_000);
    worker_testkit::raw::publish_raw(
        &url,
        &worker_testkit::raw::RawMessage {
            queue: "user.greet",
            kind: "user.greet",
            message_id: "deep",
            headers: &headers,
            body: br#"{"name":"deep"}"#,
        },
    )
    .await
    .expect("the broker takes the deep header");

    eventually(WAIT, "ada and bob greeted, two messages parked", || {
        let (conn, log) = (&conn, user.log());
        async move {
            log.contains("greet\tada\t1\n")
                && log.contains("greet\tbob\t2\n")
                && depth(conn, "user.greet.parking").await.0 == 2
        }
    })
    .await;
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker survived the deep header"
    );

    let listed: serde_json::Value =
        serde_json::from_str(&user.run(&["parked", "list", "user.greet", "--json"]))
            .expect("parked list --json prints JSON");
    assert_eq!(listed["total"], 2, "{listed}");
    let mut parked: Vec<(String, String)> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["message_id"].as_str().unwrap_or_default().to_owned(),
                m["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    parked.sort();
    assert_eq!(
        parked,
        [
            ("deep".to_owned(), "undecodable".to_owned()),
            ("nameless".to_owned(), "permanent".to_owned())
        ]
    );

    // The fix is in: the replayed message is handled, the deep one stays.
    std::fs::write(dir.join("fixed"), b"").unwrap();
    user.run(&["parked", "replay", "user.greet", "--id", "nameless"]);
    eventually(WAIT, "the replayed message handled", || {
        let (conn, log) = (&conn, user.log());
        async move { log.contains("greet\t\t") && depth(conn, "user.greet.parking").await.0 == 1 }
    })
    .await;

    let killed = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    let output = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
    assert!(status.success(), "a clean stop: {status}\n{output}");
    let _ = std::fs::remove_dir_all(&dir);
}

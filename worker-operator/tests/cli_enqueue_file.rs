//! `enqueue TASK --from FILE` against RabbitMQ: good lines published with
//! confirms, bad ones refused by line number and never sent, the summary
//! and exit code; and the long-running commands print no progress bar when
//! not on a terminal.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
use worker_operator::cli::{exit, App, Finished};

const QUEUE: &str = "cli.enqueue_file.rows";

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    row: u64,
    name: String,
}

struct ImportRow;

impl Task for ImportRow {
    type Payload = Row;
    const NAME: &'static str = "import.row";
    const QUEUE: &'static str = QUEUE;

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none(),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, _: TaskContext, _: Row) -> Result<(), TaskError> {
        Ok(())
    }
}

fn queues() -> Vec<String> {
    let spec = worker_core::topology::TaskSpec::new(ImportRow::NAME, QUEUE, ImportRow.options());
    worker_core::topology::plan(&spec, worker_core::broker::Capabilities::unknown())
        .into_iter()
        .map(|q| q.name)
        .collect()
}

/// The test broker's URL: the app ignores the environment, so the runner's
/// `AMQP_URL` (one per broker version) is passed as a flag.
fn url() -> String {
    worker_core::connection::default_url()
}

async fn cli(args: &[&str]) -> Finished {
    let url = url();
    let mut full = vec!["importer", "--url", &url];
    full.extend_from_slice(args);
    let app = App::new("importer").ignore_env().register(ImportRow);
    let parsed = app
        .try_parse_from(full)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    app.execute(parsed, std::future::pending()).await
}

/// A file under the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "rabbit-worker-{}-{name}-{}.ndjson",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Nothing a progress bar would leave: no escape sequence, no carriage return.
fn assert_no_bar(out: &Finished) {
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r'),
            "terminal control characters in {out:?}"
        );
    }
}

/// The `row` of every message in the queue, taking them; checks each is a
/// persistent message of the task.
async fn drain_rows(conn: &lapin::Connection) -> Vec<u64> {
    let mut rows = Vec::new();
    for m in support::drain(conn, QUEUE).await {
        let props = &m.delivery.properties;
        assert_eq!(props.kind().as_ref().unwrap().as_str(), ImportRow::NAME);
        assert_eq!(*props.delivery_mode(), Some(2));
        let row: Row = serde_json::from_slice(&m.delivery.data).unwrap();
        assert_eq!(row.name, format!("n{}", row.row));
        rows.push(row.row);
    }
    rows
}

#[tokio::test]
async fn enqueue_from_a_file_sends_the_good_lines_and_lists_the_bad_ones() {
    let all = queues();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    support::delete_queues(&all).await;
    let conn = support::connect().await;

    // Without the queue every message is unroutable: counted as sent, not
    // confirmed, exit 5 with the hint, and the reading stops.
    let few = TempFile::new(
        "few",
        "{\"row\":1,\"name\":\"n1\"}\n{\"row\":2,\"name\":\"n2\"}\n",
    );
    let out = cli(&["enqueue", "import.row", "--from", few.arg()]).await;
    assert_eq!(out.code, exit::TOPOLOGY, "{out:?}");
    assert_eq!(out.stdout, "sent 2, confirmed 0, refused 0\n", "{out:?}");
    assert!(out.stderr.contains("topology declare"), "{out:?}");
    assert!(out.stderr.contains("2 sent but not confirmed"), "{out:?}");

    let out = cli(&["topology", "declare"]).await;
    assert_eq!(out.code, exit::OK, "{out:?}");

    // 1,000 good lines, blank lines and 3 bad ones: not JSON, a missing
    // field, a wrong type. CRLF line ends are fine.
    let mut text = String::new();
    let mut bad_lines = Vec::new();
    let mut line = 0;
    for row in 0..1000u64 {
        match row {
            10 => {
                text.push_str("{\"row\": 10, \"name\": \n");
                line += 1;
                bad_lines.push(line);
            }
            500 => {
                text.push_str("\n   \n");
                line += 2;
                text.push_str("{\"row\": 500}\n");
                line += 1;
                bad_lines.push(line);
            }
            999 => {
                text.push_str("{\"row\": \"nine\", \"name\": \"x\"}\r\n");
                line += 1;
                bad_lines.push(line);
            }
            _ => {}
        }
        text.push_str(&format!("{{\"row\":{row},\"name\":\"n{row}\"}}"));
        text.push_str(if row % 2 == 0 { "\n" } else { "\r\n" });
        line += 1;
    }
    let file = TempFile::new("rows", &text);
    let out = cli(&["enqueue", "import.row", "--from", file.arg()]).await;
    assert_no_bar(&out);
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "sent 1000, confirmed 1000, refused 3", "{out:?}");
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(
        lines[1].starts_with(&format!("  line {}: not valid JSON", bad_lines[0])),
        "{out:?}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "  line {}: does not match task import.row's payload type",
            bad_lines[1]
        )) && lines[2].contains("missing field `name`"),
        "{out:?}"
    );
    assert!(
        lines[3].starts_with(&format!("  line {}: does not match", bad_lines[2])),
        "{out:?}"
    );
    assert!(out.stderr.contains("3 line(s) refused"), "{out:?}");

    support::eventually(Duration::from_secs(10), "1000 messages queued", || {
        let conn = &conn;
        async move { support::depth(conn, QUEUE).await == 1000 }
    })
    .await;
    let rows: BTreeSet<u64> = drain_rows(&conn).await.into_iter().collect();
    assert_eq!(rows, (0..1000).collect::<BTreeSet<_>>());

    // All good: exit 0, nothing on stderr, a correlation id on each.
    let good: String = (0..25u64)
        .map(|r| format!("{{\"row\":{r},\"name\":\"n{r}\"}}\n"))
        .collect();
    let file = TempFile::new("good", &good);
    let out = cli(&[
        "enqueue",
        "import.row",
        "--from",
        file.arg(),
        "--correlation-id",
        "import-7",
    ])
    .await;
    assert_no_bar(&out);
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert_eq!(out.stdout, "sent 25, confirmed 25, refused 0\n");
    assert_eq!(out.stderr, "");
    support::eventually(Duration::from_secs(10), "25 messages queued", || {
        let conn = &conn;
        async move { support::depth(conn, QUEUE).await == 25 }
    })
    .await;
    let msgs = support::drain(&conn, QUEUE).await;
    assert_eq!(msgs.len(), 25);
    for m in &msgs {
        let props = &m.delivery.properties;
        assert_eq!(
            props.correlation_id().as_ref().unwrap().as_str(),
            "import-7"
        );
    }

    // More refused lines than are listed.
    let bad: String = (0..23).map(|_| "nope\n").collect();
    let file = TempFile::new("bad", &bad);
    let out = cli(&["enqueue", "import.row", "--from", file.arg()]).await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "sent 0, confirmed 0, refused 23");
    assert_eq!(
        lines[20],
        "  line 20: not valid JSON (expected ident at line 1 column 2)"
    );
    assert_eq!(lines[21], "  and 3 more");
    assert_eq!(support::depth(&conn, QUEUE).await, 0, "nothing sent");

    // A file that cannot be opened is a usage error.
    let out = cli(&[
        "enqueue",
        "import.row",
        "--from",
        "/nonexistent/rows.ndjson",
    ])
    .await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    assert!(
        out.stderr.contains("cannot open /nonexistent/rows.ndjson"),
        "{out:?}"
    );

    // The single payload still works.
    let out = cli(&[
        "enqueue",
        "import.row",
        r#"{"row":1,"name":"n1"}"#,
        "--id",
        "one",
    ])
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (exit::OK, "one\n"),
        "{out:?}"
    );
    assert_eq!(drain_rows(&conn).await, [1]);

    support::delete_queues(&all).await;
}

#[test]
fn from_excludes_a_payload_and_an_id() {
    let app = App::new("importer").ignore_env().register(ImportRow);
    assert!(app
        .try_parse_from(["importer", "enqueue", "import.row", "{}", "--from", "f"])
        .is_err());
    assert!(app
        .try_parse_from([
            "importer",
            "enqueue",
            "import.row",
            "--from",
            "f",
            "--id",
            "x"
        ])
        .is_err());
    assert!(app
        .try_parse_from(["importer", "enqueue", "import.row"])
        .is_err());
    assert!(app
        .try_parse_from(["importer", "enqueue", "import.row", "--from", "-"])
        .is_ok());
}

#[tokio::test]
async fn replay_all_and_purge_print_no_progress_bar_off_a_terminal() {
    // A queue of its own, so it can run beside the other test.
    const Q: &str = "cli.enqueue_file.replay";
    struct Replayed;
    impl Task for Replayed {
        type Payload = u32;
        const NAME: &'static str = "replayed";
        const QUEUE: &'static str = Q;
        async fn run(&self, _: TaskContext, _: u32) -> Result<(), TaskError> {
            Ok(())
        }
    }
    let spec = worker_core::topology::TaskSpec::new(Replayed::NAME, Q, Replayed.options());
    let names: Vec<String> =
        worker_core::topology::plan(&spec, worker_core::broker::Capabilities::unknown())
            .into_iter()
            .map(|q| q.name)
            .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    support::delete_queues(&names).await;
    let conn = support::connect().await;
    let run = |args: &'static [&'static str]| async move {
        let url = url();
        let mut full = vec!["w", "--url", &url];
        full.extend_from_slice(args);
        let app = App::new("w").ignore_env().register(Replayed);
        let parsed = app.try_parse_from(full).unwrap();
        app.execute(parsed, std::future::pending()).await
    };
    assert_eq!(run(&["topology", "declare"]).await.code, exit::OK);

    let publisher = worker_core::Publisher::from_env();
    park(&publisher, &spec.parking, 300).await;
    let out = run(&["parked", "replay", "replayed", "--all"]).await;
    assert_no_bar(&out);
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert_eq!(out.stderr, "");
    let mut expected = format!("replayed 300 message(s) from {} to {Q}\n", spec.parking);
    for i in 0..300 {
        expected.push_str(&format!("  p-{i}\n"));
    }
    assert_eq!(out.stdout, expected);
    support::eventually(Duration::from_secs(10), "all replayed", || {
        let conn = &conn;
        let parking = spec.parking.clone();
        async move {
            support::depth(conn, &parking).await == 0 && support::depth(conn, Q).await == 300
        }
    })
    .await;

    park(&publisher, &spec.parking, 5).await;
    let out = run(&["parked", "purge", "replayed", "--yes"]).await;
    assert_no_bar(&out);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            exit::OK,
            format!("purged 5 message(s) from {}\n", spec.parking).as_str(),
            ""
        )
    );

    support::delete_queues(&names).await;
}

/// Parks `n` messages `p-0`.. by hand, as the worker would.
async fn park(publisher: &worker_core::Publisher, parking: &str, n: u32) {
    let messages = (0..n)
        .map(|i| {
            publisher
                .task_message(
                    "replayed",
                    parking,
                    &i,
                    worker_core::EnqueueOptions {
                        message_id: Some(format!("p-{i}")),
                        ..Default::default()
                    },
                )
                .unwrap()
                .1
        })
        .collect();
    publisher.publish_batch(messages).await.unwrap();
}

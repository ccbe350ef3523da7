//! Reading the parking lot never changes it, and many readers at once get
//! exact answers: against RabbitMQ, on `demo.record`'s parking queue (a
//! quorum queue: RabbitMQ 4.0 puts returned quorum messages at the tail,
//! so a read that returned part of the queue moved it behind the rest).
//!
//! The readers are real processes (`demo-worker parked list`, `parked
//! delete`, `parked replay`) beside this one's own listings and lookups:
//! one operation at a time per parking queue holds across processes, not
//! just inside one.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use worker_core::{ConnectionConfig, Connector};
use worker_operator::ops::parked::{self, Filter, Page};

const TASK: &str = "demo.record";
const PARKING: &str = "demo.record.parking";
const PARKED: usize = 20;

fn url() -> String {
    worker_core::connection::default_url()
}

fn id(n: usize) -> String {
    format!("m{n:02}")
}

fn demo_worker() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo-worker"));
    cmd.env("AMQP_URL", url()).env_remove("RUST_LOG");
    cmd
}

/// Runs `demo-worker args`, which must succeed; its standard output.
async fn run(args: &[&str]) -> String {
    let out = tokio::time::timeout(Duration::from_secs(120), demo_worker().args(args).output())
        .await
        .expect("demo-worker answers within 2 minutes")
        .expect("demo-worker runs");
    assert!(
        out.status.success(),
        "demo-worker {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The tests share demo.record's parking queue: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Declares demo.record's queues and parks `PARKED` messages, m00 to m19,
/// straight into its parking queue (emptied first).
async fn park_fresh() -> Connection {
    run(&["topology", "declare"]).await;
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("connects");
    let ch = conn.create_channel().await.unwrap();
    for queue in [TASK, PARKING] {
        ch.queue_purge(queue.into(), QueuePurgeOptions::default())
            .await
            .unwrap();
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for n in 0..PARKED {
        let mut headers = FieldTable::default();
        headers.insert(
            "rw-park-reason".into(),
            AMQPValue::LongString("permanent".into()),
        );
        let body = format!(r#"{{"id":"{}","fail":"permanent"}}"#, id(n));
        ch.basic_publish(
            "".into(),
            PARKING.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default()
                .with_message_id(id(n).as_str().into())
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    conn
}

async fn listed(connector: &Connector, page: Page) -> Vec<String> {
    parked::list(connector, PARKING, &Filter::default(), page)
        .await
        .expect("lists")
        .messages
        .into_iter()
        .filter_map(|m| m.message_id)
        .collect()
}

fn every(ns: impl IntoIterator<Item = usize>) -> Vec<String> {
    ns.into_iter().map(id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_never_reorders_and_paging_shows_each_message_once_oldest_first() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _conn = park_fresh().await;
    let connector = Connector::new(ConnectionConfig::new(url()));

    // Open the 3rd message, then page through five at a time.
    let third = parked::find(&connector, &[PARKING.to_owned()], &id(2))
        .await
        .expect("looks up")
        .expect("m02 is parked");
    assert_eq!(third.message_id.as_deref(), Some("m02"));
    let mut paged = Vec::new();
    for offset in (0..PARKED).step_by(5) {
        paged.extend(listed(&connector, Page { offset, limit: 5 }).await);
    }
    assert_eq!(paged, every(0..PARKED), "each message once, oldest first");

    // The CLI pages the same way, from another process.
    let out = run(&["parked", "list", TASK, "--offset", "3", "--limit", "3"]).await;
    let shown: Vec<&str> = ["m03", "m04", "m05", "m06"]
        .into_iter()
        .filter(|m| out.contains(m))
        .collect();
    assert_eq!(shown, ["m03", "m04", "m05"], "{out}");
    assert_eq!(
        listed(&connector, Page::first(500)).await,
        every(0..PARKED),
        "the queue's order after every read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readers_in_several_processes_get_exact_answers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let conn = park_fresh().await;
    let connector = Connector::new(ConnectionConfig::new(url()));
    let removed = [id(5), id(7), id(10)];

    // Two CLI listings (three each), a CLI delete and a CLI replay, in
    // processes of their own...
    let listers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async {
                let mut answers = Vec::new();
                for _ in 0..3 {
                    answers.push(run(&["parked", "list", TASK, "--json", "--limit", "500"]).await);
                }
                answers
            })
        })
        .collect();
    let deleter = tokio::spawn(run(&[
        "parked", "delete", TASK, "--id", "m05", "--id", "m07", "--yes",
    ]));
    let replayer = tokio::spawn(run(&["parked", "replay", TASK, "--id", "m10"]));
    // ...and sixteen lookups here, of messages nobody removes.
    let lookups: Vec<_> = (0..16)
        .map(|i| {
            let connector = connector.clone();
            let wanted = id([0, 1, 2, 3, 4, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19][i]);
            tokio::spawn(async move {
                let found = parked::find(&connector, &[PARKING.to_owned()], &wanted)
                    .await
                    .expect("looks up");
                (wanted, found.and_then(|m| m.message_id))
            })
        })
        .collect();

    for lookup in lookups {
        let (wanted, found) = lookup.await.unwrap();
        assert_eq!(found.as_deref(), Some(wanted.as_str()), "no false 404");
    }
    let kept: Vec<String> = every(0..PARKED)
        .into_iter()
        .filter(|m| !removed.contains(m))
        .collect();
    for lister in listers {
        for answer in lister.await.unwrap() {
            let v: Value = serde_json::from_str(&answer).expect("JSON listing");
            let ids: Vec<String> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["message_id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(v["total"].as_u64(), Some(ids.len() as u64), "{v}");
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, sorted, "oldest first: {ids:?}");
            let without: Vec<String> = ids.into_iter().filter(|m| !removed.contains(m)).collect();
            assert_eq!(without, kept, "every message nobody removed, exactly once");
        }
    }
    let deleted = deleter.await.unwrap();
    assert!(
        deleted.contains("m05") && deleted.contains("m07") && !deleted.contains("not parked"),
        "{deleted}"
    );
    let replayed = replayer.await.unwrap();
    assert!(
        replayed.contains("m10") && !replayed.contains("not parked"),
        "{replayed}"
    );
    assert_eq!(listed(&connector, Page::first(500)).await, kept);
    let ch = conn.create_channel().await.unwrap();
    let work = ch
        .queue_purge(TASK.into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(work, 1, "the replayed copy is in the work queue");
}

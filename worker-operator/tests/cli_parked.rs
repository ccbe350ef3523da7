//! The CLI end to end against RabbitMQ: declare, enqueue (with payload
//! validation), run until a message is parked, list and show it without
//! removing it, replay it with a fresh attempt count, purge.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
use worker_operator::cli::{exit, App, Finished};

const QUEUE: &str = "cli.parked.charges";
const PARKING: &str = "cli.parked.charges.parking";

#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    order: String,
    cents: u64,
    #[serde(default)]
    refuse: bool,
}

/// What the handler saw: order -> attempts.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<String, Vec<u32>>>>);

impl Seen {
    fn record(&self, order: &str, attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .entry(order.to_owned())
            .or_default()
            .push(attempt);
    }

    fn attempts(&self, order: &str) -> Vec<u32> {
        self.0
            .lock()
            .unwrap()
            .get(order)
            .cloned()
            .unwrap_or_default()
    }
}

/// Charges an order; `refuse` makes it fail permanently (parked at once).
struct ChargeCard;

impl Task for ChargeCard {
    type Payload = Charge;
    const NAME: &'static str = "billing.charge";
    const QUEUE: &'static str = QUEUE;

    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none(),
            ..TaskOptions::default()
        }
    }

    async fn run(&self, ctx: TaskContext, charge: Charge) -> Result<(), TaskError> {
        let seen = ctx
            .state::<Seen>()
            .ok_or_else(|| TaskError::permanent("no state"))?;
        seen.record(&charge.order, ctx.attempt());
        if charge.refuse {
            return Err(TaskError::permanent(format!(
                "card declined for order {}",
                charge.order
            )));
        }
        Ok(())
    }
}

/// Every queue the task declares.
fn queues() -> Vec<String> {
    let spec = worker_core::topology::TaskSpec::new(ChargeCard::NAME, QUEUE, ChargeCard.options());
    worker_core::topology::plan(&spec, worker_core::broker::Capabilities::unknown())
        .into_iter()
        .map(|q| q.name)
        .collect()
}

fn app(seen: &Seen) -> App {
    App::new("billing-worker")
        .register(ChargeCard)
        .state(seen.clone())
}

async fn cli(seen: &Seen, args: &[&str]) -> Finished {
    let mut full = vec!["billing-worker"];
    full.extend_from_slice(args);
    let app = app(seen);
    let parsed = app
        .try_parse_from(full)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    app.execute(parsed, std::future::pending()).await
}

fn ok(out: &Finished) -> &str {
    assert_eq!(out.code, exit::OK, "{out:?}");
    &out.stdout
}

#[tokio::test]
async fn enqueue_run_list_show_replay_purge() {
    let all = queues();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    support::delete_queues(&all).await;
    let seen = Seen::default();
    let conn = support::connect().await;

    // Before the queue exists a publish is unroutable: exit 5 with a hint.
    let out = cli(
        &seen,
        &["enqueue", "billing.charge", r#"{"order":"o-0","cents":1}"#],
    )
    .await;
    assert_eq!(out.code, exit::TOPOLOGY, "{out:?}");
    assert!(out.stderr.contains("topology declare"), "{out:?}");

    let out = cli(&seen, &["topology", "declare"]).await;
    let planned = worker_core::topology::plan(
        &worker_core::topology::TaskSpec::new(ChargeCard::NAME, QUEUE, ChargeCard.options()),
        worker_core::broker::Capabilities::unknown(),
    );
    assert!(
        ok(&out).contains(&format!(
            "declared {} queue(s) for 1 task(s)",
            planned.len()
        )),
        "{out:?}"
    );

    // Payloads are checked against the task's type before publishing.
    let out = cli(&seen, &["enqueue", "billing.charge", r#"{"order":"o-1"}"#]).await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    assert!(out.stderr.contains("missing field `cents`"), "{out:?}");
    assert!(out.stderr.contains("nothing was published"), "{out:?}");
    let out = cli(&seen, &["enqueue", "billing.charge", "{order:"]).await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    assert!(out.stderr.contains("not valid JSON"), "{out:?}");
    let out = cli(&seen, &["enqueue", "billing.refund", "{}"]).await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    assert!(
        out.stderr.contains("registered tasks: billing.charge"),
        "{out:?}"
    );
    assert_eq!(support::depth(&conn, QUEUE).await, 0, "nothing published");

    // Two good charges and one the card refuses.
    let out = cli(
        &seen,
        &[
            "enqueue",
            "billing.charge",
            r#"{"order":"o-2","cents":500,"refuse":true}"#,
            "--id",
            "charge-o-2",
            "--correlation-id",
            "order-o-2",
        ],
    )
    .await;
    assert_eq!(ok(&out).trim(), "charge-o-2");
    for order in ["o-3", "o-4"] {
        let json = format!(r#"{{"order":"{order}","cents":100}}"#);
        let out = cli(&seen, &["enqueue", "billing.charge", &json]).await;
        assert_eq!(ok(&out).trim().len(), 36, "a UUID: {out:?}");
    }
    assert_eq!(support::depth(&conn, QUEUE).await, 3);

    // Run until the declined charge is parked and the others are done.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let run = {
        let app = app(&seen);
        let parsed = app
            .try_parse_from(["billing-worker", "run", "--concurrency", "2"])
            .unwrap();
        tokio::spawn(app.execute(parsed, async move {
            let _ = stop_rx.await;
        }))
    };
    support::eventually(
        Duration::from_secs(20),
        "charges handled and one parked",
        || {
            let seen = seen.clone();
            let conn = &conn;
            async move {
                ["o-2", "o-3", "o-4"]
                    .iter()
                    .all(|o| !seen.attempts(o).is_empty())
                    && support::depth(conn, PARKING).await == 1
            }
        },
    )
    .await;
    stop_tx.send(()).unwrap();
    let out = run.await.unwrap();
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert_eq!(seen.attempts("o-2"), [1]);

    // List: twice, to show listing removes nothing.
    for _ in 0..2 {
        let out = cli(&seen, &["parked", "list", "billing.charge", "--json"]).await;
        let v: serde_json::Value = serde_json::from_str(ok(&out)).unwrap();
        assert_eq!(v["queue"], PARKING);
        assert_eq!(v["total"], 1);
        let m = &v["messages"][0];
        assert_eq!(m["message_id"], "charge-o-2");
        assert_eq!(m["task"], "billing.charge");
        assert_eq!(m["reason"], "permanent");
        assert_eq!(m["attempts"], 1);
        assert_eq!(m["error"], "card declined for order o-2");
        assert!(m["parked_at"].as_str().unwrap().ends_with('Z'), "{m}");
        support::eventually(
            Duration::from_secs(5),
            "listed message back in the queue",
            || {
                let conn = &conn;
                async move { support::depth(conn, PARKING).await == 1 }
            },
        )
        .await;
    }
    let out = cli(&seen, &["parked", "list", QUEUE]).await;
    let text = ok(&out);
    assert!(
        text.starts_with("1 parked in cli.parked.charges.parking"),
        "{text}"
    );
    assert!(
        text.contains("charge-o-2  task=billing.charge  reason=permanent  attempts=1"),
        "{text}"
    );

    // Show, searching every task's parking queue, then one task's.
    let out = cli(&seen, &["parked", "show", "charge-o-2"]).await;
    let text = ok(&out);
    assert!(
        text.contains("error:          card declined for order o-2"),
        "{text}"
    );
    assert!(text.contains("correlation_id: order-o-2"), "{text}");
    assert!(text.contains("rw-park-reason: \"permanent\""), "{text}");
    assert!(text.contains(r#""refuse":true"#), "{text}");
    let out = cli(
        &seen,
        &["parked", "show", "billing.charge", "charge-o-2", "--json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(ok(&out)).unwrap();
    assert_eq!(v["body"]["order"], "o-2");
    assert_eq!(v["headers"]["rw-park-task"], "billing.charge");
    assert_eq!(v["properties"]["correlation_id"], "order-o-2");
    let out = cli(&seen, &["parked", "show", "no-such-id"]).await;
    assert_eq!(out.code, exit::FAILURE, "{out:?}");
    assert!(out.stderr.contains("parked list"), "{out:?}");
    assert_eq!(support::depth(&conn, PARKING).await, 1);

    // Replay an unknown id: nothing moves.
    let out = cli(
        &seen,
        &["parked", "replay", "billing.charge", "--id", "nope"],
    )
    .await;
    assert_eq!(out.code, exit::FAILURE, "{out:?}");
    assert!(
        out.stderr
            .contains("not parked in cli.parked.charges.parking: nope"),
        "{out:?}"
    );
    assert!(out.stdout.starts_with("replayed 0 message(s)"), "{out:?}");

    // Replay it: back in the work queue, fresh attempts, replays = 1.
    let out = cli(
        &seen,
        &["parked", "replay", "billing.charge", "--id", "charge-o-2"],
    )
    .await;
    assert!(
        ok(&out).starts_with(
            "replayed 1 message(s) from cli.parked.charges.parking to cli.parked.charges"
        ),
        "{out:?}"
    );
    support::eventually(
        Duration::from_secs(5),
        "parking empty, work queue has the copy",
        || {
            let conn = &conn;
            async move {
                support::depth(conn, PARKING).await == 0 && support::depth(conn, QUEUE).await == 1
            }
        },
    )
    .await;
    let back = support::drain(&conn, QUEUE).await;
    assert_eq!(back.len(), 1);
    let props = &back[0].delivery.properties;
    assert_eq!(support::header_u64(props, "rw-replays"), Some(1));
    let table = props.headers().as_ref().unwrap();
    let names: Vec<String> = table.inner().keys().map(|k| k.to_string()).collect();
    // The broker stamps x-delivery-count on deliveries from a quorum queue
    // (0 here: never returned); the copy we published had none.
    assert_eq!(
        support::header_u64(props, "x-delivery-count").unwrap_or(0),
        0
    );
    for name in names.iter().filter(|n| *n != "x-delivery-count") {
        assert!(
            !name.starts_with("x-")
                && ![
                    "rw-attempts",
                    "rw-redeliveries",
                    "rw-first-failure",
                    "rw-last-failure"
                ]
                .contains(&name.as_str())
                && !name.starts_with("rw-park")
                && !name.starts_with("rw-error")
                && !name.starts_with("rw-original"),
            "{name} should be gone: {names:?}"
        );
    }
    assert_eq!(props.message_id().as_ref().unwrap().as_str(), "charge-o-2");
    assert_eq!(
        props.correlation_id().as_ref().unwrap().as_str(),
        "order-o-2"
    );
    assert_eq!(props.kind().as_ref().unwrap().as_str(), "billing.charge");
    assert_eq!(*props.delivery_mode(), Some(2));
    let body: serde_json::Value = serde_json::from_slice(&back[0].delivery.data).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"order":"o-2","cents":500,"refuse":true})
    );

    // Park two more by hand (as the worker would) and replay --all.
    let publisher = worker_core::Publisher::from_env();
    for id in ["p-1", "p-2"] {
        let (_, mut msg) = publisher
            .task_message(
                "billing.charge",
                PARKING,
                &serde_json::json!({"order": id, "cents": 1}),
                worker_core::EnqueueOptions {
                    message_id: Some(id.to_owned()),
                    ..Default::default()
                },
            )
            .unwrap();
        msg.properties
            .headers_mut()
            .insert("rw-replays", 1u8)
            .insert("rw-attempts", 4u8)
            .insert("rw-park-reason", "exhausted");
        publisher.publish(msg).await.unwrap();
    }
    let out = cli(&seen, &["parked", "replay", QUEUE, "--all"]).await;
    assert!(ok(&out).starts_with("replayed 2 message(s)"), "{out:?}");
    support::eventually(Duration::from_secs(5), "both replayed", || {
        let conn = &conn;
        async move {
            support::depth(conn, PARKING).await == 0 && support::depth(conn, QUEUE).await == 2
        }
    })
    .await;
    for m in support::drain(&conn, QUEUE).await {
        let props = &m.delivery.properties;
        assert_eq!(support::header_u64(props, "rw-replays"), Some(2));
        assert_eq!(support::header_u64(props, "rw-attempts"), None);
    }

    // Purge refuses without --yes, then deletes.
    publisher
        .publish(
            publisher
                .task_message("billing.charge", PARKING, &1, Default::default())
                .unwrap()
                .1,
        )
        .await
        .unwrap();
    let out = cli(&seen, &["parked", "purge", "billing.charge"]).await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    assert!(
        out.stderr
            .contains("refusing to delete 1 parked message(s)"),
        "{out:?}"
    );
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(support::depth(&conn, PARKING).await, 1);
    let out = cli(&seen, &["parked", "purge", "billing.charge", "--yes"]).await;
    assert_eq!(
        ok(&out).trim(),
        "purged 1 message(s) from cli.parked.charges.parking"
    );
    assert_eq!(support::depth(&conn, PARKING).await, 0);

    // Status shows the queues.
    let out = cli(&seen, &["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(ok(&out)).unwrap();
    let caps = support::capabilities().await;
    assert_eq!(v["version"], caps.version().unwrap().to_string());
    let task = &v["tasks"][0];
    assert_eq!(task["task"], "billing.charge");
    assert_eq!(task["queue"]["name"], QUEUE);
    assert_eq!(task["queue"]["messages"], 0);
    assert_eq!(task["parked"]["messages"], 0);
    // The work queue's limit is the task's attempt budget; parking has
    // none, on every broker version.
    assert_eq!(
        task["queue"]["delivery_limit"],
        ChargeCard.options().retry.max_attempts.to_string()
    );
    assert_eq!(task["parked"]["delivery_limit"], "unlimited");
    let out = cli(&seen, &["status"]).await;
    assert!(
        ok(&out).starts_with(&format!("broker: {caps}\n")),
        "{out:?}"
    );
    assert!(
        ok(&out).contains("billing.charge  cli.parked.charges  0"),
        "{out:?}"
    );

    support::delete_queues(&all).await;
}

#[tokio::test]
async fn listing_a_missing_parking_queue_says_what_to_do() {
    let seen = Seen::default();
    struct Lonely;
    impl Task for Lonely {
        type Payload = u32;
        const NAME: &'static str = "cli.parked.lonely";
        const QUEUE: &'static str = "cli.parked.lonely";
        async fn run(&self, _: TaskContext, _: u32) -> Result<(), TaskError> {
            Ok(())
        }
    }
    support::delete_queues(&[
        "cli.parked.lonely",
        "cli.parked.lonely.quarantine",
        "cli.parked.lonely.parking",
    ])
    .await;
    let app = App::new("w").register(Lonely).state(seen.clone());
    let parsed = app
        .try_parse_from(["w", "parked", "list", "cli.parked.lonely"])
        .unwrap();
    let out = app.execute(parsed, std::future::pending()).await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert!(out.stderr.contains("does not exist"), "{out:?}");
    assert!(out.stderr.contains("topology declare"), "{out:?}");

    let app = App::new("w").register(Lonely);
    let parsed = app
        .try_parse_from(["w", "parked", "list", "billing.nothing"])
        .unwrap();
    let out = app.execute(parsed, std::future::pending()).await;
    assert_eq!(out.code, exit::USAGE, "{out:?}");
    assert!(
        out.stderr.contains("unknown task \"billing.nothing\""),
        "{out:?}"
    );
}

/// A listing returns the messages it took with a requeue, which a quorum
/// queue applies through its log; a listing started right after must still
/// see every parked message (it once saw an empty queue here).
#[tokio::test]
async fn listings_back_to_back_see_every_parked_message() {
    const TASK_QUEUE: &str = "cli.parked.relist";
    const PARKED: usize = 25;
    let spec = worker_core::topology::TaskSpec::new(
        "cli.parked.relist",
        TASK_QUEUE,
        TaskOptions::default(),
    );
    let caps = support::capabilities().await;
    let names: Vec<String> = worker_core::topology::plan(&spec, caps)
        .into_iter()
        .map(|q| q.name)
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    support::delete_queues(&names).await;
    let (conn, channel) = support::channel().await;
    worker_core::topology::declare(&conn, channel, &spec, caps)
        .await
        .unwrap();

    let connector = worker_core::Connector::new(worker_core::ConnectionConfig::from_env());
    let publisher = worker_core::Publisher::new(connector.clone());
    for i in 0..PARKED {
        let properties = worker_core::Properties::default()
            .with_message_id(&format!("relist-{i}"))
            .unwrap();
        publisher
            .publish(worker_core::message::Outgoing::to_queue(
                &spec.parking,
                properties,
                format!("{i}").into_bytes(),
            ))
            .await
            .unwrap();
    }
    assert_eq!(support::depth(&conn, &spec.parking).await, PARKED as u32);

    // More listings than RabbitMQ 4.0's default delivery limit (20): each
    // one returns every message with a requeue, which 4.0 counts.
    for round in 0..25 {
        let listing = worker_operator::ops::parked::list(
            &connector,
            &spec.parking,
            &worker_operator::ops::parked::Filter::default(),
            worker_operator::ops::parked::Page::first(100),
        )
        .await
        .unwrap();
        let ids: Vec<String> = listing
            .messages
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect();
        assert_eq!(
            (listing.total as usize, ids.len()),
            (PARKED, PARKED),
            "listing {round} saw {ids:?}"
        );
        assert_eq!(ids[0], "relist-0", "oldest first, order kept");
    }
    support::delete_queues(&names).await;
}

/// `run --task` consumes only the chosen task's queues: the other task's
/// message stays queued, with no consumer on its queue.
#[tokio::test]
async fn run_with_a_task_subset_consumes_only_that_task() {
    #[derive(Clone, Default)]
    struct Ran(Arc<Mutex<Vec<&'static str>>>);
    impl Ran {
        fn push(&self, name: &'static str) {
            self.0.lock().unwrap().push(name);
        }
    }
    /// A task that records its name when it runs.
    macro_rules! recording_task {
        ($ty:ident, $name:literal) => {
            struct $ty;
            impl Task for $ty {
                type Payload = u32;
                const NAME: &'static str = $name;
                const QUEUE: &'static str = $name;
                async fn run(&self, ctx: TaskContext, _: u32) -> Result<(), TaskError> {
                    ctx.state::<Ran>().unwrap().push(Self::NAME);
                    Ok(())
                }
            }
        };
    }
    recording_task!(Chosen, "cli.subset.chosen");
    recording_task!(Other, "cli.subset.other");
    let mut names = Vec::new();
    for queue in [Chosen::QUEUE, Other::QUEUE] {
        for suffix in ["", ".quarantine", ".parking"] {
            names.push(format!("{queue}{suffix}"));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    support::delete_queues(&names).await;
    let ran = Ran::default();
    let app = || {
        App::new("w")
            .register(Chosen)
            .register(Other)
            .state(ran.clone())
    };
    let declare = app().try_parse_from(["w", "topology", "declare"]).unwrap();
    assert_eq!(
        app().execute(declare, std::future::pending()).await.code,
        exit::OK
    );
    let publisher = worker_core::Publisher::from_env();
    publisher.enqueue::<Chosen>(&1).await.unwrap();
    publisher.enqueue::<Other>(&2).await.unwrap();

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let parsed = app()
        .try_parse_from(["w", "run", "--task", Chosen::NAME])
        .unwrap();
    let run = tokio::spawn(app().execute(parsed, async move {
        let _ = stop_rx.await;
    }));
    let conn = support::connect().await;
    support::eventually(Duration::from_secs(20), "the chosen task ran", || {
        let ran = ran.clone();
        async move { !ran.0.lock().unwrap().is_empty() }
    })
    .await;
    let other = worker_operator::ops::queue_depth(
        &worker_core::Connector::new(worker_core::ConnectionConfig::from_env()),
        Other::QUEUE,
    )
    .await
    .unwrap()
    .unwrap();
    stop_tx.send(()).unwrap();
    assert_eq!(run.await.unwrap().code, exit::OK);

    assert_eq!(*ran.0.lock().unwrap(), [Chosen::NAME]);
    assert_eq!(
        (other.messages, other.consumers),
        (1, 0),
        "the other task is left alone"
    );
    assert_eq!(support::depth(&conn, Chosen::QUEUE).await, 0);
    support::delete_queues(&names).await;
}

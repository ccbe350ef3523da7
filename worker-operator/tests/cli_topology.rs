//! `topology check` and `topology declare` against RabbitMQ: missing queues,
//! a queue declared with other arguments, and the exit codes.

mod support;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use worker_core::{RetryPolicy, Task, TaskContext, TaskError, TaskOptions};
use worker_operator::cli::{exit, App, Finished};

const QUEUE: &str = "cli.topology.invoices";

struct SendInvoice;

impl Task for SendInvoice {
    type Payload = u64;
    const NAME: &'static str = "invoices.send";
    const QUEUE: &'static str = QUEUE;
    fn options(&self) -> TaskOptions {
        TaskOptions {
            retry: RetryPolicy::none()
                .tiers([std::time::Duration::from_secs(5)])
                .max_attempts(5),
            ..TaskOptions::default()
        }
    }
    async fn run(&self, _: TaskContext, _: u64) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Every queue the task declares.
fn all() -> Vec<String> {
    let spec =
        worker_core::topology::TaskSpec::new(SendInvoice::NAME, QUEUE, SendInvoice.options());
    worker_core::topology::plan(&spec, worker_core::broker::Capabilities::unknown())
        .into_iter()
        .map(|q| q.name)
        .collect()
}

async fn delete_all() {
    let names = all();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    support::delete_queues(&refs).await;
}

async fn cli(args: &[&str]) -> Finished {
    let mut full = vec!["w"];
    full.extend_from_slice(args);
    let app = App::new("w").register(SendInvoice);
    let parsed = app.try_parse_from(full).unwrap();
    app.execute(parsed, async {}).await
}

#[tokio::test]
async fn check_reports_missing_and_differing_queues_and_exits_5() {
    delete_all().await;

    // Nothing declared: everything missing, nothing created by the check.
    let out = cli(&["topology", "check"]).await;
    assert_eq!(out.code, exit::TOPOLOGY, "{out:?}");
    let planned = all().len();
    assert!(
        planned >= 3,
        "work, tier and parking queues at least: {:?}",
        all()
    );
    assert_eq!(out.stdout.matches("MISSING").count(), planned, "{out:?}");
    assert!(out.stdout.contains("run `topology declare`"), "{out:?}");
    assert!(
        out.stderr.contains(&format!("0 differ, {planned} missing")),
        "{out:?}"
    );
    let conn = support::connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert!(
        ch.queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default()
        )
        .await
        .is_err(),
        "check must not create queues"
    );

    // Someone declared the work queue with another delivery limit.
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(3));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("cli.topology.invoices.parking".into()),
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();

    let out = cli(&["topology", "check"]).await;
    assert_eq!(out.code, exit::TOPOLOGY, "{out:?}");
    let differs: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("DIFFERS"))
        .collect();
    assert_eq!(differs.len(), 1, "{out:?}");
    assert!(
        differs[0].contains("queue cli.topology.invoices (task invoices.send)"),
        "{out:?}"
    );
    assert!(differs[0].contains("PRECONDITION_FAILED"), "{out:?}");
    assert!(differs[0].contains("inequivalent arg"), "{out:?}");
    let out = cli(&["topology", "check", "--json"]).await;
    assert_eq!(out.code, exit::TOPOLOGY);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let work = v
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == QUEUE)
        .unwrap();
    assert_eq!(work["status"], "differs");
    assert!(work["message"].as_str().unwrap().contains("x-"), "{work}");
    // The queue is still there, unchanged.
    assert_eq!(support::depth(&conn, QUEUE).await, 0);

    // declare and run refuse with exit 5 and say what to do.
    let out = cli(&["topology", "declare"]).await;
    assert_eq!(out.code, exit::TOPOLOGY, "{out:?}");
    assert!(out.stderr.contains("topology check"), "{out:?}");
    let out = cli(&["run"]).await;
    assert_eq!(out.code, exit::TOPOLOGY, "{out:?}");

    // Fixed: delete, declare, check passes.
    support::delete_queues(&[QUEUE]).await;
    let out = cli(&["topology", "declare"]).await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    let out = cli(&["topology", "check"]).await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert_eq!(
        out.stdout.matches("ok       queue").count(),
        planned,
        "{out:?}"
    );

    delete_all().await;
}

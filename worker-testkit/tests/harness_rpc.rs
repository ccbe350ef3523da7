//! Request/reply through the harness: the worker's side of a call, with
//! the same dispatch the worker runs (reply, then settle).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::headers::{REPLY_REASON, REPLY_STATUS};
use worker_core::{task, CallError, RetryPolicy, TaskError, TaskOptions};
use worker_testkit::mock::Event;
use worker_testkit::{DeliveryBuilder, Harness, HARNESS_REPLY_TO};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct QuoteRequest {
    sku: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Quote {
    sku: String,
    cents: u64,
}

#[task(queue = "rpc.quotes")]
async fn price(req: QuoteRequest) -> Result<Quote, TaskError> {
    match req.sku.as_str() {
        "" => Err(TaskError::permanent("no sku")),
        "down" => Err(TaskError::transient("pricing is down")),
        _ => Ok(Quote {
            cents: 100 * req.sku.len() as u64,
            sku: req.sku,
        }),
    }
}

fn request(sku: &str) -> QuoteRequest {
    QuoteRequest { sku: sku.into() }
}

#[tokio::test(start_paused = true)]
async fn the_reply_carries_the_value_and_is_published_before_the_ack() {
    let harness = Harness::new(Price);
    let report = harness.call(&request("ab")).await;
    assert_eq!(
        report.reply::<Quote>().expect("a reply").unwrap(),
        Quote {
            sku: "ab".into(),
            cents: 200
        }
    );
    let reply = report.reply_message().unwrap();
    assert_eq!(
        reply.properties.correlation_id(),
        Some("harness-call-1"),
        "the correlation id is copied"
    );
    assert!(!reply.mandatory);
    let events = report.events();
    let published = events
        .iter()
        .position(|e| matches!(e, Event::Published(p) if p.routing_key == HARNESS_REPLY_TO));
    let acked = events
        .iter()
        .position(|e| matches!(e, Event::Ack { tag: 1, .. }));
    assert!(
        matches!((published, acked), (Some(p), Some(a)) if p < a),
        "reply first, then the ack: {report}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reply_that_cannot_be_published_sends_the_request_back_unacked() {
    let harness = Harness::new(Price);
    harness.mock().fail_publishes_to(HARNESS_REPLY_TO);
    let report = harness.call(&request("ab")).await;
    assert!(report.requeued(), "{report}");
    assert!(!report.acked(), "{report}");
    assert_eq!(report.handler_runs(), 1);
    assert!(report.reply::<Quote>().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_replies_failed_with_the_error() {
    let harness = Harness::new(Price);
    let report = harness.call(&request("")).await;
    assert_eq!(report.parked().expect("parked").reason, "permanent");
    let reply = report.reply_message().expect("a failure reply");
    assert_eq!(reply.header_str(REPLY_STATUS).as_deref(), Some("failed"));
    assert_eq!(reply.header_str(REPLY_REASON).as_deref(), Some("permanent"));
    match report.reply::<Quote>() {
        Some(Err(CallError::Failed { message, .. })) => assert_eq!(message, "no sku"),
        other => panic!("expected a failed reply, got {other:?}"),
    }
    assert!(report.acked(), "parked, then acked: {report}");
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_request_replies_parked() {
    let harness = Harness::new(Price);
    let delivery = DeliveryBuilder::raw(&b"{\"nope\": 1}"[..])
        .task(<Price as worker_core::Task>::NAME)
        .reply_to(HARNESS_REPLY_TO)
        .correlation_id("c-bad")
        .build();
    let report = harness.run(delivery).await;
    match report.reply::<Quote>() {
        Some(Err(CallError::Parked { reason, message })) => {
            assert_eq!(reason, "undecodable");
            assert!(message.contains("sku"), "{message}");
        }
        other => panic!("expected a parked reply, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_reply_parked() {
    let harness = Harness::new(Price).retry(RetryPolicy::none());
    let report = harness.call(&request("down")).await;
    assert!(
        matches!(report.reply::<Quote>(), Some(Err(CallError::Parked { reason, .. })) if reason == "exhausted"),
        "{report}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_in_a_delay_tier_gets_no_reply_yet() {
    let harness = Harness::new(Price).options(TaskOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            in_process_attempts: 1,
            tiers: vec![Duration::from_secs(1)],
            ..RetryPolicy::default()
        },
        ..TaskOptions::default()
    });
    let report = harness.call(&request("down")).await;
    assert!(report.redelivered_to().is_some(), "{report}");
    assert!(report.reply_message().is_none(), "{report}");
    let copy = report.redelivered_copy().unwrap();
    assert_eq!(
        copy.properties.reply_to(),
        Some(HARNESS_REPLY_TO),
        "the copy still names the caller, who hears from its eventual end"
    );
}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(queue = "rpc.flaky")]
async fn flaky_count(n: u32) -> Result<u32, TaskError> {
    if FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(TaskError::transient("first run fails"));
    }
    Ok(n + 1)
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_retries_and_the_one_reply_follows_the_success() {
    let harness = Harness::new(FlakyCount);
    let report = harness.call(&41).await;
    assert_eq!(report.handler_runs(), 2, "{report}");
    assert_eq!(report.reply::<u32>().unwrap().unwrap(), 42);
    let replies = report
        .published()
        .iter()
        .filter(|p| p.routing_key == HARNESS_REPLY_TO)
        .count();
    assert_eq!(replies, 1, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_message_without_reply_to_publishes_nothing() {
    let harness = Harness::new(Price);
    let report = harness.run_payload(&request("ab")).await;
    assert!(report.acked());
    assert!(report.published().is_empty(), "{report}");
    assert!(report.reply::<Quote>().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_unit_task_replies_null() {
    #[task(queue = "rpc.unit")]
    async fn touch(_id: u32) -> Result<(), TaskError> {
        Ok(())
    }
    let report = Harness::new(Touch).call(&1).await;
    let () = report.reply::<()>().unwrap().unwrap();
    assert_eq!(&report.reply_message().unwrap().body[..], b"null");
}

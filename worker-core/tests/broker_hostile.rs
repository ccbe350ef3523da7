//! What a careless or hostile producer, and a broken topology, can do to a
//! worker, against the real broker: properties and headers the broker acts
//! on when our copies are published, and a delay tier deleted under a
//! failing message.

mod support;

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::{header_str, Recorder, Script};
use worker_core::{Backoff, RetryPolicy, Task, TaskOptions};

const TIER: Duration = Duration::from_millis(50);

fn options(max_attempts: u32) -> TaskOptions {
    TaskOptions {
        retry: RetryPolicy::default()
            .in_process(1)
            .backoff(Backoff::new(
                Duration::from_millis(5),
                Duration::from_millis(20),
            ))
            .tiers([TIER])
            .max_attempts(max_attempts),
        ..TaskOptions::default()
    }
}

scripted_task!(Impersonated, "it.hostile.userid", options(3));
scripted_task!(Copied, "it.hostile.cc", options(2));
scripted_task!(Stranded, "it.hostile.tierless", options(3));

/// Publishes `script` to `queue` over `conn`, confirmed.
async fn publish_raw(conn: &Connection, queue: &str, script: &Script, props: BasicProperties) {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = serde_json::to_vec(script).unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body,
            props.with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{queue} took {}", script.id);
}

/// Messages whose `user_id` names their producer's login (valid for the
/// producer, refused from the worker's login) used to poison the worker's
/// publishing channel: every copy was refused with 406, which closed the
/// channel and failed innocent copies with it. Copies now carry no
/// `user_id` (it is kept in `rw-original-user-id`).
#[tokio::test]
async fn a_producers_user_id_never_reaches_a_copy() {
    support::reset(Impersonated::QUEUE, &[TIER]).await;
    for args in [
        &["add_user", "it-producer", "producer-secret"][..],
        &[
            "set_permissions",
            "-p",
            "/",
            "it-producer",
            ".*",
            ".*",
            ".*",
        ][..],
    ] {
        if let Err(e) = worker_testkit::node::rabbitmqctl(args) {
            assert!(e.contains("already exists"), "{e}");
        }
    }
    let producer = Connection::connect(
        &support::url_as("it-producer", "producer-secret"),
        ConnectionProperties::default(),
    )
    .await
    .expect("the producer logs in");
    let as_producer = || {
        BasicProperties::default()
            .with_user_id("it-producer".into())
            .with_content_type("application/json".into())
    };
    let recorder = Recorder::default();
    let running = support::recording_worker(&recorder, Duration::from_secs(5))
        .register(Impersonated)
        .start()
        .await
        .unwrap();
    let transient = Script {
        fail: 1,
        ..Script::ok("transient")
    };
    let permanent = Script {
        permanent: true,
        ..Script::ok("permanent")
    };
    publish_raw(&producer, Impersonated::QUEUE, &transient, as_producer()).await;
    publish_raw(&producer, Impersonated::QUEUE, &permanent, as_producer()).await;
    for i in 0..50 {
        let script = Script::ok(format!("ordinary-{i}"));
        publish_raw(&producer, Impersonated::QUEUE, &script, as_producer()).await;
    }
    let conn = support::connect().await;
    support::eventually(Duration::from_secs(20), "51 handled and one parked", || {
        let (r, conn) = (recorder.clone(), &conn);
        async move {
            r.done_count() == 51 && support::depth(conn, "it.hostile.userid.parking").await == 1
        }
    })
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(recorder.duplicates(), 0, "no innocent message ran twice");
    assert_eq!(recorder.attempts("transient"), vec![1, 2]);
    let parked = support::drain(&conn, "it.hostile.userid.parking").await;
    let p = &parked[0].delivery.properties;
    assert_eq!(p.user_id(), &None);
    assert_eq!(
        header_str(p, "rw-original-user-id").as_deref(),
        Some("it-producer")
    );
    let _ = producer.close(200, "done".into()).await;
    support::reset(Impersonated::QUEUE, &[TIER]).await;
}

/// `CC` routing headers used to be copied onto every republished copy: a
/// message copied to `audit` by its producer landed there again with each
/// delayed retry and with its parking, and one naming the work queue came
/// back at once instead of waiting. Copies go only where the framework
/// sends them; the header is kept in `rw-original-cc`.
#[tokio::test]
async fn cc_headers_route_only_the_producers_publish() {
    support::reset(Copied::QUEUE, &[TIER]).await;
    let audit = "it.hostile.cc.audit";
    support::delete_queues(&[audit]).await;
    let conn = support::connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        audit.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let recorder = Recorder::default();
    let running = support::recording_worker(&recorder, Duration::from_secs(5))
        .register(Copied)
        .start()
        .await
        .unwrap();
    let mut headers = FieldTable::default();
    let cc = [audit, Copied::QUEUE]
        .iter()
        .map(|q| AMQPValue::LongString(LongString::from(q.as_bytes())))
        .collect::<Vec<_>>();
    headers.insert("CC".into(), AMQPValue::FieldArray(FieldArray::from(cc)));
    let doomed = Script {
        fail: u32::MAX,
        ..Script::ok("copied")
    };
    // Published to the audit queue, CC the work queue and the audit queue:
    // one copy each.
    publish_raw(
        &conn,
        audit,
        &doomed,
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers),
    )
    .await;
    support::eventually(Duration::from_secs(20), "parked", || {
        let conn = &conn;
        async move { support::depth(conn, "it.hostile.cc.parking").await == 1 }
    })
    .await;
    running.shutdown().await.unwrap();
    // Two attempts: one, a wait in the tier, two, parked; never sooner.
    assert_eq!(recorder.attempts("copied"), vec![1, 2]);
    assert_eq!(
        support::depth(&conn, audit).await,
        1,
        "only the producer's copy"
    );
    assert_eq!(support::depth(&conn, Copied::QUEUE).await, 0);
    let parked = support::drain(&conn, "it.hostile.cc.parking").await;
    let p = &parked[0].delivery.properties;
    assert!(header_str(p, "CC").is_none());
    assert!(header_str(p, "rw-original-cc").is_some());
    support::delete_queues(&[audit]).await;
    support::reset(Copied::QUEUE, &[TIER]).await;
}

/// A delay tier deleted under a failing message: the copy cannot be
/// published, so the delivery goes back to the broker with a counted
/// reject after a backoff, and after its attempts it ends parked instead of
/// looping (RabbitMQ 4.3 does not count nack requeues).
#[tokio::test]
async fn a_deleted_tier_under_a_failing_message_ends_parked() {
    support::reset(Stranded::QUEUE, &[TIER]).await;
    let recorder = Recorder::default();
    let running = support::recording_worker(&recorder, Duration::from_secs(5))
        .register(Stranded)
        .start()
        .await
        .unwrap();
    let tier = worker_core::topology::tier_queue(Stranded::QUEUE, TIER);
    let conn = support::connect().await;
    conn.create_channel()
        .await
        .unwrap()
        .queue_delete(tier.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let doomed = Script {
        fail: u32::MAX,
        ..Script::ok("stranded")
    };
    worker_core::Publisher::from_env()
        .enqueue::<Stranded>(&doomed)
        .await
        .unwrap();
    support::eventually(Duration::from_secs(30), "parked", || {
        let conn = &conn;
        async move { support::depth(conn, "it.hostile.tierless.parking").await == 1 }
    })
    .await;
    running.shutdown().await.unwrap();
    // Bounded by the attempt budget (3), plus the one run a delivery gets
    // when it first comes back returned: the worker cannot tell a charged
    // return from one whose handler never started, and gives it the benefit
    // of the doubt (it runs alone in quarantine, charged from then on).
    let runs = recorder.attempts("stranded");
    assert_eq!(runs, vec![1, 1, 2, 3], "bounded: {runs:?}");
    support::reset(Stranded::QUEUE, &[TIER]).await;
}

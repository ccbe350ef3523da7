//! Bad input against a running worker: each bad message ends parked with a
//! clear reason (or, for malformed headers, is handled with the header
//! ignored) while the worker keeps serving.

mod support;

use std::time::Duration;

use support::{header_str, Recorder, Script};
use worker_core::headers::X_DEATH;
use worker_core::{
    EnqueueOptions, HeaderValue, Headers, Outgoing, Properties, Publisher, RetryPolicy, Task,
    TaskOptions, Worker,
};

scripted_task!(
    Strict,
    "it.bad.strict",
    TaskOptions {
        retry: RetryPolicy::none(),
        max_body_bytes: 1024,
        ..TaskOptions::default()
    }
);

const PARKING: &str = "it.bad.strict.parking";

scripted_task!(
    Deep,
    "it.bad.deep",
    TaskOptions {
        retry: RetryPolicy::none(),
        ..TaskOptions::default()
    }
);

fn raw(body: &[u8], props: Properties) -> Outgoing {
    Outgoing::to_queue(Strict::QUEUE, props, body.to_vec())
}

fn with_id(id: &str) -> Properties {
    Properties::default().with_message_id(id).unwrap()
}

#[tokio::test]
async fn bad_inputs_are_parked_with_reasons_and_the_worker_keeps_serving() {
    support::reset(Strict::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = Worker::from_env()
        .state(recorder.clone())
        .register(Strict)
        .start()
        .await
        .unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(
        &mut readiness,
        true,
        "the worker consumes before any bad input arrives",
    )
    .await;
    let publisher = Publisher::from_env();
    publisher
        .enqueue::<Strict>(&Script::ok("good-before"))
        .await
        .unwrap();
    let json = || with_id("x").with_content_type("application/json");

    let bad: Vec<(&str, Outgoing, &str, &str)> = vec![
        (
            "invalid-json",
            raw(
                b"{\"id\": ",
                json().with_message_id("invalid-json").unwrap(),
            ),
            "undecodable",
            "cannot decode",
        ),
        (
            "wrong-shape",
            raw(
                b"{\"name\": 5}",
                json().with_message_id("wrong-shape").unwrap(),
            ),
            "undecodable",
            "missing field `id`",
        ),
        (
            "empty",
            raw(b"", json().with_message_id("empty").unwrap()),
            "undecodable",
            "empty body",
        ),
        (
            "too-big",
            raw(
                &vec![b' '; 4096],
                json().with_message_id("too-big").unwrap(),
            ),
            "too-large",
            "exceeds the task's limit of 1024 bytes",
        ),
        (
            "unknown-type",
            raw(
                b"<id>x</id>",
                with_id("unknown-type").with_content_type("application/xml"),
            ),
            "undecodable",
            "unsupported content type",
        ),
        (
            "no-type-not-json",
            raw(b"id=x", with_id("no-type-not-json")),
            "undecodable",
            "cannot decode",
        ),
        (
            "unknown-task",
            raw(
                br#"{"id":"u"}"#,
                json()
                    .with_message_id("unknown-task")
                    .unwrap()
                    .with_kind("billing.refund")
                    .unwrap(),
            ),
            "unknown-task",
            "no task named \"billing.refund\"",
        ),
    ];
    for (_, message, _, _) in &bad {
        publisher.publish(message.clone()).await.unwrap();
    }
    // A routing key longer than AMQP allows is refused before sending.
    let long_key = Outgoing::to_queue(&"k".repeat(300), with_id("long-key"), b"{}".to_vec());
    let err = publisher.publish(long_key).await.unwrap_err();
    assert!(err.to_string().contains("at most 255"), "{err}");

    // Malformed headers are ignored (with a warning): these are handled.
    let mut nested = Headers::new();
    for depth in 0..40 {
        let mut outer = Headers::new();
        outer.insert("level", depth).insert("inner", nested);
        nested = outer;
    }
    let odd_headers: Vec<(&str, Headers)> = vec![
        ("x-death-string", {
            let mut h = Headers::new();
            h.insert(X_DEATH, "not a list");
            h
        }),
        ("counts-as-strings", {
            let mut h = Headers::new();
            h.insert("rw-attempts", "three")
                .insert("x-delivery-count", "many");
            h
        }),
        ("negative-counts", {
            let mut h = Headers::new();
            h.insert("rw-attempts", -4i32)
                .insert("x-delivery-count", -1i64);
            h
        }),
        ("deeply-nested", {
            let mut h = Headers::new();
            h.insert(X_DEATH, vec![HeaderValue::Table(nested.clone())])
                .insert("deep", nested);
            h
        }),
    ];
    for (id, headers) in &odd_headers {
        Strict::enqueue_script(&publisher, id, headers.clone()).await;
    }
    publisher
        .enqueue::<Strict>(&Script::ok("good"))
        .await
        .unwrap();

    let conn = support::connect().await;
    let expected_parked = bad.len() as u32;
    support::eventually(Duration::from_secs(15), "bad messages parked and good ones handled", || {
        let r = recorder.clone();
        let conn = &conn;
        async move { r.done_count() == 6 && support::depth(conn, PARKING).await == expected_parked }
    })
    .await;
    assert!(*readiness.borrow(), "the worker kept consuming throughout");
    running.shutdown().await.unwrap();

    let parked = support::drain(&conn, PARKING).await;
    for (id, _, reason, message) in &bad {
        let p = parked
            .iter()
            .find(|m| {
                m.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str())
                    == Some(*id)
            })
            .unwrap_or_else(|| panic!("{id} was not parked"));
        let props = &p.delivery.properties;
        assert_eq!(
            header_str(props, "rw-park-reason").as_deref(),
            Some(*reason),
            "{id}"
        );
        let text = header_str(props, "rw-error-message").unwrap();
        assert!(text.contains(message), "{id}: {text}");
    }
    for (id, _) in &odd_headers {
        assert_eq!(
            recorder.attempts(id),
            vec![1],
            "{id} handled once, as attempt 1"
        );
    }
    assert_eq!(recorder.attempts("good-before"), vec![1]);
    assert_eq!(recorder.attempts("good"), vec![1]);
    assert_eq!(
        support::depth(&conn, Strict::QUEUE).await,
        0,
        "nothing left behind"
    );
}

/// A header nested 15,000 tables deep fits RabbitMQ's default frame_max and
/// the broker takes it; parsing it used to overflow lapin's I/O thread and
/// abort the process (this test binary included).
#[tokio::test]
async fn headers_nested_thousands_deep_are_parked_and_the_worker_survives() {
    support::reset(Deep::QUEUE, &[]).await;
    let recorder = Recorder::default();
    let running = Worker::from_env()
        .state(recorder.clone())
        .register(Deep)
        .start()
        .await
        .unwrap();
    let mut readiness = running.readiness();
    support::readiness_becomes(&mut readiness, true, "the worker consumes").await;

    let body = serde_json::to_vec(&Script::ok("deep")).unwrap();
    let headers = worker_testkit::raw::nested_table(15_000);
    let deep = worker_testkit::raw::RawMessage {
        queue: Deep::QUEUE,
        kind: Deep::NAME,
        message_id: "deep",
        headers: &headers,
        body: &body,
    };
    worker_testkit::raw::publish_raw(&worker_core::connection::default_url(), &deep)
        .await
        .expect("the broker takes the deep header");
    Publisher::from_env()
        .enqueue::<Deep>(&Script::ok("good-after"))
        .await
        .unwrap();

    let conn = support::connect().await;
    let parking = format!("{}.parking", Deep::QUEUE);
    support::eventually(
        Duration::from_secs(20),
        "the deep message parked and the next one handled",
        || {
            let (r, conn, parking) = (recorder.clone(), &conn, &parking);
            async move { r.done_count() == 1 && support::depth(conn, parking).await == 1 }
        },
    )
    .await;
    assert!(*readiness.borrow(), "the worker kept consuming");
    running.shutdown().await.unwrap();

    let parked = support::drain(&conn, &parking).await;
    assert_eq!(parked.len(), 1);
    let props = &parked[0].delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|s| s.as_str()),
        Some("deep")
    );
    assert_eq!(
        header_str(props, "rw-park-reason").as_deref(),
        Some("undecodable")
    );
    let text = header_str(props, "rw-error-message").unwrap();
    assert!(text.contains("undecodable headers"), "{text}");
    assert!(
        recorder.attempts("deep").is_empty(),
        "the handler never ran"
    );
    assert_eq!(recorder.attempts("good-after"), vec![1]);
    assert_eq!(support::depth(&conn, Deep::QUEUE).await, 0);
}

impl Strict {
    async fn enqueue_script(publisher: &Publisher, id: &str, headers: Headers) {
        publisher
            .enqueue_with::<Strict>(
                &Script::ok(id),
                EnqueueOptions {
                    headers,
                    ..EnqueueOptions::default()
                },
            )
            .await
            .unwrap();
    }
}

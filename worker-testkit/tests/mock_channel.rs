//! The mock channel and the delivery builder on their own.

use std::panic::{catch_unwind, AssertUnwindSafe};

use worker_core::transport::Transport;
use worker_core::{Attempts, DeathReason, Error, Outgoing, Properties};
use worker_testkit::mock::{self, Event, MockHandle};
use worker_testkit::DeliveryBuilder;

fn to(queue: &str, body: &'static [u8]) -> Outgoing {
    Outgoing::to_queue(queue, Properties::default(), body)
}

/// The panic message of a failed assertion.
fn failure_of(f: impl FnOnce()) -> String {
    let panic = catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion should fail");
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| (*s).to_owned())
            .unwrap_or_default(),
    }
}

#[tokio::test]
async fn records_every_operation_in_order() {
    let (transport, handle) = mock::pair();
    transport.publish(to("q.parking", b"{}")).await.unwrap();
    transport.ack(1, false).await.unwrap();
    transport.nack(2, true, true).await.unwrap();
    transport.reject(3, false).await.unwrap();

    let events = handle.events();
    assert_eq!(events.len(), 4);
    assert!(
        matches!(&events[0], Event::Published(p) if p.routing_key == "q.parking" && p.mandatory)
    );
    assert_eq!(
        events[1..],
        [
            Event::Ack {
                tag: 1,
                multiple: false
            },
            Event::Nack {
                tag: 2,
                multiple: true,
                requeue: true
            },
            Event::Reject {
                tag: 3,
                requeue: false
            },
        ]
    );
    assert_eq!(handle.published().len(), 1);
}

#[tokio::test]
async fn assertions_take_events_in_any_order_then_nothing_else_holds() {
    let (transport, handle) = mock::pair();
    transport.ack(1, false).await.unwrap();
    transport.publish(to("a", b"1")).await.unwrap();
    transport.publish(to("a", b"2")).await.unwrap();

    let first = handle.assert_published_to("a");
    let second = handle.assert_published_to("a");
    assert_eq!((&*first.body, &*second.body), (&b"1"[..], &b"2"[..]));
    handle.assert_acked(1);
    handle.assert_nothing_else();
}

#[tokio::test]
async fn a_failed_assertion_lists_what_did_happen() {
    let (transport, handle) = mock::pair();
    let mut props = Properties::default();
    props
        .headers_mut()
        .insert("rw-park-reason", "permanent")
        .insert("rw-attempts", 1u32);
    transport
        .publish(Outgoing::to_queue("q.parking", props, &b"{\"id\":1}"[..]))
        .await
        .unwrap();
    transport.reject(7, false).await.unwrap();
    handle.assert_rejected(7);

    let message = failure_of(|| handle.assert_acked(7));

    assert!(
        message.starts_with(
            "expected an ack of delivery 7, but the mock channel recorded 2 event(s):"
        ),
        "{message}"
    );
    assert!(
        message.contains(r#"[1] publish to "q.parking" rw-park-reason="permanent" rw-attempts=1 body="{\"id\":1}" (8 bytes)"#),
        "{message}"
    );
    assert!(
        message.contains("[2] reject 7 (requeue=false)  (already asserted)"),
        "{message}"
    );
}

#[tokio::test]
async fn an_empty_record_says_so() {
    let (_transport, handle) = mock::pair();
    let message = failure_of(|| {
        handle.assert_nacked(1, true);
    });
    assert_eq!(
        message,
        "expected a nack of delivery 1 with requeue=true, but the mock channel recorded nothing"
    );
}

#[tokio::test]
async fn nothing_else_lists_the_events_left() {
    let (transport, handle) = mock::pair();
    transport.ack(1, false).await.unwrap();
    transport.nack(2, false, true).await.unwrap();
    handle.assert_acked(1);

    let message = failure_of(|| handle.assert_nothing_else());

    assert_eq!(
        message,
        "expected nothing else on the mock channel, but 1 event(s) were not asserted:\n  [2] nack 2 (requeue=true)"
    );
}

#[tokio::test]
async fn flags_must_match() {
    let (transport, handle) = mock::pair();
    transport.nack(1, false, false).await.unwrap();
    transport.reject(2, true).await.unwrap();
    failure_of(|| handle.assert_nacked(1, true));
    failure_of(|| handle.assert_rejected(2));
    handle.assert_nacked(1, false);
    handle.assert_rejected_requeue(2);
    handle.assert_nothing_else();
}

#[tokio::test]
async fn scripted_publish_failures() {
    let (transport, handle) = mock::pair();
    handle.fail_next_publishes(2);
    assert!(matches!(
        transport.publish(to("a", b"1")).await,
        Err(Error::Nacked { routing_key }) if routing_key == "a"
    ));
    assert!(transport.publish(to("b", b"2")).await.is_err());
    assert!(transport.publish(to("c", b"3")).await.is_ok());

    handle.fail_publishes_to("d");
    assert!(transport.publish(to("d", b"4")).await.is_err());
    assert!(transport.publish(to("e", b"5")).await.is_ok());
    assert!(transport.publish(to("d", b"6")).await.is_err());

    handle.make_unroutable("d");
    assert!(matches!(
        transport.publish(to("d", b"7")).await,
        Err(Error::Unroutable { .. })
    ));

    handle.heal();
    assert!(transport.publish(to("d", b"8")).await.is_ok());

    let confirmed: Vec<String> = handle
        .published()
        .iter()
        .map(|p| p.routing_key.clone())
        .collect();
    assert_eq!(confirmed, ["c", "e", "d"]);
    for queue in ["a", "b", "d", "d", "d"] {
        handle.assert_publish_failed_to(queue);
    }
    for queue in ["c", "e", "d"] {
        handle.assert_published_to(queue);
    }
    handle.assert_nothing_else();
}

#[tokio::test]
async fn failed_publishes_show_their_error_in_the_record() {
    let (transport, handle) = mock::pair();
    handle.fail_publishes_to("q.retry.1s");
    let _ = transport.publish(to("q.retry.1s", b"{}")).await;
    let message = failure_of(|| {
        handle.assert_published_to("q.retry.1s");
    });
    assert!(
        message.contains(
            r#"[1] FAILED publish to "q.retry.1s" body="{}" (2 bytes): broker refused message"#
        ),
        "{message}"
    );
}

#[tokio::test]
async fn clones_share_one_record() {
    let (transport, handle) = mock::pair();
    let other: MockHandle = handle.clone();
    transport.clone().ack(1, false).await.unwrap();
    other.assert_acked(1);
    handle.assert_nothing_else();
    handle.clear();
    assert!(other.events().is_empty());
}

#[test]
fn builder_defaults_are_plain() {
    let d = DeliveryBuilder::new().build();
    assert_eq!(d.tag, 1);
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("", ""));
    assert!(!d.redelivered);
    assert!(d.body.is_empty());
    assert_eq!(d.properties, Properties::default());
}

#[test]
fn builder_sets_every_field() {
    let d = DeliveryBuilder::json(&serde_json::json!({"a": 1}))
        .tag(9)
        .exchange("ex")
        .routing_key("rk")
        .redelivered(true)
        .message_id("m")
        .correlation_id("c")
        .task("t")
        .expiration("1000")
        .timestamp(5)
        .header("h", "v")
        .delivery_count(2)
        .attempts(3)
        .redeliveries(1)
        .build();
    assert_eq!(d.tag, 9);
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("ex", "rk"));
    assert!(d.redelivered);
    let p = &d.properties;
    assert_eq!(p.content_type(), Some("application/json"));
    assert_eq!(p.message_id(), Some("m"));
    assert_eq!(p.correlation_id(), Some("c"));
    assert_eq!(p.kind(), Some("t"));
    assert_eq!(p.expiration(), Some("1000"));
    assert_eq!(p.timestamp(), Some(5));
    let h = p.headers();
    assert_eq!(h.get_str("h").as_deref(), Some("v"));
    assert_eq!(h.delivery_count(), 2);
    let a = Attempts::read(h, "rk");
    assert_eq!((a.current(), a.redeliveries), (6, 1));
}

#[test]
#[should_panic(expected = "DeliveryBuilder: bad message id")]
fn builder_rejects_overlong_short_strings() {
    let _ = DeliveryBuilder::new().message_id(&"m".repeat(300)).build();
}

#[test]
fn returned_from_tier_adds_or_bumps_the_expired_entry() {
    let copy = worker_testkit::mock::Published::from(to("q.retry.1s", b"{}"));
    let once = DeliveryBuilder::returned_from_tier(&copy, "q").build();
    let deaths = once.properties.headers().x_death();
    assert_eq!(deaths.len(), 1);
    assert_eq!(
        (deaths[0].queue.as_str(), &deaths[0].reason, deaths[0].count),
        ("q.retry.1s", &DeathReason::Expired, 1)
    );
    assert_eq!(
        (once.exchange.as_str(), once.routing_key.as_str()),
        ("", "q")
    );

    // A copy that already carries the entry (RabbitMQ 3.x keeps x-death
    // on republished copies) gets its count raised and moved to the front.
    let mut props = Properties::default();
    props.headers_mut().insert(
        "x-death",
        worker_core::XDeath::to_header_value(
            &DeliveryBuilder::new()
                .dead_lettered("q", DeathReason::Rejected, 1)
                .dead_lettered("q.retry.1s", DeathReason::Expired, 4)
                .build()
                .properties
                .headers()
                .x_death(),
        ),
    );
    let copy =
        worker_testkit::mock::Published::from(Outgoing::to_queue("q.retry.1s", props, &b"{}"[..]));
    let twice = DeliveryBuilder::returned_from_tier(&copy, "q").build();
    let deaths = twice.properties.headers().x_death();
    assert_eq!(deaths.len(), 2);
    assert_eq!(
        (deaths[0].queue.as_str(), deaths[0].count),
        ("q.retry.1s", 5)
    );
    assert_eq!(deaths[1].reason, DeathReason::Rejected);
}

#[tokio::test]
async fn published_headers_are_matched_by_value_and_a_mismatch_names_what_was_expected() {
    let (transport, handle) = mock::pair();
    let mut props = Properties::default();
    props
        .headers_mut()
        .insert("rw-park-reason", "exhausted")
        .insert("rw-attempts", 5u8);
    transport
        .publish(Outgoing::to_queue("q.parking", props, &b"{}"[..]))
        .await
        .unwrap();

    let wrong = catch_unwind(AssertUnwindSafe(|| {
        handle.assert_published_with("q.parking", &[("rw-attempts", 4i64.into())]);
    }))
    .expect_err("4 attempts were not published");
    let message = wrong
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("rw-attempts=Int(4)"), "{message}");
    assert!(message.contains("rw-attempts=5"), "{message}");

    // A u8 header matches an i64 expectation of the same value.
    handle.assert_published_with(
        "q.parking",
        &[
            ("rw-park-reason", "exhausted".into()),
            ("rw-attempts", 5i64.into()),
        ],
    );
    handle.assert_nothing_else();
}

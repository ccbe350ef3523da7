//! The user's handlers, unit-tested with the testkit: no broker, paused clock.

use user_worker::{Add, Greet, Greeting, Sum};
use worker_testkit::{DeliveryBuilder, Harness};

fn greeting(name: &str, fail_first: bool) -> Greeting {
    Greeting {
        name: name.to_owned(),
        fail_first,
    }
}

#[tokio::test(start_paused = true)]
async fn a_first_failure_is_retried_in_process() {
    let harness = Harness::new(Greet);
    let report = harness.run_payload(&greeting("ada", true)).await;
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.retried_in_process(), 1, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_greeting_without_a_name_is_parked_on_the_mock_channel() {
    let harness = Harness::new(Greet);
    let delivery = DeliveryBuilder::for_task::<Greet>(&greeting("", false))
        .tag(7)
        .message_id("nameless")
        .build();
    let report = harness.run(delivery).await;
    let parked = report.parked().expect("parked");
    assert_eq!(parked.reason, "permanent");
    assert_eq!(parked.error_message, "no name to greet");
    harness.mock().assert_published_to("user.greet.parking");
    harness.mock().assert_acked(7);
    harness.mock().assert_nothing_else();
}

#[tokio::test(start_paused = true)]
async fn add_replies_with_the_sum_or_fails_permanently_on_overflow() {
    let harness = Harness::new(Add);
    let report = harness.call(&Sum { a: 2, b: 3 }).await;
    assert_eq!(report.reply::<i64>().expect("a reply").ok(), Some(5));
    let report = harness
        .run_payload(&Sum {
            a: i64::MAX,
            b: 1,
        })
        .await;
    assert_eq!(report.parked().expect("parked").reason, "permanent");
}

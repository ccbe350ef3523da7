//! A user without permissions gets a clear, final error instead of a retry storm.

mod support;

use std::time::Duration;

use worker_core::{ConnectionConfig, Connector, Error, Publisher, Worker};

scripted_task!(
    Guarded,
    "it.access.guarded",
    worker_core::TaskOptions::default()
);

fn rabbitmqctl(args: &[&str]) {
    if let Err(e) = worker_testkit::node::rabbitmqctl(args) {
        assert!(e.contains("already exists"), "{e}");
    }
}

#[tokio::test]
async fn a_user_without_vhost_permissions_gets_a_final_error_that_says_what_to_do() {
    rabbitmqctl(&["add_user", "it-noperm", "noperm-secret"]);
    rabbitmqctl(&["clear_permissions", "-p", "/", "it-noperm"]);
    let connector = Connector::new(ConnectionConfig::new(support::url_as(
        "it-noperm",
        "noperm-secret",
    )));
    let started = tokio::time::Instant::now();
    let err = Worker::new(connector)
        .register(Guarded)
        .start()
        .await
        .expect_err("no access to the vhost");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no retry storm"
    );
    assert!(matches!(err, Error::AccessRefused { .. }), "{err:?}");
    assert!(err.is_fatal());
    let text = err.to_string();
    assert!(text.contains("set_permissions"), "{text}");
    assert!(
        !text.contains("noperm-secret"),
        "the password never shows: {text}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_once_and_the_password_never_shows() {
    rabbitmqctl(&["add_user", "it-wrongpw", "right-secret"]);
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(support::url_as(
        "it-wrongpw",
        "wrong-secret",
    ))));
    let err = publisher
        .enqueue::<Guarded>(&support::Script::ok("x"))
        .await
        .expect_err("login refused");
    assert!(matches!(err, Error::AccessRefused { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("check the user name and password"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}

/// Reserved characters in a password work when percent-encoded.
#[tokio::test]
async fn a_password_with_reserved_characters_works_percent_encoded() {
    rabbitmqctl(&["add_user", "it-reserved", "Ab3/xY,zq9@:?#"]);
    rabbitmqctl(&["change_password", "it-reserved", "Ab3/xY,zq9@:?#"]);
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        "/",
        "it-reserved",
        ".*",
        ".*",
        ".*",
    ]);
    let connector = Connector::new(ConnectionConfig::new(support::url_as(
        "it-reserved",
        "Ab3%2FxY%2Czq9%40%3A%3F%23",
    )));
    connector
        .connection()
        .await
        .expect("the encoded password logs in");
    connector.close().await;
}

//! Parsing with every documented variable set: help still shows when no
//! subcommand is typed, and an app that ignores the environment reads none.
//!
//! The only test in this binary, because it sets process environment variables.

use std::time::Duration;

use clap::error::ErrorKind;
use worker_operator::cli::{App, Command};

const VARIABLES: [(&str, &str); 14] = [
    ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
    ("AMQP_VHOST", "/"),
    ("AMQP_USER", "guest"),
    ("AMQP_PASSWORD", "guest"),
    ("AMQP_PASSWORD_FILE", "/nonexistent/password"),
    ("AMQP_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ("AMQP_TLS_CERT_FILE", "/nonexistent/cert.pem"),
    ("AMQP_TLS_KEY_FILE", "/nonexistent/key.pem"),
    ("AMQP_REQUIRE_TLS", "true"),
    ("WORKER_PREFETCH", "7"),
    ("WORKER_CONCURRENCY", "3"),
    ("WORKER_GRACE_PERIOD", "5s"),
    ("WORKER_HTTP_ADDR", "127.0.0.1:9999"),
    ("RUST_LOG", "debug"),
];

#[test]
fn the_environment_changes_values_but_never_the_shape_of_a_parse() {
    for (name, value) in VARIABLES {
        std::env::set_var(name, value);
    }
    for args in [&["w"][..], &["w", "parked"], &["w", "topology"]] {
        let e = App::new("w").try_parse_from(args).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
            "{args:?}: {e}"
        );
    }
    // Something typed without a subcommand is still a usage error.
    let e = App::new("w")
        .try_parse_from(["w", "--vhost", "v"])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingSubcommand);

    let read = App::new("w").try_parse_from(["w", "run"]).unwrap();
    assert_eq!(read.global.urls, [VARIABLES[0].1]);
    assert_eq!(
        read.global.password.as_ref().map(|p| p.expose()),
        Some("guest")
    );
    let Command::Run(run) = read.command else {
        panic!("not run")
    };
    assert_eq!(run.grace_period, Duration::from_secs(5));

    let ignored = App::new("w")
        .ignore_env()
        .try_parse_from(["w", "run"])
        .unwrap();
    assert!(ignored.global.urls.is_empty() && ignored.global.vhost.is_none());
    assert!(ignored.global.password.is_none() && ignored.global.password_file.is_none());
    assert!(ignored.global.tls_ca_file.is_none() && !ignored.global.require_tls);
    let Command::Run(run) = ignored.command else {
        panic!("not run")
    };
    assert_eq!(run.grace_period, Duration::from_secs(30));
    assert_eq!(
        (run.http, run.prefetch, run.concurrency),
        (None, None, None)
    );
}

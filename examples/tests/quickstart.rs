//! The README's first command on a machine with nothing installed: the
//! quickstart runs its whole story on the embedded broker when `AMQP_URL`
//! is unset and nothing answers at the default address, and a set
//! `AMQP_URL` that does not answer stays an error.
//!
//! "Nothing answers" is made real with a network namespace of its own
//! (`unshare -n`, as root): its loopback has no RabbitMQ on 5672 whatever
//! the machine runs.

use std::process::{Command, Output};

const QUICKSTART: &str = env!("CARGO_BIN_EXE_quickstart");

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn with_nothing_installed_the_quickstart_runs_on_the_embedded_broker() {
    let out = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0""#,
            QUICKSTART,
        ])
        .env_remove("AMQP_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("unshare runs");
    let (stdout, stderr) = text(&out);
    if !out.status.success() && stderr.contains("unshare failed") {
        worker_testkit::skip::unless_ci(format!(
            "no network namespace here for the quickstart's test (run as root): {stderr}"
        ));
        return;
    }
    assert!(
        out.status.success(),
        "exit {}\n{stdout}\n{stderr}",
        out.status
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("embedded in-memory broker")
            && first.contains("not durable")
            && first.contains("set AMQP_URL or start RabbitMQ"),
        "the first line says where it runs and how to change it: {first}"
    );
    assert!(
        !first.contains("guest:guest"),
        "no password in the output: {first}"
    );
    for step in [
        "enqueued demo.send_email to ada@example.com",
        "3 emails sent (one after two provider failures retried in process, one after three and a second in the 1 s delay tier), 1 parked",
        "1 message(s) parked in demo.emails.parking:",
        "reason=permanent",
    ] {
        assert!(stdout.contains(step), "{step:?} in:\n{stdout}");
    }
    assert!(
        !stderr.contains("ERROR"),
        "a first run logs no errors:\n{stderr}"
    );
}

#[test]
fn a_set_amqp_url_that_does_not_answer_is_an_error_not_a_fallback() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(QUICKSTART)
        .env(
            "AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        )
        .env_remove("RUST_LOG")
        .output()
        .expect("the quickstart runs");
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot connect to RabbitMQ") && stderr.contains("AMQP_URL"),
        "{stderr}"
    );
    assert!(!stdout.contains("embedded"), "no silent fallback: {stdout}");
}

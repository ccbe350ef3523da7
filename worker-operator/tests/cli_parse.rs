//! Command-line parsing: every subcommand, its options and its errors (no broker).

use std::net::SocketAddr;
use std::time::Duration;

use clap::error::ErrorKind;
use worker_core::{Task, TaskContext, TaskError};
use worker_operator::cli::{exit, log_filter, App, Cli, Command, ParkedCommand, TopologyCommand};

#[derive(serde::Serialize, serde::Deserialize)]
struct Email {
    to: String,
}

struct SendEmail;

impl Task for SendEmail {
    type Payload = Email;
    const NAME: &'static str = "send_email";
    const QUEUE: &'static str = "cli.parse.emails";
    async fn run(&self, _: TaskContext, _: Email) -> Result<(), TaskError> {
        Ok(())
    }
}

fn app() -> App {
    App::new("demo-worker").ignore_env().register(SendEmail)
}

fn parse(args: &[&str]) -> Cli {
    let mut full = vec!["demo-worker"];
    full.extend_from_slice(args);
    app()
        .try_parse_from(full)
        .unwrap_or_else(|e| panic!("{args:?} should parse: {e}"))
}

fn parse_err(args: &[&str]) -> clap::Error {
    let mut full = vec!["demo-worker"];
    full.extend_from_slice(args);
    match app().try_parse_from(full) {
        Ok(cli) => panic!("{args:?} should not parse, got {cli:?}"),
        Err(e) => e,
    }
}

#[test]
fn run_with_every_option() {
    let cli = parse(&[
        "run",
        "--task",
        "send_email",
        "--task",
        "other",
        "--queue",
        "q1",
        "--concurrency",
        "8",
        "--prefetch",
        "200",
        "--grace-period",
        "45s",
        "--http",
        "127.0.0.1:9464",
        "--no-declare",
    ]);
    let Command::Run(run) = cli.command else {
        panic!("not run: {cli:?}")
    };
    assert_eq!(run.tasks, ["send_email", "other"]);
    assert_eq!(run.queues, ["q1"]);
    assert_eq!(run.concurrency, Some(8));
    assert_eq!(run.prefetch, Some(200));
    assert_eq!(run.grace_period, Duration::from_secs(45));
    assert_eq!(run.http, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(run.no_declare);
}

#[test]
fn run_defaults_and_short_addresses() {
    let cli = parse(&["run"]);
    let Command::Run(run) = cli.command else {
        panic!()
    };
    assert_eq!(run.grace_period, Duration::from_secs(30));
    assert!(run.tasks.is_empty() && run.queues.is_empty());
    assert_eq!(
        (run.http, run.prefetch, run.concurrency),
        (None, None, None)
    );
    let cli = parse(&["run", "--http", ":9464"]);
    let Command::Run(run) = cli.command else {
        panic!()
    };
    assert_eq!(
        run.http,
        Some("0.0.0.0:9464".parse::<SocketAddr>().unwrap())
    );
    let cli = parse(&["run", "--http", "[::1]:80", "--grace-period", "250ms"]);
    let Command::Run(run) = cli.command else {
        panic!()
    };
    assert_eq!(run.http, Some("[::1]:80".parse().unwrap()));
    assert_eq!(run.grace_period, Duration::from_millis(250));
}

#[test]
fn run_rejects_bad_values_with_hints() {
    let e = parse_err(&["run", "--grace-period", "30 seconds"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    assert!(e.to_string().contains("250ms, 30s, 5m"), "{e}");
    let e = parse_err(&["run", "--http", "9464"]);
    assert!(e.to_string().contains("0.0.0.0:9464"), "{e}");
    let e = parse_err(&["run", "--prefetch", "0"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    let e = parse_err(&["run", "--prefetch", "70000"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    let e = parse_err(&["run", "--concurrency", "0"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    let e = parse_err(&["run", "--concurrency", "many"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    let e = parse_err(&["run", "--bogus"]);
    assert_eq!(e.kind(), ErrorKind::UnknownArgument);
}

#[test]
fn enqueue_takes_task_json_and_ids() {
    let cli = parse(&[
        "enqueue",
        "send_email",
        r#"{"to":"a@b"}"#,
        "--id",
        "m-1",
        "--correlation-id",
        "c-1",
        "--priority",
        "9",
    ]);
    let Command::Enqueue(e) = cli.command else {
        panic!()
    };
    assert_eq!(e.task, "send_email");
    assert_eq!(e.json.as_deref(), Some(r#"{"to":"a@b"}"#));
    assert_eq!(e.from, None);
    assert_eq!(e.id.as_deref(), Some("m-1"));
    assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(e.priority, Some(9));
    let e = parse_err(&["enqueue", "send_email", "{}", "--priority", "256"]);
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    let cli = parse(&["enqueue", "send_email", "-"]);
    assert!(matches!(cli.command, Command::Enqueue(e) if e.json.as_deref() == Some("-")));
    let e = parse_err(&["enqueue", "send_email"]);
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    assert!(e.to_string().contains("<JSON>"), "{e}");
    let e = parse_err(&["enqueue"]);
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn parked_subcommands() {
    let cli = parse(&["parked", "list", "send_email", "--json", "--limit", "5"]);
    let Command::Parked(ParkedCommand::List(l)) = cli.command else {
        panic!()
    };
    assert_eq!((l.task.as_str(), l.json, l.limit), ("send_email", true, 5));
    let cli = parse(&["parked", "list", "send_email"]);
    assert!(
        matches!(cli.command, Command::Parked(ParkedCommand::List(l)) if l.limit == 50 && !l.json)
    );

    let cli = parse(&["parked", "show", "id-1"]);
    let Command::Parked(ParkedCommand::Show(s)) = cli.command else {
        panic!()
    };
    assert_eq!(s.task_and_id(), (None, "id-1"));
    let cli = parse(&["parked", "show", "send_email", "id-1", "--json"]);
    let Command::Parked(ParkedCommand::Show(s)) = cli.command else {
        panic!()
    };
    assert_eq!(s.task_and_id(), (Some("send_email"), "id-1"));
    assert!(s.json);
    let e = parse_err(&["parked", "show"]);
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    let e = parse_err(&["parked", "show", "a", "b", "c"]);
    assert_eq!(e.kind(), ErrorKind::TooManyValues);

    let cli = parse(&["parked", "replay", "send_email", "--all"]);
    assert!(
        matches!(cli.command, Command::Parked(ParkedCommand::Replay(r)) if r.all && r.ids.is_empty())
    );
    let cli = parse(&["parked", "replay", "send_email", "--id", "a", "--id", "b"]);
    assert!(
        matches!(cli.command, Command::Parked(ParkedCommand::Replay(r)) if !r.all && r.ids == ["a", "b"])
    );
    let e = parse_err(&["parked", "replay", "send_email"]);
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    assert!(e.to_string().contains("--all"), "{e}");
    let e = parse_err(&["parked", "replay", "send_email", "--all", "--id", "a"]);
    assert_eq!(e.kind(), ErrorKind::ArgumentConflict);

    let cli = parse(&["parked", "purge", "send_email", "--yes"]);
    assert!(matches!(cli.command, Command::Parked(ParkedCommand::Purge(p)) if p.yes));
    let cli = parse(&["parked", "purge", "send_email"]);
    assert!(matches!(cli.command, Command::Parked(ParkedCommand::Purge(p)) if !p.yes));
    let e = parse_err(&["parked"]);
    assert_eq!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let e = parse_err(&["parked", "drop", "x"]);
    assert_eq!(e.kind(), ErrorKind::InvalidSubcommand);

    // The dashboard's filter and paging, on the command line.
    let cli = parse(&[
        "parked",
        "list",
        "send_email",
        "--reason",
        "permanent",
        "--grep",
        "declined",
        "--since",
        "2h",
        "--until",
        "2026-11-27T10:00:00Z",
        "--offset",
        "50",
        "--limit",
        "25",
    ]);
    let Command::Parked(ParkedCommand::List(l)) = cli.command else {
        panic!()
    };
    assert_eq!((l.offset, l.limit), (50, 25));
    let filter = l.filter.filter().unwrap();
    assert_eq!(filter.reason.as_deref(), Some("permanent"));
    assert_eq!(filter.text.as_deref(), Some("declined"));
    assert_eq!(filter.until, Some(1_795_773_600));
    assert!(filter.since.is_some());
    let cli = parse(&["parked", "list", "send_email", "--since", "soon"]);
    let Command::Parked(ParkedCommand::List(l)) = cli.command else {
        panic!()
    };
    assert!(l.filter.filter().unwrap_err().contains("RFC 3339"));
    let cli = parse(&["parked", "delete", "send_email", "--id", "a", "--yes"]);
    assert!(
        matches!(cli.command, Command::Parked(ParkedCommand::Delete(d)) if d.ids == ["a"] && d.yes)
    );
}

#[test]
fn dashboard_command() {
    let cli = parse(&["dashboard", "--http", "127.0.0.1:9465", "--read-only"]);
    let Command::Dashboard(d) = cli.command else {
        panic!()
    };
    assert_eq!(d.http, "127.0.0.1:9465".parse::<SocketAddr>().unwrap());
    assert!(d.dashboard.read_only);
    let cli = parse(&[
        "run",
        "--http",
        ":9464",
        "--dashboard-token-file",
        "/run/secrets/t",
    ]);
    let Command::Run(r) = cli.command else {
        panic!()
    };
    assert_eq!(
        r.dashboard.dashboard_token_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/t"))
    );
    assert!(!r.dashboard.read_only);
    let e = parse_err(&["dashboard"]);
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn topology_status_and_tasks() {
    let cli = parse(&["topology", "declare"]);
    assert!(matches!(
        cli.command,
        Command::Topology(TopologyCommand::Declare)
    ));
    let cli = parse(&["topology", "check", "--json"]);
    assert!(matches!(cli.command, Command::Topology(TopologyCommand::Check(c)) if c.json));
    let cli = parse(&["status"]);
    assert!(matches!(cli.command, Command::Status(s) if !s.json && s.workers.is_empty()));
    let cli = parse(&[
        "status",
        "--worker",
        "http://a:9464,b:9464",
        "--worker",
        "c:1",
    ]);
    assert!(
        matches!(cli.command, Command::Status(s) if s.workers == ["http://a:9464", "b:9464", "c:1"])
    );
    let cli = parse(&["tasks"]);
    assert!(matches!(cli.command, Command::Tasks));
    let e = parse_err(&["topology", "fix"]);
    assert_eq!(e.kind(), ErrorKind::InvalidSubcommand);
    let e = parse_err(&[]);
    assert_eq!(
        e.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let before = parse(&["--vhost", "v1", "--url", "amqp://h0", "status"]);
    assert_eq!(before.global.vhost.as_deref(), Some("v1"));
    assert_eq!(before.global.urls, ["amqp://h0"]);
    let cli = parse(&[
        "status",
        "--url",
        "amqp://a:1@h1",
        "--url",
        "amqp://h2,amqp://h3",
        "--vhost",
        "billing",
        "--user",
        "app",
        "--password-file",
        "/run/secrets/pw",
        "--tls-ca-file",
        "/ca.pem",
        "--tls-cert-file",
        "/c.pem",
        "--tls-key-file",
        "/c.key",
        "--log-level",
        "debug",
    ]);
    let g = &cli.global;
    // Comma lists are split when the settings are resolved, where a comma
    // inside a password does not start a new URL.
    assert_eq!(g.urls, ["amqp://a:1@h1", "amqp://h2,amqp://h3"]);
    assert_eq!(g.vhost.as_deref(), Some("billing"));
    assert_eq!(g.user.as_deref(), Some("app"));
    assert_eq!(
        g.password_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/pw"))
    );
    assert!(g.tls_ca_file.is_some() && g.tls_cert_file.is_some() && g.tls_key_file.is_some());
    assert_eq!(log_filter(&cli, Some("trace")), "debug", "the flag wins");
}

#[test]
fn there_is_no_password_flag() {
    // Passwords on the command line show in `ps`; they come from the
    // environment or a file.
    let e = parse_err(&["status", "--password", "x"]);
    assert_eq!(e.kind(), ErrorKind::UnknownArgument);
}

#[test]
fn help_and_version_are_not_errors() {
    let e = parse_err(&["--help"]);
    assert_eq!(e.kind(), ErrorKind::DisplayHelp);
    assert!(!e.use_stderr());
    let help = e.to_string();
    for sub in ["run", "enqueue", "parked", "topology", "status"] {
        assert!(help.contains(sub), "{sub} missing from help:\n{help}");
    }
    assert!(help.contains("Exit codes"), "{help}");
    for sub in [
        &["run", "--help"][..],
        &["enqueue", "--help"],
        &["parked", "list", "--help"],
        &["parked", "show", "--help"],
        &["parked", "replay", "--help"],
        &["parked", "purge", "--help"],
        &["topology", "declare", "--help"],
        &["topology", "check", "--help"],
        &["status", "--help"],
    ] {
        let e = parse_err(sub);
        assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{sub:?}");
    }
    // The help names the variables (an app that reads them, unlike `app()`).
    let run_help = App::new("w")
        .try_parse_from(["w", "run", "--help"])
        .unwrap_err()
        .to_string();
    assert!(run_help.contains("WORKER_CONCURRENCY"), "{run_help}");
    let versioned = App::new("w").version("1.2.3");
    let e = versioned.try_parse_from(["w", "--version"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DisplayVersion);
    assert!(e.to_string().contains("1.2.3"));
    assert!(App::new("w").try_parse_from(["w", "--version"]).is_err());
}

#[test]
fn log_filters_are_quiet_by_default() {
    assert_eq!(
        log_filter(&parse(&["status"]), None),
        "warn,lapin::channel=off,lapin::channels=off,lapin::io_loop=off,lapin::returned_messages=off"
    );
    assert_eq!(
        log_filter(&parse(&["run"]), None),
        "warn,lapin::channel=off,lapin::channels=off,lapin::io_loop=off,lapin::returned_messages=off,worker_core=info,worker_core::middleware::trace=warn"
    );
    assert_eq!(
        log_filter(&parse(&["run"]), Some("")),
        "warn,lapin::channel=off,lapin::channels=off,lapin::io_loop=off,lapin::returned_messages=off,worker_core=info,worker_core::middleware::trace=warn"
    );
    assert_eq!(log_filter(&parse(&["status"]), Some("info")), "info");
}

#[test]
fn exit_codes_are_distinct() {
    let codes = [
        exit::OK,
        exit::FAILURE,
        exit::USAGE,
        exit::CONFIG,
        exit::UNAVAILABLE,
        exit::TOPOLOGY,
    ];
    assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn commands_that_need_no_broker_report_usage_errors() {
    // `tasks` needs no broker.
    let cli = parse(&["tasks"]);
    let out = app().execute(cli, std::future::pending()).await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert!(
        out.stdout.contains("send_email  queue=cli.parse.emails"),
        "{out:?}"
    );

    // A bad password file is a configuration error, found before connecting.
    let cli = parse(&["status", "--password-file", "/nonexistent/pw"]);
    let out = app().execute(cli, std::future::pending()).await;
    assert_eq!(out.code, exit::CONFIG, "{out:?}");
    assert!(out.stderr.contains("AMQP_PASSWORD_FILE"), "{out:?}");

    // TLS files with an amqp:// URL are refused (the file exists and is
    // read; the scheme is what is wrong).
    let ca = std::env::temp_dir().join(format!("cli-parse-ca-{}.pem", std::process::id()));
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cli = parse(&[
        "status",
        "--url",
        "amqp://h",
        "--tls-ca-file",
        ca.to_str().unwrap(),
    ]);
    let out = app().execute(cli, std::future::pending()).await;
    let _ = std::fs::remove_file(&ca);
    assert_eq!(out.code, exit::CONFIG, "{out:?}");
    assert!(out.stderr.contains("is not an amqps:// URL"), "{out:?}");

    // A URL that is not AMQP.
    let cli = parse(&["status", "--url", "http://u:pw-in-url@h"]);
    let out = app().execute(cli, std::future::pending()).await;
    assert_eq!(out.code, exit::CONFIG, "{out:?}");
    assert!(!out.stderr.contains("pw-in-url"), "{out:?}");

    // Nothing listens on port 1: unreachable.
    let cli = parse(&["status", "--url", "amqp://u:pw-in-url@127.0.0.1:1/%2f"]);
    let out = app().execute(cli, std::future::pending()).await;
    assert_eq!(out.code, exit::UNAVAILABLE, "{out:?}");
    assert!(out.stderr.contains("u:***@127.0.0.1:1"), "{out:?}");
    assert!(!out.stderr.contains("pw-in-url"), "{out:?}");
}

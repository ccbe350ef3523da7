//! Against a private RabbitMQ node started by this test
//! ([`RabbitNode`], see shared/RABBITMQ.md): TLS with a CA made here
//! (hostname verification, a client certificate used for EXTERNAL login),
//! and a memory alarm (`connection.blocked`) that pauses publishing instead
//! of failing it.
//!
//! The node runs from the broker version under test: the runner
//! (`scripts/test-on-each-broker`) sets `RABBITMQ_SERVER_ROOT` per version
//! (a chroot for 4.0), and the test checks the node's announced version
//! against `RABBIT_WORKER_TEST_BROKER`.
//!
//! Needs `rabbitmq-server` (under that root) and `openssl`; without them
//! the test is skipped, or fails under `CI=true`.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use worker_core::connection::{Connector, TlsConfig};
use worker_core::{ConnectionConfig, Publisher, TaskError, Worker};
use worker_operator::cli::{exit, App, Finished};
use worker_testkit::node::{NodeError, RabbitNode};

/// The files `make_certs` writes that the server reads (the client's too,
/// for the tests' client side).
const CERT_FILES: [&str; 5] = [
    "ca.pem",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];

fn unavailable(why: &str) -> bool {
    worker_testkit::skip::unless_ci(format!("private-node test cannot run: {why}"));
    false
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} exited {:?}: {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private node of the version under test (the runner's
/// `RABBITMQ_SERVER_ROOT`), with a TLS listener on `tls_port` using the
/// certificates in `certs` (copied into the node's own directory, where a
/// chrooted server can read them) and EXTERNAL login by client certificate.
async fn start_node(certs: &Path, tls_port: u16) -> Result<RabbitNode, NodeError> {
    let mut builder = RabbitNode::builder()
        .config(format!("listeners.ssl.default = {tls_port}"))
        .config("ssl_options.cacertfile = {dir}/ca.pem")
        .config("ssl_options.certfile = {dir}/server.pem")
        .config("ssl_options.keyfile = {dir}/server.key")
        .config("ssl_options.verify = verify_peer")
        .config("ssl_options.fail_if_no_peer_cert = false")
        .config("ssl_cert_login_from = common_name")
        .config("auth_mechanisms.1 = PLAIN")
        .config("auth_mechanisms.2 = AMQPLAIN")
        .config("auth_mechanisms.3 = EXTERNAL")
        .plugin("rabbitmq_auth_mechanism_ssl");
    for name in CERT_FILES {
        let contents = std::fs::read(certs.join(name)).expect("a certificate made here");
        builder = builder.file(name, contents);
    }
    builder.start().await
}

fn ctl_run(node: &RabbitNode, args: &[&str]) -> Result<String, String> {
    run(node.rabbitmqctl().args(args))
}

fn diagnostics(node: &RabbitNode, args: &[&str]) -> Result<String, String> {
    run(node.rabbitmq_diagnostics().args(args))
}

/// CA, server certificate for `localhost` only, client certificate for CN=guest.
fn make_certs(dir: &Path) -> Result<(), String> {
    let ssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rw-cli-test-ca",
    ])?;
    for (name, cn, ext) in [
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "guest", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).map_err(|e| e.to_string())?;
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ])?;
        ssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ])?;
    }
    Ok(())
}

/// Does nothing; no retries.
#[worker_core::task(name = "cli.private.note", queue = "cli.private.notes", max_attempts = 1, in_process = 1, tiers = [])]
async fn note(_: String) -> Result<(), TaskError> {
    Ok(())
}

async fn cli(args: &[&str]) -> Finished {
    let mut full = vec!["w"];
    full.extend_from_slice(args);
    let app = App::new("w").register(Note);
    let parsed = app.try_parse_from(full).unwrap();
    app.execute(parsed, async {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_flow_control_on_a_private_node() {
    if run(Command::new("openssl").arg("version")).is_err() {
        unavailable("no openssl command");
        return;
    }
    let certs = std::env::temp_dir().join(format!("rw-cli-private-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs).unwrap();
    let tls_port = free_port();
    let node = match start_node(&certs, tls_port).await {
        Ok(node) => node,
        Err(e) if e.is_not_installed() => {
            let _ = std::fs::remove_dir_all(&certs);
            unavailable(&e.to_string());
            return;
        }
        Err(e) => panic!("cannot start a private RabbitMQ node: {e}"),
    };
    std::fs::remove_dir_all(&certs).unwrap();
    // The private node is the version under test (the runner's choice).
    if let Ok(label) = std::env::var("RABBIT_WORKER_TEST_BROKER") {
        let uri: lapin::uri::AMQPUri = node.url().parse().unwrap();
        let version = worker_core::broker::probe_version(
            &uri,
            &lapin::tcp::OwnedTLSConfig::default(),
            Duration::from_secs(5),
        )
        .await
        .expect("the private node announces its version");
        assert!(
            version.to_string().starts_with(&format!("{label}.")),
            "private node is RabbitMQ {version}, the run is for {label}"
        );
    }
    // The certificates as the client sees them (the host's paths).
    let dir = node.dir().to_owned();
    let ca = dir.join("ca.pem");
    let ca_arg = ca.to_str().unwrap().to_owned();

    // --- TLS ---------------------------------------------------------------
    let good = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
    let tls = TlsConfig::from_files(Some(&ca), None, None).unwrap();
    let connector = Connector::new(ConnectionConfig::new(&good).with_tls(tls.clone()));
    let conn = connector.connection().await.expect("TLS with the test CA");
    assert!(conn.status().connected());
    connector.close().await;

    // Through the CLI: declare, then status, over TLS.
    let out = cli(&[
        "topology",
        "declare",
        "--url",
        &good,
        "--tls-ca-file",
        &ca_arg,
    ])
    .await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    let out = cli(&["status", "--url", &good, "--tls-ca-file", &ca_arg]).await;
    assert_eq!(out.code, exit::OK, "{out:?}");
    assert!(out.stdout.contains("cli.private.notes"), "{out:?}");

    // Without the CA (system roots only), or with a wrong one (the client's
    // own certificate as the only trust anchor), the server's certificate
    // is not trusted, and the error says what to give.
    let wrong_ca = dir.join("client.pem").display().to_string();
    for extra in [&[][..], &["--tls-ca-file", wrong_ca.as_str()][..]] {
        let mut args = vec!["status", "--url", &good];
        args.extend_from_slice(extra);
        let out = cli(&args).await;
        assert_eq!(out.code, exit::UNAVAILABLE, "{args:?}: {out:?}");
        assert!(out.stderr.contains("certificate"), "{args:?}: {out:?}");
        assert!(out.stderr.contains("--tls-ca-file"), "{args:?}: {out:?}");
    }
    // The certificate names localhost only: 127.0.0.1 fails hostname verification.
    let by_ip = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");
    let out = cli(&["status", "--url", &by_ip, "--tls-ca-file", &ca_arg]).await;
    assert_eq!(out.code, exit::UNAVAILABLE, "{out:?}");
    assert!(
        out.stderr.contains("not valid for name \"127.0.0.1\""),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("a host name the certificate names"),
        "{out:?}"
    );

    // A client certificate (CN=guest) logs in with EXTERNAL: no password at all.
    let external = format!("amqps://localhost:{tls_port}/%2f?auth_mechanism=external");
    let with_cert = TlsConfig::from_files(
        Some(&ca),
        Some(&dir.join("client.pem")),
        Some(&dir.join("client.key")),
    )
    .unwrap();
    let connector = Connector::new(ConnectionConfig::new(&external).with_tls(with_cert));
    connector
        .connection()
        .await
        .expect("EXTERNAL login with the client certificate");
    connector.close().await;
    let without_cert = Connector::new(ConnectionConfig::new(&external).with_tls(tls));
    assert!(
        without_cert.connection().await.is_err(),
        "EXTERNAL without a client certificate must fail"
    );

    // --- connection.blocked --------------------------------------------------
    let plain = node.url();
    let connector = Connector::new(ConnectionConfig::new(&plain));
    // A confirm timeout far shorter than the alarm below: time spent
    // blocked must not count against it.
    let publisher =
        Publisher::new(connector.clone()).with_confirm_timeout(Duration::from_millis(300));
    Worker::new(connector.clone())
        .register(Note)
        .declare_topology()
        .await
        .unwrap();
    publisher
        .enqueue::<Note>(&"before".to_owned())
        .await
        .unwrap();
    assert!(!connector.is_blocked());

    ctl_run(&node, &["set_vm_memory_high_watermark", "absolute", "1MB"]).unwrap();
    // Wait for the alarm itself (the memory monitor checks periodically).
    // `check_alarms`: from 4.3 `check_local_alarms` is a no-op that always
    // reports none.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while diagnostics(&node, &["check_alarms"]).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the memory alarm never went off"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // RabbitMQ tells a connection it is blocked when it next publishes: this
    // publish is already sent when the block arrives, and its confirm is
    // held back until the alarm clears.
    let blocked_publish = tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.enqueue::<Note>(&"during".to_owned()).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !connector.is_blocked() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection.blocked within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The CLI's enqueue waits for the block to clear instead of failing.
    let cli_publish = tokio::spawn({
        let plain = plain.clone();
        async move { cli(&["enqueue", "cli.private.note", "\"cli\"", "--url", &plain]).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !blocked_publish.is_finished(),
        "publishing pauses while blocked, past the confirm timeout: {:?}",
        if blocked_publish.is_finished() {
            Some(blocked_publish.await)
        } else {
            None
        }
    );
    assert!(!cli_publish.is_finished(), "enqueue pauses while blocked");

    ctl_run(&node, &["set_vm_memory_high_watermark", "0.4"]).unwrap();
    blocked_publish
        .await
        .unwrap()
        .expect("the paused publish completes once unblocked");
    let out = cli_publish.await.unwrap();
    assert_eq!(out.code, exit::OK, "{out:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connector.is_blocked() {
        assert!(tokio::time::Instant::now() < deadline, "still blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let depth = worker_operator::ops::queue_depth(&connector, "cli.private.notes")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(depth.messages, 3, "before, during and cli all arrived");
    connector.close().await;
    drop(node);
}

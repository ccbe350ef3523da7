//! Against a private RabbitMQ node started by this test (see
//! shared/RABBITMQ.md): TLS with a CA made here (hostname verification,
//! a client certificate used for EXTERNAL login), and a memory alarm
//! (`connection.blocked`) that pauses publishing instead of failing it.
//!
//! Needs `/usr/lib/rabbitmq/bin/rabbitmq-server` and `openssl`; without them
//! the test is skipped, or fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use worker_core::connection::{Connector, TlsConfig};
use worker_core::{ConnectionConfig, Publisher, TaskError, Worker};
use worker_operator::cli::{exit, App, Finished};

const NODE: &str = "rw-cli-private@localhost";
const AMQP_PORT: u16 = 5781;
const TLS_PORT: u16 = 5782;
const DIST_PORT: u16 = 25781;
const SBIN: &str = "/usr/lib/rabbitmq/bin";

fn unavailable(why: &str) -> bool {
    let message = format!("private-node test cannot run: {why}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
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

/// A private node; stopped and removed on drop.
struct PrivateNode {
    dir: PathBuf,
}

impl PrivateNode {
    fn ctl(&self) -> Command {
        let mut cmd = Command::new(format!("{SBIN}/rabbitmqctl"));
        cmd.env("HOME", self.dir.join("home")).args(["-n", NODE]);
        cmd
    }

    fn ctl_run(&self, args: &[&str]) -> Result<String, String> {
        run(self.ctl().args(args))
    }

    fn diagnostics(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new(format!("{SBIN}/rabbitmq-diagnostics"))
            .env("HOME", self.dir.join("home"))
            .args(["-n", NODE])
            .args(args))
    }

    fn start(dir: PathBuf) -> Result<PrivateNode, String> {
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let d = dir.display();
        let conf = format!(
            "listeners.tcp.default = {AMQP_PORT}\n\
             listeners.ssl.default = {TLS_PORT}\n\
             loopback_users = none\n\
             ssl_options.cacertfile = {d}/ca.pem\n\
             ssl_options.certfile = {d}/server.pem\n\
             ssl_options.keyfile = {d}/server.key\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = false\n\
             ssl_cert_login_from = common_name\n\
             auth_mechanisms.1 = PLAIN\n\
             auth_mechanisms.2 = AMQPLAIN\n\
             auth_mechanisms.3 = EXTERNAL\n"
        );
        std::fs::write(dir.join("rabbitmq.conf"), conf).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("enabled_plugins"),
            "[rabbitmq_auth_mechanism_ssl].\n",
        )
        .map_err(|e| e.to_string())?;
        let node = PrivateNode { dir: dir.clone() };
        run(Command::new(format!("{SBIN}/rabbitmq-server"))
            .arg("-detached")
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_NODENAME", NODE)
            .env("RABBITMQ_NODE_PORT", AMQP_PORT.to_string())
            .env("RABBITMQ_DIST_PORT", DIST_PORT.to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("pid")))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            match node.ctl_run(&["await_startup"]) {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!("node did not start: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        Ok(node)
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        let _ = self.ctl_run(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    if !Path::new(&format!("{SBIN}/rabbitmq-server")).exists() {
        unavailable("no /usr/lib/rabbitmq/bin/rabbitmq-server (apt-get install rabbitmq-server)");
        return;
    }
    if run(Command::new("openssl").arg("version")).is_err() {
        unavailable("no openssl command");
        return;
    }
    // A fixed directory: a node left running by an interrupted run shares
    // its Erlang cookie and can be stopped before this run starts its own.
    let dir = std::env::temp_dir().join("rw-cli-private-node");
    if dir.exists() {
        drop(PrivateNode { dir: dir.clone() });
    }
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir).unwrap();
    let node = PrivateNode::start(dir.clone()).unwrap_or_else(|e| panic!("{e}"));
    let ca = dir.join("ca.pem");
    let ca_arg = ca.to_str().unwrap().to_owned();

    // --- TLS ---------------------------------------------------------------
    let good = format!("amqps://guest:guest@localhost:{TLS_PORT}/%2f");
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
    let by_ip = format!("amqps://guest:guest@127.0.0.1:{TLS_PORT}/%2f");
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
    let external = format!("amqps://localhost:{TLS_PORT}/%2f?auth_mechanism=external");
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
    let plain = format!("amqp://guest:guest@127.0.0.1:{AMQP_PORT}/%2f");
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

    node.ctl_run(&["set_vm_memory_high_watermark", "absolute", "1MB"])
        .unwrap();
    // Wait for the alarm itself (the memory monitor checks periodically).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while node.diagnostics(&["check_local_alarms"]).is_ok() {
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

    node.ctl_run(&["set_vm_memory_high_watermark", "0.4"])
        .unwrap();
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

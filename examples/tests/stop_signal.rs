//! A worker told to stop while it is still starting stops cleanly (exit 0)
//! instead of dying of the signal's default action. Found by the chaos soak:
//! a SIGTERM that landed while a restarted worker was still connecting
//! killed it outright.
//!
//! Broker-free: the "broker" is a socket that accepts and never answers,
//! which holds the worker in its first connection attempt.

use std::path::PathBuf;
use std::time::Duration;

use examples::faults::DemoConfig;
use tokio::net::TcpListener;

#[tokio::test]
async fn sigterm_while_the_worker_is_still_connecting_is_a_clean_stop() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("rw-stop-signal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = DemoConfig {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")),
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        record: dir.join("record.tsv"),
        tiers: "1s".into(),
        args: Vec::new(),
        tick_every: "off".into(),
        log_dir: dir.clone(),
        env: Vec::new(),
    };
    let mut worker = config.spawn(1).unwrap();
    // The worker is inside its start-up once it has opened a connection.
    let (_held, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .expect("the worker connects within 30 s")
        .unwrap();
    let status = worker
        .terminate(Duration::from_secs(60))
        .await
        .expect("the worker exits after SIGTERM");
    let log = std::fs::read_to_string(dir.join("worker-1.log")).unwrap_or_default();
    assert!(
        status.success(),
        "a stop during start-up is a clean stop, got {status}; log:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Fault scenarios against a real RabbitMQ, each ending with an exact account.
//!
//! Sizes follow the issue (a 10,000-message backlog for the kill and stop
//! scenarios); `FAULTS_SCALE=0.1` shrinks them for a quick local run.

use std::path::PathBuf;
use std::time::Duration;

use examples::faults::{plain_jobs, scaled, Lab, SETTLE};
use examples::tasks::record::RecordJob;

/// The scenarios run one at a time: each spawns worker processes and
/// measures what kills, restarts and crashes do, and a machine busy with
/// the other scenarios distorts that timing (the crash loop's quarantine
/// moves race the next crash).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn lab() -> Lab {
    Lab::new(PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backlog_then_restart_loses_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let n = scaled(10_000);
    let lab = lab();
    let mut run = lab.prepare("sigkill", "200ms,500ms", &[]).await.unwrap();
    let mut first = run.start_backlog("kill", n, 0).await.unwrap();
    first.kill().await;
    let second = run.spawn().unwrap();
    let (account, _) = run.finish(second, "SIGKILL mid-backlog").await.unwrap();
    assert_eq!(account.lost, 0);
    assert_eq!(account.handled, n);
    assert_eq!(account.parked, 0);
    assert_eq!(account.queued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backlog_is_a_clean_stop_without_duplicates() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let n = scaled(10_000);
    let lab = lab();
    let mut run = lab.prepare("sigterm", "200ms,500ms", &[]).await.unwrap();
    let mut first = run.start_backlog("term", n, 1).await.unwrap();
    let status = first
        .terminate(Duration::from_secs(60))
        .await
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "clean stop exits 0, got {status}");
    assert!(run.record().distinct() < n, "stopped mid-backlog");
    let second = run.spawn().unwrap();
    let (account, _) = run.finish(second, "SIGTERM mid-backlog").await.unwrap();
    assert_eq!(account.lost, 0);
    assert_eq!(
        account.duplicates, 0,
        "a clean stop must not redeliver finished work"
    );
    assert_eq!(account.handled, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_closing_all_connections_mid_backlog_loses_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let n = scaled(10_000);
    let lab = lab();
    let mut run = lab
        .prepare("close-connections", "200ms,500ms", &[])
        .await
        .unwrap();
    let worker = run.start_backlog("close", n, 1).await.unwrap();
    let vhost = run.vhost().unwrap().to_owned();
    assert!(
        run.close_connections(&vhost).unwrap() >= 1,
        "no connection was closed"
    );
    let (account, _) = run
        .finish(worker, "broker closes all connections")
        .await
        .unwrap();
    assert_eq!(account.lost, 0);
    assert_eq!(account.handled, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_mix_ends_parked_with_the_right_reasons() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let n = scaled(2_000);
    let lab = lab();
    let mut run = lab.prepare("poison", "100ms,200ms", &[]).await.unwrap();
    let mut jobs = Vec::new();
    let mut raw = Vec::new();
    let (mut failing, mut panicking, mut flaky) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("p-{i}");
        match i % 100 {
            0 => {
                failing.push(id.clone());
                jobs.push(RecordJob {
                    id,
                    fail: 99,
                    ..RecordJob::default()
                });
            }
            1 => {
                panicking.push(id.clone());
                jobs.push(RecordJob {
                    id,
                    panic: true,
                    ..RecordJob::default()
                });
            }
            2 => raw.push((id, b"{\"id\": \"truncated".to_vec())),
            3..=12 => {
                flaky.push(id.clone());
                jobs.push(RecordJob {
                    id,
                    fail: 1,
                    ..RecordJob::default()
                });
            }
            _ => jobs.push(RecordJob {
                id,
                ..RecordJob::default()
            }),
        }
    }
    run.publish(&jobs).await.unwrap();
    run.publish_raw(&raw).await.unwrap();
    let worker = run.spawn().unwrap();
    let (account, parked) = run.finish(worker, "poison mix").await.unwrap();
    assert_eq!(account.lost, 0);
    assert_eq!(account.parked, failing.len() + panicking.len() + raw.len());
    assert_eq!(account.handled, n - account.parked);
    for p in &parked {
        let id = p.message_id.clone().unwrap_or_default();
        let (reason, attempts) = if failing.contains(&id) || panicking.contains(&id) {
            ("exhausted", Some(5))
        } else {
            ("undecodable", Some(1))
        };
        assert_eq!((p.reason.as_str(), p.attempts), (reason, attempts), "{id}");
    }
    let record = run.record();
    for id in &flaky {
        assert_eq!(
            record.attempts(id),
            [2],
            "{id} succeeds on its second attempt"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_ends_parked_and_the_rest_is_handled() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let n = scaled(500);
    let lab = lab();
    let mut run = lab
        .prepare("crash-loop", "100ms,200ms", &["--prefetch", "10"])
        .await
        .unwrap();
    let mut jobs = plain_jobs("c", n, 2);
    jobs[n / 10].abort = true;
    let abort_id = jobs[n / 10].id.clone();
    run.publish(&jobs).await.unwrap();
    let worker = run.spawn().unwrap();
    let (settled, restarts, worker) = run.supervise(worker, SETTLE, 20).await.unwrap();
    assert!(
        settled,
        "crash loop did not settle after {restarts} restarts"
    );
    let name = format!("crash loop ({restarts} restarts)");
    let (account, parked) = run.finish(worker, &name).await.unwrap();
    assert_eq!(account.lost, 0);
    let abort = parked
        .iter()
        .find(|p| p.message_id.as_deref() == Some(abort_id.as_str()))
        .expect("the crashing message is parked");
    assert!(
        abort.reason.contains("delivery"),
        "parked through the delivery limit: {}",
        abort.reason
    );
    assert_eq!(
        account.parked, 1,
        "only the crashing message is parked: {parked:?}"
    );
    assert_eq!(account.handled, n - 1, "every other message handled");
}

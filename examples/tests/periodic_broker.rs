//! Periodic tasks across three worker processes: `demo.tick` every second
//! for about 20 s, one scheduler elected through the broker, and that
//! scheduler killed with SIGKILL half way. Every scheduled second is
//! enqueued exactly once (no duplicate, no gap: the entry's `fire` policy
//! catches up the ticks due during the takeover), and ticks continue from
//! another process within the stated bound.
//!
//! Runs on a private node (`worker_testkit::node`), so that no other test's
//! demo worker takes part in the election.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use examples::faults::{DemoConfig, DemoProcess};
use lapin::options::BasicGetOptions;
use worker_testkit::node::RabbitNode;

/// The longest a takeover after SIGKILL may take: the broker sees the
/// socket close at once; the rest is the next consumer's reading of the
/// last tick and its first publish.
const TAKEOVER_BOUND: Duration = Duration::from_secs(3);

/// Scheduled times (Unix seconds) recorded by `demo.tick`, with counts.
fn recorded(path: &Path) -> BTreeMap<u64, u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ticks = BTreeMap::new();
    for line in text.lines() {
        let Some(("tick", at)) = line.split_once('\t') else {
            continue;
        };
        let at = humantime::parse_rfc3339(at.trim()).expect("an RFC 3339 time");
        *ticks
            .entry(at.duration_since(UNIX_EPOCH).unwrap().as_secs())
            .or_insert(0) += 1;
    }
    ticks
}

fn leader_of(dir: &Path, workers: usize, not: Option<usize>) -> Option<usize> {
    (0..workers).filter(|n| Some(*n) != not).find(|n| {
        std::fs::read_to_string(dir.join(format!("worker-{n}.log")))
            .unwrap_or_default()
            .contains("this process now schedules periodic entry demo.tick")
    })
}

async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `demo-worker status` against the node: the scheduler's lines.
fn status(url: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_demo-worker"))
        .arg("status")
        .env("AMQP_URL", url)
        .env("DEMO_TICK_EVERY", "1s")
        .output()
        .expect("demo-worker status runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .skip_while(|l| !l.starts_with("periodic entries"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `by=` of the demo.tick line of a status.
fn scheduled_by(status: &str) -> String {
    status
        .split_whitespace()
        .find_map(|w| w.strip_prefix("by="))
        .unwrap_or_default()
        .to_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Scheduled times of the ticks left in the queue after the workers stopped.
async fn left_in_queue(url: &str) -> Vec<u64> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    for queue in ["demo.tick", "demo.tick.quarantine"] {
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            let headers = m.delivery.properties.headers().clone().unwrap_or_default();
            match headers.inner().get("rw-scheduled-at") {
                Some(lapin::types::AMQPValue::LongLongInt(s)) => out.push(*s as u64),
                Some(lapin::types::AMQPValue::Timestamp(s)) => out.push(*s),
                other => panic!("a tick without rw-scheduled-at: {other:?}"),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_enqueue_each_tick_once_through_a_sigkill_of_the_scheduler() {
    let mut node = match RabbitNode::start().await {
        Ok(node) => node,
        Err(e) if e.is_not_installed() => {
            worker_testkit::skip::unless_ci(e);
            return;
        }
        Err(e) => panic!("cannot start a private RabbitMQ node: {e}"),
    };
    let dir = std::env::temp_dir().join(format!("rw-periodic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let record = dir.join("record.tsv");
    let config = DemoConfig {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")),
        url: node.url(),
        record: record.clone(),
        tiers: "1s,5s".into(),
        args: Vec::new(),
        log_dir: dir.clone(),
        tick_every: "1s".into(),
        env: Vec::new(),
    };
    let mut workers: Vec<DemoProcess> = (0..3).map(|n| config.spawn(n).expect("spawn")).collect();

    let leader = wait_for(Duration::from_secs(20), || leader_of(&dir, 3, None))
        .await
        .expect("one worker becomes the scheduler");
    let first_ticks = wait_for(Duration::from_secs(10), || {
        let ticks = recorded(&record);
        (ticks.len() >= 8).then_some(ticks)
    })
    .await
    .expect("ticks are handled");
    assert!(first_ticks.values().all(|n| *n == 1), "{first_ticks:?}");
    let before = status(&node.url());
    println!("status before the kill:\n{before}");
    assert!(before.contains("scheduler=elected"), "{before}");
    assert!(
        before.contains("demo.tick  task=demo.tick every=1s scheduler=elected last="),
        "{before}"
    );
    let first_scheduler = scheduled_by(&before);
    assert!(first_scheduler.contains(':'), "{before}");

    workers[leader].kill().await;
    let killed_at = Instant::now();
    let killed_secs = now_secs();
    let successor = wait_for(Duration::from_secs(10), || leader_of(&dir, 3, Some(leader)))
        .await
        .expect("another worker takes over");
    let resumed = wait_for(Duration::from_secs(10), || {
        recorded(&record)
            .range(killed_secs + 1..)
            .next()
            .map(|_| ())
    })
    .await;
    let takeover = killed_at.elapsed();
    assert!(resumed.is_some(), "no tick after the kill");
    println!(
        "scheduler worker-{leader} killed; worker-{successor} took over; the first tick after the kill was handled {takeover:?} later"
    );
    assert!(takeover < TAKEOVER_BOUND, "takeover took {takeover:?}");
    let after = status(&node.url());
    println!("status after the takeover:\n{after}");
    assert!(after.contains("scheduler=elected"), "{after}");
    let second_scheduler = scheduled_by(&after);
    assert!(
        second_scheduler.contains(':') && second_scheduler != first_scheduler,
        "{first_scheduler} then {second_scheduler}"
    );

    wait_for(Duration::from_secs(15), || {
        (recorded(&record).len() >= 20).then_some(())
    })
    .await
    .expect("20 ticks in all");
    for (n, w) in workers.iter_mut().enumerate() {
        if n != leader {
            assert!(
                w.terminate(Duration::from_secs(20)).await.is_some(),
                "worker-{n} stops on SIGTERM"
            );
        }
    }
    let mut ticks = recorded(&record);
    for at in left_in_queue(&node.url()).await {
        *ticks.entry(at).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = ticks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "ticks enqueued twice: {duplicated:?}"
    );
    let (first, last) = (*ticks.keys().next().unwrap(), *ticks.keys().last().unwrap());
    let gaps: Vec<u64> = (first..=last).filter(|s| !ticks.contains_key(s)).collect();
    assert!(gaps.is_empty(), "seconds never enqueued: {gaps:?}");
    println!(
        "{} ticks, {first}..={last}, none twice, none missing",
        ticks.len()
    );
    node.stop().await.expect("node stops");
    let _ = std::fs::remove_dir_all(&dir);
}

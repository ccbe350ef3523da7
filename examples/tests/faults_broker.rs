//! Fault scenarios that stop the broker itself: a private node restarted
//! mid-backlog, and the leader node of a three-node cluster stopped
//! mid-backlog. Each ends with an exact account.

use std::path::PathBuf;
use std::time::Duration;

use examples::faults::{plain_jobs, scaled, Lab, SETTLE};
use worker_testkit::node::{RabbitCluster, RabbitNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_node_stopped_and_started_mid_backlog_loses_nothing() {
    let n = scaled(10_000);
    let mut node = RabbitNode::start().await.expect("a private RabbitMQ node");
    let lab = Lab::new(PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")));
    let mut run = lab
        .prepare_at("node-restart", node.url(), None, "200ms,500ms", &[])
        .await
        .unwrap();
    run.publish(&plain_jobs("restart", n, 1)).await.unwrap();
    let mut worker = run.spawn().unwrap();
    assert!(
        run.wait_handled(n / 4, SETTLE).await,
        "worker made no progress"
    );
    node.stop().await.unwrap();
    node.start_again().await.unwrap();
    assert!(
        run.wait_settled(SETTLE).await,
        "the worker did not recover and finish"
    );
    assert!(
        worker.exited().is_none(),
        "the worker reconnected instead of exiting"
    );
    worker
        .terminate(Duration::from_secs(30))
        .await
        .expect("clean exit");
    let (account, _) = run.account().await;
    println!("broker node stopped and started: {account}");
    assert_eq!(account.lost, 0);
    assert_eq!(account.handled, n);
    assert_eq!(account.queued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_node_stopped_mid_backlog_fails_over_and_loses_nothing() {
    let n = scaled(10_000);
    let mut cluster = RabbitCluster::start(3).await.expect("a three-node cluster");
    let lab = Lab::new(PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")));
    let mut run = lab
        .prepare_at("cluster", cluster.urls(), None, "200ms,500ms", &[])
        .await
        .unwrap();
    run.publish(&plain_jobs("cluster", n, 1)).await.unwrap();
    let leader = cluster
        .queue_leader("demo.record")
        .await
        .unwrap()
        .expect("demo.record has a leader");
    let mut worker = run.spawn().unwrap();
    assert!(
        run.wait_handled(n / 4, SETTLE).await,
        "worker made no progress"
    );
    cluster.node_mut(leader).stop().await.unwrap();
    assert!(
        run.wait_settled(SETTLE).await,
        "the worker did not fail over and finish"
    );
    assert!(
        worker.exited().is_none(),
        "the worker failed over instead of exiting"
    );
    worker
        .terminate(Duration::from_secs(30))
        .await
        .expect("clean exit");
    let (account, _) = run.account().await;
    println!("cluster leader (node {leader}) stopped: {account}");
    assert_eq!(account.lost, 0);
    assert_eq!(account.handled, n);
    assert_eq!(account.queued, 0);
}

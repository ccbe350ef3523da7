//! Fault scenarios that stop the broker itself: a private node restarted
//! mid-backlog, and the leader node of a three-node cluster stopped
//! mid-backlog. Each ends with an exact account.

use std::path::PathBuf;

use examples::faults::{scaled, Lab};
use worker_testkit::node::{RabbitCluster, RabbitNode};

fn lab() -> Lab {
    Lab::new(PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_node_stopped_and_started_mid_backlog_loses_nothing() {
    let n = scaled(10_000);
    let mut node = RabbitNode::start().await.expect("a private RabbitMQ node");
    let lab = lab();
    let mut run = lab
        .prepare_at("node-restart", node.url(), None, "200ms,500ms", &[])
        .await
        .unwrap();
    let worker = run.start_backlog("restart", n, 1).await.unwrap();
    node.stop().await.unwrap();
    node.start_again().await.unwrap();
    let (account, _) = run
        .finish(worker, "broker node stopped and started")
        .await
        .unwrap();
    assert_eq!(account.lost, 0);
    assert_eq!(account.handled, n);
    assert_eq!(account.queued, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_node_stopped_mid_backlog_fails_over_and_loses_nothing() {
    let n = scaled(10_000);
    let mut cluster = RabbitCluster::start(3).await.expect("a three-node cluster");
    let lab = lab();
    let mut run = lab
        .prepare_at("cluster", cluster.urls(), None, "200ms,500ms", &[])
        .await
        .unwrap();
    let leader = cluster
        .queue_leader("demo.record")
        .await
        .unwrap()
        .expect("demo.record has a leader");
    // The queues were declared through node 0 (the first URL), which
    // RabbitMQ 3.10's client-local leader locator makes the leader; the
    // worker also connects to the first URL it can reach. Stopping that
    // node takes away both the queue leader and the worker's connection.
    assert_eq!(
        leader, 0,
        "the leader should be on node 0, where the worker connects"
    );
    let worker = run.start_backlog("cluster", n, 1).await.unwrap();
    cluster.node_mut(leader).stop().await.unwrap();
    let name = format!("cluster leader (node {leader}) stopped");
    let (account, _) = run.finish(worker, &name).await.unwrap();
    assert_eq!(account.lost, 0);
    assert_eq!(account.handled, n);
    assert_eq!(account.queued, 0);
}

//! The broker under test and the faults it can suffer.

use std::process::Command;
use std::time::Duration;

use worker_testkit::node::{RabbitCluster, RabbitNode};

use super::schedule::FaultKind;
use crate::faults::Run;

/// Which broker a soak runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// A private node of the installed version (or of the version under
    /// `RABBITMQ_SERVER_ROOT`): every single-node fault, restarts included.
    PrivateNode,
    /// A three-node cluster of private nodes: nodes stopped and started.
    Cluster,
    /// An existing broker (a vhost of its own): no restarts, no alarms.
    Url(String),
}

/// The running broker.
#[derive(Debug)]
pub enum Target {
    /// A private node.
    Node(RabbitNode),
    /// A private cluster.
    Cluster(RabbitCluster),
    /// An existing broker at this URL.
    Shared(String),
}

impl Target {
    /// Starts what `choice` asks for.
    pub async fn start(choice: &BrokerChoice) -> Result<Target, String> {
        let no_node = |e| {
            format!(
                "cannot start a private RabbitMQ node ({e}); the soak's restart and alarm \
                 faults need one (or pass --url to soak a running broker without them)"
            )
        };
        Ok(match choice {
            BrokerChoice::PrivateNode => Target::Node(RabbitNode::start().await.map_err(no_node)?),
            BrokerChoice::Cluster => {
                Target::Cluster(RabbitCluster::start(3).await.map_err(no_node)?)
            }
            BrokerChoice::Url(url) => Target::Shared(url.clone()),
        })
    }

    /// The broker's URLs, one per node.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Target::Node(node) => vec![node.url()],
            Target::Cluster(cluster) => cluster.urls().split(',').map(str::to_owned).collect(),
            Target::Shared(url) => vec![url.clone()],
        }
    }

    /// Nodes that faults may target.
    pub fn nodes(&self) -> usize {
        self.urls().len()
    }

    /// The fault kinds this broker allows.
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut kinds = vec![
            FaultKind::Kill,
            FaultKind::Term,
            FaultKind::CloseConnections,
            FaultKind::NetCut,
            FaultKind::NetStall,
        ];
        match self {
            Target::Node(_) => kinds.extend([FaultKind::NodeRestart, FaultKind::MemoryAlarm]),
            Target::Cluster(_) => kinds.push(FaultKind::ClusterNodeRestart),
            Target::Shared(_) => {}
        }
        kinds
    }

    /// Has the broker close the workers' connections: every client
    /// connection of a private node (the soak's own reconnect too), or
    /// those of the run's vhost on a shared broker.
    pub async fn close_connections(&self, run: &Run) -> Result<(), String> {
        match self {
            Target::Node(node) => ctl(node, &["close_all_connections", "soak fault"]).await,
            Target::Cluster(cluster) => {
                for i in 0..self.nodes() {
                    let node = cluster.node(i);
                    if node.is_running() {
                        ctl(node, &["close_all_connections", "soak fault"]).await?;
                    }
                }
                Ok(())
            }
            Target::Shared(_) => {
                let vhost = run.vhost().ok_or("the shared broker run has no vhost")?;
                run.close_connections(vhost).map(drop)
            }
        }
    }

    /// Stops node `i` (the only node of a private node), waits `hold`,
    /// starts it again.
    pub async fn restart(&mut self, i: usize, hold: Duration) -> Result<(), String> {
        let node = match self {
            Target::Node(node) => node,
            Target::Cluster(cluster) => cluster.node_mut(i),
            Target::Shared(_) => return Err("a shared broker is never restarted".into()),
        };
        node.stop().await.map_err(|e| e.to_string())?;
        tokio::time::sleep(hold).await;
        node.start_again().await.map_err(|e| e.to_string())
    }

    /// Raises a memory alarm (a 1 MB high watermark) or clears it (0.4, the default).
    pub async fn memory_alarm(&self, raised: bool) -> Result<(), String> {
        let Target::Node(node) = self else {
            return Err("memory alarms are raised on a private node only".into());
        };
        let args: &[&str] = if raised {
            &["set_vm_memory_high_watermark", "absolute", "1MB"]
        } else {
            &["set_vm_memory_high_watermark", "0.4"]
        };
        ctl(node, args).await
    }

    /// Makes sure every node runs again (after the chaos).
    pub async fn heal(&mut self) -> Result<(), String> {
        match self {
            Target::Node(node) => {
                node.start_again().await.map_err(|e| e.to_string())?;
                self.memory_alarm(false).await
            }
            Target::Cluster(cluster) => {
                for i in 0..cluster.urls().split(',').count() {
                    cluster
                        .node_mut(i)
                        .start_again()
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Target::Shared(_) => Ok(()),
        }
    }
}

async fn ctl(node: &RabbitNode, args: &[&str]) -> Result<(), String> {
    let mut cmd: Command = node.rabbitmqctl();
    cmd.args(args);
    let out = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {} on {} failed: {}",
            args.join(" "),
            node.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

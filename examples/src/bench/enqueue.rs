//! The concurrent-enqueue scenario: many tokio tasks enqueue one message at
//! a time, each awaiting its confirm, through one shared framework
//! [`Publisher`] (the way request handlers of a web service enqueue work),
//! against a raw lapin publisher that pipelines the same messages with a
//! window of outstanding confirms.
//!
//! Each side publishes in a child process, so the CPU figure is the
//! publisher's own; the parent then checks the queue holds every message.

use std::collections::VecDeque;
use std::time::Instant;

use lapin::options::ConfirmSelectOptions;
use lapin::{Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use worker_core::{ConnectionConfig, Connector, Publisher};

use super::broker::expect_ack;
use super::child::{ChildSpec, FwTask};
use super::payload::{raw_publish, BenchJob, ChildResult};
use super::{procfs, BenchError};

/// How a publishing child publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EnqueueSpec {
    /// Concurrent enqueuing tasks (framework side).
    pub(crate) callers: usize,
    /// Messages each task enqueues, one at a time.
    pub(crate) per_caller: u64,
    /// Confirms the raw lapin publisher keeps outstanding.
    pub(crate) window: usize,
}

impl EnqueueSpec {
    /// Messages in one run.
    pub(crate) fn total(&self) -> u64 {
        self.callers as u64 * self.per_caller
    }
}

/// Times `work` in this process: wall time and CPU time.
async fn measured(
    n: u64,
    work: impl std::future::Future<Output = Result<(), BenchError>>,
) -> Result<ChildResult, BenchError> {
    let cpu = procfs::cpu_time();
    let started = Instant::now();
    work.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_time().saturating_sub(cpu).as_secs_f64();
    Ok(ChildResult::published(n, elapsed, cpu))
}

/// `callers` tasks share clones of one publisher; each enqueues its
/// messages with `Publisher::enqueue`, awaiting every confirm.
pub(crate) async fn framework<const S: usize>(
    spec: &ChildSpec,
    e: &EnqueueSpec,
) -> Result<ChildResult, BenchError> {
    let connector = Connector::new(ConnectionConfig::new(spec.url.clone()));
    // Connected before the clock starts, as the lapin side is.
    connector.connection().await?;
    let publisher = Publisher::new(connector.clone());
    let result = measured(e.total(), async {
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..e.callers as u64 {
            let publisher = publisher.clone();
            let per_caller = e.per_caller;
            tasks.spawn(async move {
                for i in 0..per_caller {
                    let job = BenchJob::new(caller * per_caller + i, 0);
                    publisher.enqueue::<FwTask<S>>(&job).await?;
                }
                Ok::<_, worker_core::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    })
    .await;
    connector.close().await;
    result
}

/// One raw lapin confirm channel, publishing every message back to back
/// with at most `window` confirms outstanding.
pub(crate) async fn lapin(spec: &ChildSpec, e: &EnqueueSpec) -> Result<ChildResult, BenchError> {
    let conn = Connection::connect(&spec.url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let window = e.window.max(1);
    let result = measured(e.total(), async {
        let mut outstanding = VecDeque::with_capacity(window);
        for seq in 0..e.total() {
            let body = serde_json::to_vec(&BenchJob::new(seq, 0))?;
            outstanding.push_back(raw_publish(&ch, &spec.queue, &body).await?);
            if outstanding.len() >= window {
                if let Some(confirm) = outstanding.pop_front() {
                    expect_ack(confirm.await?)?;
                }
            }
        }
        for confirm in outstanding {
            expect_ack(confirm.await?)?;
        }
        Ok(())
    })
    .await;
    let _ = conn.close(200, "bench done".into()).await;
    result
}

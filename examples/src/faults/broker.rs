//! Talking to the broker under test: vhosts, publishing, inspecting queues.

use std::time::Duration;

use worker_core::{ConnectionConfig, Connector, EnqueueOptions, Outgoing, Publisher, Task};

use crate::tasks::record::{Record, RecordJob};

pub use worker_testkit::node::rabbitmqctl;

/// A private vhost on the local broker, deleted on drop, so scenarios can
/// use the fixed `demo.record` queue side by side.
#[derive(Debug)]
pub struct Vhost {
    name: String,
    base: String,
}

impl Vhost {
    /// Creates `faults-<random>` with full permissions for guest.
    pub fn create(base_url: &str) -> Result<Vhost, String> {
        let name = format!("faults-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])?;
        Ok(Vhost {
            name,
            base: base_url
                .trim_end_matches(|c| c != '/')
                .trim_end_matches('/')
                .to_owned(),
        })
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AMQP URL of the vhost.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// The confirmed, persistent `demo.record` message of `job`, its id as message id.
pub(crate) fn job_message(publisher: &Publisher, job: &RecordJob) -> Result<Outgoing, String> {
    record_message(publisher, &job.id, job, None)
}

/// A `demo.record` message with id `id` whose body is `body` (undecodable on purpose).
pub(crate) fn raw_message(
    publisher: &Publisher,
    id: &str,
    body: &[u8],
) -> Result<Outgoing, String> {
    record_message(publisher, id, &(), Some(body))
}

fn record_message<P: serde::Serialize>(
    publisher: &Publisher,
    id: &str,
    payload: &P,
    body: Option<&[u8]>,
) -> Result<Outgoing, String> {
    let (_, mut message) = publisher
        .task_message(
            Record::NAME,
            Record::QUEUE,
            payload,
            EnqueueOptions {
                message_id: Some(id.to_owned()),
                ..EnqueueOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
    if let Some(body) = body {
        message.body = body.to_vec().into();
    }
    Ok(message)
}

/// Publishes fixture jobs with their id as message id, confirmed, in batches.
pub(crate) async fn publish_jobs(url: &str, jobs: &[RecordJob]) -> Result<Vec<String>, String> {
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url)));
    for chunk in jobs.chunks(500) {
        let messages = chunk
            .iter()
            .map(|job| job_message(&publisher, job))
            .collect::<Result<Vec<_>, _>>()?;
        publisher
            .publish_batch(messages)
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some(c) = publisher.connector() {
        c.close().await;
    }
    Ok(jobs.iter().map(|job| job.id.clone()).collect())
}

/// Publishes raw bodies (undecodable on purpose) with the given ids.
pub(crate) async fn publish_raw(url: &str, items: &[(String, Vec<u8>)]) -> Result<(), String> {
    let publisher = Publisher::new(Connector::new(ConnectionConfig::new(url)));
    let messages = items
        .iter()
        .map(|(id, body)| raw_message(&publisher, id, body))
        .collect::<Result<Vec<_>, _>>()?;
    publisher
        .publish_batch(messages)
        .await
        .map_err(|e| e.to_string())
}

/// Awaits `cond`, polling every 100 ms, for at most `limit`; says whether it held.
pub(crate) async fn wait_for<F, Fut>(limit: Duration, cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    worker_testkit::wait::holds_within_every(limit, Duration::from_millis(100), cond).await
}

//! Publishing the workload during the chaos, with confirms, retrying what
//! the broker did not confirm.

use std::time::Duration;

use tokio::sync::watch;
use worker_core::{ConnectionConfig, Connector, Outgoing, Publisher};

use super::workload::{Body, Item, Kind, Workload};
use crate::faults::broker::{job_message, raw_message};

/// How long one batch may wait for its confirms before it is sent again.
const BATCH_LIMIT: Duration = Duration::from_secs(30);
/// How long unconfirmed messages are retried after the publishing stopped.
const FLUSH_LIMIT: Duration = Duration::from_secs(120);

/// What the publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// Confirmed messages, in order, with their kind.
    pub items: Vec<(String, Kind)>,
    /// Messages sent again because their first publish was not confirmed
    /// (each may have arrived twice: at-least-once slack).
    pub resent: usize,
    /// Messages never confirmed (the flush after the chaos gave up).
    pub unconfirmed: usize,
}

/// Publishes `rate` messages a second from the workload of `seed` to
/// `urls` (tried in order) until `stop` turns true, then retries what is
/// unconfirmed for a while.
pub async fn publish(
    urls: Vec<String>,
    seed: u64,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) -> Published {
    let mut config = ConnectionConfig::new(urls[0].clone());
    config.urls = urls;
    let connector = Connector::new(config);
    let publisher = Publisher::new(connector.clone());
    let mut workload = Workload::new(seed);
    let mut published = Published::default();
    let mut pending: Vec<Item> = Vec::new();
    let per_tick = (rate as usize / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush_deadline = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed(), if flush_deadline.is_none() => {}
        }
        let stopping = *stop.borrow();
        if stopping {
            let deadline =
                *flush_deadline.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_LIMIT);
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
        } else if pending.len() < per_tick * 50 {
            pending.extend((0..per_tick).map(|_| workload.next_item()));
        }
        let batch: Vec<Item> = std::mem::take(&mut pending);
        let Ok(messages) = batch
            .iter()
            .map(|item| message(&publisher, item))
            .collect::<Result<Vec<Outgoing>, String>>()
        else {
            pending = batch;
            continue;
        };
        let confirms =
            match tokio::time::timeout(BATCH_LIMIT, publisher.publish_each(messages)).await {
                Ok(outcome) => outcome.confirms,
                Err(_) => Vec::new(),
            };
        for (i, item) in batch.into_iter().enumerate() {
            match confirms.get(i) {
                Some(Ok(())) => published.items.push((item.id, item.kind)),
                Some(Err(_)) => {
                    published.resent += 1;
                    pending.push(item);
                }
                None => pending.push(item),
            }
        }
    }
    published.unconfirmed = pending.len();
    connector.close().await;
    published
}

fn message(publisher: &Publisher, item: &Item) -> Result<Outgoing, String> {
    match &item.body {
        Body::Job(job) => job_message(publisher, job),
        Body::Raw(bytes) => raw_message(publisher, &item.id, bytes),
    }
}

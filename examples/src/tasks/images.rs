//! A slow task bounded by a timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::{task, TaskError};

/// A thumbnail to render.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Thumbnail {
    /// Source image.
    pub image: String,
    /// How long rendering takes (a stand-in for real work).
    pub render_ms: u64,
}

/// Renders a thumbnail. An attempt running past 2 s is cancelled and
/// counts as a transient failure; two in-process attempts, no delay tiers,
/// then the message is parked.
#[task(
    name = "demo.thumbnail",
    queue = "demo.thumbnails",
    timeout = "2s",
    in_process = 2,
    tiers = [],
    max_attempts = 2,
    concurrency = 4,
    prefetch = 8
)]
pub async fn render_thumbnail(job: Thumbnail) -> Result<(), TaskError> {
    tokio::time::sleep(Duration::from_millis(job.render_ms)).await;
    tracing::info!(image = %job.image, "thumbnail rendered");
    Ok(())
}

// Every retry, timeout, capacity and queue option.
use std::time::Duration;
use worker_core::{task, FailureKind, QueueType, Task, TaskError};

#[task(
    name = "images.resize",
    max_attempts = 8,
    in_process = 2,
    backoff = "250ms..5s",
    tiers = ["10s", "1m", "10m"],
    timeout = "2m",
    rate = "30/m",
    breaker = "50%/20",
    breaker_cooldown = "2s",
    prefetch = 20,
    concurrency = 4,
    queue_type = "quorum",
    unclassified = "permanent",
    max_body = 1_048_576,
)]
async fn resize(width: u32) -> Result<(), TaskError> {
    if width == 0 {
        return Err(TaskError::permanent("width must be positive"));
    }
    Ok(())
}

#[task(queue = "bulk", retries = 0, tiers = [], prefetch = 5000, queue_type = "classic", unclassified = "transient", timeout = "1500ms")]
async fn bulk(ids: Vec<u64>) -> Result<(), std::io::Error> {
    let _ = ids;
    Ok(())
}

fn main() {
    assert_eq!(Resize::NAME, "images.resize");
    assert_eq!(Resize::QUEUE, "images.resize");
    let o = Resize.options();
    assert_eq!(o.retry.max_attempts, 8);
    assert_eq!(o.retry.in_process_attempts, 2);
    assert_eq!(o.retry.backoff.min, Duration::from_millis(250));
    assert_eq!(o.retry.backoff.max, Duration::from_secs(5));
    assert_eq!(
        o.retry.tiers,
        [
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(600)
        ]
    );
    assert_eq!(o.timeout, Some(Duration::from_secs(120)));
    assert_eq!(o.rate, Some(worker_core::Rate::per_minute(30)));
    assert_eq!(
        o.breaker,
        Some(worker_core::BreakerPolicy::share(50, 20).cooldown(Duration::from_secs(2)))
    );
    assert_eq!(o.prefetch, Some(20));
    assert_eq!(o.concurrency, 4);
    assert_eq!(o.queue_type, QueueType::Quorum);
    assert_eq!(o.unclassified, FailureKind::Permanent);
    assert_eq!(o.max_body_bytes, 1_048_576);
    assert!(o.binding.is_none());

    assert_eq!(Bulk::QUEUE, "bulk");
    let o = Bulk.options();
    assert_eq!(o.retry.max_attempts, 1);
    assert!(o.retry.tiers.is_empty());
    assert_eq!(o.prefetch, Some(5000));
    assert_eq!(o.queue_type, QueueType::Classic);
    assert_eq!(o.unclassified, FailureKind::Transient);
    assert_eq!(o.timeout, Some(Duration::from_millis(1500)));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(runtime.block_on(resize(0)).is_err());
    assert!(runtime.block_on(bulk(vec![1, 2])).is_ok());
}

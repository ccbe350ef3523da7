// Priorities, length limits, overflow and message TTL.
use std::time::Duration;
use worker_core::{task, Overflow, QueueType, Task, TaskError};

#[task(
    queue = "reports",
    queue_type = "classic",
    priority = 10,
    max_length = 10_000,
    max_length_bytes = 104_857_600,
    overflow = "drop-head",
    message_ttl = "10m",
)]
async fn report(id: u64) -> Result<(), TaskError> {
    let _ = id;
    Ok(())
}

// Quorum queues: priorities (RabbitMQ 4.0+) and reject-publish.
#[task(queue = "orders", priority = 5, max_length = 100, overflow = "reject-publish")]
async fn order(id: u64) -> Result<(), TaskError> {
    let _ = id;
    Ok(())
}

fn main() {
    let o = Report.options();
    assert_eq!(o.queue_type, QueueType::Classic);
    assert_eq!(o.priority, Some(10));
    assert_eq!(o.limits.max_length, Some(10_000));
    assert_eq!(o.limits.max_length_bytes, Some(104_857_600));
    assert_eq!(o.limits.overflow, Overflow::DropHead);
    assert_eq!(o.limits.message_ttl, Some(Duration::from_secs(600)));

    let o = Order.options();
    assert_eq!(o.priority, Some(5));
    assert_eq!(o.limits.max_length, Some(100));
    assert_eq!(o.limits.overflow, Overflow::RejectPublish);
    assert_eq!(o.limits.message_ttl, None);
}

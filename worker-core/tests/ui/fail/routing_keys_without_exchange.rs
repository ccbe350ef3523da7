use worker_core::{task, TaskError};

#[task(queue = "orders", routing_keys = ["order.created"])]
async fn on_order(id: u64) -> Result<(), TaskError> {
    let _ = id;
    Ok(())
}

fn main() {}

use serde::{Deserialize, Serialize};
use worker_core::{task, TaskContext, TaskError};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    cents: u64,
}

#[task(queue = "billing")]
async fn charge(ctx: TaskContext, c: Charge) -> Result<(), TaskError> {
    let _ = (ctx, c.cents);
    Ok(())
}

fn main() {}

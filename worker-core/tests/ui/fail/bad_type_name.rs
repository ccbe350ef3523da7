use worker_core::{task, TaskError};

#[task(queue = "billing", type_name = "charge task")]
async fn charge(cents: u64) -> Result<(), TaskError> {
    let _ = cents;
    Ok(())
}

#[task(queue = "refunds", type_name = "Self")]
async fn refund(cents: u64) -> Result<(), TaskError> {
    let _ = cents;
    Ok(())
}

fn main() {}

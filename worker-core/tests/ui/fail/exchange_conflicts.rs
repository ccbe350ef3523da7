use worker_core::{task, TaskError};

#[task(queue = "a", exchange = "fan", exchange_type = "fanout", routing_keys = ["x"])]
async fn fanout_keys() -> Result<(), TaskError> {
    Ok(())
}

#[task(queue = "b", exchange = "orders", match_headers = { "format" = "pdf" })]
async fn headers_on_direct() -> Result<(), TaskError> {
    Ok(())
}

#[task(queue = "c", exchange = "orders", exchange_type = "topic")]
async fn topic_without_keys() -> Result<(), TaskError> {
    Ok(())
}

#[task(queue = "d", exchange_type = "topic")]
async fn type_without_exchange() -> Result<(), TaskError> {
    Ok(())
}

fn main() {}

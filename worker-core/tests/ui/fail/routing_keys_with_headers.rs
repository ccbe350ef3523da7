use worker_core::{task, TaskError};

#[task(
    queue = "pdf",
    exchange = "documents",
    exchange_type = "headers",
    routing_keys = ["pdf"],
    match_headers = { "format" = "pdf" }
)]
async fn render(doc: String) -> Result<(), TaskError> {
    let _ = doc;
    Ok(())
}

fn main() {}

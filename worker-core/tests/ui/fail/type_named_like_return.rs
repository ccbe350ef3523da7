use serde::{Deserialize, Serialize};
use worker_core::{task, TaskError};

#[derive(Serialize, Deserialize)]
pub struct Quote {
    pub cents: u64,
}

#[task(queue = "quotes")]
async fn quote(sku: String) -> Result<Quote, TaskError> {
    Ok(Quote {
        cents: sku.len() as u64,
    })
}

fn main() {}

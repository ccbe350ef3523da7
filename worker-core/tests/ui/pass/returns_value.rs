//! A handler that returns a value: callers await it with `Price::call`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use worker_core::{task, CallError, Callable, RpcClient, TaskContext, TaskError};

#[derive(Serialize, Deserialize)]
pub struct QuoteRequest {
    pub sku: String,
}

#[derive(Serialize, Deserialize)]
pub struct Quote {
    pub cents: u64,
}

#[task(queue = "quotes")]
async fn price(ctx: TaskContext, req: QuoteRequest) -> Result<Quote, TaskError> {
    let _ = ctx.attempt();
    Ok(Quote {
        cents: req.sku.len() as u64,
    })
}

#[task(queue = "counts")]
async fn count(id: u64) -> std::io::Result<u64> {
    Ok(id)
}

#[task(queue = "pings")]
async fn ping() -> Result<(), TaskError> {
    Ok(())
}

async fn callers(client: &RpcClient) -> Result<u64, CallError> {
    let quote: Quote = Price::call(client, &QuoteRequest { sku: "A".into() })
        .timeout(Duration::from_secs(5))
        .await?;
    let n: u64 = Count::call(client, &7).await?;
    let (): () = Ping::call(client, &()).await?;
    Ok(quote.cents + n)
}

fn main() {
    fn output<T: Callable>() -> &'static str {
        std::any::type_name::<T::Output>()
    }
    assert!(output::<Price>().ends_with("Quote"));
    assert_eq!(output::<Count>(), "u64");
    assert_eq!(output::<Ping>(), "()");
    let _ = callers;
}

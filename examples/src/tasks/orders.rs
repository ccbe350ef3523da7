//! Order events routed through a topic exchange.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use worker_core::{task, State, TaskError};

/// An order event as the shop publishes it to the `demo.orders` exchange.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderEvent {
    /// The order.
    pub order_id: u64,
    /// `created` or `paid`.
    pub status: String,
    /// Amount in cents.
    pub amount_cents: u64,
}

/// Running totals kept by the worker (shared state injected into handlers).
#[derive(Debug, Default)]
pub struct Ledger {
    created: AtomicU64,
    paid_cents: AtomicU64,
}

impl Ledger {
    /// Orders seen created.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Cents seen paid.
    pub fn paid_cents(&self) -> u64 {
        self.paid_cents.load(Ordering::Relaxed)
    }
}

/// Records `order.created` and `order.<id>.paid` events from the topic
/// exchange `demo.orders`. An unknown status is a permanent error.
#[task(
    name = "demo.order_event",
    queue = "demo.order-events",
    exchange = "demo.orders",
    exchange_type = "topic",
    routing_keys = ["order.created", "order.*.paid"],
    tiers = ["5s"],
    max_attempts = 4
)]
pub async fn record_order_event(event: OrderEvent, ledger: State<Ledger>) -> Result<(), TaskError> {
    match event.status.as_str() {
        "created" => {
            ledger.created.fetch_add(1, Ordering::Relaxed);
        }
        "paid" => {
            ledger
                .paid_cents
                .fetch_add(event.amount_cents, Ordering::Relaxed);
        }
        other => {
            return Err(TaskError::permanent(format!(
                "unknown order status {other:?}"
            )))
        }
    }
    Ok(())
}

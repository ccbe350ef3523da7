//! Offering deliveries as the worker's consumer takes them, through the
//! task's circuit breaker ([`worker_core::breaker`]).
//!
//! [`Harness::run`] always runs the delivery. [`Harness::offer`] first asks
//! the task's breaker, with the very calls the consumer makes: closed, the
//! delivery runs and its outcome is counted; open (or a probe already
//! running), it is [`Offer::Held`]: nothing runs and the message would stay
//! in the queue; after the cool-down, the first offer runs as the probe and
//! its outcome closes or reopens the breaker. Cool-downs run on tokio's
//! clock: with `start_paused = true`, `tokio::time::advance` moves past
//! them at once.

use worker_core::breaker::{Admit, BreakerState};
use worker_core::{Delivery, Task};

use super::{Harness, Report};
use crate::delivery::DeliveryBuilder;

/// What became of an offered delivery.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Offer {
    /// The consumer took it and ran it (as the probe when the breaker was
    /// half-open).
    Ran(Report),
    /// The breaker held it: nothing ran, the message stays in the queue.
    Held,
}

impl Offer {
    /// The report, when the delivery ran.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Offer::Ran(report) => Some(report),
            Offer::Held => None,
        }
    }

    /// Whether the breaker held it.
    pub fn is_held(&self) -> bool {
        matches!(self, Offer::Held)
    }
}

impl<T: Task> Harness<T> {
    /// The state of the task's circuit breaker; `None` when the task has
    /// no `breaker` option.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.breakers.get(&self.spec()).map(|b| b.state())
    }

    /// Offers `delivery` as the worker's consumer would take it, through
    /// the task's circuit breaker ([`worker_core::breaker`]): closed, it
    /// runs; open, it is [`Offer::Held`]; after the cool-down the first
    /// offer runs as the probe. A task without a breaker always runs it.
    ///
    /// # Panics
    ///
    /// When the task needs shared state the harness was not given.
    ///
    /// ```
    /// use std::time::Duration;
    /// use worker_core::breaker::BreakerState;
    /// use worker_core::{task, TaskError};
    /// use worker_testkit::{Harness, Offer};
    ///
    /// #[task(queue = "fragile", breaker = "2 in a row", breaker_cooldown = "10s", tiers = [])]
    /// async fn fragile(up: bool) -> Result<(), TaskError> {
    ///     if up { Ok(()) } else { Err(TaskError::transient("downstream is down")) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let harness = Harness::new(Fragile);
    /// harness.offer_payload(&false).await;
    /// harness.offer_payload(&false).await;
    /// assert_eq!(harness.breaker_state(), Some(BreakerState::Open));
    /// assert!(harness.offer_payload(&true).await.is_held());
    ///
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// assert!(matches!(harness.offer_payload(&true).await, Offer::Ran(_)));
    /// assert_eq!(harness.breaker_state(), Some(BreakerState::Closed));
    /// # }
    /// ```
    pub async fn offer(&self, delivery: Delivery) -> Offer {
        let Some(breaker) = self.breakers.get(&self.spec()) else {
            return Offer::Ran(self.run(delivery).await);
        };
        match breaker.admit(true) {
            Admit::Wait(_) => Offer::Held,
            Admit::Consume => {
                let report = self.run(delivery).await;
                breaker.record(report.outcome());
                Offer::Ran(report)
            }
            Admit::Probe => {
                let report = self.run(delivery).await;
                breaker.probe_done(report.outcome());
                Offer::Ran(report)
            }
        }
    }

    /// Offers a delivery of `payload` (see [`offer`](Harness::offer)), with
    /// the next free tag. A held delivery uses up its tag too.
    ///
    /// # Panics
    ///
    /// When the task needs shared state the harness was not given.
    pub async fn offer_payload(&self, payload: &T::Payload) -> Offer {
        let tag = self.next_tag();
        self.offer(DeliveryBuilder::for_task::<T>(payload).tag(tag).build())
            .await
    }

    /// Tells the breaker the queue was empty when its probe was due, as the
    /// consumer does when `basic.get` finds nothing: a due probe closes the
    /// breaker. Returns the state after.
    pub fn offer_nothing(&self) -> Option<BreakerState> {
        let breaker = self.breakers.get(&self.spec())?;
        if breaker.admit(true) == Admit::Probe {
            breaker.probe_found_nothing();
        }
        Some(breaker.state())
    }
}

//! Waiting for an effect that happens elsewhere (another task, a broker):
//! poll a condition until a deadline instead of sleeping for a guessed time.
//!
//! Deadlines and polls run on tokio's clock, so under a paused clock
//! (`#[tokio::test(start_paused = true)]`) the wait advances it by itself.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let done = Arc::new(AtomicBool::new(false));
//! let flag = done.clone();
//! tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
//! worker_testkit::wait::eventually(Duration::from_secs(5), "the task ran", || async {
//!     done.load(Ordering::SeqCst)
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] and [`holds_within`] check their condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Checks `cond` every [`POLL`] until it holds or `limit` has passed;
/// answers whether it held.
pub async fn holds_within<F, Fut>(limit: Duration, cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    holds_within_every(limit, POLL, cond).await
}

/// [`holds_within`], checking every `poll`: for a condition that is slow
/// or costly to check (it reads a large file, or runs a command).
pub async fn holds_within_every<F, Fut>(limit: Duration, poll: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Checks `cond` every [`POLL`] until it holds.
///
/// # Panics
///
/// When it still does not hold after `limit`, with a message naming `what`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        holds_within(limit, cond).await,
        "timed out after {limit:?} waiting for: {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_whether_the_condition_held_in_time() {
        let start = tokio::time::Instant::now();
        let mut checks = 0;
        assert!(
            holds_within(Duration::from_secs(1), || {
                checks += 1;
                std::future::ready(checks == 3)
            })
            .await
        );
        assert_eq!(start.elapsed(), POLL * 2);
        assert!(!holds_within(Duration::from_millis(100), || std::future::ready(false)).await);
        assert!(start.elapsed() >= POLL * 2 + Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 50ms waiting for: never")]
    async fn eventually_names_what_it_waited_for() {
        eventually(Duration::from_millis(50), "never", || {
            std::future::ready(false)
        })
        .await;
    }
}

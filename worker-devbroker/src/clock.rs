//! The broker's time: a manual clock that tests advance, or the wall clock.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Shared;

/// The memory broker's clock.
///
/// Message TTLs (`x-message-ttl`, the `expiration` property) run on this
/// clock. A broker from [`MemoryBroker::start`](super::MemoryBroker::start)
/// has a manual clock that stands still until [`advance`](Clock::advance)
/// moves it; expired messages are then dead-lettered at once, before
/// `advance` returns. A broker from
/// [`MemoryBroker::start_with_real_clock`](super::MemoryBroker::start_with_real_clock)
/// follows the wall clock instead.
///
/// `x-death` times are this clock's time too: the wall time at broker start
/// plus the clock's elapsed time.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    manual: bool,
    started: Instant,
    wall_start: SystemTime,
    advanced: Mutex<Duration>,
    broker: OnceLock<Weak<Shared>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("manual", &self.inner.manual)
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Clock {
    pub(crate) fn new(manual: bool) -> Clock {
        Clock {
            inner: Arc::new(ClockInner {
                manual,
                started: Instant::now(),
                wall_start: SystemTime::now(),
                advanced: Mutex::new(Duration::ZERO),
                broker: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn attach(&self, broker: Weak<Shared>) {
        let _ = self.inner.broker.set(broker);
    }

    /// Whether this clock only moves through [`advance`](Clock::advance).
    pub fn is_manual(&self) -> bool {
        self.inner.manual
    }

    /// Time since the broker started, on this clock.
    pub fn elapsed(&self) -> Duration {
        if self.inner.manual {
            *self
                .inner
                .advanced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        } else {
            self.inner.started.elapsed()
        }
    }

    /// Milliseconds since the broker started.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Seconds since the Unix epoch, for `x-death` times.
    pub(crate) fn unix_secs(&self) -> u64 {
        (self.inner.wall_start + self.elapsed())
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Moves a manual clock forward by `by` and expires, at once, every
    /// message whose TTL ran out (at the head of its queue, as RabbitMQ
    /// does), dead-lettering it where its queue says.
    ///
    /// Only messages the broker already holds age: after publishing (or
    /// acking, rejecting) from a client, await the confirm or another
    /// synchronous round trip on that connection before advancing.
    ///
    /// # Panics
    ///
    /// On a real clock, which cannot be moved.
    pub fn advance(&self, by: Duration) {
        assert!(
            self.inner.manual,
            "this memory broker follows the wall clock; use MemoryBroker::start() for a manual clock"
        );
        {
            let mut advanced = self
                .inner
                .advanced
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *advanced += by;
        }
        if let Some(broker) = self.inner.broker.get().and_then(Weak::upgrade) {
            broker.tick();
        }
    }
}

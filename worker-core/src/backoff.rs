//! Exponential backoff with jitter that stays inside its bounds.
//!
//! Why bounded jitter? "Full jitter" (a uniform draw between zero and the
//! exponential delay) spreads retries well but can return zero, so a storm
//! of failures retries at once; some libraries also let the jittered delay
//! fall under the configured minimum. Here the exponential delay is
//! `min * factor^(n-1)`, capped at `max`, and the jitter draws uniformly from
//! `[delay * (1 - jitter), delay]`, then clamps to `[min, max]`: never
//! below the minimum, never above the cap.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff settings.
///
/// ```
/// use std::time::Duration;
/// use rand::{rngs::StdRng, SeedableRng};
/// use worker_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// let mut rng = StdRng::seed_from_u64(7);
/// let d = backoff.delay(3, &mut rng);
/// assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay, and the floor of every delay.
    pub min: Duration,
    /// The ceiling of every delay.
    pub max: Duration,
    /// Growth per attempt (2.0 doubles).
    pub factor: f64,
    /// Fraction of the delay that may be taken off at random, 0.0..=1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

impl Backoff {
    /// Doubling backoff between `min` and `max` with 50% jitter.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            factor: 2.0,
            jitter: 0.5,
        }
    }

    /// The delay before retry number `retry` (1 for the first retry).
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let min = self.min.as_secs_f64();
        let max = self.max.as_secs_f64().max(min);
        let exp = retry.saturating_sub(1).min(64) as i32;
        let base = (min * self.factor.max(1.0).powi(exp)).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let low = base * (1.0 - jitter);
        let drawn = if base > low {
            rng.random_range(low..=base)
        } else {
            base
        };
        Duration::from_secs_f64(drawn.clamp(min, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn never_below_min_nor_above_max_over_many_draws() {
        let mut rng = StdRng::seed_from_u64(42);
        let shapes = [
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            Backoff {
                jitter: 1.0,
                ..Backoff::new(Duration::from_millis(1), Duration::from_millis(50))
            },
            Backoff {
                factor: 10.0,
                ..Backoff::new(Duration::from_secs(1), Duration::from_secs(600))
            },
            Backoff::new(Duration::from_secs(5), Duration::from_secs(1)),
        ];
        for backoff in shapes {
            for retry in 0..80 {
                for _ in 0..200 {
                    let d = backoff.delay(retry, &mut rng);
                    assert!(d >= backoff.min, "{d:?} below {:?}", backoff.min);
                    assert!(d <= backoff.max.max(backoff.min), "{d:?} above cap");
                }
            }
        }
    }

    #[test]
    fn grows_exponentially_without_jitter() {
        let mut rng = StdRng::seed_from_u64(1);
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
        };
        let got: Vec<u128> = (1..=6).map(|n| b.delay(n, &mut rng).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }
}

//! The soak's mixed workload: what each message asks of its handler, and
//! what must become of it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::tasks::record::RecordJob;

/// How long a slow message sleeps: longer than [`TASK_TIMEOUT_MS`], so
/// every attempt times out.
pub const SLOW_MS: u64 = 1_500;
/// The `demo.record` timeout the soak's workers run with.
pub const TASK_TIMEOUT_MS: u64 = 500;
// Slow messages time out at every attempt, with room to spare.
const _: () = assert!(SLOW_MS > TASK_TIMEOUT_MS * 2);

/// The attempts `demo.record` allows (its retry policy's `max_attempts`).
pub const ATTEMPT_BUDGET: u32 = 5;

/// What a message of the workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Succeeds at its first attempt.
    Ok,
    /// Fails transiently `n` times (1 or 2), then succeeds.
    Flaky(u32),
    /// Always fails transiently: parked `exhausted`.
    AlwaysFails,
    /// Panics: parked `exhausted`.
    Panics,
    /// Not JSON: parked `undecodable`.
    Undecodable,
    /// Outlasts its timeout at every attempt: parked `exhausted`.
    Slow,
}

impl Kind {
    /// Draws a kind: 80% ok, 8% flaky, 3% each of the four kinds that end parked.
    pub fn draw(rng: &mut StdRng) -> Kind {
        match rng.random_range(0..100) {
            0..=79 => Kind::Ok,
            80..=87 => Kind::Flaky(rng.random_range(1..=2)),
            88..=90 => Kind::AlwaysFails,
            91..=93 => Kind::Panics,
            94..=96 => Kind::Undecodable,
            _ => Kind::Slow,
        }
    }

    /// The park reason this message must end with, or `None` if it must be handled.
    pub fn park_reason(self) -> Option<&'static str> {
        match self {
            Kind::Ok | Kind::Flaky(_) => None,
            Kind::AlwaysFails | Kind::Panics | Kind::Slow => Some("exhausted"),
            Kind::Undecodable => Some("undecodable"),
        }
    }

    /// The attempt at which a handled message succeeds (without faults).
    pub fn success_attempt(self) -> Option<u32> {
        match self {
            Kind::Ok => Some(1),
            Kind::Flaky(n) => Some(n + 1),
            _ => None,
        }
    }
}

/// One message to publish: a fixture job, or an undecodable body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A `demo.record` payload.
    Job(RecordJob),
    /// Bytes that are not a payload.
    Raw(Vec<u8>),
}

/// One message of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The message id (also the payload's id).
    pub id: String,
    /// What it does.
    pub kind: Kind,
    /// What is published.
    pub body: Body,
}

/// The workload: message `i` of a soak is a pure function of the seed and `i`.
#[derive(Debug)]
pub struct Workload {
    rng: StdRng,
    next: usize,
}

impl Workload {
    /// The workload of `seed` (independent of the fault schedule's draw).
    pub fn new(seed: u64) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_f00d),
            next: 0,
        }
    }

    /// The next message.
    pub fn next_item(&mut self) -> Item {
        let id = format!("s-{}", self.next);
        self.next += 1;
        let kind = Kind::draw(&mut self.rng);
        let job = |j: RecordJob| {
            Body::Job(RecordJob {
                id: id.clone(),
                ..j
            })
        };
        let sleep_ms = self.rng.random_range(0..=20);
        let body = match kind {
            Kind::Ok => job(RecordJob {
                sleep_ms,
                ..RecordJob::default()
            }),
            Kind::Flaky(n) => job(RecordJob {
                fail: n,
                sleep_ms,
                ..RecordJob::default()
            }),
            Kind::AlwaysFails => job(RecordJob {
                fail: 99,
                ..RecordJob::default()
            }),
            Kind::Panics => job(RecordJob {
                panic: true,
                ..RecordJob::default()
            }),
            Kind::Slow => job(RecordJob {
                sleep_ms: SLOW_MS,
                ..RecordJob::default()
            }),
            Kind::Undecodable => Body::Raw(format!("{{\"id\": \"{id}").into_bytes()),
        };
        Item { id, kind, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_messages_and_every_kind_occurs() {
        let take = |seed| {
            let mut w = Workload::new(seed);
            (0..500).map(|_| w.next_item()).collect::<Vec<_>>()
        };
        let a = take(9);
        assert_eq!(a, take(9));
        for kind in [
            Kind::Ok,
            Kind::AlwaysFails,
            Kind::Panics,
            Kind::Undecodable,
            Kind::Slow,
        ] {
            assert!(a.iter().any(|i| i.kind == kind), "{kind:?} missing");
        }
        assert!(a.iter().any(|i| matches!(i.kind, Kind::Flaky(_))));
    }
}

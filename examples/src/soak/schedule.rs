//! The chaos schedule: which fault strikes when, drawn from a seed.
//!
//! [`Schedule::draw`] is a pure function of the seed and the
//! [`ScheduleOptions`], so a seed printed by a failing run replays the same
//! faults at the same offsets.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One kind of fault the soak can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A worker process killed with SIGKILL, then started again.
    Kill,
    /// A worker process stopped with SIGTERM (a clean stop), then started again.
    Term,
    /// The broker closes the workers' connections.
    CloseConnections,
    /// The network between workers and broker cut: connections dropped and
    /// refused for a while.
    NetCut,
    /// The network stalled (no byte forwarded, sockets kept open) for longer
    /// than the heartbeat.
    NetStall,
    /// The broker node stopped and started again (a private node only).
    NodeRestart,
    /// A memory alarm raised, then cleared (a private node only).
    MemoryAlarm,
    /// One node of the cluster stopped and started again (cluster only).
    ClusterNodeRestart,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Term,
        FaultKind::CloseConnections,
        FaultKind::NetCut,
        FaultKind::NetStall,
        FaultKind::NodeRestart,
        FaultKind::MemoryAlarm,
        FaultKind::ClusterNodeRestart,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "sigkill",
            FaultKind::Term => "sigterm",
            FaultKind::CloseConnections => "close-connections",
            FaultKind::NetCut => "net-cut",
            FaultKind::NetStall => "net-stall",
            FaultKind::NodeRestart => "node-restart",
            FaultKind::MemoryAlarm => "memory-alarm",
            FaultKind::ClusterNodeRestart => "cluster-node-restart",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// When it strikes, from the start of the chaos.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
    /// Which worker (for kills and stops) or cluster node it hits.
    pub target: usize,
    /// How long it lasts (cuts, stalls, alarms, node downtime).
    pub hold: Duration,
}

/// What a schedule is drawn for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// How long the chaos lasts.
    pub duration: Duration,
    /// The fault kinds the broker set-up allows.
    pub kinds: Vec<FaultKind>,
    /// Worker processes in the fleet.
    pub workers: usize,
    /// Nodes in the cluster (1 for a single node).
    pub nodes: usize,
    /// The workers' heartbeat: stalls last longer than it.
    pub heartbeat: Duration,
    /// Shortest gap between two faults.
    pub min_gap: Duration,
    /// Longest gap between two faults.
    pub max_gap: Duration,
}

/// The faults of one soak, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The faults.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// Draws the schedule for `seed`: gaps uniform in
    /// `min_gap..=max_gap`, kinds cycling through a shuffled deck of the
    /// allowed kinds (so every kind comes up in a short soak), targets and
    /// hold times at random. The same seed and options give the same
    /// schedule.
    pub fn draw(seed: u64, options: &ScheduleOptions) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut faults = Vec::new();
        let mut deck: Vec<FaultKind> = Vec::new();
        let min = options.min_gap.as_millis() as u64;
        let max = (options.max_gap.as_millis() as u64).max(min);
        let heartbeat = options.heartbeat.as_millis() as u64;
        let mut at = Duration::from_millis(rng.random_range(min..=max));
        while at < options.duration && !options.kinds.is_empty() {
            if deck.is_empty() {
                deck = options.kinds.clone();
                // Fisher-Yates, so the draw depends on the seed alone.
                for i in (1..deck.len()).rev() {
                    deck.swap(i, rng.random_range(0..=i));
                }
            }
            let kind = deck.pop().expect("refilled above");
            let (target, hold) = match kind {
                FaultKind::Kill | FaultKind::Term | FaultKind::CloseConnections => {
                    (rng.random_range(0..options.workers.max(1)), 0)
                }
                FaultKind::NetCut => (0, rng.random_range(500..=3_000)),
                FaultKind::NetStall => (0, rng.random_range(heartbeat * 2..=heartbeat * 4)),
                FaultKind::NodeRestart => (0, rng.random_range(0..=2_000)),
                FaultKind::MemoryAlarm => (0, rng.random_range(1_000..=4_000)),
                FaultKind::ClusterNodeRestart => (
                    rng.random_range(0..options.nodes.max(1)),
                    rng.random_range(2_000..=8_000),
                ),
            };
            faults.push(Fault {
                at,
                kind,
                target,
                hold: Duration::from_millis(hold),
            });
            at += Duration::from_millis(rng.random_range(min..=max));
        }
        Schedule { seed, faults }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kinds: &[FaultKind]) -> ScheduleOptions {
        ScheduleOptions {
            duration: Duration::from_secs(90),
            kinds: kinds.to_vec(),
            workers: 2,
            nodes: 3,
            heartbeat: Duration::from_secs(2),
            min_gap: Duration::from_secs(3),
            max_gap: Duration::from_secs(6),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let o = options(&FaultKind::ALL);
        assert_eq!(Schedule::draw(42, &o), Schedule::draw(42, &o));
        assert_ne!(
            Schedule::draw(42, &o).faults,
            Schedule::draw(43, &o).faults,
            "another seed, another schedule"
        );
    }

    #[test]
    fn faults_are_spaced_within_the_gaps_and_end_before_the_duration() {
        let o = options(&FaultKind::ALL);
        let s = Schedule::draw(7, &o);
        let mut last = Duration::ZERO;
        for f in &s.faults {
            let gap = f.at - last;
            assert!(gap >= o.min_gap && gap <= o.max_gap, "{gap:?}");
            assert!(f.at < o.duration);
            last = f.at;
        }
    }

    #[test]
    fn every_allowed_kind_comes_up_and_no_other() {
        let kinds = [FaultKind::Kill, FaultKind::NetStall, FaultKind::MemoryAlarm];
        let s = Schedule::draw(1, &options(&kinds));
        for k in kinds {
            assert!(s.faults.iter().any(|f| f.kind == k), "{k} missing");
        }
        assert!(s.faults.iter().all(|f| kinds.contains(&f.kind)));
    }

    #[test]
    fn stalls_outlast_the_heartbeat_and_targets_exist() {
        let o = options(&FaultKind::ALL);
        for seed in 0..20 {
            for f in Schedule::draw(seed, &o).faults {
                if f.kind == FaultKind::NetStall {
                    assert!(f.hold > o.heartbeat, "{f:?}");
                }
                assert!(f.target < 3, "{f:?}");
            }
        }
    }
}

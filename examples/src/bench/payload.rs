//! The message every scenario sends, which messages fail, and the counters
//! the consuming side keeps to prove every message was handled as expected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::procfs;

/// The task name stamped in every message's `type` property.
pub(crate) const TASK_NAME: &str = "bench.job";

/// Padding that brings the JSON body to about 100 bytes.
pub(crate) const PAD: &str = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstu";

/// The payload: a sequence number (for exactly-once accounting), the
/// publish time (for latency) and padding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BenchJob {
    pub(crate) seq: u64,
    pub(crate) sent_ns: u64,
    pub(crate) pad: String,
}

impl BenchJob {
    pub(crate) fn new(seq: u64, sent_ns: u64) -> Self {
        BenchJob {
            seq,
            sent_ns,
            pad: PAD.to_owned(),
        }
    }
}

/// The JSON body of message `seq`, as `serde_json` writes a [`BenchJob`].
pub(crate) fn body(seq: u64, sent_ns: u64) -> Vec<u8> {
    body_padded(seq, sent_ns, PAD)
}

/// [`body`] with another padding (big bodies).
pub(crate) fn body_padded(seq: u64, sent_ns: u64, pad: &str) -> Vec<u8> {
    format!(r#"{{"seq":{seq},"sent_ns":{sent_ns},"pad":"{pad}"}}"#).into_bytes()
}

/// The padding that makes a body about `bytes` long (at least [`PAD`]).
pub(crate) fn padding(bytes: usize) -> String {
    if bytes <= 100 {
        return PAD.to_owned();
    }
    // `{"seq":..,"sent_ns":..,"pad":""}` takes about 50 bytes.
    "x".repeat(bytes - 50)
}

/// The properties the framework's publisher gives a task message (content
/// type, message id, task name, timestamp, empty headers, persistent), so
/// both sides consume byte-for-byte the same kind of message.
pub(crate) fn properties(message_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(message_id))
        .with_type(TASK_NAME.into())
        .with_timestamp(procfs::now_ns() / 1_000_000_000)
        .with_headers(FieldTable::default())
        .with_delivery_mode(2)
}

/// The header the raw lapin baseline puts on its redelivered copies.
pub(crate) const BASELINE_ATTEMPT: &str = "bench-attempt";

/// Whether a baseline delivery is a redelivered copy.
pub(crate) fn baseline_attempt(props: &BasicProperties) -> u32 {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(BASELINE_ATTEMPT))
        .and_then(|v| match v {
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            _ => None,
        })
        .unwrap_or(1)
}

/// What the handler does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    /// Every message succeeds.
    Clean,
    /// Every 10th message fails once (transient) and comes back through the
    /// 100 ms delay tier.
    Redeliver,
    /// Every 100th message fails permanently and is parked.
    Park,
}

impl Mode {
    fn every(self) -> Option<u64> {
        match self {
            Mode::Clean => None,
            Mode::Redeliver => Some(10),
            Mode::Park => Some(100),
        }
    }

    /// Whether message `seq` fails on this attempt (1-based).
    pub(crate) fn fails(self, seq: u64, attempt: u32) -> bool {
        match self {
            Mode::Clean => false,
            Mode::Redeliver => seq.is_multiple_of(10) && attempt == 1,
            Mode::Park => seq.is_multiple_of(100),
        }
    }

    /// How many of `n` messages fail at least once.
    pub(crate) fn failing(self, n: u64) -> u64 {
        self.every().map_or(0, |m| n.div_ceil(m))
    }

    /// Handler runs `n` messages take in this mode.
    pub(crate) fn expected_runs(self, n: u64) -> u64 {
        match self {
            Mode::Clean | Mode::Park => n,
            Mode::Redeliver => n + self.failing(n),
        }
    }

    /// Messages that end in the parking queue.
    pub(crate) fn expected_parked(self, n: u64) -> u64 {
        match self {
            Mode::Park => self.failing(n),
            Mode::Clean | Mode::Redeliver => 0,
        }
    }
}

/// A point in time together with the process's CPU time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    at: Instant,
    cpu: Duration,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            at: Instant::now(),
            cpu: procfs::cpu_time(),
        }
    }
}

/// Handler-side accounting, shared by every handler run of one consumer.
///
/// A message is *resolved* when a handler run ends it for good (success,
/// or a permanent failure in park mode). Each sequence number must be
/// resolved exactly once; a bitset catches duplicates and gaps.
#[derive(Debug)]
pub(crate) struct Counters {
    expected: u64,
    mode: Mode,
    resolved: AtomicU64,
    runs: AtomicU64,
    dups: AtomicU64,
    strays: AtomicU64,
    /// Deliveries the broker flagged as redelivered (a channel or
    /// connection closed, or a nack): what explains duplicates.
    redelivered: AtomicU64,
    bits: Vec<AtomicU64>,
    latencies: Vec<AtomicU64>,
    /// Time the simulated I/O took, summed over its runs, and the runs.
    io_ns: AtomicU64,
    io_runs: AtomicU64,
    start: OnceLock<Mark>,
    end: OnceLock<Mark>,
    done: Notify,
}

impl Counters {
    pub(crate) fn new(expected: u64, mode: Mode, latency: bool) -> Self {
        let words = usize::try_from(expected.div_ceil(64)).unwrap_or(0);
        let slots = if latency {
            usize::try_from(expected).unwrap_or(0)
        } else {
            0
        };
        Counters {
            expected,
            mode,
            resolved: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            latencies: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            io_ns: AtomicU64::new(0),
            io_runs: AtomicU64::new(0),
            start: OnceLock::new(),
            end: OnceLock::new(),
            done: Notify::new(),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Called first thing in every handler run. Returns whether this run
    /// must fail (per the mode).
    pub(crate) fn run_started(&self, job: &BenchJob, attempt: u32) -> bool {
        self.start.get_or_init(Mark::now);
        self.runs.fetch_add(1, Ordering::Relaxed);
        if !self.latencies.is_empty() {
            let latency = procfs::now_ns().saturating_sub(job.sent_ns).max(1);
            match usize::try_from(job.seq)
                .ok()
                .and_then(|i| self.latencies.get(i))
            {
                Some(slot) => slot.store(latency, Ordering::Relaxed),
                None => {
                    self.strays.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.mode.fails(job.seq, attempt)
    }

    /// Counts a delivery the broker flagged as redelivered.
    pub(crate) fn saw_redelivery(&self) {
        self.redelivered.fetch_add(1, Ordering::Relaxed);
    }

    /// The simulated I/O of one handler run: a tokio sleep of `work`,
    /// timed, since the timer fires later than asked (it rounds up to
    /// whole milliseconds, and wakes with the runtime's driver).
    pub(crate) async fn simulate_io(&self, work: Duration) {
        let started = Instant::now();
        tokio::time::sleep(work).await;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.io_ns.fetch_add(took, Ordering::Relaxed);
        self.io_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Called when a handler run ends a message for good.
    pub(crate) fn resolve(&self, seq: u64) {
        let word = usize::try_from(seq / 64)
            .ok()
            .and_then(|i| self.bits.get(i));
        match word {
            Some(word) if seq < self.expected => {
                let bit = 1u64 << (seq % 64);
                if word.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                    self.dups.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                self.strays.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = self.resolved.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.expected {
            self.end.get_or_init(Mark::now);
            self.done.notify_one();
        }
    }

    /// Resolves once every expected message was resolved.
    pub(crate) async fn wait_done(&self) {
        if self.resolved.load(Ordering::Acquire) >= self.expected {
            return;
        }
        self.done.notified().await;
    }

    /// Handler runs so far.
    pub(crate) fn resolved(&self) -> u64 {
        self.resolved.load(Ordering::Acquire)
    }

    /// The figures of this consumer.
    pub(crate) fn result(&self) -> ChildResult {
        let seen: u64 = self
            .bits
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum();
        let (elapsed_s, cpu_s) = match (self.start.get(), self.end.get()) {
            (Some(a), Some(b)) => (
                b.at.duration_since(a.at).as_secs_f64(),
                b.cpu.saturating_sub(a.cpu).as_secs_f64(),
            ),
            _ => (0.0, 0.0),
        };
        let latency = if self.latencies.is_empty() {
            None
        } else {
            let mut v: Vec<u64> = self
                .latencies
                .iter()
                .map(|l| l.load(Ordering::Relaxed))
                .filter(|l| *l > 0)
                .collect();
            v.sort_unstable();
            Some(LatencyStats::from_sorted_ns(&v))
        };
        ChildResult {
            expected: self.expected,
            resolved: self.resolved.load(Ordering::Acquire),
            runs: self.runs.load(Ordering::Relaxed),
            expected_runs: self.mode.expected_runs(self.expected),
            dups: self.dups.load(Ordering::Relaxed),
            strays: self.strays.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            missing: self.expected.saturating_sub(seen),
            elapsed_s,
            cpu_s,
            peak_rss_kb: procfs::peak_rss_kb(),
            latency,
            io_ms: {
                let runs = self.io_runs.load(Ordering::Relaxed);
                let ns = self.io_ns.load(Ordering::Relaxed);
                if runs == 0 {
                    0.0
                } else {
                    ns as f64 / runs as f64 / 1e6
                }
            },
        }
    }
}

/// Publish-to-handler-start latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct LatencyStats {
    pub(crate) samples: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
}

impl LatencyStats {
    fn from_sorted_ns(v: &[u64]) -> Self {
        let pick = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1] as f64 / 1000.0
        };
        LatencyStats {
            samples: v.len() as u64,
            p50_us: pick(50.0),
            p99_us: pick(99.0),
            max_us: v.last().map_or(0.0, |m| *m as f64 / 1000.0),
        }
    }
}

/// What a consuming child reports to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildResult {
    /// Distinct messages the child had to resolve.
    pub(crate) expected: u64,
    /// Resolutions counted.
    pub(crate) resolved: u64,
    /// Handler runs counted.
    pub(crate) runs: u64,
    /// Handler runs the mode calls for.
    pub(crate) expected_runs: u64,
    /// Messages resolved more than once.
    pub(crate) dups: u64,
    /// Sequence numbers outside the expected range.
    pub(crate) strays: u64,
    /// Deliveries flagged redelivered (counted by the raw lapin sides).
    #[serde(default)]
    pub(crate) redelivered: u64,
    /// Sequence numbers never resolved.
    pub(crate) missing: u64,
    /// From the first handler run to the last resolution.
    pub(crate) elapsed_s: f64,
    /// The child's user+system CPU time over the same interval.
    pub(crate) cpu_s: f64,
    /// The child's peak resident set (VmHWM).
    pub(crate) peak_rss_kb: u64,
    /// Latency percentiles, in latency mode.
    pub(crate) latency: Option<LatencyStats>,
    /// How long the simulated I/O of a run took on average, in ms (0
    /// without simulated I/O).
    pub(crate) io_ms: f64,
}

impl ChildResult {
    /// The result of a publishing child: `n` messages confirmed in
    /// `elapsed_s` seconds, using `cpu_s` seconds of CPU.
    pub(crate) fn published(n: u64, elapsed_s: f64, cpu_s: f64) -> Self {
        ChildResult {
            expected: n,
            resolved: n,
            runs: n,
            expected_runs: n,
            dups: 0,
            strays: 0,
            redelivered: 0,
            missing: 0,
            elapsed_s,
            cpu_s,
            peak_rss_kb: procfs::peak_rss_kb(),
            latency: None,
            io_ms: 0.0,
        }
    }

    /// Whether every message was handled exactly as often as expected.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.resolved == self.expected
            && self.runs == self.expected_runs
            && self.dups == 0
            && self.strays == 0
            && self.missing == 0
        {
            Ok(())
        } else {
            Err(format!(
                "counting failed: expected {} resolved and {} runs, got {} resolved, {} runs, {} duplicates, {} strays, {} missing ({} deliveries flagged redelivered)",
                self.expected, self.expected_runs, self.resolved, self.runs, self.dups, self.strays, self.missing, self.redelivered
            ))
        }
    }

    /// Messages handled per second between the first and the last.
    pub(crate) fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.expected.saturating_sub(1) as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// CPU microseconds per message over the same interval.
    pub(crate) fn cpu_us_per_msg(&self) -> f64 {
        let n = self.expected.saturating_sub(1).max(1) as f64;
        self.cpu_s * 1e6 / n
    }
}

/// Publishes `body` to `queue` with raw lapin on a confirm channel, as the
/// framework's publisher would (mandatory, the properties above with a fresh
/// UUID), and returns the pending confirm.
pub(crate) async fn raw_publish(
    channel: &lapin::Channel,
    queue: &str,
    body: &[u8],
) -> Result<lapin::PublisherConfirm, super::BenchError> {
    let id = uuid::Uuid::new_v4().to_string();
    Ok(channel
        .basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            properties(&id),
        )
        .await?)
}

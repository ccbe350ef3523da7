//! The benchmark: the framework side by side with a raw lapin baseline, in one run.
//!
//! Every consuming measurement runs the consumer in a child process (the
//! bench binary re-executed as `bench __child <spec>`), so its CPU time
//! (user + system, all threads, from `/proc/self/stat`) and peak RSS
//! (`VmHWM`) are its own: not the parent's publishing, not the broker's.
//! Both sides consume the same messages (about 100 bytes of JSON,
//! persistent, framework properties) from durable quorum queues declared
//! with the same arguments, with the same prefetch, and decode the same
//! payload type. Each figure is measured in interleaved repetitions
//! (framework, baseline, framework, baseline, ...) and reported as median,
//! minimum and maximum.
//!
//! Every consuming run is verified: each sequence number resolved exactly
//! once (a bitset), handler runs as the mode demands, no strays, the work
//! queue and delay tier empty afterwards and the parking queue holding
//! exactly the parked messages.
//!
//! [`run`] is the whole benchmark; the `bench` binary parses flags with
//! [`Config::from_args`] and prints [`Report::render`].

macro_rules! with_slot {
    ($slot:expr, $S:ident => $body:expr) => {
        match $slot {
            0 => {
                const $S: usize = 0;
                $body
            }
            1 => {
                const $S: usize = 1;
                $body
            }
            2 => {
                const $S: usize = 2;
                $body
            }
            _ => {
                const $S: usize = 3;
                $body
            }
        }
    };
}

mod broker;
mod chart;
mod child;
mod enqueue;
mod payload;
mod procfs;
mod report;
mod rpc;
mod scenarios;
mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use worker_core::topology::TaskSpec;
use worker_core::{RetryPolicy, TaskOptions};

pub use chart::draw as draw_chart;
pub use report::{table, Figure, RunRecord, Summary};

use broker::Admin;
use payload::TASK_NAME;
use scenarios::Bench;

/// The error type of the benchmark.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Framework queue slots (see `Admin::lock_slot`).
pub(crate) const SLOTS: usize = 4;

/// The framework side's work queues, one per slot: a task's queue is a
/// compile-time constant, so these cannot be fresh names per run.
pub(crate) const SLOT_QUEUES: [&str; SLOTS] = [
    "rw-bench.slot0",
    "rw-bench.slot1",
    "rw-bench.slot2",
    "rw-bench.slot3",
];

/// The delay tier used by the redelivery scenario.
pub(crate) const TIER: Duration = Duration::from_millis(100);

/// The options both sides' queues are declared with (and the framework task uses).
pub(crate) fn task_options(prefetch: u16) -> TaskOptions {
    TaskOptions {
        prefetch: Some(prefetch),
        concurrency: usize::from(prefetch.max(1)),
        retry: RetryPolicy::default().in_process(1).tiers([TIER]),
        ..TaskOptions::default()
    }
}

/// Who consumes or publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The framework's worker (or publisher).
    Framework,
    /// Plain lapin that hands each ack to a spawned task and goes on.
    Lapin,
    /// Plain lapin that awaits every ack before taking the next delivery.
    LapinNaive,
}

impl Side {
    /// The sides to run in repetition `rep`, the framework and the lapin
    /// baseline (and the naive baseline when asked), rotated by `rep` so
    /// that each goes first equally often: a run right after another can
    /// find the broker busier (or warmer) than the first one did.
    pub(crate) fn in_turn(rep: usize, naive: bool) -> Vec<Side> {
        let mut sides = vec![Side::Framework, Side::Lapin];
        if naive {
            sides.push(Side::LapinNaive);
        }
        let n = sides.len();
        sides.rotate_left(rep % n);
        sides
    }
}

/// A group of figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Drain throughput of a pre-filled queue.
    Drain,
    /// Consumer CPU per message (from the drain runs).
    Cpu,
    /// Publish-to-handler-start latency at a fixed rate.
    Latency,
    /// Publishing throughput with confirms.
    Publish,
    /// Peak RSS while draining backlogs of several sizes.
    Memory,
    /// Throughput with delayed redeliveries and with parking.
    Failure,
    /// Request/reply round trips over direct reply-to, at 1 and 100 callers.
    Rpc,
    /// Handlers awaiting simulated I/O, many at a time.
    Io,
    /// Many tasks enqueueing through one shared publisher.
    Enqueue,
    /// Drains of big bodies: throughput and peak RSS.
    Bodies,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 10] = [
        Scenario::Drain,
        Scenario::Cpu,
        Scenario::Latency,
        Scenario::Publish,
        Scenario::Memory,
        Scenario::Failure,
        Scenario::Rpc,
        Scenario::Io,
        Scenario::Enqueue,
        Scenario::Bodies,
    ];

    fn parse(s: &str) -> Result<Scenario, String> {
        Ok(match s.trim() {
            "drain" => Scenario::Drain,
            "cpu" => Scenario::Cpu,
            "latency" => Scenario::Latency,
            "publish" => Scenario::Publish,
            "memory" => Scenario::Memory,
            "failure" => Scenario::Failure,
            "rpc" => Scenario::Rpc,
            "io" => Scenario::Io,
            "enqueue" => Scenario::Enqueue,
            "bodies" => Scenario::Bodies,
            other => {
                return Err(format!(
                    "unknown scenario {other:?} (drain,cpu,latency,publish,memory,failure,rpc,io,enqueue,bodies)"
                ))
            }
        })
    }
}

/// What to measure, and how much.
#[derive(Debug, Clone)]
pub struct Config {
    /// The brokers, each measured in turn with both sides on it
    /// (`AMQP_URL`, or the local default).
    pub urls: Vec<String>,
    /// The scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Messages per drain, failure and batched-publish run.
    pub messages: u64,
    /// Repetitions per figure and side.
    pub reps: usize,
    /// Prefetch of both sides (the framework's concurrency is set equal).
    pub prefetch: u16,
    /// Messages per second in the latency scenario.
    pub latency_rate: f64,
    /// Seconds of publishing in the latency scenario.
    pub latency_secs: f64,
    /// Messages per run of sequential (await each confirm) publishing.
    pub publish_sequential: u64,
    /// Messages per batch in batched publishing.
    pub batch: usize,
    /// Backlog sizes of the memory scenario.
    pub memory_sizes: Vec<u64>,
    /// Calls per side and concurrency in the request/reply scenario.
    pub rpc_calls: u64,
    /// Tasks per run of the I/O-bound scenario.
    pub io_messages: u64,
    /// Concurrent enqueuing tasks in the enqueue scenario.
    pub enqueue_callers: usize,
    /// Messages each of them enqueues.
    pub enqueue_per_caller: u64,
    /// Drains of big bodies: (messages, bytes per body).
    pub bodies: Vec<(u64, usize)>,
    /// Where to draw the chart (SVG), if anywhere.
    pub chart: Option<PathBuf>,
    /// Also drain with the naive lapin loop that awaits every ack.
    pub naive: bool,
    /// Tokio worker threads of each consuming child (default: one per CPU).
    pub threads: Option<usize>,
    /// Whether the framework's consuming child records metrics into the
    /// Prometheus recorder, as `run --http` does (default: yes).
    pub metrics: bool,
    /// The bench binary to re-execute for consuming children (default: this executable).
    pub exe: Option<PathBuf>,
    /// Whether these are the quick-mode defaults.
    pub quick: bool,
}

impl Config {
    /// The full run: 100,000 messages, 3 repetitions, backlogs of 100k and 1M.
    pub fn full() -> Self {
        Config {
            urls: vec![worker_core::connection::default_url()],
            scenarios: Scenario::ALL.to_vec(),
            messages: 100_000,
            reps: 3,
            prefetch: 100,
            latency_rate: 2_000.0,
            latency_secs: 5.0,
            publish_sequential: 2_000,
            batch: 1_000,
            memory_sizes: vec![100_000, 1_000_000],
            rpc_calls: 10_000,
            io_messages: 50_000,
            enqueue_callers: 200,
            enqueue_per_caller: 500,
            bodies: vec![(2_000, 1 << 20), (20_000, 64 << 10)],
            chart: None,
            naive: false,
            threads: None,
            metrics: true,
            exe: None,
            quick: false,
        }
    }

    /// Everything, small: finishes in well under a minute.
    pub fn quick() -> Self {
        Config {
            messages: 2_000,
            reps: 1,
            latency_rate: 1_000.0,
            latency_secs: 1.0,
            publish_sequential: 200,
            batch: 200,
            memory_sizes: vec![2_000, 10_000],
            rpc_calls: 500,
            io_messages: 2_000,
            enqueue_callers: 20,
            enqueue_per_caller: 20,
            bodies: vec![(100, 256 << 10), (500, 16 << 10)],
            quick: true,
            ..Config::full()
        }
    }

    /// Parses command-line flags (without the program name).
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let mut cfg = if args.iter().any(|a| a == "--quick") {
            Config::quick()
        } else {
            Config::full()
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_owned())),
                None => (arg.as_str(), None),
            };
            let mut value = || -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
                v.replace('_', "")
                    .parse()
                    .map_err(|_| format!("{flag}: not a number: {v:?}"))
            }
            match flag {
                "--quick" => {}
                "--naive" => cfg.naive = true,
                "--no-metrics" => cfg.metrics = false,
                "--url" => cfg.urls = vec![value()?],
                "--urls" => {
                    cfg.urls = value()?
                        .split(',')
                        .map(|u| u.trim().to_owned())
                        .filter(|u| !u.is_empty())
                        .collect();
                }
                "--io-messages" => cfg.io_messages = number(flag, &value()?)?,
                "--enqueue" => {
                    let v = value()?;
                    let (callers, per) = v
                        .split_once('x')
                        .ok_or_else(|| format!("{flag}: expected TASKSxMESSAGES, got {v:?}"))?;
                    cfg.enqueue_callers = number(flag, callers)?;
                    cfg.enqueue_per_caller = number(flag, per)?;
                }
                "--bodies" => {
                    cfg.bodies = value()?
                        .split(',')
                        .map(|b| parse_bodies(flag, b.trim()))
                        .collect::<Result<_, _>>()?;
                }
                "--chart" => cfg.chart = Some(PathBuf::from(value()?)),
                "--scenarios" => {
                    cfg.scenarios = value()?
                        .split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(Scenario::parse)
                        .collect::<Result<_, _>>()?;
                }
                "--messages" => cfg.messages = number(flag, &value()?)?,
                "--reps" => cfg.reps = number(flag, &value()?)?,
                "--prefetch" => cfg.prefetch = number(flag, &value()?)?,
                "--latency-rate" => cfg.latency_rate = number(flag, &value()?)?,
                "--latency-secs" => cfg.latency_secs = number(flag, &value()?)?,
                "--publish-sequential" => cfg.publish_sequential = number(flag, &value()?)?,
                "--batch" => cfg.batch = number(flag, &value()?)?,
                "--rpc-calls" => cfg.rpc_calls = number(flag, &value()?)?,
                "--memory-sizes" => {
                    cfg.memory_sizes = value()?
                        .split(',')
                        .map(|s| number(flag, s.trim()))
                        .collect::<Result<_, _>>()?;
                }
                "--threads" => cfg.threads = Some(number(flag, &value()?)?),
                other => return Err(format!("unknown flag {other:?}; see --help")),
            }
        }
        if cfg.messages < 2 || cfg.reps == 0 || cfg.prefetch == 0 {
            return Err("--messages must be at least 2, --reps and --prefetch at least 1".into());
        }
        if cfg.urls.is_empty() || cfg.io_messages < 2 || cfg.enqueue_callers == 0 {
            return Err(
                "--urls needs a URL, --io-messages at least 2, --enqueue at least 1 task".into(),
            );
        }
        if cfg.latency_rate <= 0.0 || cfg.latency_secs <= 0.0 {
            return Err("--latency-rate and --latency-secs must be positive".into());
        }
        Ok(cfg)
    }

    fn has(&self, s: Scenario) -> bool {
        self.scenarios.contains(&s)
    }
}

/// Parses `COUNTxSIZE` (`2000x1MiB`, `20000x64KiB`, `100x4096`).
fn parse_bodies(flag: &str, v: &str) -> Result<(u64, usize), String> {
    let bad = || format!("{flag}: expected COUNTxSIZE like 2000x1MiB, got {v:?}");
    let (count, size) = v.split_once('x').ok_or_else(bad)?;
    let (digits, unit) = match size.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => size.split_at(i),
        None => (size, ""),
    };
    let scale = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => return Err(bad()),
    };
    let count: u64 = count.replace('_', "").parse().map_err(|_| bad())?;
    let size: usize = digits.parse().map_err(|_| bad())?;
    if count < 2 || size == 0 {
        return Err(bad());
    }
    Ok((count, size * scale))
}

/// The flags, for `--help`.
pub const USAGE: &str = "\
bench: the framework side by side with a raw lapin baseline, against AMQP_URL
(default amqp://guest:guest@127.0.0.1:5672/%2f).

  --scenarios LIST         drain,cpu,latency,publish,memory,failure,rpc,io,enqueue,bodies
                           (default: all)
  --messages N             messages per drain, failure and batched-publish run (100000)
  --reps N                 interleaved repetitions per figure and side (3)
  --prefetch N             prefetch of both sides (100)
  --latency-rate R         messages per second in the latency scenario (2000)
  --latency-secs S         seconds of latency publishing (5)
  --publish-sequential N   messages per one-at-a-time publishing run (2000)
  --batch N                batch size of batched publishing (1000)
  --memory-sizes A,B       backlog sizes of the memory scenario (100000,1000000)
  --rpc-calls N            request/reply calls per side, at 1 and at 100 callers (10000)
  --io-messages N          tasks per I/O-bound run (20 ms sleep each, 200 at a time) (50000)
  --enqueue TxM            enqueue scenario: T tasks each enqueue M messages (200x500)
  --bodies LIST            big-body drains, COUNTxSIZE (2000x1MiB,20000x64KiB)
  --chart FILE             draw the figures as an SVG chart
  --naive                  also drain with a lapin loop that awaits every ack
  --no-metrics             framework child without the Prometheus recorder
                           (by default it records metrics as `run --http` does)
  --threads N              tokio worker threads per consuming child (one per CPU)
  --url URL                broker URL (overrides AMQP_URL)
  --urls URL,URL           several brokers, one after the other (each with both sides)
  --quick                  everything small: 2000 messages, 1 rep, backlogs 2000,10000,
                           500 calls, small bodies
";

/// The machine and broker a run measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Total memory in GiB.
    pub mem_gib: f64,
    /// Each broker's product and version from the AMQP handshake (or
    /// `version unknown`), in the order of [`Config::urls`].
    pub brokers: Vec<String>,
    /// Load averages (1, 5, 15 min) when the run started.
    pub load_before: String,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The settings used.
    pub config: Config,
    /// The figures, in table order.
    pub figures: Vec<Figure>,
    /// Every verified run.
    pub runs: Vec<RunRecord>,
    /// Load averages when the run ended.
    pub load_after: String,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Machine {
    /// Reads the machine facts and asks each broker its version.
    pub async fn probe(urls: &[String]) -> Machine {
        let mut brokers = Vec::with_capacity(urls.len());
        for url in urls {
            brokers.push(broker::capabilities(url).await.to_string());
        }
        Machine {
            nproc: procfs::nproc(),
            cpu_model: procfs::cpu_model(),
            mem_gib: procfs::mem_total_gib(),
            brokers,
            load_before: procfs::loadavg(),
        }
    }

    /// The header printed above the table.
    pub fn render(&self) -> String {
        format!(
            "machine: {} CPUs, {}, {:.0} GiB RAM; brokers: {}; load average before: {}",
            self.nproc,
            self.cpu_model,
            self.mem_gib,
            self.brokers.join(", "),
            self.load_before
        )
    }
}

impl Report {
    /// The header, settings, table and notes.
    pub fn render(&self) -> String {
        let c = &self.config;
        format!(
            "{}\nsettings: messages {}, reps {}, prefetch {}, quorum queues, persistent ~100-byte JSON, framework metrics {}{}\n\n{}\nload average after: {}; wall time {:.0} s\nframework / baseline: for msg/s below 1 means the framework is slower; for us, ms and MiB above 1 means it costs more.\n{}",
            self.machine.render(),
            c.messages,
            c.reps,
            c.prefetch,
            if c.metrics { "recorded (Prometheus)" } else { "off" },
            if c.quick { " (quick mode)" } else { "" },
            table(&self.figures),
            self.load_after,
            self.elapsed.as_secs_f64(),
            c.chart
                .as_ref()
                .map_or_else(String::new, |p| format!("chart: {}\n", p.display()))
        )
    }
}

/// Runs a consuming child from its spec (the hidden `__child` subcommand).
pub fn child_main(spec_json: &str) -> Result<(), BenchError> {
    child::child_main(spec_json)
}

/// Runs the benchmark on every broker of [`Config::urls`] in turn (every
/// selected scenario, verified, then its queues deleted), and draws the
/// chart if asked to.
///
/// Progress goes to stderr.
pub async fn run(cfg: &Config) -> Result<Report, BenchError> {
    let started = Instant::now();
    let machine = Machine::probe(&cfg.urls).await;
    eprintln!("{}", machine.render());
    let exe = match &cfg.exe {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let mut figures = Vec::new();
    let mut runs = Vec::new();
    for (url, version) in cfg.urls.iter().zip(&machine.brokers) {
        eprintln!("broker {version} at {}", worker_core::redact_url(url));
        let (mut measured, verified) = run_on(cfg, url, &exe).await?;
        for figure in &mut measured {
            figure.broker.clone_from(version);
        }
        figures.extend(measured);
        runs.extend(verified);
    }
    if let Some(path) = &cfg.chart {
        chart::draw(&figures, path)?;
        eprintln!("chart: {}", path.display());
    }
    Ok(Report {
        machine,
        config: cfg.clone(),
        figures,
        runs,
        load_after: procfs::loadavg(),
        elapsed: started.elapsed(),
    })
}

/// The selected scenarios against the broker at `url`.
async fn run_on(
    cfg: &Config,
    url: &str,
    exe: &std::path::Path,
) -> Result<(Vec<Figure>, Vec<RunRecord>), BenchError> {
    let admin = Admin::connect(url).await?;
    let slot = admin.lock_slot().await?;
    let options = task_options(cfg.prefetch);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let fw = Arc::new(TaskSpec::new(TASK_NAME, SLOT_QUEUES[slot], options.clone()));
    let base = Arc::new(TaskSpec::new(
        TASK_NAME,
        &format!("rw-bench-{}.lapin", &run_id[..12]),
        options,
    ));
    eprintln!(
        "queues: framework {} (slot {slot}), baseline {}",
        fw.queue, base.queue
    );
    // The slot's queues may be left over from a run that was killed.
    admin.delete(&fw).await?;
    admin.declare(&fw).await?;
    admin.declare(&base).await?;
    let mut bench = Bench {
        cfg,
        url: url.to_owned(),
        admin,
        slot,
        fw,
        base,
        exe: exe.to_owned(),
        figures: Vec::new(),
        runs: Vec::new(),
    };
    let outcome = scenarios(&mut bench).await;
    let cleanup = async {
        bench.admin.delete(&bench.fw).await?;
        bench.admin.delete(&bench.base).await
    }
    .await;
    bench.admin.close().await;
    outcome?;
    cleanup?;
    Ok((bench.figures, bench.runs))
}

async fn scenarios(bench: &mut Bench<'_>) -> Result<(), BenchError> {
    let cfg = bench.cfg;
    if cfg.has(Scenario::Drain) || cfg.has(Scenario::Cpu) {
        eprintln!("drain ...");
        bench
            .drain(cfg.has(Scenario::Drain), cfg.has(Scenario::Cpu))
            .await?;
    }
    if cfg.has(Scenario::Latency) {
        eprintln!("latency ...");
        bench.latency().await?;
    }
    if cfg.has(Scenario::Publish) {
        eprintln!("publish ...");
        bench.publish().await?;
    }
    if cfg.has(Scenario::Memory) {
        eprintln!("memory ...");
        bench.memory().await?;
    }
    if cfg.has(Scenario::Failure) {
        eprintln!("failure ...");
        bench.failure().await?;
    }
    if cfg.has(Scenario::Rpc) {
        eprintln!("request/reply ...");
        bench.rpc().await?;
    }
    if cfg.has(Scenario::Io) {
        eprintln!("io ...");
        bench.io().await?;
    }
    if cfg.has(Scenario::Enqueue) {
        eprintln!("enqueue ...");
        bench.enqueue().await?;
    }
    if cfg.has(Scenario::Bodies) {
        eprintln!("bodies ...");
        bench.bodies().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Side;

    #[test]
    fn each_side_goes_first_in_turn() {
        assert_eq!(Side::in_turn(0, false), [Side::Framework, Side::Lapin]);
        assert_eq!(Side::in_turn(1, false), [Side::Lapin, Side::Framework]);
        assert_eq!(Side::in_turn(2, false), [Side::Framework, Side::Lapin]);
        assert_eq!(
            Side::in_turn(1, true),
            [Side::Lapin, Side::LapinNaive, Side::Framework]
        );
    }
}

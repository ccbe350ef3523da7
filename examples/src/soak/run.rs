//! One soak from start to account.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::fleet::Fleet;
use super::proxy::{FaultProxy, Mode};
use super::publish::{publish, Published};
use super::report::{check, SoakReport};
use super::schedule::{Fault, FaultKind, Schedule, ScheduleOptions};
use super::target::{BrokerChoice, Target};
use super::workload::TASK_TIMEOUT_MS;
use crate::faults::{Lab, Run};
use crate::tasks::record::TIMEOUT_ENV;

/// Worker processes in the fleet.
const WORKERS: usize = 2;
/// The workers' prefetch: the most one worker can hold when a fault strikes.
pub(super) const PREFETCH: usize = 50;
/// The workers' AMQP heartbeat; stalls last two to four times longer.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How often the fleet is checked (memory sampled, dead workers restarted).
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often a long drain prints where it stands.
const NOTE_EVERY: Duration = Duration::from_secs(30);

/// How to run a soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The seed of the schedule and the workload.
    pub seed: u64,
    /// How long the faults go on.
    pub duration: Duration,
    /// The broker.
    pub broker: BrokerChoice,
    /// Messages published per second during the chaos.
    pub rate: u32,
    /// How long the drain after the chaos may go on without progress
    /// (no message newly handled or parked) before the soak fails. A large
    /// backlog that keeps shrinking is not a failure; work that stops is.
    pub stall: Duration,
    /// The `demo-worker` executable.
    pub demo_bin: PathBuf,
    /// The command that replays this soak (printed when it fails).
    pub replay: String,
}

impl SoakOptions {
    /// The schedule these options give against a broker that allows `kinds`.
    pub fn schedule(&self, kinds: Vec<FaultKind>, nodes: usize) -> Schedule {
        Schedule::draw(
            self.seed,
            &ScheduleOptions {
                duration: self.duration,
                kinds,
                workers: WORKERS,
                nodes,
                heartbeat: HEARTBEAT,
                min_gap: Duration::from_secs(3),
                max_gap: Duration::from_secs(6),
            },
        )
    }
}

/// Runs a soak and returns its report; `Err` when it could not run at all
/// (no broker, no worker binary). Whether the account holds is the
/// report's [`problems`](SoakReport::problems).
pub async fn soak(options: &SoakOptions) -> Result<SoakReport, String> {
    let mut target = Target::start(&options.broker).await?;
    let urls = target.urls();
    let mut lab = Lab::new(options.demo_bin.clone());
    if let Target::Shared(url) = &target {
        lab.base_url = url.clone();
    }
    let tiers = "200ms,1s";
    let args = ["--prefetch", &PREFETCH.to_string(), "--grace-period", "5s"];
    let mut run = match &target {
        Target::Shared(_) => lab.prepare("soak", tiers, &args).await?,
        _ => {
            lab.prepare_at("soak", urls.join(","), None, tiers, &args)
                .await?
        }
    };
    let direct: Vec<String> = run.config.url.split(',').map(str::to_owned).collect();
    let mut proxies = Vec::new();
    let mut proxied = Vec::new();
    for url in &direct {
        let proxy = FaultProxy::start(upstream(url)?)
            .await
            .map_err(|e| format!("cannot start the fault proxy: {e}"))?;
        proxied.push(through(url, proxy.addr(), HEARTBEAT));
        proxies.push(proxy);
    }
    run.config.url = proxied.join(",");
    run.config
        .env
        .push((TIMEOUT_ENV.to_owned(), format!("{TASK_TIMEOUT_MS}ms")));

    let schedule = options.schedule(target.kinds(), target.nodes());
    println!(
        "schedule of seed {}: {} faults over {:?}, {} messages/s",
        options.seed,
        schedule.faults.len(),
        options.duration,
        options.rate
    );
    let mut fleet = Fleet::start(&mut run, WORKERS)?;
    let (stop, stopped) = watch::channel(false);
    let publisher = tokio::spawn(publish(direct, options.seed, options.rate, stopped));

    let started = Instant::now();
    let mut injected: BTreeMap<FaultKind, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for fault in &schedule.faults {
        tend(&mut fleet, &mut run, started + fault.at, &mut problems).await;
        if let Err(e) = inject(fault, &mut target, &mut fleet, &mut run, &proxies).await {
            problems.push(format!("{} at {:?}: {e}", fault.kind, fault.at));
        }
        *injected.entry(fault.kind).or_default() += 1;
        println!(
            "  {:>6.1}s {} (target {}, hold {:?})",
            fault.at.as_secs_f64(),
            fault.kind,
            fault.target,
            fault.hold
        );
    }
    tend(
        &mut fleet,
        &mut run,
        started + options.duration,
        &mut problems,
    )
    .await;
    let chaos = started.elapsed();

    // Faults off: network passes, nodes up, alarm cleared; then drain.
    for proxy in &proxies {
        proxy.set(Mode::Pass);
    }
    if let Err(e) = target.heal().await {
        problems.push(format!("healing the broker after the chaos: {e}"));
    }
    let _ = stop.send(true);
    let published: Published = publisher
        .await
        .map_err(|e| format!("the publisher died: {e}"))?;
    run.published = published.items.iter().map(|(id, _)| id.clone()).collect();
    let drain_started = Instant::now();
    let mut last_progress = (Instant::now(), 0);
    let mut next_note = Instant::now() + NOTE_EVERY;
    let mut settled_checks = 0;
    let total = run.published.len();
    loop {
        // Progress from queue depths and the record file: cheap, where
        // listing the parking queue by id (the account) takes seconds once
        // it holds thousands.
        let (queued, parking) = run.depths().await;
        let done = run.record().distinct() + parking;
        // Settled: every id handled or parked (by id: parking may hold
        // copies) and nothing ready in any queue, twice in a row a second
        // apart (a copy whose ack a fault lost can still be in flight at
        // the first look).
        let settled = queued == 0 && {
            let (now, _) = run.account().await;
            now.queued == 0 && now.lost == 0
        };
        settled_checks = if settled { settled_checks + 1 } else { 0 };
        if settled_checks >= 2 {
            break;
        }
        if done > last_progress.1 {
            last_progress = (Instant::now(), done);
        }
        if Instant::now() >= next_note {
            println!(
                "  draining for {:.0?}: {done} of {total} handled or parked, {queued} queued",
                drain_started.elapsed(),
            );
            next_note += NOTE_EVERY;
        }
        if last_progress.0.elapsed() >= options.stall {
            problems.push(format!(
                "the drain made no progress for {:?} ({done} of {total} handled or parked, {queued} queued; {})",
                options.stall,
                run.describe_queues().await
            ));
            break;
        }
        tend(
            &mut fleet,
            &mut run,
            Instant::now() + Duration::from_secs(1),
            &mut problems,
        )
        .await;
    }
    let drain = drain_started.elapsed();
    let peak_rss_kib = fleet.peak_rss_kib();
    let unexpected_exits = fleet.unexpected_exits;
    let stopped_before_start = fleet.stopped_before_start;
    fleet.stop().await;
    let (account, parked) = run.account().await;
    let parked_copies = parked.len().saturating_sub(account.parked);
    let mut report = SoakReport {
        seed: options.seed,
        chaos,
        drain,
        account,
        injected,
        resent: published.resent,
        parked_copies,
        parked_by_backstop: 0,
        slow_succeeded: 0,
        stopped_before_start,
        unconfirmed: published.unconfirmed,
        peak_rss_kib,
        workers_started: run.spawned(),
        unexpected_exits,
        runs_beyond_budget: 0,
        most_runs: 0,
        slack_bound: 0,
        problems,
        replay: options.replay.clone(),
    };
    check(
        &mut report,
        &published.items,
        &run.record(),
        &run.runs(),
        &parked,
    );
    if !report.passed() {
        lab.keep_files();
        report.problems.push(format!(
            "worker logs and the record file are kept in {}",
            lab.dir.display()
        ));
    }
    Ok(report)
}

/// Keeps the fleet going until `until`: samples memory, restarts workers
/// that died by themselves.
async fn tend(fleet: &mut Fleet, run: &mut Run, until: Instant, problems: &mut Vec<String>) {
    loop {
        if let Err(e) = fleet.check(run) {
            problems.push(e);
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(CHECK_EVERY)).await;
    }
}

async fn inject(
    fault: &Fault,
    target: &mut Target,
    fleet: &mut Fleet,
    run: &mut Run,
    proxies: &[FaultProxy],
) -> Result<(), String> {
    let network = |mode| proxies.iter().for_each(|p| p.set(mode));
    match fault.kind {
        FaultKind::Kill => fleet.kill(run, fault.target).await,
        FaultKind::Term => fleet.term(run, fault.target).await,
        FaultKind::CloseConnections => target.close_connections(run).await,
        FaultKind::NetCut | FaultKind::NetStall => {
            network(if fault.kind == FaultKind::NetCut {
                Mode::Cut
            } else {
                Mode::Stall
            });
            tokio::time::sleep(fault.hold).await;
            network(Mode::Pass);
            Ok(())
        }
        FaultKind::NodeRestart | FaultKind::ClusterNodeRestart => {
            target.restart(fault.target, fault.hold).await
        }
        FaultKind::MemoryAlarm => {
            target.memory_alarm(true).await?;
            tokio::time::sleep(fault.hold).await;
            target.memory_alarm(false).await
        }
    }
}

/// The `host:port` of an AMQP URL, resolved.
fn upstream(url: &str) -> Result<SocketAddr, String> {
    let authority = authority(url);
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:5672")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve {with_port} (from the broker URL)"))
}

/// The host and port part of an AMQP URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// `url` with its host and port replaced by the proxy's, and the heartbeat set.
fn through(url: &str, proxy: SocketAddr, heartbeat: Duration) -> String {
    let authority = authority(url);
    let replaced = url.replacen(authority, &proxy.to_string(), 1);
    let sep = if replaced.contains('?') { '&' } else { '?' };
    format!("{replaced}{sep}heartbeat={}", heartbeat.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_routed_through_the_proxy_with_a_heartbeat() {
        let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            through("amqp://guest:guest@127.0.0.1:5691/%2f", proxy, HEARTBEAT),
            "amqp://guest:guest@127.0.0.1:4000/%2f?heartbeat=2"
        );
        assert_eq!(authority("amqp://localhost"), "localhost");
        assert_eq!(
            upstream("amqp://u:p@127.0.0.1:5673/v").unwrap(),
            "127.0.0.1:5673".parse().unwrap()
        );
    }
}

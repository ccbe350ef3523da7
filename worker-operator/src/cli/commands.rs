//! Running each subcommand.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Read as _;
use std::sync::Arc;

use super::args::{
    Cli, Command, DashboardArgs, DashboardOptions, EnqueueArgs, GlobalArgs, ParkedCommand,
    ParkedDeleteArgs, ParkedListArgs, ParkedPurgeArgs, ParkedReplayArgs, ParkedShowArgs, RunArgs,
    StatusArgs, TopologyCommand,
};
use super::progress::Bars;
use super::{enqueue_file, exit, Finished, Setup};
use crate::dashboard::{Access, Dashboard};
use crate::ops::{self, parked, status, topology};
use worker_core::connection::{ConnectionSettings, Connector, Secret};
use worker_core::error::{redact_url, Error};
use worker_core::format_duration;
use worker_core::publisher::EnqueueOptions;
use worker_core::topology::TaskSpec;
use worker_core::worker::{Worker, WorkerConfig};

/// A failure with its exit code and a message saying what to do.
pub(super) struct Failed(pub(super) u8, pub(super) String);

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed(exit::code_for(&e), exit::describe(&e))
    }
}

pub(super) type Outcome = Result<Finished, Failed>;

pub(super) async fn execute(
    setup: Vec<Setup>,
    cli: Cli,
    stop: impl Future<Output = ()> + Send,
    app_name: &str,
    bars: Bars,
) -> Finished {
    match run_command(setup, cli, stop, app_name, bars).await {
        Ok(finished) => finished,
        Err(Failed(code, message)) => Finished::fail(code, message),
    }
}

async fn run_command(
    setup: Vec<Setup>,
    cli: Cli,
    stop: impl Future<Output = ()> + Send,
    app_name: &str,
    bars: Bars,
) -> Outcome {
    let config = connection_settings(&cli.global, app_name).resolve()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let connector = Connector::new(config);
    let mut worker = Worker::new(connector.clone());
    for step in setup {
        worker = step(worker);
    }
    let specs = worker.specs();
    let token = cli.global.dashboard_token.clone();
    let result = match cli.command {
        Command::Run(args) => run(worker, &specs, args, token, stop).await,
        Command::Dashboard(args) => dashboard(&connector, &specs, args, token, stop).await,
        Command::Enqueue(args) => enqueue(&worker, &specs, args, bars).await,
        Command::Parked(cmd) => parked_command(&connector, &specs, cmd, bars).await,
        Command::Topology(TopologyCommand::Declare) => declare(&worker, &specs).await,
        Command::Topology(TopologyCommand::Check(args)) => {
            check(&connector, &specs, args.json).await
        }
        Command::Status(args) => {
            status_command(&connector, &specs, worker.periodic_entries(), &args).await
        }
        Command::Tasks => Ok(Finished::ok(tasks_table(&specs, worker.periodic_entries()))),
    };
    connector.close().await;
    result
}

fn connection_settings(global: &GlobalArgs, app_name: &str) -> ConnectionSettings {
    ConnectionSettings {
        urls: global.urls.clone(),
        vhost: global.vhost.clone(),
        user: global.user.clone(),
        password: global.password.clone(),
        password_file: global.password_file.clone(),
        tls_ca_file: global.tls_ca_file.clone(),
        tls_cert_file: global.tls_cert_file.clone(),
        tls_key_file: global.tls_key_file.clone(),
        connection_name: Some(format!(
            "{app_name}@{}",
            worker_core::__operator::hostname()
        )),
        require_tls: global.require_tls,
    }
}

fn known_tasks(specs: &[Arc<TaskSpec>]) -> String {
    if specs.is_empty() {
        return "none are registered; register tasks with App::register".to_owned();
    }
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    format!("registered tasks: {}", names.join(", "))
}

/// A task by name (or queue name), or a usage error listing the known ones.
fn task<'a>(specs: &'a [Arc<TaskSpec>], name: &str) -> Result<&'a Arc<TaskSpec>, Failed> {
    ops::find_task(specs, name).ok_or_else(|| {
        Failed(
            exit::USAGE,
            format!("unknown task {name:?}; {}", known_tasks(specs)),
        )
    })
}

/// The dashboard's token: from the file when one is given, else from
/// `RABBIT_WORKER_DASHBOARD_TOKEN`.
fn dashboard_token(
    options: &DashboardOptions,
    from_env: Option<Secret>,
) -> Result<Option<Secret>, Failed> {
    match &options.dashboard_token_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| Some(Secret::new(t.trim_end_matches(['\r', '\n']))))
            .map_err(|e| {
                Failed(
                    exit::CONFIG,
                    format!(
                        "cannot read the dashboard token file {}: {e}",
                        path.display()
                    ),
                )
            }),
        None => Ok(from_env),
    }
}

/// `dashboard --http ADDR`: serves the dashboard until `stop`, consuming nothing.
async fn dashboard(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    args: DashboardArgs,
    token: Option<Secret>,
    stop: impl Future<Output = ()> + Send,
) -> Outcome {
    let token = dashboard_token(&args.dashboard, token)?;
    let access = Access::for_address(args.http, token)?;
    // Fail early, with exit 4, when the broker cannot be reached.
    connector.connection().await?;
    let routes = Dashboard::new(connector.clone(), specs.to_vec(), access)
        .read_only(args.dashboard.read_only)
        .router();
    let server = crate::http::serve_router(args.http, routes, "the dashboard").await?;
    tracing::info!("dashboard on http://{}/", server.local_addr());
    stop.await;
    server.shutdown().await;
    Ok(Finished::ok(String::new()))
}

async fn run(
    worker: Worker,
    specs: &[Arc<TaskSpec>],
    args: RunArgs,
    token: Option<Secret>,
    stop: impl Future<Output = ()> + Send,
) -> Outcome {
    let mut queues: BTreeSet<String> = BTreeSet::new();
    for name in &args.tasks {
        let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| {
            Failed(
                exit::USAGE,
                format!("unknown task {name:?} in --task; {}", known_tasks(specs)),
            )
        })?;
        let sharing: Vec<&str> = specs
            .iter()
            .filter(|s| s.queue == spec.queue && s.name != spec.name)
            .map(|s| s.name)
            .collect();
        if !sharing.is_empty() {
            tracing::warn!(
                "task {} shares queue {} with {}; consuming it serves them too",
                spec.name,
                spec.queue,
                sharing.join(", ")
            );
        }
        queues.insert(spec.queue.to_string());
    }
    for name in &args.queues {
        if !specs.iter().any(|s| &*s.queue == name) {
            let known: BTreeSet<&str> = specs.iter().map(|s| &*s.queue).collect();
            return Err(Failed(
                exit::USAGE,
                format!(
                    "no registered task consumes queue {name:?} (--queue); known queues: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        queues.insert(name.clone());
    }
    let mut worker = worker.config(WorkerConfig {
        grace_period: args.grace_period,
        declare_topology: !args.no_declare,
        ..WorkerConfig::default()
    });
    if !queues.is_empty() {
        worker = worker.only(queues.into_iter().collect());
    }
    if let Some(p) = args.prefetch {
        worker = worker.prefetch(p);
    }
    if let Some(c) = args.concurrency {
        worker = worker.concurrency(c as usize);
    }

    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let server = match args.http {
        Some(addr) => {
            let metrics = match crate::http::prometheus() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "/metrics disabled");
                    None
                }
            };
            let token = dashboard_token(&args.dashboard, token)?;
            match Access::for_address(addr, token) {
                Ok(access) => {
                    let routes = Dashboard::new(worker.connector().clone(), specs.to_vec(), access)
                        .read_only(args.dashboard.read_only)
                        .metrics(metrics.clone())
                        .router()
                        .merge(crate::http::probe_routes(
                            metrics,
                            ready_rx,
                            worker.breakers(),
                        ));
                    let what = "the dashboard, /metrics, /healthz and /readyz";
                    Some(crate::http::serve_router(addr, routes, what).await?)
                }
                Err(e) => {
                    // Probes keep working where they always did; without
                    // a token the dashboard stays off.
                    tracing::warn!("dashboard not served: {e}");
                    Some(crate::http::serve(addr, metrics, ready_rx, worker.breakers()).await?)
                }
            }
        }
        None => None,
    };
    let urls: Vec<String> = worker
        .connector()
        .config()
        .urls
        .iter()
        .map(|u| redact_url(u))
        .collect();
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    tracing::info!(?urls, tasks = ?names, "worker starting");

    let running = match worker.start().await {
        Ok(running) => running,
        Err(e) => {
            if let Some(server) = server {
                server.shutdown().await;
            }
            return Err(e.into());
        }
    };
    let mut readiness = running.readiness();
    let forward = tokio::spawn(async move {
        loop {
            let now = *readiness.borrow_and_update();
            ready_tx.send_replace(now);
            if readiness.changed().await.is_err() {
                ready_tx.send_replace(false);
                break;
            }
        }
    });
    tokio::select! {
        () = stop => tracing::info!("stop requested; finishing in-flight work"),
        () = running.finished() => {}
    }
    let result = running.shutdown().await;
    forward.abort();
    if let Some(server) = server {
        server.shutdown().await;
    }
    result?;
    tracing::info!("worker stopped");
    Ok(Finished::ok(String::new()))
}

async fn enqueue(
    worker: &Worker,
    specs: &[Arc<TaskSpec>],
    args: EnqueueArgs,
    bars: Bars,
) -> Outcome {
    let spec = specs.iter().find(|s| s.name == args.task).ok_or_else(|| {
        Failed(
            exit::USAGE,
            format!("unknown task {:?}; {}", args.task, known_tasks(specs)),
        )
    })?;
    let options = EnqueueOptions {
        message_id: args.id,
        correlation_id: args.correlation_id,
        priority: args.priority,
        ..EnqueueOptions::default()
    };
    let json = match (&args.from, args.json) {
        (Some(path), _) => {
            return enqueue_file::enqueue_from(worker, spec, path, options, bars).await
        }
        (None, Some(json)) => json,
        (None, None) => {
            return Err(Failed(
                exit::USAGE,
                "give the payload as JSON, `-` for stdin, or --from FILE".to_owned(),
            ))
        }
    };
    let text = if json == "-" {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf).map_err(|e| {
            Failed(
                exit::USAGE,
                format!("cannot read the payload from stdin: {e}"),
            )
        })?;
        buf
    } else {
        json
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Failed(
            exit::USAGE,
            format!("the payload is not valid JSON ({e}); quote it for the shell, for example '{{\"to\":\"a@example.com\"}}'"),
        )
    })?;
    match worker.check_payload(spec.name, None, text.as_bytes()) {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return Err(Failed(
                exit::USAGE,
                format!(
                    "the payload does not match task {}'s payload type: {e}; nothing was published",
                    spec.name
                ),
            ))
        }
        None => unreachable!("the spec came from this worker"),
    }
    let publisher = worker.publisher();
    let (id, message) = publisher.task_message(spec.name, &spec.queue, &value, options)?;
    worker.connector().wait_until_unblocked().await;
    publisher.publish(message).await?;
    Ok(Finished::ok(format!("{id}\n")))
}

async fn parked_command(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    cmd: ParkedCommand,
    bars: Bars,
) -> Outcome {
    match cmd {
        ParkedCommand::List(args) => parked_list(connector, specs, args).await,
        ParkedCommand::Show(args) => parked_show(connector, specs, args).await,
        ParkedCommand::Replay(args) => parked_replay(connector, specs, args, bars).await,
        ParkedCommand::Delete(args) => parked_delete(connector, specs, args).await,
        ParkedCommand::Purge(args) => parked_purge(connector, specs, args, bars).await,
    }
}

fn missing_parking(queue: &str) -> String {
    format!(
        "parking queue {queue} does not exist: nothing was parked yet, or the topology was never declared (run `topology declare` or start the worker)"
    )
}

async fn parked_list(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    args: ParkedListArgs,
) -> Outcome {
    let spec = task(specs, &args.task)?;
    let filter = args.filter.filter().map_err(|e| Failed(exit::USAGE, e))?;
    let page = parked::Page {
        offset: args.offset,
        limit: args.limit,
    };
    let listing = parked::list(connector, &spec.parking, &filter, page).await?;
    if args.json {
        // The dashboard's API answers with the same JSON.
        let v = crate::dashboard::api::listing_json(&listing);
        return Ok(Finished::ok(format!("{v:#}\n")));
    }
    if !listing.exists {
        let mut f = Finished::ok(String::new());
        f.stderr = missing_parking(&listing.queue);
        return Ok(f);
    }
    let shown = listing.messages.len();
    let matching = if filter.is_empty() {
        String::new()
    } else {
        format!(", {} matching", listing.matching)
    };
    let more = (args.offset + shown) < listing.matching as usize;
    let mut out = format!(
        "{} parked in {}{matching}{}\n",
        listing.total,
        listing.queue,
        if more || args.offset > 0 {
            format!(
                " (showing {} from {}; --offset and --limit page through them)",
                shown,
                args.offset + usize::from(shown > 0)
            )
        } else {
            String::new()
        }
    );
    for m in &listing.messages {
        let _ = writeln!(out, "{}", m.summary());
    }
    if listing.total > 0 {
        let _ = writeln!(
            out,
            "\nshow one: parked show {} ID; replay: parked replay {} --all (or --id ID)",
            spec.name, spec.name
        );
    }
    Ok(Finished::ok(out))
}

async fn parked_show(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    args: ParkedShowArgs,
) -> Outcome {
    let (task_name, id) = args.task_and_id();
    let queues: Vec<String> = match task_name {
        Some(name) => vec![task(specs, name)?.parking.clone()],
        None => specs
            .iter()
            .map(|s| s.parking.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    match parked::find(connector, &queues, id).await? {
        Some(m) if args.json => Ok(Finished::ok(format!("{:#}\n", m.to_json(true)))),
        Some(m) => Ok(Finished::ok(m.details())),
        None => Err(Failed(
            exit::FAILURE,
            format!(
                "no parked message with id {id:?} in {}; list them with `parked list TASK`",
                queues.join(", ")
            ),
        )),
    }
}

async fn parked_replay(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    args: ParkedReplayArgs,
    bars: Bars,
) -> Outcome {
    let spec = task(specs, &args.task)?;
    let selection = if args.all {
        parked::Selection::All
    } else {
        parked::Selection::Ids(args.ids.clone())
    };
    // With --id the whole queue is read to find them: the bar counts the
    // messages looked at; with --all, the ones replayed.
    let bar = bars.counter(if args.all { "replayed" } else { "searched" });
    let report = parked::replay_with_progress(connector, spec, &selection, &bar).await;
    drop(bar);
    let report = report?;
    let mut out = format!(
        "replayed {} message(s) from {} to {}\n",
        report.replayed.len(),
        report.queue,
        spec.queue
    );
    for id in &report.replayed {
        let _ = writeln!(out, "  {id}");
    }
    let mut finished = Finished::ok(out);
    if let Some(e) = report.error {
        finished.code = exit::code_for(&e);
        finished.stderr = format!(
            "replay stopped: {}; messages not replayed are still parked, run the command again once the cause is fixed",
            exit::describe(&e)
        );
    } else if !report.not_found.is_empty() {
        finished.code = exit::FAILURE;
        finished.stderr = format!(
            "not parked in {}: {}; check the ids with `parked list {}`",
            report.queue,
            report.not_found.join(", "),
            spec.name
        );
    }
    Ok(finished)
}

async fn parked_delete(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    args: ParkedDeleteArgs,
) -> Outcome {
    let spec = task(specs, &args.task)?;
    let filter = args.filter.filter().map_err(|e| Failed(exit::USAGE, e))?;
    let selection = match (args.ids.is_empty(), filter.is_empty()) {
        (false, true) => parked::Selection::Ids(args.ids.clone()),
        (true, false) => parked::Selection::Matching(filter),
        (false, false) => {
            return Err(Failed(
                exit::USAGE,
                "give either --id or a filter (--reason, --grep, --since, --until), not both"
                    .to_owned(),
            ))
        }
        (true, true) => {
            return Err(Failed(
                exit::USAGE,
                format!(
                "say which messages: --id ID or a filter; `parked purge {} --yes` deletes them all",
                spec.name
            ),
            ))
        }
    };
    if !args.yes {
        return Err(Failed(
            exit::USAGE,
            format!(
                "refusing to delete parked messages of {} without --yes; look at them first with `parked list {}` and the same filter",
                spec.parking, spec.name
            ),
        ));
    }
    let report = parked::delete(connector, &spec.parking, &selection).await?;
    let mut out = format!(
        "deleted {} message(s) from {}\n",
        report.deleted.len(),
        report.queue
    );
    for id in &report.deleted {
        let _ = writeln!(out, "  {id}");
    }
    let mut finished = Finished::ok(out);
    if let Some(e) = report.error {
        finished.code = exit::code_for(&e);
        finished.stderr = format!(
            "delete stopped: {}; messages not deleted are still parked",
            exit::describe(&e)
        );
    } else if !report.not_found.is_empty() {
        finished.code = exit::FAILURE;
        finished.stderr = format!(
            "not parked in {}: {}",
            report.queue,
            report.not_found.join(", ")
        );
    }
    Ok(finished)
}

async fn parked_purge(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    args: ParkedPurgeArgs,
    bars: Bars,
) -> Outcome {
    let spec = task(specs, &args.task)?;
    if !args.yes {
        let depth = ops::queue_depth(connector, &spec.parking).await?;
        if depth.is_some_and(|d| d.messages == 0) {
            return Ok(Finished::ok(format!(
                "nothing to purge: {} is empty\n",
                spec.parking
            )));
        }
        let count = depth.map_or_else(|| "the".to_owned(), |d| d.messages.to_string());
        return Err(Failed(
            exit::USAGE,
            format!(
                "refusing to delete {count} parked message(s) of {} without --yes; look at them first with `parked list {}`",
                spec.parking, spec.name
            ),
        ));
    }
    // `queue.purge` is one broker call that answers with the count when it
    // is done, with nothing to count on the way: a bar would jump from 0
    // to the end. A spinner says it is running; the count follows on stdout.
    let spinner = bars.spinner(format!("purging {}", spec.parking));
    let purged = parked::purge(connector, &spec.parking).await;
    drop(spinner);
    match purged? {
        Some(n) => Ok(Finished::ok(format!(
            "purged {n} message(s) from {}\n",
            spec.parking
        ))),
        None => {
            let mut f = Finished::ok(String::new());
            f.stderr = missing_parking(&spec.parking);
            Ok(f)
        }
    }
}

async fn declare(worker: &Worker, specs: &[Arc<TaskSpec>]) -> Outcome {
    worker.declare_topology().await?;
    let queues: usize = specs
        .iter()
        .map(|s| worker_core::topology::plan(s, worker_core::broker::Capabilities::unknown()).len())
        .sum();
    Ok(Finished::ok(format!(
        "declared {queues} queue(s) for {} task(s)\n",
        specs.len()
    )))
}

async fn check(connector: &Connector, specs: &[Arc<TaskSpec>], json: bool) -> Outcome {
    let report = topology::check(connector, specs).await?;
    let stdout = if json {
        format!("{:#}\n", report.to_json())
    } else {
        report.items.iter().map(|c| format!("{c}\n")).collect()
    };
    let mut finished = Finished::ok(stdout);
    if !report.is_ok() {
        finished.code = exit::TOPOLOGY;
        let differs = report
            .problems()
            .filter(|c| matches!(c.verdict, topology::Verdict::Differs(_)))
            .count();
        let missing = report.problems().count() - differs;
        finished.stderr =
            format!("topology check failed: {differs} differ, {missing} missing (details above)");
    }
    Ok(finished)
}

async fn status_command(
    connector: &Connector,
    specs: &[Arc<TaskSpec>],
    periodic: &[worker_core::schedule::Periodic],
    args: &StatusArgs,
) -> Outcome {
    let json = args.json;
    let mut status = status::status(connector, specs).await?;
    status.workers = crate::ops::breakers::read_all(&args.workers).await;
    let scheduler = if periodic.is_empty() {
        None
    } else {
        Some(worker_core::schedule::status::status(connector, periodic).await?)
    };
    let mut finished = if json {
        let mut value = status.to_json();
        if let (Some(s), Some(object)) = (&scheduler, value.as_object_mut()) {
            object.insert("periodic".to_owned(), scheduler_json(s));
        }
        Finished::ok(format!("{value:#}\n"))
    } else {
        let mut text = status::render_table(&status);
        if let Some(s) = &scheduler {
            text.push_str(&scheduler_text(s));
        }
        Finished::ok(text)
    };
    if status.tasks.iter().any(status::TaskStatus::has_missing) {
        finished.stderr =
            "some queues are missing: run `topology declare` or start the worker".to_owned();
    }
    Ok(finished)
}

fn scheduler_text(s: &worker_core::schedule::status::SchedulerStatus) -> String {
    let mut out = String::from("\nperiodic entries (one elected scheduler each):\n");
    for e in &s.entries {
        let elected = match e.elected {
            Some(true) => "elected",
            Some(false) => "none",
            None => "never",
        };
        let _ = writeln!(
            out,
            "  {}  task={} {} scheduler={} last={} by={} next={}",
            e.entry,
            e.task,
            e.schedule,
            elected,
            e.last
                .map_or_else(|| "-".to_owned(), crate::ops::format_time),
            e.scheduled_by.as_deref().unwrap_or("-"),
            e.next
                .map_or_else(|| "-".to_owned(), crate::ops::format_time),
        );
    }
    out
}

fn scheduler_json(s: &worker_core::schedule::status::SchedulerStatus) -> serde_json::Value {
    serde_json::json!(s
        .entries
        .iter()
        .map(|e| serde_json::json!({
            "entry": e.entry,
            "task": e.task,
            "schedule": e.schedule.to_string(),
            "elected": e.elected,
            "last": e.last,
            "scheduled_by": e.scheduled_by,
            "next": e.next,
        }))
        .collect::<Vec<_>>())
}

/// The work queue's own options that are set (`priority`, limits,
/// `overflow`, `message_ttl`), as `key=value` pairs; empty when none is.
fn queue_options_text(o: &worker_core::TaskOptions) -> String {
    let mut parts = Vec::new();
    if let Some(p) = o.priority {
        parts.push(format!("priority={p}"));
    }
    let limits = &o.limits;
    if let Some(n) = limits.max_length {
        parts.push(format!("max_length={n}"));
    }
    if let Some(n) = limits.max_length_bytes {
        parts.push(format!("max_length_bytes={n}"));
    }
    if limits.is_bounded() {
        parts.push(format!("overflow={}", limits.overflow.as_str()));
    }
    if let Some(ttl) = limits.message_ttl {
        parts.push(format!("message_ttl={}", format_duration(ttl)));
    }
    parts.join(" ")
}

fn tasks_table(specs: &[Arc<TaskSpec>], periodic: &[worker_core::schedule::Periodic]) -> String {
    let mut out = String::new();
    for s in specs {
        let o = &s.options;
        let tiers: Vec<String> = o.retry.tiers.iter().map(|d| format_duration(*d)).collect();
        let _ =
            writeln!(
            out,
            "{}  queue={} type={} prefetch={} concurrency={} max_attempts={} tiers={} timeout={} rate={}",
            s.name,
            s.queue,
            o.queue_type.as_str(),
            o.resolved_prefetch(None, o.concurrency),
            o.concurrency,
            o.retry.max_attempts,
            if tiers.is_empty() { "-".to_owned() } else { tiers.join(",") },
            o.timeout.map_or_else(|| "-".to_owned(), format_duration),
            o.rate.map_or_else(|| "-".to_owned(), |r| r.to_string()),
        );
        let queue_options = queue_options_text(o);
        if !queue_options.is_empty() {
            out.pop();
            let _ = writeln!(out, " {queue_options}");
        }
        if let Some(b) = o.breaker {
            out.pop();
            let cooldown = format_duration(b.cooldown);
            let _ = writeln!(out, " breaker=\"{b}\" breaker_cooldown={cooldown}");
        }
    }
    for p in periodic {
        let _ = writeln!(
            out,
            "periodic {}  task={} {} missed={}",
            p.entry_id(),
            p.task(),
            p.schedule(),
            p.missed_policy().as_str(),
        );
    }
    if out.is_empty() {
        out.push_str("no tasks registered\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::tasks_table;
    use worker_core::task::{Overflow, QueueLimits, QueueType, TaskOptions};
    use worker_core::topology::TaskSpec;

    #[test]
    fn tasks_shows_the_queue_options_that_are_set() {
        let plain = TaskSpec::new("plain", "p", TaskOptions::default());
        let options = TaskOptions {
            queue_type: QueueType::Classic,
            priority: Some(10),
            limits: QueueLimits {
                max_length: Some(1000),
                max_length_bytes: None,
                overflow: Overflow::DropHead,
                message_ttl: Some(Duration::from_secs(600)),
            },
            ..TaskOptions::default()
        };
        let limited = TaskSpec::new("limited", "l", options);
        let table = tasks_table(&[Arc::new(plain), Arc::new(limited)], &[]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(!lines[0].contains("priority"), "{table}");
        assert!(
            lines[1].ends_with(" priority=10 max_length=1000 overflow=drop-head message_ttl=10m"),
            "{table}"
        );
    }

    #[test]
    fn tasks_shows_a_breaker_with_its_cooldown() {
        let options = TaskOptions {
            breaker: Some(
                worker_core::BreakerPolicy::in_a_row(5).cooldown(Duration::from_secs(90)),
            ),
            ..TaskOptions::default()
        };
        let guarded = TaskSpec::new("guarded", "g", options);
        let table = tasks_table(&[Arc::new(guarded)], &[]);
        assert!(
            table.ends_with(" rate=- breaker=\"5 in a row\" breaker_cooldown=90s\n"),
            "{table}"
        );
    }
}

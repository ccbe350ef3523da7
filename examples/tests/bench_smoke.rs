//! The benchmark in quick mode with tiny sizes against a real RabbitMQ: it
//! must complete and count every message on both sides. No timing assertions.

use std::path::PathBuf;

use examples::bench::{run, Config, Side};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_bench_counts_every_message_on_both_sides() {
    let mut cfg = Config::quick();
    cfg.messages = 300;
    cfg.reps = 1;
    cfg.latency_rate = 300.0;
    cfg.latency_secs = 1.0;
    cfg.publish_sequential = 30;
    cfg.batch = 100;
    cfg.memory_sizes = vec![300, 600];
    cfg.rpc_calls = 200;
    cfg.io_messages = 300;
    cfg.enqueue_callers = 10;
    cfg.enqueue_per_caller = 20;
    cfg.bodies = vec![(50, 64 << 10), (200, 4 << 10)];
    let chart = std::env::temp_dir().join(format!("bench-smoke-{}.svg", std::process::id()));
    cfg.chart = Some(chart.clone());
    cfg.naive = true;
    cfg.threads = Some(2);
    cfg.exe = Some(PathBuf::from(env!("CARGO_BIN_EXE_bench")));

    let report = run(&cfg).await.unwrap_or_else(|e| {
        panic!(
            "the quick bench must complete against RabbitMQ at {} (start it or set AMQP_URL): {e}",
            worker_core::redact_url(&cfg.urls[0])
        )
    });

    for scenario in [
        "drain", "latency", "publish", "memory", "failure", "rpc", "io", "enqueue", "bodies",
    ] {
        for side in [Side::Framework, Side::Lapin] {
            assert!(
                report
                    .runs
                    .iter()
                    .any(|r| r.scenario == scenario && r.side == side),
                "no verified {scenario} run for {side:?}"
            );
        }
    }
    assert!(report
        .runs
        .iter()
        .any(|r| r.scenario == "drain" && r.side == Side::LapinNaive));
    for r in &report.runs {
        assert_eq!(r.resolved, r.expected, "{r:?}");
    }
    let failure: Vec<_> = report
        .runs
        .iter()
        .filter(|r| r.scenario == "failure")
        .collect();
    // 300 messages: every 10th redelivered once (30 extra runs), every 100th parked (3).
    assert!(failure.iter().any(|r| r.handler_runs == 330));
    assert!(failure.iter().any(|r| r.parked == 3));
    let rpc_runs = report.runs.iter().filter(|r| r.scenario == "rpc").count();
    assert_eq!(rpc_runs, 4, "1 and 100 callers, each side");
    for callers in ["1 caller:", "100 callers:"] {
        for what in ["round trip p50", "round trip p99", "calls/s"] {
            let name = format!("request/reply, {callers} {what}");
            assert!(
                report.figures.iter().any(|f| f.name == name),
                "no figure {name:?}"
            );
        }
    }
    assert!(!report.figures.is_empty());
    for f in &report.figures {
        assert_eq!(f.framework.len(), 1, "{}", f.name);
        assert_eq!(f.baseline.len(), 1, "{}", f.name);
    }
    assert!(report.render().contains("framework / baseline"));
    let broker = &report.machine.brokers[0];
    assert!(broker.starts_with("RabbitMQ "), "{broker}");
    assert!(report.figures.iter().all(|f| &f.broker == broker));
    for name in [
        "io: 300 tasks x 20 ms sleep, concurrency 200: throughput",
        "enqueue 200 from 10 tasks x 20 (await each confirm): throughput",
        "drain 50 x 64 KiB: peak RSS",
        "drain 200 x 4 KiB: bytes",
    ] {
        assert!(
            report.figures.iter().any(|f| f.name == name),
            "no figure {name:?}"
        );
    }

    // The chart: an SVG with both series and a row per figure.
    let svg = std::fs::read_to_string(&chart).expect("the bench draws the chart it was asked for");
    std::fs::remove_file(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(["framework", "raw lapin"]
        .iter()
        .all(|series| svg.lines().any(|l| l.trim() == *series)));
    let version = broker.trim_start_matches("RabbitMQ ");
    for f in &report.figures {
        let row = format!("{version} | {} ({}", f.name, f.unit);
        assert!(svg.contains(&row), "no chart row {row:?}");
    }
}

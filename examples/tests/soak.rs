//! A short chaos soak on a private node of the broker version under test
//! (the runner runs it once per version): two demo workers, the mixed
//! workload, a fault every three to six seconds for 45 s (`SOAK_DURATION`
//! changes it), then the drain and the exact account. `SOAK_SEED` replays
//! a seed; a failing run prints the seed and the command that replays it.

use std::path::PathBuf;
use std::time::Duration;

use examples::soak::{soak, BrokerChoice, FaultKind, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak_on_a_private_node_loses_nothing() {
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let duration = std::env::var("SOAK_DURATION")
        .ok()
        .and_then(|d| worker_core::parse_duration(&d).ok())
        .unwrap_or(Duration::from_secs(45));
    let broker = std::env::var("RABBIT_WORKER_TEST_BROKER").unwrap_or_else(|_| "3.10".into());
    println!("soak seed {seed} on RabbitMQ {broker}");
    let options = SoakOptions {
        seed,
        duration,
        broker: BrokerChoice::PrivateNode,
        rate: 50,
        stall: Duration::from_secs(90),
        demo_bin: PathBuf::from(env!("CARGO_BIN_EXE_demo-worker")),
        replay: format!(
            "SOAK_SEED={seed} cargo test -p examples --test soak -- --nocapture \
             (RabbitMQ {broker}), or by hand: cargo run --release -p examples --bin soak -- \
             --seed {seed} --duration {} --broker {broker}",
            worker_core::format_duration(duration)
        ),
    };
    let report = match soak(&options).await {
        Ok(report) => report,
        Err(e) if e.contains("apt-get install rabbitmq-server") => {
            worker_testkit::skip::unless_ci(e);
            return;
        }
        Err(e) => panic!("the soak could not run (seed {seed}): {e}"),
    };
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert_eq!(report.account.lost, 0, "{report}");
    assert_eq!(report.account.queued, 0, "{report}");
    assert!(report.account.published > 1_000, "{report}");
    assert_eq!(
        report.account.handled + report.account.parked,
        report.account.published,
        "{report}"
    );
    // A private node suffers every kind but the cluster's.
    let kinds = FaultKind::ALL.into_iter();
    for kind in kinds.filter(|k| *k != FaultKind::ClusterNodeRestart) {
        assert!(
            report.injected.get(&kind).copied().unwrap_or(0) > 0,
            "{kind} was never injected: {report}"
        );
    }
}

//! `soak`: the chaos soak by hand.
//!
//! ```text
//! cargo run --release -p examples --bin soak -- --duration 1h --broker 3.10
//! cargo run --release -p examples --bin soak -- --seed 42 --duration 3m --broker 4.0 --rate 100
//! cargo run --release -p examples --bin soak -- --broker cluster --duration 10m
//! cargo run --release -p examples --bin soak -- --url amqp://guest:guest@127.0.0.1:5672/%2f
//! ```
//!
//! `--broker 3.10` starts a private node of the machine's RabbitMQ, `4.0`
//! one of the 4.0 install that `.ci/rabbitmq4` builds (in
//! `/var/tmp/rabbit-worker-rabbitmq4`), `cluster` three private nodes;
//! `--url` soaks a running broker in a vhost of its own, without node
//! restarts and memory alarms. The seed is printed first; the same seed
//! replays the same faults and messages. Exits 1 when the account fails.

use std::process::ExitCode;
use std::time::Duration;

use examples::faults::sibling_demo_worker;
use examples::soak::{soak, BrokerChoice, SoakOptions};

/// Where `.ci/rabbitmq4` installs RabbitMQ 4.0.
const RABBITMQ4_ROOT: &str = "/var/tmp/rabbit-worker-rabbitmq4";

const USAGE: &str = "usage: soak [--seed N] [--duration 3m] [--broker 3.10|4.0|cluster | --url AMQP_URL] [--rate MSGS_PER_S] [--stall 2m]";

struct Args {
    seed: Option<u64>,
    duration: Duration,
    broker: String,
    url: Option<String>,
    rate: u32,
    stall: Duration,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        seed: None,
        duration: Duration::from_secs(180),
        broker: "3.10".into(),
        url: None,
        rate: 50,
        stall: Duration::from_secs(120),
    };
    while let Some(flag) = argv.next() {
        let mut value = || {
            argv.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let duration =
            |v: String| worker_core::parse_duration(&v).map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seed" => args.seed = Some(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--duration" => args.duration = duration(value()?)?,
            "--stall" => args.stall = duration(value()?)?,
            "--broker" => args.broker = value()?,
            "--url" => args.url = Some(value()?),
            "--rate" => args.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let broker = match (&args.url, args.broker.as_str()) {
        (Some(url), _) => BrokerChoice::Url(url.clone()),
        (None, "3.10") => BrokerChoice::PrivateNode,
        (None, "4.0") => {
            // Before any thread starts: the private node runs from the 4.0 root.
            std::env::set_var("RABBITMQ_SERVER_ROOT", RABBITMQ4_ROOT);
            BrokerChoice::PrivateNode
        }
        (None, "cluster") => BrokerChoice::Cluster,
        (None, other) => {
            eprintln!("--broker {other}: expected 3.10, 4.0 or cluster\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("soak seed {seed}");
    let target = match &args.url {
        Some(url) => format!("--url '{url}'"),
        None => format!("--broker {}", args.broker),
    };
    let options = SoakOptions {
        seed,
        duration: args.duration,
        broker,
        rate: args.rate,
        stall: args.stall,
        demo_bin: sibling_demo_worker(),
        replay: format!(
            "cargo run --release -p examples --bin soak -- --seed {seed} --duration {} {target} --rate {}",
            worker_core::format_duration(args.duration),
            args.rate
        ),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak(&options)) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the soak could not run: {e}");
            ExitCode::FAILURE
        }
    }
}

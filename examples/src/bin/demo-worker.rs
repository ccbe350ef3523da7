//! `demo-worker`: the example tasks behind the framework's CLI.
//!
//! ```text
//! demo-worker run                          # consume every demo task
//! demo-worker enqueue demo.send_email '{"to":"a@example.com","subject":"hi"}'
//! demo-worker parked list demo.record --json
//! demo-worker parked replay demo.record --all
//! demo-worker status
//! ```

use std::process::ExitCode;

use worker_core::Task;

use examples::tasks::echo::Echo;
use examples::tasks::email::SendEmail;
use examples::tasks::images::RenderThumbnail;
use examples::tasks::orders::{Ledger, RecordOrderEvent};
use examples::tasks::record::{Record, DEFAULT_TIERS, RECORD_FILE_ENV, RETRY_TIERS_ENV};
use examples::tasks::tick::{Tick, DEFAULT_TICK_EVERY, TICK_EVERY_ENV};

fn main() -> ExitCode {
    // The help is written from the fixture's own options, so it cannot drift.
    let retry = Record::default().options().retry;
    let tick = match Tick::entry() {
        Ok(entry) => entry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(worker_operator::cli::exit::CONFIG);
        }
    };
    worker_operator::cli::App::new("demo-worker")
        .about("The framework's demo worker: example tasks behind the worker CLI")
        .run_help(format!(
            "demo.record retries: {} in-process attempts, then the delay tiers in \
             {RETRY_TIERS_ENV} (comma-separated durations, default {DEFAULT_TIERS}), \
             {} attempts at most, then parking. Successes are appended to the file \
             named by {RECORD_FILE_ENV}, if set. demo.tick runs every \
             {TICK_EVERY_ENV} (default {DEFAULT_TICK_EVERY}; `off` for never), one scheduler among \
             all demo workers, and appends `tick<TAB><scheduled time>` there.",
            retry.in_process_attempts, retry.max_attempts
        ))
        .version(env!("CARGO_PKG_VERSION"))
        .register(SendEmail)
        .register(Echo)
        .register(RecordOrderEvent)
        .register(RenderThumbnail)
        .register(Record::default())
        .register(Tick)
        .configure(move |worker| match tick {
            Some(entry) => worker.periodic(entry),
            None => worker,
        })
        .state(Ledger::default())
        .run()
}

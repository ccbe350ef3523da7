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

use examples::tasks::email::SendEmail;
use examples::tasks::images::RenderThumbnail;
use examples::tasks::orders::{Ledger, RecordOrderEvent};
use examples::tasks::record::{Record, DEFAULT_TIERS, RECORD_FILE_ENV, RETRY_TIERS_ENV};

fn main() -> ExitCode {
    worker_core::cli::App::new("demo-worker")
        .about(format!(
            "The framework's demo worker. demo.record retries: 2 in-process attempts, \
             delay tiers from {RETRY_TIERS_ENV} (default {DEFAULT_TIERS}), 5 attempts at most; \
             it appends successes to the file named by {RECORD_FILE_ENV}."
        ))
        .version(env!("CARGO_PKG_VERSION"))
        .register(SendEmail)
        .register(RecordOrderEvent)
        .register(RenderThumbnail)
        .register(Record::default())
        .state(Ledger::default())
        .run()
}

//! The user's worker binary: `user-worker run | enqueue | parked | status | ...`.

use user_worker::{Add, Greet};

fn main() -> std::process::ExitCode {
    worker_operator::App::new("user-worker")
        .register(Greet)
        .register(Add)
        .run()
}

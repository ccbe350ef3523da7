// Argument shapes: context, state (by any path), payload in any position,
// error types that convert, result aliases, attributes and visibility.
use std::any::TypeId;
use worker_core::{task, State, Task, TaskContext, TaskError};

struct Db;
struct Cache;

#[task(queue = "a")]
async fn state_first(
    db: State<Db>,
    n: u32,
    ctx: TaskContext,
    cache: worker_core::State<Cache>,
) -> Result<(), TaskError> {
    let _ = (db, n, ctx, cache);
    Ok(())
}

#[task(queue = "b")]
async fn context_only(ctx: TaskContext) -> Result<(), TaskError> {
    let _ = ctx;
    Ok(())
}

#[task(queue = "c")]
async fn io_alias(mut payload: Vec<String>) -> std::io::Result<()> {
    payload.clear();
    Ok(())
}

#[derive(Debug)]
struct MyError;

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mine")
    }
}

impl std::error::Error for MyError {}

#[task(queue = "d")]
async fn custom_error((a, b): (u8, u8)) -> core::result::Result<(), MyError> {
    if a > b {
        Err(MyError)
    } else {
        Ok(())
    }
}

mod reexport {
    pub use worker_core as wc;
}

#[task(queue = "e", crate = "crate::reexport::wc", retries = 1)]
async fn renamed_crate() -> Result<(), worker_core::TaskError> {
    Ok(())
}

pub(crate) mod tasks {
    use worker_core::{task, TaskError};

    /// Documented.
    #[task(queue = "f")]
    pub(crate) async fn r#type(kind: String) -> Result<(), TaskError> {
        let _ = kind;
        Ok(())
    }

    #[cfg(any())]
    #[task(queue = "g")]
    async fn compiled_out() -> Result<(), TaskError> {
        Ok(())
    }

    // `#[cfg]` after `#[task]`: copied onto the generated items.
    #[task(queue = "h")]
    #[cfg(any())]
    async fn also_compiled_out() -> Result<(), TaskError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(
        StateFirst.required_state(),
        [(TypeId::of::<Db>(), "Db"), (TypeId::of::<Cache>(), "Cache")]
    );
    let _: <StateFirst as Task>::Payload = 7u32;
    let _: <ContextOnly as Task>::Payload = ();
    let _: <IoAlias as Task>::Payload = Vec::<String>::new();
    let _: <CustomError as Task>::Payload = (1u8, 2u8);
    assert_eq!(RenamedCrate.options().retry.max_attempts, 2);
    assert_eq!(tasks::Type::QUEUE, "f");
    assert!(tasks::Type::NAME.ends_with("::tasks::type"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(runtime.block_on(custom_error((2, 1))).is_err());
    assert!(runtime.block_on(io_alias(vec!["x".into()])).is_ok());
}

// Items named like the handler's arguments do not get in the way of the
// generated code.
mod shadowing {
    #![allow(non_upper_case_globals, non_camel_case_types)]
    use worker_core::{task, State, TaskContext, TaskError};

    const error: u8 = 0;
    const state_1: u8 = 0;
    struct ctx;

    pub(crate) struct Db;

    #[task(queue = "shadow")]
    pub(crate) async fn shadowed(c: TaskContext, db: State<Db>, n: u8) -> Result<(), TaskError> {
        let _ = (c, db, n, error, state_1, ctx);
        Ok(())
    }
}

//! SIGINT and SIGTERM.

use std::future::Future;

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM received after this
/// call.
///
/// The handlers are installed by the call itself, not at the first poll:
/// a worker awaits its stop signal only once it has started, and a signal
/// that arrived while it was still connecting or declaring its queues
/// would otherwise take the default action and kill the process. Here it
/// waits in the handler and the stop is clean. Call it inside a Tokio
/// runtime.
pub fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

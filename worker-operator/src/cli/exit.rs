//! Exit codes of the worker command line.
//!
//! Scripts and orchestrators can tell "fix the command" (2) from "fix the
//! configuration" (3), "the broker is down or refuses us" (4, often worth a
//! retry) and "the broker's queues do not match the code" (5).

use worker_core::error::Error;

/// Success.
pub const OK: u8 = 0;
/// Any other failure (a publish that was refused, a message not found, ...).
pub const FAILURE: u8 = 1;
/// Bad command line or bad input (unknown task, payload that does not decode).
pub const USAGE: u8 = 2;
/// Configuration that cannot work (bad URL, unreadable password or TLS file,
/// an address that cannot be bound, missing shared state).
pub const CONFIG: u8 = 3;
/// The broker cannot be reached or refused the login or an operation.
pub const UNAVAILABLE: u8 = 4;
/// A queue is missing or exists with other arguments than the code declares.
pub const TOPOLOGY: u8 = 5;

/// What the command line adds to a library error: the flag or command
/// that fixes it.
///
/// ```
/// use worker_operator::cli::exit;
/// use worker_core::Error;
///
/// let err = Error::TopologyMismatch { queue: "q".into(), message: "inequivalent arg".into() };
/// assert!(exit::cli_hint(&err).unwrap().contains("topology check"));
/// ```
pub fn cli_hint(error: &Error) -> Option<&'static str> {
    match error {
        Error::TopologyMismatch { .. } => Some("`topology check` lists every queue that differs"),
        Error::Connect { hint, .. } if *hint == worker_core::__operator::CERTIFICATE_HINT => {
            Some("on the command line the CA file is --tls-ca-file")
        }
        _ => None,
    }
}

/// An error as the command line prints it: the library's message, then
/// [`cli_hint`] when there is one.
pub fn describe(error: &Error) -> String {
    match cli_hint(error) {
        Some(hint) => format!("{error} ({hint})"),
        None => error.to_string(),
    }
}

/// The exit code for a framework error.
///
/// ```
/// use worker_operator::cli::exit;
/// use worker_core::Error;
///
/// let err = Error::Connect { url: "amqp://mq".into(), message: "refused".into(), hint: "start it" };
/// assert_eq!(exit::code_for(&err), exit::UNAVAILABLE);
/// assert_eq!(exit::code_for(&Error::Config("bad".into())), exit::CONFIG);
/// ```
pub fn code_for(error: &Error) -> u8 {
    match error {
        Error::Connect { .. } | Error::AccessRefused { .. } => UNAVAILABLE,
        Error::TopologyMismatch { .. } | Error::Unroutable { .. } => TOPOLOGY,
        Error::Config(_) => CONFIG,
        Error::Broker { source, .. } => {
            let refused = worker_core::__operator::reply_code(source)
                == Some(worker_core::__operator::ACCESS_REFUSED);
            let lost = source.is_io_error() || source.is_amqp_hard_error();
            if refused || lost {
                UNAVAILABLE
            } else {
                FAILURE
            }
        }
        _ => FAILURE,
    }
}

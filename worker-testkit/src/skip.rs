//! Skipping a test for something the machine lacks (a private RabbitMQ
//! node's server, chromedriver, promtool, pika, network namespaces), so that
//! `cargo test` passes on a machine with nothing but Rust, and says so where
//! it can be seen.
//!
//! The test harness captures what a passing test prints, so a skip note
//! written with `eprintln!` alone is never read. [`unless_ci`] also appends
//! the note to the file named by [`SKIP_FILE_ENV`], which this workspace's
//! test runner (`scripts/test-on-each-broker`) sets for every test binary
//! and prints, a line per skip, when the binary ends. Under `CI=true`
//! nothing is skipped: [`unless_ci`] fails the test instead.
//!
//! ```no_run
//! if !std::path::Path::new("/usr/bin/promtool").exists() {
//!     worker_testkit::skip::unless_ci("promtool is missing (apt-get install prometheus)");
//!     return;
//! }
//! ```

use std::io::Write;

/// The environment variable naming the file skip notes are appended to.
pub const SKIP_FILE_ENV: &str = "RABBIT_WORKER_SKIP_FILE";

/// Whether this is a CI run (`CI=true`; the test runner turns `1` and
/// `yes` into `true`), where a missing prerequisite fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Records that the calling test skips part or all of its work because
/// `why` (what is missing and how to get it): under CI it panics with
/// `why`; otherwise it prints the note and appends it, as one line, to the
/// file named by [`SKIP_FILE_ENV`] when that is set. The caller returns
/// (or leaves out the part) afterwards.
///
/// # Panics
///
/// Under CI, always: nothing may be skipped there.
pub fn unless_ci(why: impl std::fmt::Display) {
    record(
        in_ci(),
        std::env::var_os(SKIP_FILE_ENV).as_deref(),
        &why.to_string(),
    );
}

fn record(ci: bool, file: Option<&std::ffi::OsStr>, why: &str) {
    let note = why.replace('\n', " ");
    assert!(!ci, "not skipped under CI: {note}");
    eprintln!("skipped: {note}");
    let Some(path) = file else {
        return;
    };
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{note}"));
    if let Err(e) = appended {
        eprintln!(
            "could not record the skip in {}: {e}",
            path.to_string_lossy()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_outside_ci_is_appended_to_the_runner_s_file_as_one_line() {
        let dir = std::env::temp_dir().join(format!("skip-note-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("skips");
        let why = "chromedriver is missing\n(apt-get install chromium-driver)";
        record(false, Some(file.as_os_str()), why);
        record(false, Some(file.as_os_str()), "promtool is missing");
        record(false, None, "not recorded without the runner's file");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            text,
            "chromedriver is missing (apt-get install chromium-driver)\npromtool is missing\n"
        );
    }

    #[test]
    fn a_skip_under_ci_fails_the_test_and_records_nothing() {
        let dir = std::env::temp_dir().join(format!("skip-ci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("skips");
        let panicked = std::panic::catch_unwind(|| {
            record(true, Some(file.as_os_str()), "pika is missing");
        })
        .is_err();
        let recorded = file.exists();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(panicked, "under CI a skip must fail the test");
        assert!(!recorded, "a failed skip is not a skip");
    }
}

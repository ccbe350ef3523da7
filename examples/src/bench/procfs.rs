//! Process and machine facts: `/proc` and the process CPU clock (no `unsafe`: the workspace forbids it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch (comparable across processes).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// User + system CPU time of this whole process (every thread, including
/// threads that already exited), from the kernel's process CPU clock, to the
/// nanosecond. (`/proc/self/stat` counts in 10 ms ticks, too coarse for a
/// publisher that sends a few hundred messages in 10 ms.)
pub(crate) fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// Peak resident set size of this process in KiB (`VmHWM`).
pub(crate) fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

fn status_kb(key: &str) -> u64 {
    kb_field("/proc/self/status", key)
}

/// The number after `key` on its line of a `/proc` file of `key value kB`
/// lines, 0 when missing.
fn kb_field(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Total memory in GiB (`MemTotal` of `/proc/meminfo`), 0 when unknown.
pub(crate) fn mem_total_gib() -> f64 {
    kb_field("/proc/meminfo", "MemTotal:") as f64 / (1024.0 * 1024.0)
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPU model name from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Logical CPUs available to this process.
pub(crate) fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

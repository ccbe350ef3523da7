//! Process and machine facts read from `/proc` (no `unsafe`: the workspace forbids it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every
/// architecture the kernel's user ABI supports.
const USER_HZ: u64 = 100;

/// Wall-clock nanoseconds since the Unix epoch (comparable across processes).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// User + system CPU time of this whole process (every thread, including
/// threads that already exited), from `/proc/self/stat`. Resolution 10 ms.
pub(crate) fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The command name (field 2) may contain spaces; fields after it are plain.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 1000 / USER_HZ)
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

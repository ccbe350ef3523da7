#!/usr/bin/env bash
# Where a consumer's time goes: CPU samples (perf, software clock) of one
# drain run of the benchmark, grouped by process and by library. The bench
# prints which pid is the framework's child and which is lapin's.
#
#   examples/scripts/profile-drain.sh [MESSAGES]    (default 100000)
#
# Needs `perf` (Debian: linux-perf) and a RabbitMQ at AMQP_URL. Samples per
# library divided by the messages give microseconds per message at the
# sampling rate below (1999 Hz: one sample is about 0.5 ms of CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
messages="${1:-100000}"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
cargo build --release -p examples --bin bench
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
perf record -q -e cpu-clock -F 1999 -o "$out/perf.data" -- \
  target/release/bench --scenarios drain,cpu --messages "$messages" --reps 1 \
  >"$out/table.txt" 2>"$out/progress.txt"
grep -E "child \(Clean\): pid" "$out/progress.txt"
cat "$out/table.txt"
echo "CPU samples by process and library (1999 Hz; 100% = all samples of the run):"
perf report -i "$out/perf.data" --stdio --sort pid,dso --percent-limit 0.5 2>/dev/null \
  | grep -v '^#' | grep -v '^$'

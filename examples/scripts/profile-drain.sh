#!/usr/bin/env bash
# Where a consumer's time goes: CPU samples (perf, software clock) of one
# drain run of the benchmark, for the framework's consuming process and the
# raw lapin one, grouped by library and printed in microseconds per message.
#
#   examples/scripts/profile-drain.sh [MESSAGES]    (default 100000)
#
# Needs `perf` (Debian: linux-perf) and a RabbitMQ at AMQP_URL. The figures
# cover each child's whole life (connecting included), so they are a little
# above the bench's own CPU-per-message figure for the drain.
set -euo pipefail
cd "$(dirname "$0")/../.."
messages="${1:-100000}"
hz=1999
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
cargo build --release -p examples --bin bench
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
perf record -q -e cpu-clock -F "$hz" -o "$out/perf.data" -- \
  target/release/bench --scenarios drain,cpu --messages "$messages" --reps 1 \
  >"$out/table.txt" 2>"$out/progress.txt"
cat "$out/table.txt"
fw=$(sed -n 's/.*Framework child (Clean): pid \([0-9]*\).*/\1/p' "$out/progress.txt" | head -1)
raw=$(sed -n 's/.*Lapin child (Clean): pid \([0-9]*\).*/\1/p' "$out/progress.txt" | head -1)
echo "CPU per message by library, in us (perf cpu-clock at $hz Hz, $messages messages):"
printf "%-42s %10s %10s\n" "where" "framework" "lapin"
perf script -i "$out/perf.data" -F pid,ip,sym,dso 2>/dev/null | awk -v fw="$fw" -v raw="$raw" -v hz="$hz" -v n="$messages" '
  $1 != fw && $1 != raw { next }
  {
    line = $0
    if (line ~ /kernel/) what = "kernel (sockets, futexes, scheduling)"
    else if (line ~ /(malloc|free|realloc|calloc|_int_)/) what = "allocator"
    else if (line ~ /(memcpy|memmove|memset|memcmp)/) what = "memcpy, memmove, memcmp"
    else if (line ~ /libc\.so/) what = "libc, other"
    else if (line ~ /(worker_core|tower::|examples::)/) what = "worker_core and tower / the bench loop"
    else if (line ~ /(lapin|amq_protocol|nom::|flume|async_rs|tcp_stream|cookie_factory)/) what = "lapin and amq-protocol"
    else if (line ~ /tokio/) what = "tokio"
    else if (line ~ /serde/) what = "serde, serde_json"
    else if (line ~ /(metrics|quanta|sketches)/) what = "metrics recorder"
    else if (line ~ /(std::|core::|alloc::|hashbrown)/) what = "Rust std, core, collections"
    else what = "other"
    side = ($1 == fw) ? "framework" : "lapin"
    count[what, side]++
    total[side]++
    seen[what] = 1
  }
  END {
    us = 1e6 / hz / n
    for (w in seen) printf "1 %-42s %10.2f %10.2f\n", w, count[w, "framework"] * us, count[w, "lapin"] * us
    printf "2 %-42s %10.2f %10.2f\n", "total", total["framework"] * us, total["lapin"] * us
  }' | sort | cut -c3-

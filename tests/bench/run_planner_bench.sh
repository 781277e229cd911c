#!/usr/bin/env bash
# Runs the planner benchmark (tests/bench/planner_bench.cpp) and prints the median time of
# every benchmark, one line each, against the issue's target of < 1 ms per device map.
#
# Usage: tests/bench/run_planner_bench.sh [extra Google Benchmark flags, e.g. --benchmark_filter=llama]
# Env:   BUILD_DIR    build folder (default: build, relative to the project root)
#        QUIET_MAX_S  longest wait for a quiet machine in seconds (default 600; 0 = do not wait)
#        BENCH_JSON   where to keep the raw JSON (default: a temporary file, removed)
# Exit:  0 all maps under target, 3 some map over target, other = failure.
#
# Build first: cmake --build build --target planner_bench
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build="${BUILD_DIR:-build}"
bin="$build/tests/bench/planner_bench"
if [[ ! -x "$bin" ]]; then
  echo "run_planner_bench: $bin not built (cmake --build $build --target planner_bench)" >&2
  exit 1
fi

echo "machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"

# Wait for a quiet machine (shared helper, when this checkout sits next to it).
quiet="../shared/bench/wait_quiet.py"
quiet_note=""
if [[ -f "$quiet" && "${QUIET_MAX_S:-600}" != 0 ]]; then
  # args: threshold (cores), window (s), max wait (s), consecutive windows
  if ! python3 "$quiet" 0.05 3 "${QUIET_MAX_S:-600}" 2; then
    quiet_note=" (machine NOT quiet: figures may be inflated)"
  fi
fi

json="${BENCH_JSON:-}"
tmp=""
if [[ -z "$json" ]]; then
  tmp="$(mktemp)"
  json="$tmp"
fi
trap '[[ -n "$tmp" ]] && rm -f "$tmp"' EXIT

"$bin" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$json" --benchmark_out_format=json "$@"

echo
echo "medians of 5 repetitions${quiet_note}:"
python3 - "$json" <<'PY'
import json, sys

TARGET_US = 1000.0
scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
data = json.load(open(sys.argv[1]))
over = 0
maps = 0
rows = [b for b in data["benchmarks"] if b.get("aggregate_name") == "median"]
width = max((len(b["run_name"]) for b in rows), default=0)
for b in rows:
    name = b["run_name"]
    us = b["real_time"] * scale[b["time_unit"]]
    ratio = b.get("x_sizes")
    rtxt = f"  [{ratio:5.2f}x sizes]" if ratio is not None else ""
    if name.startswith(("plan/", "end_to_end/")):
        maps += 1
        verdict = "ok" if us < TARGET_US else "OVER TARGET"
        over += us >= TARGET_US
        print(f"{name:<{width}}  {us:8.1f} us per map (target < {TARGET_US:.0f} us) {verdict}{rtxt}")
    elif name.startswith("sizes/"):
        print(f"{name:<{width}}  {us:8.1f} us per call (baseline: compute_module_sizes){rtxt}")
    else:
        print(f"{name:<{width}}  {us:8.1f} us per call (tree construction only){rtxt}")
print(f"{maps - over} of {maps} maps under {TARGET_US:.0f} us")
sys.exit(3 if over else 0)
PY

#!/usr/bin/env bash
# Runs the simulator benchmark (tests/bench/sim_bench.cpp) on a quiet machine and prints the
# median of 5 repetitions of each benchmark against its target: optimal search < 50 ms for an
# 80-layer model on 8 GPUs; a whole `dmap simulate` evaluation well under a second.
#
# Usage: tests/bench/run_sim_bench.sh [extra Google Benchmark flags]
# Env:   BUILD_DIR (default build), QUIET_MAX_S (default 600; 0 = do not wait)
# Exit:  0 every target met, 3 some target missed, other = failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bin="${BUILD_DIR:-build}/tests/bench/sim_bench"
[[ -x "$bin" ]] || { echo "run_sim_bench: $bin not built (cmake --build build --target sim_bench)" >&2; exit 1; }
echo "machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
note=""
if [[ -f ../shared/bench/wait_quiet.py && "${QUIET_MAX_S:-600}" != 0 ]]; then
  python3 ../shared/bench/wait_quiet.py 0.05 3 "${QUIET_MAX_S:-600}" 2 || note=" (machine NOT quiet)"
fi
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
"$bin" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$json" --benchmark_out_format=json "$@" >/dev/null
echo "medians of 5 repetitions${note}:"
python3 - "$json" <<'PY'
import json, sys
scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
targets = {"BM_Optimal": 50.0, "BM_Evaluate": 1000.0}
missed = 0
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    ms = b["real_time"] * scale[b["time_unit"]]
    t = next((v for k, v in targets.items() if b["run_name"].startswith(k)), None)
    verdict = "" if t is None else (f"(target < {t:.0f} ms) " + ("ok" if ms < t else "MISSED"))
    missed += t is not None and ms >= t
    print(f"{b['run_name']:<42} {ms:9.3f} ms {verdict}")
sys.exit(3 if missed else 0)
PY

#!/usr/bin/env bash
# dmap's one-row products against llama.cpp's, kernel to kernel (issue 19 §5): alternates
# build/llama_probe --matvec (ggml_mul_mat in llama.cpp's CPU backend) and
# build/tests/bench/matvec_bench (dmap's exec::cpu::linear) PAIRS times on the same shapes, each
# after wait_quiet.py, and prints per shape the medians of both (GB/s of weights streamed) and
# the median of the pairs' ratios (dmap / llama.cpp; above 1: dmap faster). Alternating within
# seconds keeps a shared VM's drift out of the ratios; whole-model runs minutes apart do not.
#
#   tests/bench/run_matvec_ab.sh [SHAPES] [PAIRS] [THREADS]
#   default SHAPES: Llama-3.2-1B's products in float32, bfloat16 and float16 (TYPE:N:K, K the row)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
shapes="${1:-}"
pairs="${2:-7}"
threads="${3:-2}"
if [ -z "$shapes" ]; then
  for t in f32 bf16 f16; do
    shapes="$shapes${shapes:+,}$t:8192:2048,$t:2048:8192,$t:2048:2048,$t:512:2048,$t:128256:2048"
  done
fi
llama="${DMAP_LLAMA_PROBE:-$root/build/llama_probe}"
dmap="${DMAP_MATVEC_BENCH:-$root/build/tests/bench/matvec_bench}"
quiet="$root/../shared/bench/wait_quiet.py"
for p in "$llama" "$dmap"; do
  [ -x "$p" ] || { echo "run_matvec_ab.sh: $p not built (scripts/setup.sh builds both)" >&2; exit 2; }
done
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for i in $(seq "$pairs"); do
  if [ -f "$quiet" ]; then python3 "$quiet" > /dev/null 2>&1 || true; fi
  echo "{\"who\": \"llama.cpp\", \"r\": $("$llama" --matvec "$shapes" --threads "$threads" --rounds 5 2>/dev/null)}" >> "$out"
  echo "{\"who\": \"dmap\", \"r\": $("$dmap" "$shapes" --threads "$threads" --rounds 5)}" >> "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
llama = [r["r"]["matvec"] for r in rows if r["who"] == "llama.cpp"]
dmap = [r["r"]["matvec"] for r in rows if r["who"] == "dmap"]
print(f"{len(dmap)} pairs, {rows[1]['r']['threads']} threads; llama.cpp: {rows[0]['r']['llama_cpp']}; dmap: {rows[1]['r']['dmap']}")
print(f"{'shape':<20}{'llama.cpp GB/s':>16}{'dmap GB/s':>12}{'dmap/llama.cpp (pairs)':>25}")
for j, m in enumerate(dmap[0]):
    a = [l[j]["gbs"] for l in llama]
    b = [d[j]["gbs"] for d in dmap]
    ratio = statistics.median(y / x for x, y in zip(a, b))
    print(f"{m['type'] + ':' + str(m['n']) + ':' + str(m['k']):<20}{statistics.median(a):>16.1f}"
          f"{statistics.median(b):>12.1f}{ratio:>25.3f}")
PY

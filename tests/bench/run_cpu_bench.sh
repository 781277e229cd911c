#!/usr/bin/env bash
# The CPU executor side by side with the physical limit and with PyTorch, in one run
# (issue: "Speed" of the CPU executor). For TinyLlama-1.1B- and Llama-3.2-1B-shaped models in
# float32 and bfloat16, prompt 128, 32 new tokens, 2 threads:
#   1. STREAM triad (2 threads) from ../shared/bench/stream, measured now: the roofline is
#      weight bytes streamed per token / triad bandwidth;
#   2. plain PyTorch (../shared/bench/torch_llama_cpu.py, Debian python3-torch 1.13) in its
#      fastest set-up on this machine (fp32: OpenBLAS with OPENBLAS_CORETYPE=SkylakeX, decode via
#      torch.mv; bf16: oneDNN), which also writes the weights as safetensors;
#   3. dmap run on those same safetensors weights and the same prompt.
# Optionally (TORCH_REFBLAS=1) PyTorch's out-of-the-box Debian set-up (reference BLAS), slow.
#
# Needs: python3-torch, libopenblas0-openmp (apt), a built ./build/dmap, ~5 GB free in $TMPDIR.
# Usage: tests/bench/run_cpu_bench.sh [presets...]   (default: tinyllama-1.1b llama3.2-1b)
# Prints a table; raw JSON lines go to $BENCH_OUT (default: a temp file, path printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shared="$root/../shared/bench"
dmap="${DMAP:-$root/build/dmap}"
presets=${*:-"tinyllama-1.1b llama3.2-1b"}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="${BENCH_OUT:-$(mktemp --suffix=.jsonl)}"  # kept after the run
PY=/usr/bin/python3
quiet() { $PY "$shared/wait_quiet.py" 0.05 3 1800 2 >/dev/null || echo "WARN: machine not quiet" >&2; }

echo "machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
gcc -O3 -march=native -fopenmp -o "$work/stream" "$shared/stream/stream.c"
quiet
triad=$(OMP_NUM_THREADS=2 OMP_PROC_BIND=spread OMP_PLACES=cores "$work/stream" 134217728 10 | awk '/^Triad/ {print $2}')
echo "STREAM triad, 2 threads: $triad GB/s"
echo "{\"what\": \"stream_triad_gbs\", \"value\": $triad}" >> "$out"

OPENBLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
REFBLAS=/usr/lib/x86_64-linux-gnu/blas:/usr/lib/x86_64-linux-gnu/lapack
torch_run() {  # label dir ld coretype args...
  local label=$1 dir=$2 ld=$3 ct=$4; shift 4
  quiet
  env LD_LIBRARY_PATH="$ld" ${ct:+OPENBLAS_CORETYPE=$ct} $PY "$shared/torch_llama_cpu.py" --prompt-len 128 --new-tokens 32 \
    --threads 2 --prefill-reps 2 "$@" | tail -1 | $PY -c "import json,sys; d=json.loads(sys.stdin.read()); d['label']='$label'; print(json.dumps(d))" >> "$out"
}
dmap_run() {  # label dir dtype
  quiet
  "$dmap" run "$2" --prompt-file "$2/reference.json" --new-tokens 32 --threads 2 --prefill-reps 2 --format json \
    | $PY -c "import json,sys; d=json.load(sys.stdin); d.pop('modules'); d.pop('device_map'); d['label']='$1'; print(json.dumps(d))" >> "$out"
}
for p in $presets; do
  for dt in float32 bfloat16; do
    dir="$work/$p-$dt"
    if [ "$dt" = float32 ]; then
      # writes the weights and the reference prompt too
      torch_run "torch-fp32-openblas-skx" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype float32 --save-dir "$dir" --dump-ref "$dir"
      torch_run "torch-fp32-openblas-skx-mv" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype float32 --linear-impl mv
      if [ "${TORCH_REFBLAS:-0}" = 1 ]; then torch_run "torch-fp32-refblas" "$dir" "$REFBLAS" "" --preset "$p" --dtype float32 --prefill-reps 1; fi
    else
      torch_run "torch-bf16-onednn" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype bfloat16 --save-dir "$dir" --dump-ref "$dir"
    fi
    dmap_run "dmap-$dt" "$dir"
    sed -i "\$s/}\$/, \"preset\": \"$p\", \"dtype\": \"$dt\"}/" "$out"
    rm -rf "$dir"
  done
done
echo "raw results: $out"
$PY - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
triad = next(r["value"] for r in rows if r.get("what") == "stream_triad_gbs")  # GB/s
torch = {}
print(f"\nroofline bandwidth (STREAM triad, 2 threads): {triad:.1f} GB/s")
print(f"{'model':<16}{'dtype':<10}{'who':<28}{'prefill s':>10}{'decode ms':>11}{'% roofline':>11}{'decode vs best torch':>22}{'prefill vs best torch':>22}")
pending = []
for r in rows:
    if "label" not in r:
        continue
    if r["label"].startswith("torch"):
        pending.append(r)
        continue
    # a dmap row closes a group: the torch rows before it share its preset/dtype
    p, dt = r["preset"], r["dtype"]
    gb = pending[0]["decode_weight_bytes"] / 1e9
    roof_ms = gb / triad * 1e3
    best_dec = min(t["decode_ms_per_token"] for t in pending if "refblas" not in t["label"])
    best_pre = min(t["prefill_ms"] for t in pending if "refblas" not in t["label"])
    for t in pending:
        print(f"{p:<16}{dt:<10}{t['label']:<28}{t['prefill_ms']/1e3:>10.3f}{t['decode_ms_per_token']:>11.1f}{100*roof_ms/t['decode_ms_per_token']:>10.0f}%")
    dec = r["decode_token_s"] * 1e3
    pre = r["prefill_s"]
    print(f"{p:<16}{dt:<10}{'dmap (' + r['isa'] + ')':<28}{pre:>10.3f}{dec:>11.1f}{100*roof_ms/dec:>10.0f}%{best_dec/dec:>21.2f}x{best_pre/1e3/pre:>21.2f}x")
    pending = []
PY

#!/usr/bin/env bash
# The CPU executor side by side with the physical limit, PyTorch and llama.cpp, in one run
# (issues: "Speed" of the CPU executor; runtimes §5). For TinyLlama-1.1B- and Llama-3.2-1B-shaped
# models in float32, bfloat16 and float16, prompt 128, 32 new tokens, 2 threads:
#   1. STREAM triad (2 threads) from ../shared/bench/stream, measured now: the roofline is
#      weight bytes streamed per token / triad bandwidth;
#   2. plain PyTorch (../shared/bench/torch_llama_cpu.py, Debian python3-torch 1.13) in its
#      fastest set-up on this machine (fp32: OpenBLAS with OPENBLAS_CORETYPE=SkylakeX, decode via
#      torch.mv; bf16: oneDNN), which also writes the weights as safetensors (float16: PyTorch
#      on a CPU without float16 products says so and is left out);
#   3. llama.cpp (node-llama-cpp's prebuilt CPU build, through build/llama_probe) on those same
#      weights exported by `dmap export gguf` (F32, BF16, F16), read into memory (--no-mmap, the
#      faster load here) — float16's weights are seeded random ones at the same shapes, the same
#      for dmap and llama.cpp;
#   4. dmap run on the same weights and a prompt of the same length.
# Each model and dtype's runs follow one another (interleaved across the three programs); each
# waits for a quiet machine first.
# Optionally (TORCH_REFBLAS=1) PyTorch's out-of-the-box Debian set-up (reference BLAS), slow.
#
# Needs: python3-torch, libopenblas0-openmp (apt), a built ./build/dmap and ./build/llama_probe,
# ~7 GB free in $TMPDIR.
# Usage: tests/bench/run_cpu_bench.sh [presets...]   (default: tinyllama-1.1b llama3.2-1b)
#        DTYPES="float16" tests/bench/run_cpu_bench.sh   (a subset of float32 bfloat16 float16)
# Prints a table; raw JSON lines go to $BENCH_OUT (default: a temp file, path printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shared="$root/../shared/bench"
dmap="${DMAP:-$root/build/dmap}"
llama_probe="${DMAP_LLAMA_PROBE:-$root/build/llama_probe}"
dtypes=${DTYPES:-"float32 bfloat16 float16"}
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
dmap_run() {  # label model [run options...]
  local label=$1 model=$2; shift 2
  quiet
  "$dmap" run "$model" "$@" --new-tokens 32 --threads 2 --prefill-reps 2 --format json \
    | $PY -c "import json,sys; d=json.load(sys.stdin); d.pop('modules'); d.pop('device_map'); d['label']='$label'; print(json.dumps(d))" >> "$out"
}
llama_run() {  # label gguf: 3 rounds (prefill of 128 ids, then 32 decodes), read into memory
  quiet
  "$llama_probe" "$2" --threads 2 --prompt 128 --new-tokens 32 --rounds 3 --no-mmap 2>/dev/null \
    | $PY -c "
import json, statistics, sys
d = json.load(sys.stdin)
print(json.dumps({'label': '$1', 'prefill_ms': 1e3 * statistics.median(r['prefill_s'] for r in d['rounds']),
                  'decode_ms_per_token': 1e3 * statistics.median(r['decode_s'] for r in d['rounds']),
                  'llama_cpp': d.get('llama_cpp', d.get('version', ''))}))" >> "$out"
}
preset_model() {  # the shared script's preset -> dmap's preset
  case $1 in tinyllama-1.1b) echo tinyllama_1b ;; llama3.2-1b) echo llama32_1b ;; *) echo "$1" ;; esac
}
for p in $presets; do
  for dt in $dtypes; do
    dir="$work/$p-$dt"
    gguf="$work/$p-$dt.gguf"
    case $dt in
      float32)
        # writes the weights and the reference prompt too
        torch_run "torch-fp32-openblas-skx" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype float32 --save-dir "$dir" --dump-ref "$dir"
        torch_run "torch-fp32-openblas-skx-mv" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype float32 --linear-impl mv
        if [ "${TORCH_REFBLAS:-0}" = 1 ]; then torch_run "torch-fp32-refblas" "$dir" "$REFBLAS" "" --preset "$p" --dtype float32 --prefill-reps 1; fi
        "$dmap" export gguf "$dir" --type f32 --out "$gguf" > /dev/null
        llama_run "llama.cpp-f32" "$gguf"
        dmap_run "dmap-$dt" "$dir" --prompt-file "$dir/reference.json" ;;
      bfloat16)
        torch_run "torch-bf16-onednn" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype bfloat16 --save-dir "$dir" --dump-ref "$dir"
        "$dmap" export gguf "$dir" --type bf16 --out "$gguf" > /dev/null
        llama_run "llama.cpp-bf16" "$gguf"
        dmap_run "dmap-$dt" "$dir" --prompt-file "$dir/reference.json" ;;
      float16)
        # PyTorch: tried; on a CPU without float16 products it fails and is left out.
        torch_run "torch-fp16" "$dir" "$OPENBLAS" SkylakeX --preset "$p" --dtype float16 2>/dev/null \
          || echo "PyTorch float16 on this CPU: not supported (left out)" >&2
        m=$(preset_model "$p")
        "$dmap" export gguf "$m" --random-weights --dtype float16 --type f16 --out "$gguf" > /dev/null
        llama_run "llama.cpp-f16" "$gguf"
        dmap_run "dmap-$dt" "$m" --dtype float16 --prompt-tokens 128 ;;
    esac
    sed -i "\$s/}\$/, \"preset\": \"$p\", \"dtype\": \"$dt\"}/" "$out"
    rm -rf "$dir" "$gguf"
  done
done
echo "raw results: $out"
$PY - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
triad = next(r["value"] for r in rows if r.get("what") == "stream_triad_gbs")  # GB/s
print(f"\nroofline bandwidth (STREAM triad, 2 threads): {triad:.1f} GB/s")
print(f"{'model':<16}{'dtype':<10}{'who':<28}{'prefill s':>10}{'decode ms':>11}{'% roofline':>11}"
      f"{'dmap decode faster':>20}{'dmap prefill faster':>21}")
pending = []
weights_gb = {}  # (preset, dtype) -> decode weight bytes (PyTorch's count; else dmap's)
for r in rows:
    if "label" not in r:
        continue
    if not r["label"].startswith("dmap"):
        pending.append(r)
        continue
    # a dmap row closes a group: the rows before it share its preset/dtype
    p, dt = r["preset"], r["dtype"]
    gb = next((t["decode_weight_bytes"] / 1e9 for t in pending if "decode_weight_bytes" in t), None)
    if gb is None and dt == "float16":  # no PyTorch row: bfloat16's bytes (two per weight too)
        gb = weights_gb.get((p, "bfloat16"))
    weights_gb[(p, dt)] = gb
    roof_ms = gb / triad * 1e3 if gb else float("nan")
    dec = r["decode_token_s"] * 1e3
    pre = r["prefill_s"]
    for t in pending:
        print(f"{p:<16}{dt:<10}{t['label']:<28}{t['prefill_ms']/1e3:>10.3f}{t['decode_ms_per_token']:>11.1f}"
              f"{100*roof_ms/t['decode_ms_per_token']:>10.0f}%{t['decode_ms_per_token']/dec:>19.2f}x"
              f"{t['prefill_ms']/1e3/pre:>20.2f}x")
    print(f"{p:<16}{dt:<10}{'dmap (' + r['isa'] + ')':<28}{pre:>10.3f}{dec:>11.1f}{100*roof_ms/dec:>10.0f}%")
    pending = []
print("\n'dmap ... faster': the row's time over dmap's (above 1: dmap is faster).")
PY

#!/usr/bin/env bash
# On a GPU machine (the `device` tool, from the repository root, after scripts/device/prepare.sh
# here and with .device carried): the GPU tests and the measurements of docs/PERFORMANCE.md.
#   bash scripts/device/run_gpu_suite.sh tests    GPU tests, a recorded CUPTI trace, copy and GEMM benches
#   bash scripts/device/run_gpu_suite.sh offload  Llama-3.1-8B bf16 (random weights): all on the GPU, then
#                                                 GPU capped at 4/8/12 GiB under accelerate, prefetch and
#                                                 in-place, and CPU-only on all cores; a sample trace
#   bash scripts/device/run_gpu_suite.sh anchors  the same caps through transformers + accelerate
#   bash scripts/device/run_gpu_suite.sh profile  dmap profile --real --device cuda:0 (h200.yaml + traces),
#                                                 then --validate on the GPU (caps x semantics, CPU-only)
# Results go to $OUT (the tool brings back at most 8 files): log.txt, bench.jsonl, runs.jsonl,
# recorded.gpu.json, sample.trace.json, sample.gpu.json, anchors.json.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/device-out}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$ROOT/.device/lib:${LD_LIBRARY_PATH:-}"
export DMAP_SOURCE_DIR="$ROOT"
BIN="$ROOT/.device/bin"
LOG="$OUT/log.txt"
MODEL=llama31_8b
THREADS="$(nproc)"
run_json() {  # run_json LABEL ARGS... : one dmap run, its JSON appended to runs.jsonl with the label
  local label="$1"
  shift
  echo "== $label: dmap run $*" >>"$LOG"
  if "$BIN/dmap" run "$@" --format json >"$OUT/run.json" 2>>"$LOG"; then
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['label']=sys.argv[2]; d.pop('modules_detail', None); print(json.dumps(d))" \
      "$OUT/run.json" "$label" >>"$OUT/runs.jsonl"
  else
    echo "{\"label\": \"$label\", \"failed\": true}" >>"$OUT/runs.jsonl"
  fi
  rm -f "$OUT/run.json"
}

case "${1:-}" in
  tests)
    nvidia-smi >>"$LOG" 2>&1
    "$BIN/cuda_exec_test" >>"$LOG" 2>&1; echo "cuda_exec_test exit $?" >>"$LOG"
    "$BIN/gpu_profile_test" >>"$LOG" 2>&1; echo "gpu_profile_test exit $?" >>"$LOG"
    DMAP_RECORD_TRACE="$OUT/recorded.gpu.json" "$BIN/cupti_test" >>"$LOG" 2>&1; echo "cupti_test exit $?" >>"$LOG"
    "$BIN/cuda_bench" copies >>"$OUT/bench.jsonl" 2>>"$LOG"
    "$BIN/cuda_bench" gemm 4096 14336 128256 1 128 512 2048 >>"$OUT/bench.jsonl" 2>>"$LOG"
    tail -3 "$LOG"
    ;;
  offload)
    common=(--dtype bfloat16 --prompt-tokens 128 --new-tokens 8 --threads "$THREADS" --prefill-reps 3)
    run_json "gpu" "$MODEL" --strategy 0 "${common[@]}"
    for cap in 4 8 12; do
      for sem in accelerate prefetch in-place; do
        run_json "cap${cap}_${sem}" "$MODEL" --strategy auto --max-memory "0=${cap}GiB,cpu=100GiB" --semantics "$sem" "${common[@]}"
      done
    done
    run_json "cpu" "$MODEL" --strategy cpu "${common[@]}"
    "$BIN/dmap" run llama32_1b --dtype bfloat16 --strategy auto --max-memory 0=1GiB,cpu=100GiB --prompt-tokens 32 \
      --new-tokens 3 --trace "$OUT/sample.trace.json" >>"$LOG" 2>&1
    tail -3 "$LOG"
    ;;
  profile)
    # A calibration of the GPU, its link and the host (~5 min), then the validation of
    # Llama-3.1-8B bf16 capped at 4/8/12 GiB under the three semantics, and CPU-only (~6 min).
    "$BIN/dmap" profile --real --device cuda:0 --model "$MODEL" --dtype bfloat16 --hardware h200_vm --name h200 \
      --threads "$THREADS" --prompt-tokens 128 --out "$OUT/h200.yaml" >>"$LOG" 2>&1
    echo "profile --real exit $?" >>"$LOG"
    "$BIN/dmap" profile --validate --device cuda:0 --calibration "$OUT/h200.yaml" --dtype bfloat16 --hardware h200_vm \
      --name h200 --threads "$THREADS" --prompt-tokens 128 --new-tokens 8 --rounds 2 --quiet-wait 10 \
      --out "$OUT/h200.md" >>"$LOG" 2>&1
    echo "profile --validate exit $?" >>"$LOG"
    tail -30 "$LOG"
    ;;
  anchors)
    python3 "$ROOT/scripts/hf_anchor.py" --model "$ROOT/configs/models/llama31_8b.yaml" --dtype bfloat16 \
      --caps 4GiB,8GiB,12GiB,cpu --prompt-tokens 128 --new-tokens 8 --out "$OUT/anchors.json" >>"$LOG" 2>&1
    tail -5 "$LOG"
    ;;
  *)
    echo "usage: run_gpu_suite.sh tests|offload|anchors|profile" >&2
    exit 2
    ;;
esac

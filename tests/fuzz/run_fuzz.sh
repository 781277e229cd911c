#!/usr/bin/env bash
# Builds dmap's libFuzzer targets (clang, ASan + UBSan, -DDMAP_FUZZ=ON into build-fuzz/) and runs
# each for SECONDS on seeds taken from the shipped files, with a dictionary of the keys they use.
#   tests/fuzz/run_fuzz.sh [SECONDS=60] [TARGET ...]
# Targets: scenario config calibration hardware device_map safetensors gguf (default: all).
# Prints one line per target: executions, coverage, corpus, findings. A finding (a crash, a
# sanitizer report, an exception other than InputError, a timeout of 10 s, over 4 GiB) is kept
# under build-fuzz/findings/TARGET/ and makes the script exit 1.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(scenario config calibration hardware device_map safetensors gguf)
build="$root/build-fuzz"

cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DDMAP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
make -C "$build" -j"$(nproc)" >/dev/null || exit 1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Seeds: the shipped files each reader reads.
seed() {  # seed TARGET FILE...
  mkdir -p "$work/$1/seeds"
  local t="$1"
  shift
  for f in "$@"; do cp "$f" "$work/$t/seeds/$(basename "$(dirname "$f")")_$(basename "$f")"; done
}
seed scenario "$root"/configs/scenarios/*.yaml
seed config "$root"/tests/data/*/config.json "$root"/configs/models/*.yaml
seed calibration "$root"/configs/calibrations/*.yaml
seed hardware "$root"/configs/hardware/desktop_rtx3060.yaml "$root"/configs/hardware/server_a100_80gb_x4.yaml
python3 - "$root" "$work/hardware/seeds/inline.yaml" "$work/device_map/seeds" <<'PY'
import os, sys
root, inline, maps = sys.argv[1], sys.argv[2], sys.argv[3]
def body(name):  # a preset's keys as an indented block
    with open(os.path.join(root, "configs", "hardware", name + ".yaml")) as f:
        return "".join("    " + l for l in f if l.strip() and not l.startswith("#"))
with open(inline, "w") as f:
    f.write("host:\n" + body("desktop_ddr4_dual") + "gpus:\n  - \n" + body("rtx3090").replace("    ", "      ", 1)
            + "link: pcie4_x16\ndisk: nvme_gen4\ngpu_memory_in_use: {0: 1GiB}\npage_cache: true\n")
os.makedirs(maps, exist_ok=True)
with open(os.path.join(maps, "split.yaml"), "w") as f:
    f.write("model.embed_tokens: 0\nmodel.layers.0: 0\nmodel.layers.1: cuda:1\nmodel.layers: cpu\nmodel.norm: cpu\n"
            "model.rotary_emb: cpu\nlm_head: disk\n")
with open(os.path.join(maps, "whole.json"), "w") as f:
    f.write('{"": "cpu"}')
PY
seed safetensors "$root"/tests/fuzz/corpus/*
# A small llama GGUF (1 layer, hidden 32, vocab 32, F16 matrices) written here, as the converter lays it out.
mkdir -p "$work/gguf/seeds"
python3 - "$work/gguf/seeds/tiny_llama.gguf" <<'PY'
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")), ("general.file_type", 4, struct.pack("<I", 1))]
for k, v in [("block_count", 1), ("context_length", 64), ("embedding_length", 32), ("feed_forward_length", 64),
             ("attention.head_count", 4), ("attention.head_count_kv", 2)]:
    kv.append(("llama." + k, 4, struct.pack("<I", v)))
kv.append(("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)))
kv.append(("tokenizer.ggml.model", 8, s("none")))
T = [("token_embd.weight", [32, 32], 1), ("blk.0.attn_norm.weight", [32], 0), ("blk.0.attn_q.weight", [32, 32], 1),
     ("blk.0.attn_k.weight", [32, 16], 1), ("blk.0.attn_v.weight", [32, 16], 1), ("blk.0.attn_output.weight", [32, 32], 1),
     ("blk.0.ffn_norm.weight", [32], 0), ("blk.0.ffn_gate.weight", [32, 64], 1), ("blk.0.ffn_up.weight", [32, 64], 1),
     ("blk.0.ffn_down.weight", [64, 32], 1), ("output_norm.weight", [32], 0)]
out = b"GGUF" + struct.pack("<IQQ", 3, len(T), len(kv))
for k, t, v in kv: out += s(k) + struct.pack("<I", t) + v
off, data = 0, b""
for name, dims, ty in T:
    n = 1
    for d in dims: n *= d
    nb = n * (4 if ty == 0 else 2)
    out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<q", d) for d in dims) + struct.pack("<IQ", ty, off)
    data += b"\x01" * nb + b"\x00" * ((-nb) % 32)
    off += nb + (-nb) % 32
out += b"\x00" * ((-len(out)) % 32)
open(sys.argv[1], "wb").write(out + data)
PY
# The dictionary: every key the shipped YAML uses, plus YAML's own tokens.
grep -rhoE '^\s*[a-z_0-9]+:' "$root/configs" | tr -d ' :' | sort -u | sed 's/.*/"&:"/' >"$work/yaml.dict"
printf '%s\n' '"&a "' '"*a"' '"!!str "' '"{"' '"["' '"\"\\u0000\""' '"9223372036854775807"' '"GiB"' '"TiB"' '"-"' >>"$work/yaml.dict"

status=0
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/${t}_fuzz"
  [ -x "$bin" ] || { echo "$t: no target $bin"; status=1; continue; }
  mkdir -p "$work/$t/corpus" "$build/findings/$t"
  dict=(-dict="$work/yaml.dict")
  [ "$t" = safetensors ] || [ "$t" = gguf ] && dict=()
  TMPDIR="$work" "$bin" "$work/$t/corpus" "$work/$t/seeds" "${dict[@]}" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 -artifact_prefix="$build/findings/$t/" \
    >"$work/$t/log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/$t/log" | grep -oE '[0-9]+$')
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$work/$t/log" | tail -1)
  found=$(ls "$build/findings/$t" | wc -l)
  echo "$t: ${runs:-?} executions in ${secs} s, ${cov:-no coverage line}, exit $rc, $found finding file(s) in build-fuzz/findings/$t"
  if [ "$rc" -ne 0 ]; then
    status=1
    grep -E 'ERROR|finding:|runtime error|SUMMARY|timeout|out-of-memory' "$work/$t/log" | head -8
  fi
done
exit $status

#!/usr/bin/env bash
# End-to-end tests of the dmap binary: the seed map, JSON output, and bad input -> exit code 2
# with a message naming the file (and line), nothing on stdout, never a crash.
# Usage: cli_test.sh DMAP_BINARY SOURCE_DIR
set -uo pipefail
DMAP="$1"
SRC="$2"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_error NAME PATTERN -- ARGS...: exit 2, stderr matches PATTERN, stdout empty.
expect_error() {
  local name="$1" pattern="$2"
  shift 3
  "$DMAP" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ "$rc" -ne 2 ]; then bad "$name: exit $rc, want 2 ($(cat "$TMP/err"))"; return; fi
  if ! grep -qE -- "$pattern" "$TMP/err"; then bad "$name: stderr lacks /$pattern/: $(cat "$TMP/err")"; return; fi
  if [ -s "$TMP/out" ]; then bad "$name: wrote to stdout on error"; return; fi
  ok
}

# --- the seed scenario: the article's map --------------------------------------------------
SEED="$SRC/configs/scenarios/seed_llama31_8b_fp32_11_5gb.yaml"
if out="$("$DMAP" map "$SEED" --format json)"; then
  for want in '\["model.layers.7",0\]' '\["model.layers.8.self_attn",0\]' '\["lm_head","cpu"\],\["model.layers.8.mlp","cpu"\]\]'; do
    if grep -qE "$want" <<<"$out"; then ok; else bad "seed map lacks $want: $out"; fi
  done
  if grep -q '"max_memory":{"0":11500000000,"cpu":68719476736}' <<<"$out"; then ok; else bad "seed max_memory: $out"; fi
else
  bad "seed scenario failed"
fi
"$DMAP" map "$SEED" >"$TMP/table" && grep -q "model.layers.8.mlp" "$TMP/table" && ok || bad "seed table"
# the same through flags
if out="$("$DMAP" map --model "$SRC/configs/models/llama31_8b.yaml" --dtype float32 --max-memory 0=11.5GB,cpu=64GiB \
          --strategy infer_auto_device_map --no-split none --format json)" && grep -q '"model.layers.8.mlp","cpu"\]\]' <<<"$out"; then
  ok
else
  bad "flag form of the seed map: $out"
fi
# strategies on the same scenario: whole-model and hand-written maps
"$DMAP" map "$SEED" --strategy cpu --format json | grep -q '^{"device_map":\[\["","cpu"\]\]' && ok || bad "cpu strategy"
"$DMAP" map "$SEED" --strategy first_half_on_gpu --format json | grep -q '"model.layers.8","cpu"' && ok || bad "hand-written map"
"$DMAP" map "$SEED" --strategy auto --format json >/dev/null && ok || bad "auto strategy"
"$DMAP" memory llama31_8b --format json | grep -q '"kv_cache_bytes_per_1000_tokens"' && ok || bad "memory json"
"$DMAP" memory "$SRC/configs/models/gpt2_xl.yaml" | grep -q "float16" && ok || bad "memory table"
"$DMAP" map --help | grep -q "usage: dmap map" && ok || bad "map --help"
"$DMAP" memory --help >/dev/null && ok || bad "memory --help"

# --- bad input ---------------------------------------------------------------------------------
printf 'model:\n  model_type: llama\n  config: {vocab_size: 8\nmax_memory: {0: 1GB}\n' >"$TMP/malformed.yaml"
expect_error "malformed yaml" "malformed.yaml:[0-9]+" -- map "$TMP/malformed.yaml"
printf 'model:\n  model_type: bloom\n  config: {hidden_size: 8}\nmax_memory: {0: 1GB, cpu: 1GB}\n' >"$TMP/bloom.yaml"
expect_error "unknown model_type" "unknown model_type 'bloom'" -- map "$TMP/bloom.yaml"
printf '{\n "hidden_size": 8,\n "model_type": "qwen9"\n}\n' >"$TMP/config.json"
expect_error "unknown model_type in a config.json, with its line" "config.json:3:[0-9]+: unknown model_type 'qwen9' \(supported: .*qwen3.*see docs/FAMILIES.md" -- map --model "$TMP/config.json" --max-memory 0=1GiB
printf 'model:\n  model_type: llama\n  config:\n    vocab_size: 8\n    hidden_size: 8\nmax_memory: {0: 1GB, cpu: 1GB}\n' >"$TMP/missing.yaml"
expect_error "missing config field" "missing.yaml:[0-9]+.*intermediate_size" -- map "$TMP/missing.yaml"
M='model:\n  model_type: llama\n  config: {vocab_size: 64, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2}\n'
printf "${M}max_memory: {0: lots, cpu: 1GB}\n" >"$TMP/garbage.yaml"
expect_error "garbage memory string" "garbage.yaml:[0-9]+.*lots" -- map "$TMP/garbage.yaml"
printf "${M}max_memory: {0: -1000, cpu: 1GB}\n" >"$TMP/negative.yaml"
expect_error "negative cap" "negative.yaml:[0-9]+.*negative" -- map "$TMP/negative.yaml"
expect_error "garbage --max-memory" "cannot read size 'x1GB'" -- map "$SEED" --max-memory 0=x1GB,cpu=1GB
expect_error "negative --max-memory" "negative" -- map "$SEED" --max-memory 0=-1GB,cpu=1GB
printf "${M}max_memory: {0: 1GB, cpu: 1GB}\ndevice_maps:\n  m: {model: 0, model.layers.7: cpu, lm_head: 0}\n" >"$TMP/unknown_module.yaml"
expect_error "manual map unknown module" "'model.layers.7'" -- map "$TMP/unknown_module.yaml" --strategy m
printf "${M}max_memory: {0: 1GB, cpu: 1GB}\ndevice_maps:\n  m: {model: 0}\n" >"$TMP/uncovered.yaml"
expect_error "manual map uncovered parameter" "no device for: lm_head.weight" -- map "$TMP/uncovered.yaml" --strategy m
printf "${M}max_memory: {0: 1GB, cpu: 1GB}\ndevice_maps:\n  m: {model: 0, lm_head: tpu}\n" >"$TMP/unknown_device.yaml"
expect_error "manual map unknown device" "unknown_device.yaml:[0-9]+.*unknown device 'tpu'" -- map "$TMP/unknown_device.yaml"
printf '{"model.layers.0": 0, "lm_head": "cpu", "model": "cpu"}' >"$TMP/map.json"
"$DMAP" map "$SEED" --device-map "$TMP/map.json" --format json >/dev/null && ok || bad "--device-map json"
printf '{"model": "cpu"}' >"$TMP/short.json"
expect_error "--device-map uncovered" "short.json.*lm_head.weight" -- map "$SEED" --device-map "$TMP/short.json"
expect_error "missing file" "no_such.yaml.*cannot open" -- map "$TMP/no_such.yaml"
expect_error "unknown option" "unknown option --colour" -- map "$SEED" --colour
expect_error "unknown strategy" "unknown strategy or map 'fastest'" -- map "$SEED" --strategy fastest
expect_error "unknown dtype" "unknown dtype 'float12'" -- map "$SEED" --dtype float12
expect_error "bad format" "--format must be" -- map "$SEED" --format xml
expect_error "unknown command" "unknown command" -- simulate-everything
printf 'not: [valid\n' >"$TMP/config.json"
expect_error "malformed config.json" "config.json:[0-9]+" -- memory "$TMP/config.json"
printf '{"model_type": "llama", "hidden_size": 8}' >"$TMP/partial.json"
expect_error "config.json missing field" "partial.json.*vocab_size" -- memory "$TMP/partial.json"

# --- dmap simulate / dmap report ------------------------------------------------------------
SIM="$SRC/configs/scenarios/llama31_8b_fp16_rtx3060.yaml"
if out="$("$DMAP" simulate "$SIM" --format json)"; then
  for key in '"results":\[' '"recommendation":\{"strategy":' '"verdict":"' '"decode_token_s":' '"tokens_per_s":' \
             '"transfer_bytes_per_token":' '"bottleneck":"(gpu_compute|gpu_memory|h2d|cpu_compute|cpu_memory|disk)"' \
             '"memory_bytes":\{"0":' '"strategy":"cpu","semantics":"cpu"' '"semantics":"prefetch"' '"semantics":"in-place"' \
             '"source":"datasheet"'; do
    if grep -qE "$key" <<<"$out"; then ok; else bad "simulate json lacks /$key/"; fi
  done
  # the article's verdict: CPU-only beats device_map='auto' for fp16 on a 12 GB GPU
  if grep -q "CPU-only decodes .* faster than device_map='auto'" <<<"$out"; then ok; else bad "simulate verdict: $out"; fi
else
  bad "simulate json failed"
fi
"$DMAP" simulate "$SIM" >"$TMP/sim.txt" && grep -q "Break-even offloaded fraction" "$TMP/sim.txt" && ok || bad "simulate table"
"$DMAP" simulate "$SIM" --format markdown >"$TMP/sim.md" && grep -q "^| 1 |" "$TMP/sim.md" && ok || bad "simulate markdown"
# an over-capacity placement is a result, not an error
if "$DMAP" simulate "$SRC/configs/scenarios/llama31_8b_fp32_rtx3060.yaml" --format json | grep -q '"feasible":false,"reason":"GPU 0'; then ok; else bad "OOM row"; fi
# report
if "$DMAP" report "$SIM" --out "$TMP/reports" >/dev/null; then
  for f in index.md time_per_token.svg crossover.svg memory.svg results.json; do
    [ -s "$TMP/reports/llama31_8b_fp16_rtx3060/$f" ] && ok || bad "report lacks $f"
  done
  grep -q "## Crossover" "$TMP/reports/llama31_8b_fp16_rtx3060/index.md" && ok || bad "report index"
else
  bad "report failed"
fi
# bad scenario input: exit 2, file and line, nothing written
scenario() { printf '%s\n' "$@" >"$TMP/s.yaml"; }
scenario "model: llama31_8b" "hardware: {host: desktop_ddr5_dual, gpus: [rtx9090], link: pcie4_x16, disk: nvme_gen4}" \
  "workload: {prompt: 512, new_tokens: 8}"
expect_error "unknown gpu preset" "s.yaml:2:.*unknown gpu preset 'rtx9090'" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {new_tokens: 8}"
expect_error "missing prompt" "s.yaml:3:.*missing 'prompt'" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 512, new_tokens: -4}"
expect_error "negative tokens" "s.yaml:3:.*new_tokens: must be a positive integer" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware:" "  host: desktop_ddr5_dual" "  gpus: [{name: x, memory: 12GiB, memory_bandwidth_gbs: -360, peak_tflops: {float32: 10}}]" \
  "  link: pcie4_x16" "  disk: nvme_gen4" "workload: {prompt: 8, new_tokens: 8}"
expect_error "nonsense bandwidth" "s.yaml:4:.*memory_bandwidth_gbs: must be positive" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "strategies: [auto, mine]" \
  "device_maps:" "  mine: {model.embed_tokens: 0}"
expect_error "map not covering the model" "device_maps.mine.*gives no device for" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "gpu_count: 2"
expect_error "unknown scenario key" "s.yaml:4:.*scenario: unknown key 'gpu_count'" -- simulate "$TMP/s.yaml"
# misspelled keys anywhere in the hardware are errors with a suggestion (issue 20)
scenario "model: llama31_8b" "hardware: {host: desktop_ddr5_dual, gpus: [rtx3060_12gb], link: pcie4_x16, disk: nvme_gen4, page_cashe: false}" \
  "workload: {prompt: 8, new_tokens: 8}"
expect_error "hardware typo" "s.yaml:2:.*hardware: unknown key 'page_cashe' \(did you mean 'page_cache'\?\)" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: {host: desktop_ddr5_dual, gpus: [rtx3060_12gb], link: pcie4_x16, disk: nvme_gen4, gpu_memory_in_uze: {0: 1GiB}}" \
  "workload: {prompt: 8, new_tokens: 8}"
expect_error "hardware typo 2" "did you mean 'gpu_memory_in_use'" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware:" "  host: desktop_ddr5_dual" "  gpus: [{name: x, memory: 12GiB, memory_bandwidth_gbs: 360, peak_tflops: {float32: 10}, p2p_gsb: 8}]" \
  "  link: pcie4_x16" "  disk: nvme_gen4" "workload: {prompt: 8, new_tokens: 8}"
expect_error "inline gpu typo" "s.yaml:4:.*gpu: unknown key 'p2p_gsb' \(did you mean 'p2p_gbs'\?\)" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "max_memroy: {0: 1GiB}"
expect_error "scenario typo" "did you mean 'max_memory'" -- simulate "$TMP/s.yaml"
scenario "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 130000, new_tokens: 8000}"
expect_error "context beyond the model" "exceeds the model's 131072 positions" -- simulate "$TMP/s.yaml"
expect_error "report bad input writes nothing" "exceeds the model" -- report "$TMP/s.yaml" --out "$TMP/none"
[ ! -e "$TMP/none" ] && ok || bad "report wrote output for bad input"
# Output paths (issue 20): a scenario's id names files, so it must be a plain name; every
# output folder is checked before work; several outputs are written all or none.
mkdir -p "$TMP/paths/a/b"
scenario "id: ../../escape" "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}"
expect_error "id with a path" "s.yaml:1:.*id '../../escape' cannot name the scenario's files" -- report "$TMP/s.yaml" --out "$TMP/paths/a/b/reports"
[ ! -e "$TMP/paths/a/escape" ] && [ ! -e "$TMP/paths/a/b/reports" ] && ok || bad "an id with a path wrote outside --out"
expect_error "id with a path (golden)" "cannot name the scenario's files" -- simulate --update-golden "$TMP/s.yaml" --golden-dir "$TMP/paths/g"
[ ! -e "$TMP/paths/g" ] && [ ! -e "$TMP/escape.json" ] && ok || bad "an id with a path wrote a golden file"
for id in '".."' '"."' '.hidden' ""$(printf 'x%.0s' $(seq 1 101))""; do
  scenario "id: $id" "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}"
  expect_error "id $id" "s.yaml:1:.*cannot name the scenario's files" -- report "$TMP/s.yaml" --out "$TMP/paths/r"
done
scenario "id: [a, b]" "model: llama31_8b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}"
expect_error "id as a list" "s.yaml:1:.*id must be a name" -- simulate "$TMP/s.yaml"
printf 'model: llama31_8b
hardware: desktop_rtx3060
workload: {prompt: 8, new_tokens: 8}
' >"$TMP/paths/bad name.yaml"
expect_error "file name as id" "bad name.yaml: the file name cannot serve as the scenario's id" -- simulate "$TMP/paths/bad name.yaml"
expect_error "report --out empty" "--out: an empty path" -- report "$SIM" --out ""
touch "$TMP/paths/file"
expect_error "report --out a file" "--out: .*exists and is not a folder" -- report "$SIM" --out "$TMP/paths/file"
expect_error "two scenarios, one id" "a second scenario with id 'llama31_8b_fp16_rtx3060'" -- report "$SIM" "$SIM" --out "$TMP/paths/r"
# an interrupt removes the staged report and exits 130 (SIGINT) / 143 (SIGTERM)
for sig in INT TERM; do
  rm -rf "$TMP/paths/intr" && mkdir -p "$TMP/paths/intr"
  "$DMAP" report --all --out "$TMP/paths/intr" >/dev/null 2>&1 &
  pid=$!
  sleep 0.7
  kill -s "$sig" "$pid"
  wait "$pid"
  rc=$?
  want=$([ "$sig" = INT ] && echo 130 || echo 143)
  if [ "$rc" = "$want" ]; then
    [ -z "$(find "$TMP/paths/intr" -name '.*')" ] && ok || bad "SIG$sig left temporaries: $(find "$TMP/paths/intr" -name '.*')"
  elif [ "$rc" = 0 ]; then
    ok  # finished before the signal (a fast machine): nothing to check
  else
    bad "SIG$sig during report: exit $rc, want $want"
  fi
done
# update-golden over a good and a malformed scenario writes nothing
mkdir -p "$TMP/paths/golden"
printf 'model: [
' >"$TMP/paths/broken.yaml"
expect_error "update-golden, one bad" "broken.yaml" -- simulate --update-golden "$SIM" "$TMP/paths/broken.yaml" --golden-dir "$TMP/paths/golden"
[ -z "$(ls -A "$TMP/paths/golden")" ] && ok || bad "update-golden wrote a file before failing: $(ls -A "$TMP/paths/golden")"
# a report replaces the previous one whole (no stale file, no temporaries left)
mkdir -p "$TMP/paths/r2/llama31_8b_fp16_rtx3060" && touch "$TMP/paths/r2/llama31_8b_fp16_rtx3060/stale.svg"
if "$DMAP" report "$SIM" --out "$TMP/paths/r2" >/dev/null; then
  [ ! -e "$TMP/paths/r2/llama31_8b_fp16_rtx3060/stale.svg" ] && [ -s "$TMP/paths/r2/llama31_8b_fp16_rtx3060/index.md" ] && ok ||
    bad "report did not replace the previous folder whole"
  [ -z "$(find "$TMP/paths/r2" -name '.*')" ] && ok || bad "report left temporaries: $(find "$TMP/paths/r2" -name '.*')"
else
  bad "report into an existing folder failed"
fi
# input files are regular files; names cannot hide built-ins; flags are not silently ignored (issue 20)
mkdir -p "$TMP/paths/dir.yaml"
expect_error "a folder as scenario" "dir.yaml: cannot open: a folder, not a file" -- simulate "$TMP/paths/dir.yaml"
# control characters: a raw NUL byte is located; an escaped one in a name prints escaped, whole
printf 'model: llama32_1b\nhardware: desktop_rtx3060\nworkload: {prompt: 8, new_tokens: 8}\nstrategies: [au\0to]\n' >"$TMP/s.yaml"
expect_error "a NUL byte in the text" "s.yaml:4:16: the control character .x00 is not allowed" -- simulate "$TMP/s.yaml"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" 'strategies: ["au\0to\e[31m"]'
expect_error "an escaped NUL in a strategy" "s.yaml:4:14: strategy: contains the control character .x00" -- simulate "$TMP/s.yaml"
expect_error "an escape sequence in a flag" "unknown format 't.x1b\[31m'" -- simulate "$SEED" --format $'t\e[31m'
mkfifo "$TMP/paths/fifo.yaml"
expect_error "a FIFO as scenario" "fifo.yaml: cannot open: not a regular file" -- simulate "$TMP/paths/fifo.yaml"
ln -s "$TMP/paths/gone.yaml" "$TMP/paths/dangling.yaml"
expect_error "a dangling link" "dangling.yaml: cannot open: a symbolic link to a missing file" -- simulate "$TMP/paths/dangling.yaml"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "device_maps:" "  optimal: {'': cpu}"
expect_error "a map named like a built-in" "s.yaml:5:.*'optimal' is a built-in strategy" -- simulate "$TMP/s.yaml"
expect_error "calibration with update-golden" "--calibration cannot be combined with --update-golden" -- \
  simulate --update-golden "$SIM" --calibration "$TMP/cal.yaml" --golden-dir "$TMP/paths/g2"
# messages and outputs stay readable whatever the input holds (issue 20)
python3 -c "print('model_type: ' + 'x' * 100000)" >"$TMP/paths/long_type.yaml"
"$DMAP" memory "$TMP/paths/long_type.yaml" 2>"$TMP/err" >/dev/null
[ "$(wc -c <"$TMP/err")" -lt 600 ] && grep -q "(100000 characters)" "$TMP/err" && ok || bad "a long model_type is echoed whole: $(wc -c <"$TMP/err") bytes"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "max_memory: {0: 4GiB, 3: 4GiB, cpu: 8GiB}"
expect_error "cap for a missing GPU" "s.yaml:4:[0-9]+: max_memory: GPU 3 is not one of the 1 GPU" -- simulate "$TMP/s.yaml"
printf 'title: "caf\xe9 \xff\xfe"\nmodel: llama32_1b\nhardware: desktop_rtx3060\nworkload: {prompt: 8, new_tokens: 8}\n' >"$TMP/paths/latin1.yaml"
if "$DMAP" simulate "$TMP/paths/latin1.yaml" --format json >"$TMP/paths/latin1.json" 2>/dev/null; then
  python3 -c "import json,sys; json.load(open(sys.argv[1], encoding='utf-8'))" "$TMP/paths/latin1.json" && ok || bad "non-UTF-8 title: invalid JSON"
else
  ok  # refusing the file is fine too
fi
# duplicate keys: config.json as Python's json reads it (last wins, warned), YAML refuses them
sed 's/"hidden_size": 64,/"hidden_size": 32, "hidden_size": 64,/' "$SRC/tests/data/llama_shared_float32/config.json" >"$TMP/paths/dup.json"
"$DMAP" memory "$SRC/tests/data/llama_shared_float32/config.json" >"$TMP/paths/one.txt" 2>/dev/null
if "$DMAP" memory "$TMP/paths/dup.json" >"$TMP/paths/dup.txt" 2>"$TMP/err"; then
  grep -q "dup.json:[0-9]*: key 'hidden_size' given twice; the last value is used" "$TMP/err" && ok || bad "duplicate JSON key not warned: $(cat "$TMP/err")"
  [ "$(sed 1d "$TMP/paths/dup.txt")" = "$(sed 1d "$TMP/paths/one.txt")" ] && ok || bad "duplicate JSON key: the last value was not used"
else
  bad "a duplicate key in config.json failed"
fi
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "hardware: desktop_rtx3060"
expect_error "duplicate YAML key" "s.yaml:4:1: key 'hardware' given twice" -- simulate "$TMP/s.yaml"
# an unknown module in a hand-written map is named with its line
printf '{"model.embed_tokens": "cpu",\n "model.layerz.0": "cpu",\n "": "cpu"}' >"$TMP/paths/um.json"
expect_error "unknown module in a map file" "um.json:2: device map names 'model.layerz.0'" -- \
  map "$SEED" --device-map "$TMP/paths/um.json"
scenario "model: llama32_1b" "max_memory: {0: 1GiB, cpu: 10GiB}" "device_maps:" "  mine:" "    model.embed_tokens: 0" \
  "    model.layerz.0: cpu" "    '': cpu"
expect_error "unknown module in a scenario map" "s.yaml:6: device map names 'model.layerz.0'" -- map "$TMP/s.yaml" --strategy mine
# sizes from user input are limited and checked, never overflowed (issue 20)
for change in "vocab_size: 9223372036854775807" "hidden_size: 4000000000000" "num_hidden_layers: 1000000000"; do
  key="${change%%:*}"
  sed "s/^$key:.*/$change/" "$SRC/configs/models/llama32_1b.yaml" >"$TMP/huge.yaml"
  expect_error "huge $key" "huge.yaml:[0-9]+:.*config field '$key' = [0-9]+ is beyond dmap's limit of [0-9]+" -- memory "$TMP/huge.yaml"
done
sed "s/^hidden_size:.*/hidden_size: 1048576/; s/^intermediate_size:.*/intermediate_size: 1048576/; s/^num_hidden_layers:.*/num_hidden_layers: 16384/" \
  "$SRC/configs/models/llama32_1b.yaml" >"$TMP/huge.yaml"
expect_error "model too large in all" "the model is too large for dmap" -- memory "$TMP/huge.yaml"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {batch: 9223372036854775807, prompt: 8, new_tokens: 8}"
expect_error "huge batch" "s.yaml:3:.*workload.batch: 9223372036854775807 is beyond dmap's limit of 65536" -- simulate "$TMP/s.yaml"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 9223372036854775000, new_tokens: 9000}"
expect_error "huge prompt" "s.yaml:3:.*workload.prompt: .* is beyond dmap's limit" -- simulate "$TMP/s.yaml"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "max_memory: {0: 1152921504606846976, cpu: 8GiB}"
expect_error "huge cap" "s.yaml:4:.*max_memory: 1152921504606846976 for device 0 is beyond dmap's limit of 64 PiB" -- simulate "$TMP/s.yaml"
scenario "model: llama32_1b" "hardware: desktop_rtx3060" "workload: {prompt: 8, new_tokens: 8}" "max_memory: {0: 100000TiB, cpu: 8GiB}"
expect_error "huge cap with a unit" "s.yaml:4:.*beyond dmap's limit of 64 PiB" -- simulate "$TMP/s.yaml"
expect_error "huge cap flag" "max_memory: 1000000TB for device 0 is beyond" -- map --model "$SRC/configs/models/llama32_1b.yaml" --max-memory 0=1000000TB,cpu=8GiB
# a calibration replaces datasheet figures and says so
printf 'kind: calibration\nname: test-box\nhost: {memory_bandwidth_gbs: 20}\nlink: {h2d_pageable_gbs: 6}\n' >"$TMP/cal.yaml"
if out="$("$DMAP" simulate "$SIM" --calibration "$TMP/cal.yaml" --format json)"; then
  grep -q '"name":"cpu memory bandwidth","value":20,"unit":"GB/s","source":"calibrated"' <<<"$out" && ok || bad "calibrated figure: $out"
  grep -q '"calibration":"test-box"' <<<"$out" && ok || bad "calibration name"
else
  bad "simulate --calibration failed"
fi
printf 'kind: calibration\nhost: {memory_bandwidth_gbs: -3}\n' >"$TMP/badcal.yaml"
expect_error "negative calibrated bandwidth" "badcal.yaml:2:.*must be positive" -- simulate "$SIM" --calibration "$TMP/badcal.yaml"
printf 'kind: calibration\nhost:\n  head_matvec_gbs: {bfloat16: 0}\n' >"$TMP/badhead.yaml"
expect_error "zero LM head rate" "badhead.yaml:3:.*head_matvec_gbs: a rate must be positive" -- simulate "$SIM" --calibration "$TMP/badhead.yaml"
printf 'kind: calibration\nruntimes:\n  "llama.cpp":\n    load: {float32: no-mmap, bfloat16: lazily}\n' >"$TMP/badload.yaml"
expect_error "llama.cpp load mode per dtype, bad word" "badload.yaml:4:.*load.bfloat16: mmap or no-mmap, found 'lazily'" -- simulate "$SIM" --calibration "$TMP/badload.yaml"
expect_error "simulate bad format" "unknown format 'xml'" -- simulate "$SIM" --format xml

# --- dmap run: the CPU executor --------------------------------------------------------------
FIX="$SRC/tests/data/llama_shared_float32"
want=$(python3 -c "import json; print(json.load(open('$FIX/reference.json'))['greedy_tokens'][:7])" | tr -d ' ')
if out="$("$DMAP" run "$FIX" --prompt-file "$FIX/reference.json" --new-tokens 7 --threads 2 --format json)"; then
  got=$(python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens'][0])" <<<"$out" | tr -d ' ')
  [ "$got" = "$want" ] && ok || bad "run tokens $got, reference $want"
  for key in '"prefill_s":' '"decode_token_s":' '"tokens_per_s":' '"modules":\[\{"module":"model.embed_tokens","device":"cpu"'; do
    grep -qE "$key" <<<"$out" && ok || bad "run json lacks /$key/"
  done
else
  bad "run failed"
fi
printf '{"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "disk"}' >"$TMP/disk_map.json"
if out="$("$DMAP" run "$FIX" --prompt-file "$FIX/reference.json" --new-tokens 7 --device-map "$TMP/disk_map.json" --format json)"; then
  got=$(python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens'][0])" <<<"$out" | tr -d ' ')
  [ "$got" = "$want" ] && ok || bad "run with disk layers: tokens $got, reference $want"
  grep -qE '"disk_bytes_read":[1-9]' <<<"$out" && ok || bad "run with disk layers read nothing from disk"
  grep -q '"module":"model.layers.1.mlp","device":"disk"' <<<"$out" && ok || bad "run module devices"
else
  bad "run with a disk map failed"
fi
"$DMAP" run tinyllama_1b --dtype bfloat16 --prompt-tokens 4 --new-tokens 2 --threads 1 >"$TMP/run.txt" 2>/dev/null && grep -q "tokens\[0\]:" "$TMP/run.txt" && ok || bad "run with random weights"
# executor choice and traces
expect_error "run bad semantics" "--semantics must be accelerate, prefetch or in-place" -- run "$FIX" --semantics lazy
# routed-prefetch is dmap's proposal, priced by the simulator only: no executor runs it
expect_error "run routed-prefetch" "--semantics must be accelerate, prefetch or in-place" -- run "$FIX" --semantics routed-prefetch
DMAP_ISA=avx3 expect_error "run with an unknown DMAP_ISA" "DMAP_ISA=avx3: not an instruction set" -- run "$FIX" --new-tokens 2
expect_error "profile llama.cpp on a family dmap does not export" "the gemma3_text family is not one dmap writes as GGUF" -- profile --validate --runtime llama.cpp --calibration "$SRC/configs/calibrations/amd_epyc_2cpu_avx512.yaml" --models gemma3_1b --out "$TMP/v.md"
expect_error "validate llama.cpp with disk offload" "llama.cpp has no disk offload" -- profile --validate --runtime llama.cpp --calibration "$SRC/configs/calibrations/amd_epyc_2cpu_avx512.yaml" --disk-fractions 0,0.25 --out "$TMP/v.md"
expect_error "validate transformers with a bad fraction" "is not a fraction" -- profile --validate --runtime transformers --calibration "$SRC/configs/calibrations/amd_epyc_2cpu_avx512.yaml" --disk-fractions 0,1 --out "$TMP/v.md"
expect_error "profile an unknown runtime" "--runtime: expected dmap, transformers or llama.cpp" -- profile --real --runtime vllm
# A dtype this machine's PyTorch cannot compute in on the CPU (Debian 12's torch 1.13: float16),
# asked for: exit 2 with PyTorch's own error, no report written. Skipped where PyTorch can.
if /usr/bin/python3 "$SRC/scripts/runtime_probe.py" --check-dtypes float16 --out "$TMP/dtypes.json" 2>/dev/null \
    && grep -q '"float16"' "$TMP/dtypes.json"; then
  expect_error "validate transformers in a dtype PyTorch lacks" "--dtype float16: PyTorch .* cannot compute in float16 on this CPU" -- profile --validate --runtime transformers --calibration "$SRC/configs/calibrations/amd_epyc_2cpu_avx512.yaml" --dtype float32,float16 --models tinyllama_1b --out "$TMP/f16.md"
  [ ! -e "$TMP/f16.md" ] && ok || bad "a float16 validation report was written"
fi
expect_error "validate at batch 0" "--batches: '0' is not a batch size in 1..256" -- profile --validate --calibration "$SRC/configs/calibrations/amd_epyc_2cpu_avx512.yaml" --batches 1,0 --out "$TMP/v.md"
printf 'kind: calibration\nhost: {memory_bandwidth_gbs: 40}\n' >"$TMP/bare_cal.yaml"
expect_error "validate a runtime the calibration lacks" "no measured transformers profile" -- profile --validate --runtime transformers --calibration "$TMP/bare_cal.yaml"
expect_error "profile a runtime without a calibration" "no such calibration" -- profile --real --runtime transformers --calibration "$TMP/none.yaml"
expect_error "simulate an unknown runtime" "--runtimes: unknown runtime 'vllm'" -- simulate "$SRC/configs/scenarios/llama31_8b_fp16_rtx3060.yaml" --runtimes transformers,vllm
if out="$("$DMAP" simulate "$SRC/configs/scenarios/llama31_8b_fp16_rtx3060.yaml" --runtimes transformers,llama.cpp)"; then
  grep -q "semantics/runtime" <<<"$out" && grep -q "accelerate/transformers" <<<"$out" && grep -q "in-place/llama.cpp" <<<"$out" \
    && grep -q "profile estimated, not measured" <<<"$out" && ! grep -q "prefetch/" <<<"$out" && ok || bad "simulate --runtimes: $out"
else
  bad "simulate --runtimes failed"
fi
expect_error "run bad backend" "--backend must be auto, cpu, cuda or emulated" -- run "$FIX" --backend tpu
expect_error "run emulated without GPUs in the map" "--backend emulated: the placement maps nothing to a GPU" -- run "$FIX" --backend emulated
expect_error "run cuda without GPUs in the map" "the placement maps nothing to a GPU" -- run "$FIX" --backend cuda
printf '{"model.embed_tokens": 0, "model.layers.0": "cpu", "model.layers.1": 0, "model.norm": 0, "lm_head": 0}' >"$TMP/gpu_map.json"
if out="$("$DMAP" run "$FIX" --prompt-file "$FIX/reference.json" --new-tokens 7 --device-map "$TMP/gpu_map.json" --semantics prefetch \
          --trace "$TMP/run.trace.json" --format json 2>"$TMP/err")"; then
  got=$(python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens'][0])" <<<"$out" | tr -d ' ')
  [ "$got" = "$want" ] && ok || bad "run with a GPU map: tokens $got, reference $want"
  if grep -q '"backend":"cuda"' <<<"$out"; then
    grep -q '"semantics":"prefetch"' <<<"$out" && ok || bad "cuda run semantics"
  else  # no GPU here: the CPU executor runs the map and says so
    grep -q "GPU-mapped modules compute on the CPU executor" "$TMP/err" && ok || bad "no note about the CPU fallback: $(cat "$TMP/err")"
  fi
  python3 - "$TMP/run.trace.json" <<'PY' && ok || bad "run trace"
import json, sys
d = json.load(open(sys.argv[1]))
names = {e["name"] for e in d["traceEvents"] if e.get("ph") == "X"}
assert "model.layers.1.mlp" in names and "lm_head" in names, names
assert "otherData" in d
PY
else
  bad "run with a GPU map failed: $(cat "$TMP/err")"
fi
# the GPU orchestration on the emulated device: two GPUs, cpu and disk layers, every semantics
printf '{"model.embed_tokens": 0, "model.layers.0": "cpu", "model.layers.1": "disk", "model.norm": 1, "lm_head": 0}' >"$TMP/emu_map.json"
for sem in accelerate prefetch in-place; do
  if out="$("$DMAP" run "$FIX" --prompt-file "$FIX/reference.json" --new-tokens 7 --device-map "$TMP/emu_map.json" --backend emulated \
            --semantics $sem --trace "$TMP/emu.trace.json" --format json 2>"$TMP/err")"; then
    got=$(python3 -c "import json,sys; print(json.loads(sys.stdin.read())['tokens'][0])" <<<"$out" | tr -d ' ')
    [ "$got" = "$want" ] && ok || bad "emulated $sem run: tokens $got, reference $want"
    grep -q "\"backend\":\"emulated\",\"semantics\":\"$sem\"" <<<"$out" && ok || bad "emulated $sem run: backend and semantics"
    python3 - "$TMP/emu.trace.json" "$TMP/emu.trace.gpu.json" "$sem" <<'PY' && ok || bad "emulated $sem trace"
import json, sys
d = json.load(open(sys.argv[1]))
names = {e["name"] for e in d["traceEvents"] if e.get("ph") == "X"}
assert "gemm" in names and "model.layers.0" in names, sorted(names)[:20]
raw = json.load(open(sys.argv[2]))
assert raw["provenance"]["source"] == "emulated"
kinds = {a.get("copy_kind") for a in raw["activities"] if a["kind"] == "memcpy"}
assert "PtoP" in kinds, kinds  # activations to GPU 1 and back
if sys.argv[3] != "in-place":
    assert "HtoD" in kinds, kinds
PY
  else
    bad "emulated $sem run failed: $(cat "$TMP/err")"
  fi
done
# a mixture-of-experts run on the emulated device: experts measured beside uniform routing's figure
MOE="$SRC/tests/data/qwen3_moe_float32"
printf '{"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cpu", "model.norm": 0, "lm_head": 0}' >"$TMP/moe_map.json"
if out="$("$DMAP" run "$MOE" --prompt-tokens 5 --new-tokens 3 --device-map "$TMP/moe_map.json" --backend emulated --format json 2>"$TMP/err")"; then
  python3 - "$out" <<'PY' && ok || bad "MoE run json: experts_touched"
import json, sys
d = json.loads(sys.argv[1])
e = d["experts_touched"]
assert 2 <= e["prefill"]["measured"] <= 8 and abs(e["prefill"]["uniform"] - 8 * (1 - 0.75 ** 5)) < 1e-9, e
assert e["decode"]["measured"] == 2 and e["decode"]["uniform"] == 2, e
assert d["decode_token_s"] > 0 and d["backend"] == "emulated", d
PY
else
  bad "MoE run failed: $(cat "$TMP/err")"
fi
"$DMAP" run "$MOE" --prompt-tokens 5 --new-tokens 3 --device-map "$TMP/moe_map.json" --backend emulated 2>/dev/null \
  | grep -qE "^experts: +8 routed, 2 per token; touched per sparse layer: prefill [0-9.]+ \(uniform routing: 6.10 for 5 tokens(; sequence spread [0-9.]+)?\), decode 2.00 \(uniform: 2.00\)" \
  && ok || bad "MoE run table: experts line"
expect_error "run bad prompt id" "not a token id: 'x'" -- run "$FIX" --prompt-ids 1,x
expect_error "run id outside vocabulary" "outside the vocabulary" -- run "$FIX" --prompt-ids 1,100000
# weights that are not a regular file are an error, never random weights (issue 20)
mkdir -p "$TMP/paths/ck_link" "$TMP/paths/ck_fifo"
cp "$FIX/config.json" "$TMP/paths/ck_link/" && ln -s "$TMP/paths/nowhere.safetensors" "$TMP/paths/ck_link/model.safetensors"
expect_error "dangling weights" "model.safetensors: cannot open: a symbolic link to a missing file" -- run "$TMP/paths/ck_link" --prompt-ids 1,2 --new-tokens 2
cp "$FIX/config.json" "$TMP/paths/ck_fifo/" && mkfifo "$TMP/paths/ck_fifo/model.safetensors"
expect_error "FIFO weights" "model.safetensors: cannot open: not a regular file" -- run "$TMP/paths/ck_fifo" --prompt-ids 1,2 --new-tokens 2
# output paths of dmap run are checked before any work; no scratch weights stay behind (issue 20)
expect_error "run --trace empty" "--trace: an empty path" -- run "$FIX" --prompt-ids 1,2 --new-tokens 2 --trace ""
expect_error "run --trace folder" "--trace: .* is a folder" -- run "$FIX" --prompt-ids 1,2 --new-tokens 2 --trace "$TMP"
expect_error "run --offload-dir file" "--offload-dir: .*exists and is not a folder" -- \
  run "$FIX" --prompt-ids 1,2 --new-tokens 2 --offload-dir "$TMP/paths/file"
before="$(ls -d /tmp/dmap_offload_* 2>/dev/null | wc -l)"
expect_error "run bad semantics" "--semantics must be" -- run "$FIX/config.json" --prompt-tokens 2 --new-tokens 1 --threads 1 \
  --device-map "$TMP/disk_map.json" --semantics bogus
[ "$(ls -d /tmp/dmap_offload_* 2>/dev/null | wc -l)" = "$before" ] && ok || bad "a bad flag left offloaded weights in /tmp"
# numbers are checked whole, in range, before any work (issue 20)
expect_error "run ids too large" "token id out of range" -- run "$FIX" --prompt-ids 1,99999999999999999999
expect_error "run empty id" "an empty token id" -- run "$FIX" --prompt-ids 1,,2
expect_error "run tokens too large" "--new-tokens: expected an integer from 1 to 1048576, not '99999999999999999999'" -- \
  run "$FIX" --prompt-ids 1,2 --new-tokens 99999999999999999999
expect_error "run batch too large" "--batch: expected an integer from 1 to 4096" -- run "$FIX" --prompt-ids 1,2 --batch 9223372036854775807
for t in 100000 2147483648 4294967297 0 -1 2x; do
  expect_error "run --threads $t" "--threads: expected an integer from 1 to [0-9]+, not '$t'" -- run "$FIX" --prompt-ids 1,2 --new-tokens 4 --threads "$t"
done
expect_error "run unsupported family" "runs llama, mistral, qwen2, gemma, qwen3, olmo2, phi3, gemma2, gemma3_text, qwen3_moe, mixtral; this model is" -- run gpt2_xl
expect_error "run missing model" "not found" -- run "$TMP/nothing_here"
mkdir -p "$TMP/paths/ck_none" && cp "$FIX/config.json" "$TMP/paths/ck_none/"
expect_error "a checkpoint folder without weights" "ck_none: no model.safetensors .* pass --random-weights" -- run "$TMP/paths/ck_none" --prompt-ids 1,2 --new-tokens 2
if out="$("$DMAP" run "$TMP/paths/ck_none" --random-weights --prompt-ids 1,2 --new-tokens 2 --threads 1 2>&1)" && grep -q "random" <<<"$out"; then ok; else bad "--random-weights on a folder: $out"; fi
python3 -c "print('{\"model_type\": \"' + 'x' * 1000000 + '\", \"hidden_size\": 8}')" >"$TMP/paths/ck_none/config.json"
expect_error "a 1 MB model_type is cut" "this model is 'x+' \(1000000 characters\)" -- run "$TMP/paths/ck_none" --random-weights
[ "$(wc -c <"$TMP/err")" -lt 1000 ] && ok || bad "a 1 MB model_type echoed: $(wc -c <"$TMP/err") bytes"
expect_error "run dtype with checkpoint" "applies to random weights" -- run "$FIX" --dtype bfloat16
printf '[1, 2, "three"]' >"$TMP/ids.json"
expect_error "run prompt file" "ids.json:1:.*expected an integer" -- run "$FIX" --prompt-file "$TMP/ids.json"

# dmap profile: argument errors exit 2; a quick validation writes its report, SVG and trace.
expect_error "profile needs a mode" "exactly one of --real, --validate and --probe" -- profile
expect_error "profile bad device" "expected cpu or cuda:N, not 'gpu0'" -- profile --real --device gpu0
if ! command -v nvidia-smi >/dev/null 2>&1; then
  expect_error "profile absent gpu" "no such CUDA device|built without CUDA" -- profile --real --device cuda:0
fi
expect_error "profile validate needs calibration" "needs --calibration" -- profile --validate
expect_error "profile bad fraction" "not a fraction" -- profile --validate --calibration "$TMP/x.yaml" --disk-fractions 1.5
expect_error "profile unknown hardware" "no preset 'nope'" -- profile --real --hardware nope
expect_error "profile two modes" "give exactly one of --real, --validate and --probe" -- profile --real --probe
# the reference probe alone, against a calibration that holds a probe time and one that does not
printf 'kind: calibration\nhost:\n  reference_probe_ms: 10\n  dtype_reference_probe_ms: {bfloat16: 14}\n  page_cache_probe_gbs: 12\n' >"$TMP/probe_cal.yaml"
"$DMAP" profile --probe --threads 1 --calibration "$TMP/probe_cal.yaml" >"$TMP/probe.out"
grep -qE "^reference probe in bfloat16: [0-9.]+ ms \(calibration: 14.000 ms, [-+][0-9.]+ %\)$" "$TMP/probe.out" && ok || bad "profile --probe, bfloat16"
grep -qE "^reference probe: [0-9.]+ ms \(calibration .*probe_cal.yaml: 10.000 ms, [-+][0-9.]+ %\)$" "$TMP/probe.out" && ok || bad "profile --probe"
grep -qE "^page-cache probe: [0-9.]+ GB/s \(calibration: 12.00 GB/s, time [-+][0-9.]+ %\)$" "$TMP/probe.out" && ok || bad "profile --probe, page cache"
"$DMAP" profile --probe --threads 1 --calibration "$SRC/configs/calibrations/cloud_xeon_2vcpu.yaml" \
  | grep -q "holds no probe time" && ok || bad "profile --probe, a calibration without a probe time"
expect_error "profile bad rounds" "--rounds: expected an integer from 1 to 1000" -- profile --validate --calibration x.yaml --rounds 0
expect_error "profile bad quiet wait" "--quiet-wait: expected an integer from 0 to 86400" -- profile --validate --calibration x.yaml --quiet-wait -1
expect_error "profile --out a folder" "--out: .* is a folder" -- profile --real --model "$SRC/tests/data/llama_float32" --quick --out "$TMP"
expect_error "profile --out under a file" "--out: " -- profile --real --model "$SRC/tests/data/llama_float32" --quick --out "$TMP/paths/file/cal.yaml"
printf 'kind: calibration\nhost:\n  memory_bandwidth_gbs: -3\n' >"$TMP/badcal.yaml"
expect_error "profile bad calibration" "badcal.yaml:3:.*must be positive" -- profile --validate --calibration "$TMP/badcal.yaml"
[ ! -e "$TMP/val.md" ] && ok || bad "a failed validation wrote its report"
printf 'kind: calibration\nname: t\nhost:\n  memory_bandwidth_gbs: 20\n  dispatch_overhead_us: 2\nfit:\n  whole_model_runs:\n    - {model: %s, dtype: float32, placement: cpu}\n' \
  "$SRC/tests/data/llama_float32" >"$TMP/cal.yaml"
if "$DMAP" profile --validate --calibration "$TMP/cal.yaml" --models "$SRC/tests/data/llama_float32" --dtype float32 \
     --disk-fractions 0,0.5 --prompt-tokens 8 --new-tokens 3 --threads 1 --rounds 2 --quiet-wait 0 --out "$TMP/val.md" >"$TMP/val.txt" 2>/dev/null; then
  grep -q "disk 1/2 layers" "$TMP/val.md" && grep -q "median abs error" "$TMP/val.md" && ok || bad "validation report content"
  # The calibration's own run is marked and left out of the error figures (1 placement held out).
  grep -q "| cpu (in the fit) |" "$TMP/val.md" && grep -q "over the 1 placements" "$TMP/val.md" && ok || bad "validation in-fit row"
  # Two rounds: two per-round figures in each row.
  grep -E -q "^\| .*disk 1/2 layers.*\| [0-9.]+, [0-9.]+ \|" "$TMP/val.md" && ok || bad "validation rounds column"
  [ -s "$TMP/val.svg" ] && grep -q "<svg" "$TMP/val.svg" && ok || bad "validation SVG"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert any(e['ph']=='X' for e in d['traceEvents'])" "$TMP/val.trace.json" && ok || bad "validation trace"
  # The traced case is the disk one: the predicted side has a disk-read lane with reads on it.
  python3 - "$TMP/val.trace.json" <<'PY' && ok || bad "validation trace: predicted disk lane"
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
lanes = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
disk = [k for k, n in lanes.items() if n.startswith("disk reads")]
assert disk, lanes
reads = [e for e in ev if e["ph"] == "X" and (e["pid"], e["tid"]) == disk[0]]
assert reads and all(e["name"].startswith("disk read: ") and e["dur"] > 0 for e in reads)
PY
  # The disk row reports its measured read time per round (predicted / measured).
  grep -E -q "^\| .*disk 1/2 layers.*\| [0-9.]+ / [0-9.]+, [0-9.]+ \|" "$TMP/val.md" && ok || bad "validation disk-read column"
else
  bad "profile --validate failed"
fi

# --- quantized checkpoints and GGUF files ------------------------------------------------
expect_error "unknown quant_method" "quantization method 'hqq' is not sized by dmap" -- map --model llama31_8b --quantization '{"quant_method": "hqq"}' --max-memory 0=8GiB,cpu=20GiB
expect_error "int4 dtype with a quantized checkpoint" "dtype int4 with a quantized checkpoint" -- map --model llama31_8b_bnb4 --dtype int4 --max-memory 0=8GiB,cpu=20GiB
expect_error "fbgemm fp8 refuses float16" "cannot use FP8 with dtype=torch.float16" -- map --model llama31_8b --quantization '{"quant_method": "fbgemm_fp8"}' --dtype float16 --max-memory 0=8GiB,cpu=20GiB
expect_error "awq group size that does not divide" "must be divisible by .group_size: 48" -- map --model llama31_8b --quantization '{"quant_method": "awq", "group_size": 48}' --max-memory 0=8GiB,cpu=20GiB
expect_error "unknown gguf type" "unknown llama.cpp file type 'Q4_K_X'" -- memory llama31_8b --gguf Q4_K_X
# The issue's case: bnb-4bit Llama-3.1-8B with a 6 GiB GPU fits whole (5.21 GiB as transformers counts it).
"$DMAP" map --model llama31_8b_bnb4 --max-memory 0=6GiB,cpu=48GiB --format json >"$TMP/bnb.json" &&
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['device_map']==[['',0]] and 'refusal' not in d, d" "$TMP/bnb.json" && ok || bad "bnb-4bit fits a 6 GiB GPU"
# With 3 GiB it spills, and transformers refuses the map.
"$DMAP" map --model llama31_8b_bnb4 --max-memory 0=3GiB,cpu=48GiB --format json >"$TMP/bnb.json" &&
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert 'llm_int8_enable_fp32_cpu_offload' in d['refusal'], d" "$TMP/bnb.json" && ok || bad "bnb-4bit refusal"
"$DMAP" memory llama31_8b --gguf Q4_K_M --format json >"$TMP/gguf.json" &&
  python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['gguf']; assert d['tensor_bytes']==4912898048 and d['types']['q6_K']['tensors']==33, d" "$TMP/gguf.json" && ok || bad "gguf Q4_K_M size"

# --- dmap export gguf ------------------------------------------------------------------------
expect_error "export without --out" "--out FILE.gguf is required" -- export gguf "$SRC/tests/data/llama_float32"
expect_error "export bad type" "--type must be f32, f16, bf16 or q8_0, not 'q4_k_m'" -- export gguf "$SRC/tests/data/llama_float32" --out "$TMP/x.gguf" --type q4_k_m
expect_error "export unwritten family" "the gemma family is not one dmap writes as GGUF" -- export gguf "$SRC/tests/data/gemma_float32" --out "$TMP/x.gguf"
expect_error "export a preset without weights" "pass --random-weights" -- export gguf llama31_8b --out "$TMP/x.gguf"
expect_error "export under a file" "exists and is not a folder" -- export gguf "$SRC/tests/data/qwen2_float32" --out "$SRC/README.md/x.gguf"
expect_error "export onto a folder" "is a folder; give a file name" -- export gguf "$SRC/tests/data/qwen2_float32" --out "$TMP"
if [ ! -e "$TMP/x.gguf" ] && [ ! -e "$TMP/x.gguf.tmp" ]; then ok; else bad "a refused export wrote a file"; fi
"$DMAP" export gguf "$SRC/tests/data/qwen2_bfloat16" --out "$TMP/q.gguf" --type q8_0 >"$TMP/out" &&
  grep -q "tensors, Q8_0" "$TMP/out" && head -c 4 "$TMP/q.gguf" | grep -q GGUF && ok || bad "export qwen2 q8_0: $(cat "$TMP/out")"

# --- a GGUF file as the model ------------------------------------------------------------------
"$DMAP" export gguf "$SRC/tests/data/llama_float32" --out "$TMP/l32.gguf" --type f32 >/dev/null &&
  "$DMAP" memory "$TMP/l32.gguf" --dtypes float32 --format json >"$TMP/lg.json" &&
  python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
g = d['gguf']
assert g['file_type'] == 'F32' and list(g['types']) == ['f32'], g
assert g['tensor_bytes'] == 4 * d['parameters'] and g['types']['f32']['tensors'] == 21, (g, d['parameters'])
" "$TMP/lg.json" && ok || bad "memory of an exported f32 GGUF: $(head -c 600 "$TMP/lg.json")"
printf 'id: gguf_file\nmodel: %s\nhardware: desktop_rtx3060\nworkload: {batch: 1, prompt: 16, new_tokens: 4}\n' "$TMP/q8.gguf" >"$TMP/gguf_scenario.yaml"
"$DMAP" export gguf "$SRC/tests/data/qwen2_float32" --out "$TMP/q8.gguf" --type q8_0 >/dev/null &&
  "$DMAP" simulate "$TMP/gguf_scenario.yaml" >"$TMP/qs.txt" &&
  grep -q "llama-cli -m $TMP/q8.gguf" "$TMP/qs.txt" && grep -q "gguf: *Q8_0" "$TMP/qs.txt" && ok ||
  bad "simulate a GGUF file: $(head -c 1500 "$TMP/qs.txt")"
head -c 300 "$TMP/l32.gguf" >"$TMP/cut.gguf"
expect_error "truncated GGUF" "cut.gguf: GGUF: " -- memory "$TMP/cut.gguf"
printf 'GGUF\x01\x00\x00\x00' >"$TMP/v1.gguf"
expect_error "GGUF version 1" "v1.gguf: GGUF: version 1" -- memory "$TMP/v1.gguf"
expect_error "--gguf with a GGUF file" "sized by its own tensors" -- memory "$TMP/l32.gguf" --gguf Q4_K_M

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

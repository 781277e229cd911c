#!/usr/bin/env bash
# Builds the safetensors fuzz target with clang's libFuzzer + ASan + UBSan and runs it.
# Usage: tests/fuzz/run_safetensors_fuzz.sh [seconds, default 60]
# Needs clang (Debian: clang). The corpus starts from tests/fuzz/corpus/ and grows in a temp dir.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
secs="${1:-60}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$root" \
  "$root/tests/fuzz/safetensors_fuzz.cpp" "$root/exec/safetensors.cpp" "$root/core/json_parse.cpp" \
  "$root/core/error.cpp" "$root/core/yaml_io.cpp" -lyaml-cpp -o "$out/fuzz"
mkdir -p "$out/corpus"
cp "$root"/tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
"$out/fuzz" -max_total_time="$secs" -max_len=4096 -timeout=5 "$out/corpus"

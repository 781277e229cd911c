#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, what a GPU machine of the `device` tool runs: Hopper (sm_90)
# binaries of dmap, the GPU tests and cuda_bench, plus the one library the GPU image lacks
# (yaml-cpp), into .device/{bin,lib} (ignored by .gitignore; name .device in the tool's `carry`).
# Then, on the device, from the repository root: bash scripts/device/run_gpu_suite.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$ROOT/.device/build"
export PATH="/usr/local/cuda/bin:$PATH"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dmap cuda_exec_test cupti_test gpu_profile_test cuda_bench
mkdir -p "$ROOT/.device/bin" "$ROOT/.device/lib"
cp "$BUILD/dmap" "$BUILD/tests/gpu/cuda_exec_test" "$BUILD/tests/gpu/cupti_test" "$BUILD/tests/gpu/gpu_profile_test" "$BUILD/tests/bench/cuda_bench" "$ROOT/.device/bin/"
cp -L "$(ldconfig -p | awk '/libyaml-cpp.so.0.7 /{print $NF; exit}')" "$ROOT/.device/lib/"
rm -rf "$BUILD"  # only bin/ and lib/ travel (the tool carries at most 64 MiB)
du -sh "$ROOT/.device"

#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: installs the missing Debian packages the
# project builds with, then configures and builds dmap (Release) into ./build.
# Usage: bash scripts/setup.sh        (re-running only rebuilds what changed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${DMAP_BUILD_DIR:-$ROOT/build}"

# Compiler, CMake and the libraries named in the README, by Debian package name; Debian's PyTorch
# for the transformers runtime probe (scripts/runtime_probe.py) and the fixtures script, with
# OpenBLAS (without it Debian's torch takes the reference BLAS: float32 products ~50x slower).
PACKAGES=(build-essential cmake libyaml-cpp-dev libeigen3-dev catch2 libbenchmark-dev python3 python3-yaml python3-torch
  libopenblas0-openmp)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# nvcc lives outside PATH in the CUDA toolkit's default location; CUDA stays optional.
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null 2>&1; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# llama.cpp for the llama.cpp runtime probe: node-llama-cpp's prebuilt CPU libraries and the
# llama.cpp source bundled with them, pinned in probes/llama_cpp/package-lock.json (npm registry;
# no install scripts run). Node.js and npm from Debian when the machine has no npm. Optional: if
# the registry cannot be reached, dmap builds without the probe and its tests skip.
LLAMA_DIR="$ROOT/probes/llama_cpp"
if [ "$(uname -m)" = "x86_64" ] && [ ! -e "$LLAMA_DIR/node_modules/@node-llama-cpp/linux-x64/package.json" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing nodejs npm"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  echo "setup: npm ci in probes/llama_cpp (node-llama-cpp's prebuilt llama.cpp)"
  (cd "$LLAMA_DIR" && npm ci --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error) ||
    echo "setup: npm ci failed: building without the llama.cpp probe"
fi

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j"$(nproc)"

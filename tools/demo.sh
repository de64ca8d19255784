#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is missing, build the CPU runtime, and run the
# `jamba` CLI on the bundled tiny checkpoint (models/tiny-random). Extra arguments go to `jamba inspect`.
#   tools/demo.sh [--ctx N] [--json] [--tensors] ...
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh run
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DJAMBA_CUDA=OFF -DJAMBA_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target jamba_cli >/dev/null
exec build/release/jamba inspect --model models/tiny-random "$@"

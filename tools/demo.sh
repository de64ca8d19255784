#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is missing, build the CPU runtime, and let the
# bundled demo model (models/demo, a small Jamba trained on Tiny Shakespeare) write text.
#   tools/demo.sh                          # the default prompt
#   tools/demo.sh --prompt "KING:" --max-tokens 300 --temperature 0.7 --seed 3
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh run
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DJAMBA_CUDA=OFF -DJAMBA_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target jamba_cli >/dev/null
if [ $# -eq 0 ]; then
  set -- --prompt "ROMEO:" --max-tokens 200
fi
exec build/release/jamba generate "$@"

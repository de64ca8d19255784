#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: install what is missing, then
#   1. CPU build (-Werror) + every Criterion suite
#   2. CUDA build for sm_80 and sm_90 linking cuBLAS and NCCL (needs the CUDA toolkit; no GPU) + suites
#   3. CPU build under AddressSanitizer + UndefinedBehaviorSanitizer (leaks fail tests) + suites, then the
#      reliability suite (tools/gen_reliability.py: ~670 crafted inputs against that build's jamba), then
#      a ThreadSanitizer build of tests/tsan/test_threads only (contexts, model queries and tokenizers from
#      several threads), then the Python package: pip install . in a venv (build/pyenv) + pytest tests/python
#   4. CPU build with clang (-Werror: clang's warnings differ from GCC's) + every Criterion suite
#   5. libFuzzer smoke run of the safetensors, config, index, tokenizer.model and tokenizer.json parsers
# Without a CUDA toolkit step 2 is skipped with a notice, unless JAMBA_REQUIRE_CUDA=1 (then it fails).
# FUZZ_SECONDS (default 20) sets the fuzz time per target.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh test
jobs="$(nproc)"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

suite() {  # suite NAME CMAKE_ARGS...
  local name="$1"; shift
  echo "== $name build"
  cmake -S . -B "build/$name" "$@" >"build/$name.configure.log" 2>&1 || { cat "build/$name.configure.log"; return 1; }
  cmake --build "build/$name" -j"$jobs"
  echo "== $name tests"
  (cd "build/$name" && ctest --output-on-failure -j"$jobs")
}

mkdir -p build
suite cpu -DJAMBA_CUDA=OFF -DJAMBA_REQUIRE_CRITERION=ON -DCMAKE_BUILD_TYPE=Release
if command -v nvcc >/dev/null 2>&1; then
  suite cuda -DJAMBA_CUDA=ON -DJAMBA_REQUIRE_CRITERION=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
  build/cuda/jamba devices
elif [ "${JAMBA_REQUIRE_CUDA:-0}" = "1" ]; then
  echo "JAMBA_REQUIRE_CUDA=1 but no CUDA toolkit (nvcc) was found" >&2
  exit 1
else
  echo "== cuda: SKIPPED (no CUDA toolkit; install NVIDIA's cuda-toolkit to build the GPU backend)"
fi
suite asan -DJAMBA_CUDA=OFF -DJAMBA_REQUIRE_CRITERION=ON -DJAMBA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
echo "== reliability suite (crafted inputs against build/asan/jamba)"
python3 tools/gen_reliability.py --cli build/asan/jamba --jobs "$jobs"
echo "== tsan build (tests/tsan/test_threads)"
cmake -S . -B build/tsan -DJAMBA_CUDA=OFF -DJAMBA_TSAN=ON -DJAMBA_BUILD_EXAMPLES=OFF -DJAMBA_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >build/tsan.configure.log 2>&1 || { cat build/tsan.configure.log; exit 1; }
cmake --build build/tsan -j"$jobs" --target test_threads
(cd build/tsan && ctest --output-on-failure -R '^test_threads$')
echo "== python package (pip install . into build/pyenv, pytest tests/python)"
python3 -m venv build/pyenv
build/pyenv/bin/pip install -q --disable-pip-version-check . pytest numpy openai
(cd build && JAMBA_CLI="$PWD/cpu/jamba" pyenv/bin/python -m pytest -q -p no:cacheprovider ../tests/python)
CC=clang suite clang -DJAMBA_CUDA=OFF -DJAMBA_REQUIRE_CRITERION=ON -DCMAKE_BUILD_TYPE=Release
echo "== fuzz smoke"
tools/fuzz-smoke.sh "${FUZZ_SECONDS:-20}"
echo "== all test stages passed"

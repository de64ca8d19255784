#!/usr/bin/env bash
# The GPU check: on a machine with only the CUDA toolkit, CMake and a C compiler (plus .gpu-deps/ from
# tools/gpu-prepare.sh when jansson or PCRE2 are not installed there),
#   tools/gpu-check.sh [OUTDIR] [STAGES]   (default: gpu-check-out, all)
#   1. build for sm_90 (Release): the library, the CLI, test_gpu, bench_gpu and bench_mini
#   2. test_gpu: every CUDA op against its CPU twin, the model against the CPU path and the fixtures
#   3. compute-sanitizer memcheck on the quick op set
#   4. bench_gpu: ceilings, scan, attention, prefill and decode of a synthetic Jamba-Mini-width model
#   5. jamba generate --device cuda on the demo model
#   6. bench_mini: full-size synthetic Jamba-Mini (int8 experts) at 4K..256K, batch 1/4/16, peak memory
# STAGES: all, or one of (each fits one device call of 10 minutes on a warm or cold machine; the build is
# incremental, so later stages on the same warm machine skip it):
#   tests   1, 2 and 5            (build about 3 min, test_gpu at most 5 min)
#   mini    1 and 6               (bench_mini at most 5 min + the fp8 run 1.5 min)
#   extra   1, 3 and 4            (sanitizer and bench_gpu, at most 3.5 min each)
# Recommended order with a 15-minute budget: tests, then mini, then extra if time is left.
# Prints a summary table (also OUTDIR/summary.txt); full logs in OUTDIR. Exit 0 when the build and
# the tests (and the sanitizer, when run) passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check-out}"
stages="${2:-all}"
want() { [ "$stages" = all ] || [ "$stages" = "$1" ]; }
case "$stages" in all | tests | mini | extra) ;; *) echo "gpu-check: unknown stage '$stages' (all, tests, mini, extra)" >&2; exit 2 ;; esac
mkdir -p "$out"
jobs="$(nproc)"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
start=$(date +%s)

# jansson and PCRE2: the system's, else the carried Debian packages unpacked into a private prefix
prefix_args=()
if ! { [ -f /usr/include/jansson.h ] && [ -f /usr/include/pcre2.h ]; }; then
  if ls .gpu-deps/*.deb >/dev/null 2>&1; then
    root="$PWD/.gpu-deps/root"
    rm -rf "$root" && mkdir -p "$root"
    for deb in .gpu-deps/*.deb; do
      deb_abs="$PWD/$deb"
      if command -v dpkg-deb >/dev/null 2>&1; then
        dpkg-deb -x "$deb_abs" "$root"
      else # a .deb is an ar archive holding data.tar.*
        member="$(ar t "$deb_abs" | grep '^data.tar')"
        case "$member" in *.xz) z=-J ;; *.zst) z=--zstd ;; *.gz) z=-z ;; *) z= ;; esac
        (cd "$root" && ar p "$deb_abs" "$member" | tar -x $z)
      fi
    done
    libdir="$root/usr/lib/x86_64-linux-gnu"
    prefix_args=(-DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_LIBRARY_PATH="$libdir")
    export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "gpu-check: jansson/PCRE2 headers are missing and .gpu-deps/ holds no packages (run tools/gpu-prepare.sh)" >&2
  fi
fi

status=0
echo "== build (sm_90)"
if cmake -S . -B build/gpu -DJAMBA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
     -DJAMBA_BUILD_EXAMPLES=OFF "${prefix_args[@]}" >"$out/build.log" 2>&1 &&
   cmake --build build/gpu -j"$jobs" --target test_gpu bench_gpu bench_mini jamba_cli >>"$out/build.log" 2>&1; then
  build="ok"
else
  build="FAILED"
  status=1
  tail -30 "$out/build.log"
fi

tests="not run"; sanitizer="not run"; generate="not run"
if [ "$build" = ok ] && want tests; then
  echo "== test_gpu"
  timeout 300 build/gpu/tests/test_gpu >"$out/test_gpu.log" 2>&1
  rc=$?
  tests="$(tail -1 "$out/test_gpu.log") (exit $rc)"
  [ $rc -eq 0 ] || { status=1; grep -E "FAIL|FAILED" "$out/test_gpu.log" | head -40; }

  echo "== jamba generate --device cuda (demo model)"
  if timeout 60 build/gpu/jamba generate --device cuda --prompt "ROMEO:" --max-tokens 64 --temperature 0 \
       >"$out/generate.log" 2>&1; then
    generate="ok: $(tail -1 "$out/generate.log")"
  else
    generate="FAILED (see generate.log)"
    status=1
  fi
fi

if [ "$build" = ok ] && want extra; then
  echo "== compute-sanitizer (memcheck, quick op set)"
  if command -v compute-sanitizer >/dev/null 2>&1; then
    timeout 200 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 \
      build/gpu/tests/test_gpu --small --filter ops/ >"$out/sanitizer.log" 2>&1
    rc=$?
    sanitizer="$(grep -E 'ERROR SUMMARY' "$out/sanitizer.log" | tail -1) (exit $rc)"
    [ $rc -eq 0 ] || { status=1; grep -E "Invalid|ERROR|FAIL" "$out/sanitizer.log" | head -20; }
  else
    sanitizer="compute-sanitizer not found"
  fi

  echo "== bench_gpu"
  timeout 200 build/gpu/bench_gpu --json "$out/bench.json" >"$out/bench.log" 2>&1 || echo "bench_gpu exited $?" >>"$out/bench.log"
fi

if [ "$build" = ok ] && want mini; then
  echo "== bench_mini (full-size Jamba-Mini, int8 experts)"
  timeout 300 build/gpu/bench_mini --json "$out/mini.json" >"$out/mini.log" 2>&1 || echo "bench_mini exited $?" >>"$out/mini.log"
  timeout 90 build/gpu/bench_mini --kv fp8 --ctx 1048576 --prefill 32768 --quick >"$out/mini-fp8.log" 2>&1 ||
    echo "bench_mini (fp8, 1M context plan) exited $?" >>"$out/mini-fp8.log"
fi

{
  echo "GPU check $(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - start )) s"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/card: /'
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo "build:     $build"
  echo "test_gpu:  $tests"
  echo "sanitizer: $sanitizer"
  echo "generate:  $generate"
  echo "bench:"
  grep -E "^  " "$out/bench.log" 2>/dev/null
  echo "bench_mini:"
  grep -E "^  |exited" "$out/mini.log" 2>/dev/null
  echo "bench_mini --kv fp8 (a 1M-token context, prefilled to 32K):"
  grep -E "^  |exited" "$out/mini-fp8.log" 2>/dev/null
} | tee "$out/summary.txt"
exit $status

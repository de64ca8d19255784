#!/usr/bin/env bash
# The GPU check, in ONE device call that cannot lose its results:
#
#   tools/gpu-check.sh OUTDIR          (on the GPU machine: tools/gpu-check.sh $OUT, carrying .gpu-deps)
#
# Needs only the CUDA toolkit, CMake and a C compiler there, plus .gpu-deps/ from tools/gpu-prepare.sh
# (Debian packages of jansson, PCRE2 and xxHash; used whenever present, else the machine's own). The stages, in
# order of value, each under a time limit capped by a global deadline so the whole run ends inside one
# device command (10 minutes) with time to spare:
#    1 env          nvidia-smi, driver, toolkit, host compiler, sandbox (gVisor / Firecracker / container)
#    2 build        sm_90 Release (-DCMAKE_CUDA_ARCHITECTURES=90 -DJAMBA_BUILD_TESTS=ON, no Criterion
#                   needed), all cores, -Xptxas -v: registers, spills and shared memory of every kernel
#    3 test-ops     test_gpu --only ops/          every CUDA op against its CPU twin
#    4 test-model   test_gpu --only model/,internals/,serving/,parallel/ --small   the model on the small
#                   fixtures, research captures, prefix restore and abort, the NCCL backend on one rank
#    5 bench-mini   bench_mini --quick            full-size Jamba-Mini, int8 experts, 4K and 32K
#    6 test-rest    test_gpu --only model/,internals/,serving/,parallel/ --large   the remaining model tests,
#                   the scheduler, and the NCCL backend over every visible GPU (noted as skipped with one)
#    7 generate     jamba generate --device cuda (bf16 and f32) on the demo model, beside the CPU's text
#    8 bench-gpu    bench_gpu                     ceilings, scan, attention, a 4-layer Jamba-Mini-width model
#    9 sanitizer    compute-sanitizer memcheck on the quick op set; "not supported here" where the
#                   tool is missing or refuses the device (it does under gVisor)
#
# What OUTDIR holds afterwards (at most 8 files; the device tool brings back no more):
#    summary.txt     one line per stage, appended the moment the stage ends: stage, status, seconds, note
#    logs.tar.gz     every log (env.txt, build.log, ptxas-resources.txt, one per stage), rewritten after
#                    each stage, so a kill at any point keeps everything that finished
#    bench_mini.json, bench_gpu.json   one JSON record per measured figure, flushed as it is measured
#
# Environment:
#   GPU_CHECK_DEADLINE   seconds for the whole run, build included (default 540: a 600 s device command
#                        with a minute to spare). A stage's limit is its own cap or the time left, whichever
#                        is less; a stage is skipped ("no time left") when less than its floor remains.
#   GPU_CHECK_BUILD_DIR  the build folder (default build/gpu-check)
#   GPU_CHECK_DEPS       folder of carried .deb packages (default .gpu-deps); used whenever it holds some
#   GPU_CHECK_DRY_RUN=1  tests/gpu_check_dry_run.sh only: the real environment record and build, stand-ins
#                        for the GPU steps (the programs' own no-GPU paths, --list, the CPU generation),
#                        "DRY RUN" on every summary line. Refused on a machine that shows a GPU.
#   GPU_CHECK_DRY_SLEEP  dry run only: seconds each GPU stand-in sleeps (exercises the deadline)
#
# Exit status: 0 when no stage failed or timed out, 1 otherwise, 2 for a refused invocation.
set -uo pipefail
cd "$(dirname "$0")/.."
src="$PWD"

usage() { echo "usage: tools/gpu-check.sh OUTDIR   (see the comment at the top)" >&2; exit 2; }
[ $# -eq 1 ] || usage
case "$1" in -*) usage ;; esac

deadline="${GPU_CHECK_DEADLINE:-540}"
case "$deadline" in '' | *[!0-9]*) echo "gpu-check: GPU_CHECK_DEADLINE must be a number of seconds" >&2; exit 2 ;; esac
dry="${GPU_CHECK_DRY_RUN:-0}"
dry_sleep="${GPU_CHECK_DRY_SLEEP:-0}"
case "$dry_sleep" in '' | *[!0-9]*) echo "gpu-check: GPU_CHECK_DRY_SLEEP must be a number of seconds" >&2; exit 2 ;; esac
build="${GPU_CHECK_BUILD_DIR:-build/gpu-check}"
deps="${GPU_CHECK_DEPS:-.gpu-deps}"
reserve=10 # seconds kept back at the end for the archive and the last summary lines

[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

gpu_visible() {
  { command -v nvidia-smi >/dev/null 2>&1 && timeout 20 nvidia-smi -L 2>/dev/null | grep -q '^GPU '; } ||
    [ -e /dev/nvidia0 ] || [ -e /dev/nvidiactl ]
}
prefix=""
if [ "$dry" != 0 ]; then
  if gpu_visible; then
    echo "gpu-check: GPU_CHECK_DRY_RUN is for machines without a GPU and this one shows one; unset it" >&2
    exit 2
  fi
  prefix="DRY RUN  "
fi

out_arg="$1"
mkdir -p "$out_arg" || exit 2
out="$(cd "$out_arg" && pwd)"
mkdir -p "$build" || exit 2
build="$(cd "$build" && pwd)"
# this script's own files only; anything else already in OUTDIR is left alone (and counted)
rm -f "$out/summary.txt" "$out/logs.tar.gz" "$out/.logs.tar.gz.tmp" "$out/bench_mini.json" "$out/bench_gpu.json"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")" || exit 2
logs="$work/logs"
mkdir -p "$logs"
summary="$out/summary.txt"
t0=$(date +%s)
failures=0

elapsed() { echo $(($(date +%s) - t0)); }
left() { echo $((deadline - $(elapsed) - reserve)); }

# archive: the logs folder into OUTDIR/logs.tar.gz, atomically (a kill mid-way leaves the previous one)
archive() {
  tar -czf "$out/.logs.tar.gz.tmp" -C "$work" logs 2>/dev/null && mv -f "$out/.logs.tar.gz.tmp" "$out/logs.tar.gz"
}

# record STAGE STATUS SECONDS NOTE: one summary line, at once, then the archive
record() {
  printf '%s%-11s %-24s %5s s  %s\n' "$prefix" "$1" "$2" "$3" "$4" | tee -a "$summary"
  case "$2" in FAILED* | TIMEOUT*) failures=$((failures + 1)) ;; esac
  archive
}

finish_called=0
finish() {
  [ "$finish_called" = 1 ] && return
  finish_called=1
  # fold anything beyond the 8-file limit into the archive (nothing of ours should ever get there)
  local n; n=$(find "$out" -type f | wc -l)
  if [ "$n" -gt 8 ]; then
    echo "${prefix}OUTDIR held $n files; kept summary.txt, logs.tar.gz and the JSON" | tee -a "$summary"
    mkdir -p "$logs/extra-outdir-files"
    find "$out" -type f ! -name summary.txt ! -name logs.tar.gz ! -name 'bench_*.json' \
      -exec mv -f {} "$logs/extra-outdir-files/" \;
  fi
  printf '%s%-11s %-24s %5s s  %s\n' "$prefix" total "$([ $failures = 0 ] && echo ok || echo "$failures failed")" \
    "$(elapsed)" "deadline $deadline s; OUTDIR: $(cd "$out" && ls -A | tr '\n' ' ')" | tee -a "$summary"
  archive
  rm -rf "$work"
}
st_pid=""
on_signal() {
  trap '' TERM INT HUP
  [ -n "$st_pid" ] && kill -TERM "$st_pid" 2>/dev/null # timeout passes it on to the stage's command
  record interrupted "FAILED (signal)" "$(elapsed)" "the check was stopped; what finished is above"
  finish
  exit 1
}
trap on_signal TERM INT HUP

# stage NAME CAP FLOOR LOG COMMAND...: run COMMAND (output to LOG) under min(CAP, time left) seconds.
# Sets st_rc (the exit status; 124 when it ran out of time), st_secs and st_limit; returns 1 without
# running when less than FLOOR seconds are left (st_rc empty).
stage() {
  local name="$1" cap="$2" floor="$3" log="$4"
  shift 4
  local l; l=$(left)
  st_rc=""; st_secs=0; st_limit=$cap
  if [ "$l" -lt "$floor" ]; then
    record "$name" "skipped" 0 "no time left (${l} s of the deadline left, needs ${floor})"
    return 1
  fi
  [ "$l" -lt "$cap" ] && st_limit=$l
  echo "== $name (limit $st_limit s): $*" >>"$log"
  echo "== $name (limit $st_limit s)"
  local s; s=$(date +%s)
  # in the background and waited for, so a signal to this script is handled at once (on_signal)
  timeout -k 5 "$st_limit" "$@" >>"$log" 2>&1 </dev/null &
  st_pid=$!
  wait "$st_pid"
  st_rc=$?
  st_pid=""
  [ "$st_rc" = 137 ] && st_rc=124
  st_secs=$(($(date +%s) - s))
  return 0
}
timeout_status() { echo "TIMEOUT (after $st_limit s)"; }

{
  echo "# tools/gpu-check.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$src" status --porcelain 2>/dev/null | grep -q . && echo ' (working tree differs)'), deadline $deadline s"
  [ "$dry" != 0 ] && echo "# DRY RUN: no GPU here; the GPU steps are stand-ins (GPU_CHECK_DRY_RUN=1). Nothing below ran on a GPU."
  echo "# stage      status                   seconds  note"
} | sed "s/^/$prefix/" | tee "$summary"

# ---- 1. environment ----------------------------------------------------------------------------------------
sandbox() {
  local k; k="$(uname -r)"
  if [ "$k" = 4.4.0 ] || dmesg 2>/dev/null | grep -qi gvisor; then echo "gVisor (kernel $k)"
  elif [[ "$k" == *-fc-* ]] || grep -qsi firecracker /sys/class/dmi/id/product_name /sys/class/dmi/id/sys_vendor; then
    echo "Firecracker microVM (kernel $k)"
  elif command -v systemd-detect-virt >/dev/null 2>&1 && [ "$(systemd-detect-virt 2>/dev/null)" != none ] &&
       [ -n "$(systemd-detect-virt 2>/dev/null)" ]; then echo "$(systemd-detect-virt) (kernel $k)"
  elif [ -f /.dockerenv ] || grep -qsE 'docker|kubepods|containerd|lxc' /proc/1/cgroup; then echo "container (kernel $k)"
  elif grep -qs '^flags.* hypervisor' /proc/cpuinfo; then echo "virtual machine (kernel $k)"
  else echo "none detected (kernel $k)"
  fi
}
cc_bin="${CC:-cc}"
cc_version="$("$cc_bin" -dumpfullversion 2>/dev/null || "$cc_bin" -dumpversion 2>/dev/null || echo unknown)"
if "$cc_bin" --version 2>/dev/null | grep -qiE 'gcc|Free Software Foundation' && [ "${cc_version%%.*}" = 12 ]; then
  werror=ON; werror_note="JAMBA_WERROR ON (gcc $cc_version: CI's gcc 12)"
else
  werror=OFF; werror_note="JAMBA_WERROR OFF and nvcc -allow-unsupported-compiler (host compiler $("$cc_bin" --version 2>/dev/null | head -1) is not CI's gcc 12)"
fi
card="$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -1)"
nvcc_version="$(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' | head -1)"
sb="$(sandbox)"
{
  echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:    $(git -C "$src" rev-parse HEAD 2>/dev/null)"
  git -C "$src" status --short 2>/dev/null | sed 's/^/  changed: /'
  echo "mode:      $([ "$dry" != 0 ] && echo 'DRY RUN (stand-ins for the GPU steps)' || echo 'real run')"
  echo "sandbox:   $sb"
  echo "uname:     $(uname -a)"
  echo "os:        $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
  echo "cpus:      $(nproc), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
  echo "memory:    $(grep MemTotal /proc/meminfo 2>/dev/null)"
  echo "disk:      $(df -h . 2>/dev/null | tail -1)"
  echo "card:      ${card:-none visible}"
  echo "nvcc:      ${nvcc_version:-not found} ($(command -v nvcc))"
  echo "cc:        $cc_bin $cc_version: $("$cc_bin" --version 2>/dev/null | head -1)"
  echo "c++:       $(c++ --version 2>/dev/null | head -1)"
  echo "cmake:     $(cmake --version 2>/dev/null | head -1)"
  echo "ninja:     $(ninja --version 2>/dev/null || echo none)"
  echo "werror:    $werror_note"
  for t in compute-sanitizer ncu cuobjdump nvdisasm cuda-gdb; do echo "tool:      $t: $(command -v $t || echo not found)"; done
  echo "cuda dirs: $(ls -d /usr/local/cuda* 2>/dev/null | tr '\n' ' ')"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  echo
  echo "== nvidia-smi"; timeout 20 nvidia-smi 2>&1 || echo "(nvidia-smi: exit $?)"
  echo; echo "== nvidia-smi -q"; timeout 30 nvidia-smi -q 2>&1 || echo "(nvidia-smi -q: exit $?)"
  echo; echo "== nvcc --version"; nvcc --version 2>&1
  echo; echo "== /proc/driver/nvidia/version"; cat /proc/driver/nvidia/version 2>&1
  echo; echo "== dmesg (first lines)"; dmesg 2>/dev/null | head -20
} >"$logs/env.txt" 2>&1
if [ "$dry" = 0 ] && [ -z "$card" ]; then
  record env "FAILED" "$(elapsed)" "no GPU visible to nvidia-smi; sandbox $sb; nvcc ${nvcc_version:-none}; cc $cc_version"
else
  record env ok "$(elapsed)" "${card:-no GPU}; nvcc ${nvcc_version:-none}; cc $cc_version; sandbox $sb"
fi

# ---- 2. build -----------------------------------------------------------------------------------------------
# jansson and PCRE2: the carried Debian packages when there are any, unpacked into the build folder and
# found WITHOUT pkg-config (their .pc files say prefix=/usr, which pkg-config drops as a system path), else
# the system's.
# With a host compiler other than CI's, nvcc is also told not to refuse a gcc newer than it knows.
cuda_flags="-Xptxas=-v"
[ "$werror" = OFF ] && cuda_flags="$cuda_flags -allow-unsupported-compiler"
cmake_args=(-DJAMBA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release -DJAMBA_BUILD_TESTS=ON
            -DJAMBA_BUILD_EXAMPLES=OFF -DJAMBA_BUILD_BENCH=ON -DJAMBA_WERROR="$werror"
            -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON "-DCMAKE_CUDA_FLAGS=$cuda_flags")
deps_note="system jansson/PCRE2/xxHash"
if ls "$deps"/*.deb >/dev/null 2>&1; then
  root="$build/deps-root"
  rm -rf "$root" && mkdir -p "$root"
  for deb in "$deps"/*.deb; do
    deb_abs="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
    if command -v dpkg-deb >/dev/null 2>&1; then
      dpkg-deb -x "$deb_abs" "$root"
    else # a .deb is an ar archive holding data.tar.*
      member="$(ar t "$deb_abs" | grep '^data.tar')"
      case "$member" in *.xz) z=-J ;; *.zst) z=--zstd ;; *.gz) z=-z ;; *) z= ;; esac
      (cd "$root" && ar p "$deb_abs" "$member" | tar -x $z)
    fi
  done >>"$logs/build.log" 2>&1
  libdir="$root/usr/lib/x86_64-linux-gnu"
  cmake_args+=(-DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_LIBRARY_PATH="$libdir")
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  deps_note="carried jansson/PCRE2/xxHash ($(ls "$deps"/*.deb | wc -l) packages)"
fi
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
  cmake_args+=(-G Ninja) # ninja prints each compiler's output in one piece: ptxas -v stays per file
fi
build_cmd() {
  cmake -S "$src" -B "$build" "${cmake_args[@]}" &&
    MAKEFLAGS=--output-sync=target cmake --build "$build" -j"$(nproc)" --target test_gpu bench_gpu bench_mini jamba_cli
}
build_ok=0
# timeout needs a program: the function and its variables travel into one bash as their declarations
if stage build 300 20 "$logs/build.log" bash -c "$(declare -p src build cmake_args); $(declare -f build_cmd); build_cmd"; then
  if [ "$st_rc" = 0 ]; then
    build_ok=1
  fi
fi
# resource usage of every kernel from ptxas -v: each CUDA object's ptxas lines are kept in the build folder
# (ninja and make --output-sync print them right under the object's "Building CUDA object" line), replaced
# when the object is compiled again, so an incremental build still reports every kernel.
ptxas_report() {
  awk '
    /ptxas info    : Compiling entry function/ { match($0, /function .[^'"'"']*/); k = substr($0, RSTART + 10, RLENGTH - 10);
                                                 match($0, /for .sm_[0-9a-z]*/); arch = substr($0, RSTART + 5, RLENGTH - 5);
                                                 st = 0; ss = 0; sl = 0; next }
    k != "" && /bytes stack frame/ { n = split($0, a, /[ ,]+/); for (i = 1; i + 3 <= n; i++) {
                                       if (a[i+1] == "bytes" && a[i+2] == "stack") st = a[i];
                                       if (a[i+1] == "bytes" && a[i+2] == "spill" && a[i+3] == "stores") ss = a[i];
                                       if (a[i+1] == "bytes" && a[i+2] == "spill" && a[i+3] == "loads") sl = a[i]; } next }
    k != "" && /ptxas info    : Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs);
      smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      printf "%-6s %4d %6d %6d %6d %7d  %s\n", arch, regs, st, ss, sl, smem, k; k = ""; next }
  ' "$@"
}
pdir="$build/ptxas-objects"
mkdir -p "$pdir"
n_compiled=$(awk -v dir="$pdir" '
  /Building CUDA object / { f = $0; sub(/.*Building CUDA object /, "", f); gsub(/\//, "__", f); cur = dir "/" f ".txt";
                            printf "" > cur; n++; next }
  cur != "" && (/^ptxas / || /bytes stack frame/) { print > cur }
  END { print n + 0 }' "$logs/build.log" 2>/dev/null)
for f in "$pdir"/*.txt; do # objects that are gone (a source removed) leave the report
  [ -f "$f" ] || continue
  o="${f##*/}"; o="${o%.txt}"
  [ -e "$build/${o//__//}" ] || rm -f "$f"
done
if ls "$pdir"/*.txt >/dev/null 2>&1; then
  {
    echo "# ptxas -v of the sm_90 build: per kernel, registers, stack frame, spill stores/loads and static shared"
    echo "# memory (bytes). Spilling kernels first, then by registers. This run compiled ${n_compiled:-0} CUDA objects"
    echo "# of the $(ls "$pdir"/*.txt | wc -l) reported; the others' figures are from earlier builds in this folder."
    echo "# arch   regs  stack spillS spillL    smem  kernel"
    ptxas_report "$pdir"/*.txt | while read -r a r s ss sl sm k; do
      printf '%-6s %4d %6d %6d %6d %7d  %s\n' "$a" "$r" "$s" "$ss" "$sl" "$sm" "$(echo "$k" | c++filt 2>/dev/null || echo "$k")"
    done | sort -k4,4nr -k2,2nr
    echo
    echo "# warnings from ptxas, if any:"
    cat "$pdir"/*.txt | grep -i "ptxas warning" | sort -u
  } >"$logs/ptxas-resources.txt"
fi
ptx_note=""
if [ -f "$logs/ptxas-resources.txt" ]; then
  ptx_note="; ptxas -v: $(awk '!/^#/ && NF >= 7 {
      n++; if ($4 > 0 || $5 > 0) { k = $0; for (i = 1; i <= 6; i++) sub(/^[^ ]+ +/, "", k); sub(/^void /, "", k);
                                   sub(/\(.*/, "", k); sp++; list = list sprintf("%s %s %d/%d B", sp > 1 ? "," : ":", k, $4, $5) } }
      END { printf "%d kernels, %d spill%s", n, sp, list }' "$logs/ptxas-resources.txt") (spill stores/loads)"
fi
if [ -z "$st_rc" ]; then
  failures=$((failures + 1)) # skipped for time: nothing after it can run
elif [ "$st_rc" = 124 ]; then
  record build "$(timeout_status)" "$st_secs" "$deps_note; $werror_note"
elif [ "$build_ok" = 1 ]; then
  record build ok "$st_secs" "sm_90 Release, $(nproc) jobs, $deps_note; $werror_note$ptx_note"
else
  record build "FAILED (exit $st_rc)" "$st_secs" "$deps_note; $werror_note; see logs/build.log: $(grep -m1 -E 'error:|CMake Error|fatal' "$logs/build.log" | cut -c1-200)"
fi

# ---- 3..9. the GPU stages ---------------------------------------------------------------------------------
bin="$build"
test_gpu="$bin/tests/test_gpu"
prompt="ROMEO:"

# run_tests NAME CAP SELECTION...: one test_gpu stage
run_tests() {
  local name="$1" cap="$2"; shift 2
  local log="$logs/$name.log"
  if [ "$build_ok" != 1 ]; then record "$name" "skipped" 0 "no build"; return; fi
  if [ "$dry" != 0 ]; then
    stage "$name" "$cap" 20 "$log" bash -c '"$@" --list && { "$@"; rc=$?; echo "(exit $rc without a GPU)"; [ $rc = 77 ]; } && sleep '"$dry_sleep" \
      _ "$test_gpu" "$@" || return
    case "$st_rc" in
      0) record "$name" "stand-in ok" "$st_secs" "$(grep -vc '^==\|^test_gpu\|^(exit' "$log") tests selected by $*; the program skipped (exit 77)" ;;
      124) record "$name" "$(timeout_status)" "$st_secs" "stand-in (sleep $dry_sleep)" ;;
      *) record "$name" "FAILED (exit $st_rc)" "$st_secs" "stand-in: $* --list or the no-GPU skip failed" ;;
    esac
    return
  fi
  stage "$name" "$cap" 20 "$log" "$test_gpu" "$@" || return
  local last; last="$(grep -E '^test_gpu: [0-9]+ tests' "$log" | tail -1)"
  local failed; failed="$(grep -B1 -E '^  FAILED' "$log" | grep -vE '^  FAILED|^--' | tr '\n' ' ' | cut -c1-200)"
  case "$st_rc" in
    0) record "$name" ok "$st_secs" "$last" ;;
    124) record "$name" "$(timeout_status)" "$st_secs" "last test started: $(grep -E '^(ops|model|internals|serving)/' "$log" | tail -1)" ;;
    77) record "$name" "FAILED (skipped: no GPU)" "$st_secs" "$(grep -m1 SKIPPED "$log")" ;;
    *) record "$name" "FAILED (exit $st_rc)" "$st_secs" "${last:-no result line}; failed: ${failed:-see log}" ;;
  esac
}

# run_bench NAME CAP JSON PROGRAM ARGS...: one benchmark stage (its JSON straight into OUTDIR)
run_bench() {
  local name="$1" cap="$2" json="$3"; shift 3
  local log="$logs/$name.log"
  if [ "$build_ok" != 1 ]; then record "$name" "skipped" 0 "no build"; return; fi
  if [ "$dry" != 0 ]; then
    stage "$name" "$cap" 20 "$log" bash -c '"$@"; rc=$?; echo "(exit $rc without a GPU)"; [ $rc = 77 ] && sleep '"$dry_sleep" \
      _ "$@" --json "$out/$json" || return
    case "$st_rc" in
      0) record "$name" "stand-in ok" "$st_secs" "$(basename "$1")${2:+ ${*:2}} --json $json: the program skipped (exit 77)" ;;
      124) record "$name" "$(timeout_status)" "$st_secs" "stand-in (sleep $dry_sleep)" ;;
      *) record "$name" "FAILED (exit $st_rc)" "$st_secs" "stand-in: $(basename "$1")${2:+ ${*:2}} did not skip cleanly" ;;
    esac
    return
  fi
  stage "$name" "$cap" 30 "$log" "$@" --json "$out/$json" || return
  local n=0; [ -f "$out/$json" ] && n=$(grep -c '^{' "$out/$json")
  case "$st_rc" in
    0) record "$name" ok "$st_secs" "$n figures in $json" ;;
    124) record "$name" "$(timeout_status)" "$st_secs" "$n figures measured before the limit kept in $json" ;;
    *) record "$name" "FAILED (exit $st_rc)" "$st_secs" "$n figures in $json; $(grep -v '^== ' "$log" | grep -m1 -iE 'error|skipped|bench' | cut -c1-160)" ;;
  esac
}

run_tests test-ops 150 --only ops/
run_tests test-model 120 --only model/,internals/,serving/,parallel/ --small
run_bench bench-mini 150 bench_mini.json "$bin/bench_mini" --quick
run_tests test-rest 180 --only model/,internals/,serving/,parallel/ --large

# generate: the demo model on the GPU in bf16 and f32, and on the CPU; greedy f32 should give the CPU's text
if [ "$build_ok" != 1 ]; then
  record generate skipped 0 "no build"
else
  gen_args=(generate --model "$src/models/demo" --prompt "$prompt" --max-tokens 64 --temperature 0)
  if [ "$dry" != 0 ]; then
    gen_script='"$1" "${@:2}" --device cpu >"$L/generate-cpu.txt" && "$1" "${@:2}" --device cpu >"$L/generate-cuda-f32.txt" &&
      { "$1" "${@:2}" --device cuda >"$L/generate-cuda-bf16.txt"; echo "(--device cuda without a GPU: exit $?)"; } && sleep '"$dry_sleep"
  else
    gen_script='"$1" "${@:2}" --device cpu >"$L/generate-cpu.txt"; c=$?; "$1" "${@:2}" --device cuda --gpu-dtype f32 >"$L/generate-cuda-f32.txt"; f=$?;
      "$1" "${@:2}" --device cuda >"$L/generate-cuda-bf16.txt"; b=$?; echo "exit: cpu $c, cuda f32 $f, cuda bf16 $b"; [ $c$f$b = 000 ]'
  fi
  if stage generate 60 15 "$logs/generate.log" env L="$logs" bash -c "$gen_script" _ "$bin/jamba" "${gen_args[@]}"; then
    same="differs from the CPU's"
    cmp -s "$logs/generate-cpu.txt" "$logs/generate-cuda-f32.txt" && same="same as the CPU's"
    words=0
    [ -f "$logs/generate-cuda-bf16.txt" ] && words="$(wc -w <"$logs/generate-cuda-bf16.txt")"
    case "$st_rc" in
      0) record generate "$([ "$dry" != 0 ] && echo 'stand-in ok' || echo ok)" "$st_secs" \
           "f32 text $same; bf16 $words words$([ "$dry" != 0 ] && echo ' (stand-in: CPU twice)')" ;;
      124) record generate "$(timeout_status)" "$st_secs" "see logs/generate.log" ;;
      *) record generate "FAILED (exit $st_rc)" "$st_secs" "$(tail -1 "$logs/generate.log" | cut -c1-160)" ;;
    esac
  fi
fi

run_bench bench-gpu 150 bench_gpu.json "$bin/bench_gpu"

# compute-sanitizer, last: "not supported here" where it is missing or refuses the device
if [ "$build_ok" != 1 ]; then
  record sanitizer skipped 0 "no build"
elif ! command -v compute-sanitizer >/dev/null 2>&1; then
  record sanitizer "not supported here" 0 "compute-sanitizer not found"
elif stage sanitizer 150 30 "$logs/sanitizer.log" compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 \
       "$test_gpu" --only ops/ --small; then
  errs="$(grep -E 'ERROR SUMMARY' "$logs/sanitizer.log" | tail -1)"
  if grep -qiE 'device not supported|not supported on this (device|platform)|unable to (find|load) .*inject' "$logs/sanitizer.log"; then
    record sanitizer "not supported here" "$st_secs" "$(grep -m1 -iE 'not supported|unable to' "$logs/sanitizer.log" | cut -c1-160)"
  elif [ "$dry" != 0 ] && [ "$st_rc" != 124 ] && grep -q 'SKIPPED' "$logs/sanitizer.log"; then
    record sanitizer "stand-in ok" "$st_secs" "the program skipped under the sanitizer; ${errs:-no summary}"
  else
    case "$st_rc" in
      0) record sanitizer ok "$st_secs" "${errs:-no summary line}" ;;
      124) record sanitizer "$(timeout_status)" "$st_secs" "${errs:-no summary line}" ;;
      *) record sanitizer "FAILED (exit $st_rc)" "$st_secs" "${errs:-no summary line}; $(grep -m1 -E 'Invalid|FAIL' "$logs/sanitizer.log" | cut -c1-120)" ;;
    esac
  fi
fi

finish
[ "$failures" = 0 ]

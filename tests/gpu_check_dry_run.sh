#!/usr/bin/env bash
# The dry run of tools/gpu-check.sh (ctest entry gpu_check_dry_run, label cpu; needs nvcc, no GPU):
#   tests/gpu_check_dry_run.sh WORK_DIR
# 1. the whole script with GPU_CHECK_DRY_RUN=1: the real environment record and sm_90 build (in
#    WORK_DIR/build, incremental across runs), stand-ins for the GPU steps; checks the summary (a line per
#    stage in order, DRY RUN on each), the archive's logs, the ptxas resource report, the 8-file limit;
# 2. the deadline: stand-ins that hang, a 50-second deadline: the first GPU stage is stopped at the time
#    left, every later one is skipped "no time left", the run ends inside the deadline with its summary
#    and archive whole;
# 3. the refusals: a dry run where nvidia-smi shows a GPU, a bad deadline, no OUTDIR.
# Exit 77 (skipped) without nvcc, or on a machine with a GPU (where the dry run is refused by design).
set -uo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -eq 1 ] || { echo "usage: tests/gpu_check_dry_run.sh WORK_DIR" >&2; exit 2; }
mkdir -p "$1" && work="$(cd "$1" && pwd)"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
command -v nvcc >/dev/null 2>&1 || { echo "gpu_check_dry_run: SKIPPED: no nvcc"; exit 77; }
if { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; } ||
   [ -e /dev/nvidia0 ] || [ -e /dev/nvidiactl ]; then
  echo "gpu_check_dry_run: SKIPPED: this machine has a GPU (run tools/gpu-check.sh itself)"
  exit 77
fi
check="$src/tools/gpu-check.sh"
export GPU_CHECK_BUILD_DIR="$work/build"
unset GPU_CHECK_DEADLINE GPU_CHECK_DRY_SLEEP
fail() { echo "gpu_check_dry_run: FAIL: $*" >&2; exit 1; }
gpu_stages="test-ops test-model bench-mini test-rest generate bench-gpu"
all_stages="env build $gpu_stages sanitizer total"

# status_of SUMMARY STAGE: the status column of a stage's line
# (lines: "DRY RUN  " then the stage in 11 columns, a space, the status in 24 columns: tools/gpu-check.sh)
status_of() { awk -v st="$2" 'substr($0, 1, 9) == "DRY RUN  " && $3 == st { s = substr($0, 22, 24); sub(/ +$/, "", s); print s }' "$1"; }

check_outdir() { # check_outdir OUT: summary, archive and the device tool's limits on what comes back
  local out="$1" s="$1/summary.txt"
  [ -s "$s" ] || fail "$out: no summary.txt"
  grep -v '^DRY RUN' "$s" | grep -q . && fail "$out: summary lines without DRY RUN: $(grep -v '^DRY RUN' "$s" | head -3)"
  local order; order="$(sed -n 's/^DRY RUN  \([a-z-]*\) .*/\1/p' "$s" | tr '\n' ' ')"
  [ "$order" = "$all_stages " ] || fail "$out: stages '$order', expected '$all_stages'"
  local n; n=$(find "$out" -type f | wc -l)
  [ "$n" -le 8 ] || fail "$out: $n files (the device tool brings back 8)"
  find "$out" -mindepth 1 -type d | grep -q . && fail "$out: holds folders"
  find "$out" -type f | sed 's|.*/||' | grep -v '^[A-Za-z0-9._-]*$' && fail "$out: a file name the device tool refuses"
  [ -s "$out/logs.tar.gz" ] || fail "$out: no logs.tar.gz"
  tar -tzf "$out/logs.tar.gz" >"$work/list" || fail "$out: logs.tar.gz does not read back"
  for f in env.txt build.log ptxas-resources.txt; do grep -qx "logs/$f" "$work/list" || fail "$out: no logs/$f in the archive"; done
}

# ---- 1. the whole dry run ------------------------------------------------------------------------------------
out="$work/out-full"
rm -rf "$out"
t=$(date +%s)
GPU_CHECK_DRY_RUN=1 "$check" "$out" || fail "the dry run exited $? (summary: $(cat "$out/summary.txt" 2>/dev/null))"
echo "gpu_check_dry_run: full dry run in $(($(date +%s) - t)) s"
cat "$out/summary.txt"
check_outdir "$out"
s="$out/summary.txt"
[ "$(status_of "$s" build)" = ok ] || fail "build: $(status_of "$s" build)"
grep -q '^DRY RUN  build .*ptxas -v[a-z ]*: [1-9][0-9]* kernels, [0-9]* spill' "$s" || fail "the build line has no ptxas summary"
for st in $gpu_stages; do
  [ "$(status_of "$s" "$st")" = "stand-in ok" ] || fail "$st: '$(status_of "$s" "$st")', expected 'stand-in ok'"
done
case "$(status_of "$s" sanitizer)" in "stand-in ok" | "not supported here") ;; *) fail "sanitizer: $(status_of "$s" sanitizer)" ;; esac
for f in test-ops test-model test-rest bench-mini bench-gpu generate; do
  grep -qx "logs/$f.log" "$work/list" || fail "no logs/$f.log in the archive"
done
# the selections: ops and the small and large model, internals, serving and parallel tests together are every
# test, each once
tg="$work/build/tests/test_gpu"
rest=model/,internals/,serving/,parallel/
sel="$( { "$tg" --only ops/ --list; "$tg" --only $rest --small --list; "$tg" --only $rest --large --list; } | sort)"
[ "$sel" = "$("$tg" --list | sort)" ] || fail "the three test_gpu selections are not the whole list once"
tar -xzf "$out/logs.tar.gz" -C "$work" logs/ptxas-resources.txt
awk '!/^#/ && NF >= 7 && $2 ~ /^[0-9]+$/' "$work/logs/ptxas-resources.txt" | grep -q . ||
  fail "ptxas-resources.txt lists no kernel"

# ---- 2. the deadline ------------------------------------------------------------------------------------------
out="$work/out-deadline"
rm -rf "$out"
t=$(date +%s)
GPU_CHECK_DRY_RUN=1 GPU_CHECK_DEADLINE=50 GPU_CHECK_DRY_SLEEP=600 "$check" "$out" >/dev/null
rc=$?
secs=$(($(date +%s) - t))
echo "gpu_check_dry_run: deadline run (50 s, hanging stand-ins) in $secs s, exit $rc"
cat "$out/summary.txt"
[ "$rc" = 1 ] || fail "the deadline run exited $rc, expected 1 (a stage timed out)"
[ "$secs" -le 60 ] || fail "the deadline run took $secs s for a 50 s deadline"
check_outdir "$out"
s="$out/summary.txt"
[ "$(status_of "$s" build)" = ok ] || fail "deadline run: build '$(status_of "$s" build)' (an incremental build should fit)"
case "$(status_of "$s" test-ops)" in "TIMEOUT (after "*) ;; *) fail "test-ops: '$(status_of "$s" test-ops)', expected TIMEOUT" ;; esac
for st in test-model bench-mini test-rest generate bench-gpu; do
  [ "$(status_of "$s" "$st")" = skipped ] && grep -q "^DRY RUN  $st .*no time left" "$s" ||
    fail "$st: '$(status_of "$s" "$st")', expected skipped for no time left"
done
grep -qx "logs/test-ops.log" "$work/list" || fail "the timed-out stage's log is not in the archive"

# ---- 3. refusals ----------------------------------------------------------------------------------------------
fake="$work/fake-bin"
mkdir -p "$fake"
printf '#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)"\n' >"$fake/nvidia-smi"
chmod +x "$fake/nvidia-smi"
PATH="$fake:$PATH" GPU_CHECK_DRY_RUN=1 "$check" "$work/out-refused" >/dev/null 2>&1
[ $? = 2 ] || fail "a dry run where nvidia-smi shows a GPU was not refused"
[ -e "$work/out-refused/summary.txt" ] && fail "the refused dry run wrote a summary"
GPU_CHECK_DRY_RUN=1 GPU_CHECK_DEADLINE=soon "$check" "$work/out-bad" >/dev/null 2>&1
[ $? = 2 ] || fail "GPU_CHECK_DEADLINE=soon was not refused"
GPU_CHECK_DRY_RUN=1 "$check" >/dev/null 2>&1
[ $? = 2 ] || fail "a run without OUTDIR was not refused"
echo "gpu_check_dry_run: ok"

#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for a short time, seeded from the test fixtures:
# the safetensors, config, shard-index and tokenizer.model parsers, and tokenize/detokenize round trips.
#   tools/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 20)
# Exits non-zero if a target finds a crash, leak or sanitizer error; the reproducer is left in
# build/fuzz/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
CC=clang cmake -S . -B build/fuzz -DJAMBA_FUZZ=ON -DJAMBA_CUDA=OFF -DJAMBA_BUILD_TESTS=OFF \
  -DJAMBA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target fuzz_safetensors fuzz_config fuzz_index fuzz_spm fuzz_tokenize >/dev/null

seed() {  # seed DIR FILES...
  local dir="$1"; shift
  rm -rf "$dir"; mkdir -p "$dir"
  local i=0
  for f in "$@"; do cp "$f" "$dir/seed-$i"; i=$((i + 1)); done
}
seed build/fuzz/corpus-safetensors tests/fixtures/safetensors/*.safetensors \
  tests/fixtures/models/tiny-hf-sharded/model-0000[1-5]-of-00017.safetensors
seed build/fuzz/corpus-config models/configs/*/config.json tests/fixtures/models/*/config.json
seed build/fuzz/corpus-index tests/fixtures/models/tiny-hf-sharded/model.safetensors.index.json
seed build/fuzz/corpus-spm tests/fixtures/tokenizers/sp-*/tokenizer.model
mkdir -p build/fuzz/corpus-tokenize
i=0
while IFS= read -r line; do printf '%s' "$line" > "build/fuzz/corpus-tokenize/seed-$i"; i=$((i + 1)); done \
  < <(head -c 20000 tests/fixtures/tokenizers/expected.json | tr ',' '\n' | head -200)

status=0
for t in safetensors config index spm tokenize; do
  log="build/fuzz/fuzz_$t.log"
  rc=0
  (cd build/fuzz && ./tests/fuzz/fuzz_$t -max_total_time="$secs" -max_len=16384 -dict=../../tests/fuzz/json.dict \
      -print_final_stats=1 "corpus-$t") >"$log" 2>&1 || rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ "$rc" -ne 0 ]; then
    echo "fuzz_$t: FAILED (exit $rc) after $runs inputs; see $log"
    grep -E "ERROR|SUMMARY|Test unit written" "$log" || true
    status=1
  else
    echo "fuzz_$t: ${secs}s, $runs inputs, no findings"
  fi
done
exit $status

#!/usr/bin/env bash
# Build the libFuzzer targets with clang and run each for a short time, seeded from the test fixtures:
# the safetensors, config, shard-index, tokenizer.model and tokenizer.json parsers, and tokenize/detokenize
# round trips.
#   tools/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 20)
# Exits non-zero if a target finds a crash, leak or sanitizer error; the reproducer is left in
# build/fuzz/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
CC=clang cmake -S . -B build/fuzz -DJAMBA_FUZZ=ON -DJAMBA_CUDA=OFF -DJAMBA_BUILD_TESTS=OFF \
  -DJAMBA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target fuzz_safetensors fuzz_config fuzz_index fuzz_spm fuzz_tokenize \
  fuzz_tokenizer_json >/dev/null

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
seed build/fuzz/corpus-tokenizer_json tests/fixtures/tokenizers/{bytelevel-gpt2,bytelevel-split,sp-legacy}/tokenizer.json
# small tokenizers that mutate quickly: SentencePiece-style BPE with byte fallback, and a byte-level one with
# regex splits, digits and merges given as pairs
printf '%s' '{"added_tokens":[{"id":1,"content":"<s>","special":true},{"id":9,"content":"<|eom|>","special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"\u2581"},
{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]},"pre_tokenizer":null,
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},
{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"\u2581"},"content":" "},
{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
"model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,
"vocab":{"<unk>":0,"<s>":1,"\u2581":2,"a":3,"b":4,"\u2581a":5,"ab":6,"<0x41>":7,"<0x0A>":8,"<|eom|>":9},
"merges":["\u2581 a","a b"]}}' > build/fuzz/corpus-tokenizer_json/seed-spm-small
printf '%s' '{"added_tokens":[{"id":0,"content":"<|endoftext|>","special":true,"lstrip":true,"rstrip":false}],
"normalizer":{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "},
"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},
{"type":"Split","pattern":{"Regex":"\\w+|[^\\w\\s]+"},"behavior":"Isolated","invert":false},
{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},
"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","ignore_merges":true,
"vocab":{"<|endoftext|>":0,"a":1,"b":2,"\u0120":3,"ab":4,"\u0120a":5,"1":6,"2":7},"merges":[["a","b"],["\u0120","a"]]}}' \
  > build/fuzz/corpus-tokenizer_json/seed-bytelevel-small
mkdir -p build/fuzz/corpus-tokenize
i=0
while IFS= read -r line; do printf '%s' "$line" > "build/fuzz/corpus-tokenize/seed-$i"; i=$((i + 1)); done \
  < <(head -c 20000 tests/fixtures/tokenizers/expected.json | tr ',' '\n' | head -200)

status=0
for t in safetensors config index spm tokenize tokenizer_json; do
  log="build/fuzz/fuzz_$t.log"
  rc=0
  max_len=16384
  [ "$t" = tokenizer_json ] && max_len=65536  # the fixture tokenizers are 28-34 KB
  (cd build/fuzz && ./tests/fuzz/fuzz_$t -max_total_time="$secs" -max_len="$max_len" -dict=../../tests/fuzz/json.dict \
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

#!/usr/bin/env bash
# ctest zoo: every member of the ablation zoo (models/zoo, tools/gen_zoo.py) loads with `jamba inspect`, has
# the layer schedule, expert count and top-k that its name promises (pure-mamba no attention layer,
# pure-attention no Mamba layer, dense no MoE layer, ...), and scores a short held-out text with exit 0
# (a non-finite logit would make `jamba score` exit 1). The zoo must hold exactly the members listed here.
#   test_zoo.sh JAMBA_BINARY ZOO_DIR TEXT_FILE
set -euo pipefail
cli="$1" zoo="$2" text="$3"
fail() { echo "test_zoo: $*" >&2; exit 1; }

# member -> "layer map|ffn summary" as `jamba inspect` prints them. The base: 8 layers, attention on layer 4
# (1:7), MoE (8 experts, top-2) on the odd layers; each other member changes one factor.
declare -A expected=(
  [base]="Md ME Md ME Ad ME Md ME|4 MoE layers (every 2 from 1): 8 experts, top-2; 4 dense MLP layers"
  [attn-1to3]="Md ME Ad ME Md ME Ad ME|4 MoE layers (every 2 from 1): 8 experts, top-2; 4 dense MLP layers"
  [pure-mamba]="Md ME Md ME Md ME Md ME|4 MoE layers (every 2 from 1): 8 experts, top-2; 4 dense MLP layers"
  [pure-attention]="Ad AE Ad AE Ad AE Ad AE|4 MoE layers (every 2 from 1): 8 experts, top-2; 4 dense MLP layers"
  [dense]="Md Md Md Md Ad Md Md Md|8 dense MLP layers (no mixture of experts)"
  [experts-4]="Md ME Md ME Ad ME Md ME|4 MoE layers (every 2 from 1): 4 experts, top-2; 4 dense MLP layers"
  [experts-16]="Md ME Md ME Ad ME Md ME|4 MoE layers (every 2 from 1): 16 experts, top-2; 4 dense MLP layers"
  [top-1]="Md ME Md ME Ad ME Md ME|4 MoE layers (every 2 from 1): 8 experts, top-1; 4 dense MLP layers"
)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# 2,000 bytes of the held-out part of Tiny Shakespeare (the zoo trains on the first 1,059,624 characters)
head -c $((1059624 + 2000)) "$text" | tail -c 2000 > "$tmp/short.txt"
[ -s "$tmp/short.txt" ] || fail "$text: no held-out text"

found=0
for dir in "$zoo"/*/; do
  name="$(basename "$dir")"
  [ -n "${expected[$name]+set}" ] || fail "$dir: not a member this test knows (add its expected schedule)"
  found=$((found + 1))
  "$cli" inspect --model "$dir" > "$tmp/inspect.txt" 2>&1 || { cat "$tmp/inspect.txt" >&2; fail "$name: inspect failed"; }
  map="$(sed -n 's/^layer map *//p' "$tmp/inspect.txt")"
  ffn="$(sed -n 's/^ffn *//p' "$tmp/inspect.txt")"
  [ "$map|$ffn" = "${expected[$name]}" ] ||
    fail "$name: inspect reports layer map '$map', ffn '$ffn'; expected '${expected[$name]}'"
  "$cli" score --model "$dir" --file "$tmp/short.txt" --json --threads 2 > "$tmp/score.json" 2> "$tmp/score.err" ||
    { cat "$tmp/score.err" >&2; fail "$name: score failed"; }
  grep -q '"error": null' "$tmp/score.json" || fail "$name: score reported an error: $(cat "$tmp/score.json")"
  echo "$name: $map; $ffn; $(grep -m1 '"perplexity"' "$tmp/score.json" | tr -d ' ,')"
done
[ "$found" -eq "${#expected[@]}" ] || fail "$zoo holds $found of the ${#expected[@]} members"
echo "zoo: $found members load, match their names and score"

#!/usr/bin/env bash
# The ablation table of docs/research.md: `jamba score` over every member of the ablation zoo (models/zoo,
# made by tools/gen_zoo.py) on the held-out part of Tiny Shakespeare, printed as a Markdown table.
#
# usage: tools/research_table.sh [JAMBA [ZOO]]
#   JAMBA  the jamba CLI to run (default build/cpu/jamba); this script builds nothing
#   ZOO    the zoo folder (default models/zoo): every subfolder with a zoo.json is a member
# Environment: JAMBA_THREADS=N passes --threads N (default: the CLI's, all CPUs).
#
# Per member: `jamba inspect --json` (parameters), `jamba score --json` over the held-out text as one
# sequence (with --router-stats on MoE members), and `jamba score --json --window N --stride N/2` with the
# member's training length N. The held-out text is tests/data/tinyshakespeare.txt from the byte each
# zoo.json names (the file is ASCII: characters are bytes). Reads the JSON with python3 (standard library).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
jamba=${1:-$root/build/cpu/jamba}
zoo=${2:-$root/models/zoo}
data=$root/tests/data/tinyshakespeare.txt
threads=()
[ -n "${JAMBA_THREADS:-}" ] && threads=(--threads "$JAMBA_THREADS")

die() { echo "research_table.sh: $*" >&2; exit 1; }
[ -x "$jamba" ] || die "no jamba CLI at $jamba (build it: cmake --build build/cpu --target jamba_cli)"
command -v python3 >/dev/null || die "python3 is needed to read the JSON"

# A number from a zoo.json: json_number FILE KEY (the first "KEY": N in the file).
json_number() { sed -n "s/.*\"$2\": \([0-9][0-9]*\).*/\1/p" "$1" | head -n 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
members=()
for dir in "$zoo"/*/; do
  [ -f "$dir/zoo.json" ] || continue
  members+=("${dir%/}")
done
[ ${#members[@]} -gt 0 ] || die "no zoo members (folders with zoo.json) in $zoo: run tools/gen_zoo.py"

for dir in "${members[@]}"; do
  name=$(basename "$dir")
  offset=$(json_number "$dir/zoo.json" train_chars)
  window=$(json_number "$dir/zoo.json" window)
  stride=$(json_number "$dir/zoo.json" stride)
  [ -n "$offset" ] && [ -n "$window" ] && [ -n "$stride" ] || die "$dir/zoo.json: no train_chars, window or stride"
  heldout=$tmp/heldout-$offset.txt
  [ -f "$heldout" ] || tail -c +"$((offset + 1))" "$data" > "$heldout"
  echo "scoring $name" >&2
  "$jamba" inspect --model "$dir" --json > "$tmp/$name.inspect.json" || die "$name: jamba inspect failed"
  router=()
  grep -q '"ffn": "moe"' "$tmp/$name.inspect.json" && router=(--router-stats)
  "$jamba" score --model "$dir" --file "$heldout" --json "${router[@]}" "${threads[@]}" \
    > "$tmp/$name.score.json" 2> "$tmp/$name.score.err" || die "$name: jamba score failed: $(tail -n 1 "$tmp/$name.score.err")"
  "$jamba" score --model "$dir" --file "$heldout" --json --window "$window" --stride "$stride" "${threads[@]}" \
    > "$tmp/$name.window.json" 2> "$tmp/$name.window.err" || die "$name: jamba score --window failed: $(tail -n 1 "$tmp/$name.window.err")"
done

python3 - "$tmp" "${members[@]}" <<'EOF'
import json, math, os, sys

tmp, members = sys.argv[1], sys.argv[2:]


def load(path):
    with open(path) as f:
        return json.load(f)


rows = []
for folder in members:
    name = os.path.basename(folder)
    zoo = load(os.path.join(folder, "zoo.json"))
    params = load(os.path.join(tmp, name + ".inspect.json"))["parameters"]
    whole = load(os.path.join(tmp, name + ".score.json"))["models"][0]
    window = load(os.path.join(tmp, name + ".window.json"))["models"][0]
    router = whole.get("router") or []
    if router:
        # per MoE layer: mean entropy of the routing distribution (nats; ln E when uniform) and the balance
        # loss E sum_e f_e P_e divided by k (1 when every expert gets the same share), averaged over layers
        entropy = sum(r["mean_entropy"] for r in router) / len(router)
        balance = sum(r["balance_loss"] / r["top_k"] for r in router) / len(router)
        experts = router[0]["experts"]
        routing = "%.3f / %.3f | %.3f" % (entropy, math.log(experts), balance)
    else:
        routing = "- | -"
    # the windowed figure next to transformers' (zoo.json, computed by tools/gen_zoo.py the same way)
    rows.append((zoo.get("index", 0), "| `%s` | %s | %s / %s | %.2f | %.3f | %.2f (%.2f) | %s |" % (
        name, zoo["factor"], format(params["total"], ","), format(params["active"], ","), whole["perplexity"],
        whole["bits_per_byte"], window["perplexity"], zoo["heldout"]["perplexity"], routing)))
    windows = (zoo["heldout"]["window"], zoo["heldout"]["stride"])

print("| member | factor changed | parameters total / active | perplexity | bits/byte "
      "| perplexity, windows of %d every %d (transformers) | router entropy, nats / ln E "
      "| load balance (1 = even) |" % windows)
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for _, row in sorted(rows):
    print(row)
EOF

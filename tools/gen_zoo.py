#!/usr/bin/env python3
"""Generate the ablation zoo: small Jamba checkpoints that each differ from one base in a single factor.

The base keeps Jamba's layout at toy width: 8 layers, attention:Mamba 1:7 (attention on layer 4: period 8,
offset 4; no RoPE, as Jamba), a mixture of experts on every odd layer (8 experts, top-2), dense SwiGLU on the
even ones; hidden 32, intermediate 64, 4 heads with 2 KV heads, Mamba d_state 16, d_conv 4, expand 2, tied
embeddings (to keep the folders small). The members:

  base            the base itself
  attn-1to3       attention:Mamba 1:3 (attention on layers 2 and 6)
  pure-mamba      no attention layer
  pure-attention  no Mamba layer (attention on every layer)
  dense           MoE off: a dense MLP on every layer
  experts-4       4 experts instead of 8
  experts-16      16 experts instead of 8
  top-1           each token routed to 1 expert instead of 2

Every member uses the demo model's tokenizer (models/demo, 2,048 pieces; its files are copied unchanged) and
is trained by tools/train_demo.py's loop on the same data in the same order with the same token budget:
the first 95% of tests/data/tinyshakespeare.txt (the demo's split), `--steps` steps of `--batch` random
windows of `--seq` tokens, seed 1234 for the initialisation (set before building each model) and for the
batches. The held-out last 5% is never trained on.

Writes models/zoo/<name>/: config.json, model.safetensors (bf16), the tokenizer files and zoo.json (the
factor, the training record, the versions, and transformers' held-out perplexity computed in fp32 from the
saved bf16 weights with the protocol of `jamba score --window SEQ --stride SEQ/2`: the text with BOS, windows
of --seq tokens every --seq/2, each token predicted once), plus models/zoo/README.md.

Usage. One process trains the members one after another. The committed zoo was made by four processes of
two members each (--only), 12 minutes of wall time on the shared 2-core VM (the members' training times in
README.md add up to 42 minutes), then --readme-only:
  python3 -m venv build/fixenv && build/fixenv/bin/pip install -r tools/requirements-fixtures.txt
  build/fixenv/bin/python tools/gen_zoo.py [--steps N] [--only NAME,...] [--out DIR] [--readme-only]
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import sentencepiece as spm
import torch
import transformers
from transformers import JambaConfig, JambaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_demo  # noqa: E402  (the training loop, the Mamba training scan, the data split)

ROOT = train_demo.ROOT
DEMO = os.path.join(ROOT, "models", "demo")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")

BASE = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
    num_experts=8, num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1, attn_layer_period=8,
    attn_layer_offset=4, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank="auto",
    use_mamba_kernels=False, max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    tie_word_embeddings=True)

# name, the factor changed (for the table), the config keys that change it
MEMBERS = (
    ("base", "none: attention:Mamba 1:7, MoE 8 experts, top-2", {}),
    ("attn-1to3", "attention:Mamba 1:3", dict(attn_layer_period=4, attn_layer_offset=2)),
    # an attention layer where i % 9 == 8: never among layers 0-7
    ("pure-mamba", "no attention (pure Mamba)", dict(attn_layer_period=9, attn_layer_offset=8)),
    ("pure-attention", "no Mamba (pure attention)", dict(attn_layer_period=1, attn_layer_offset=0)),
    ("dense", "MoE off (dense MLP on every layer)", dict(num_experts=1)),
    ("experts-4", "4 experts", dict(num_experts=4)),
    ("experts-16", "16 experts", dict(num_experts=16)),
    ("top-1", "top-1 routing", dict(num_experts_per_tok=1)),
)


@torch.no_grad()
def windowed_nll(model, ids, window, stride, batch=32):
    """`jamba score --window N --stride S` in transformers: window w covers ids[wS : min(wS + N, T)) and
    predicts the tokens after the previous window's end (from token 1 in the first); each window starts
    from an empty state. Returns (sum of NLL in nats, tokens predicted)."""
    spans = []  # (start, end, first predicted)
    start, predicted_to, total = 0, 1, ids.numel()
    while True:
        end = min(start + window, total)
        spans.append((start, end, max(predicted_to, start + 1)))
        predicted_to = end
        if end == total:
            break
        start += stride
    nll, count = 0.0, 0
    for b in range(0, len(spans), batch):
        group = spans[b:b + batch]
        x = torch.zeros(len(group), window, dtype=torch.long)  # right-padded: causal, so padding is unseen
        for row, (s, e, _) in enumerate(group):
            x[row, :e - s] = ids[s:e]
        logp = torch.log_softmax(model(x, use_cache=False).logits.double(), dim=-1)  # [B, N, V]
        for row, (s, e, first) in enumerate(group):
            targets = ids[first:e]
            rows = torch.arange(first - 1 - s, e - 1 - s)
            nll -= float(logp[row, rows, targets].sum())
            count += targets.numel()
    return nll, count


def member_config(overrides, vocab_size):
    return JambaConfig(vocab_size=vocab_size, **{**BASE, **overrides})


def write_readme(out, records):
    rows = []
    for r in records:
        h = r["heldout"]
        rows.append(f"| `{r['name']}` | {r['factor']} | {r['parameters']:,} | {r['final_train_loss']:.3f} "
                    f"| {h['perplexity']:.2f} | {r['training_seconds']} |")
    first = records[0]
    text = f"""# Ablation zoo

Small Jamba checkpoints that each differ from `base` in one factor, trained identically and briefly on Tiny
Shakespeare so that their perplexities can be compared. `tools/research_table.sh` scores them with the
runtime (the table is in `docs/research.md`); `tests/test_zoo.sh` (ctest `zoo`) loads and scores each one
and checks its layer schedule against its name.

Base: 8 layers, hidden 32, intermediate 64, 4 attention heads with 2 KV heads (no RoPE), Mamba d_state 16,
d_conv 4, expand 2 (d_inner 64, dt_rank 2), attention on layer 4 only (1:7), MoE on the odd layers (8
experts, top-2), dense MLPs on the even ones, tied embeddings, bf16. Tokenizer: the demo model's
(`models/demo`, 2,048 SentencePiece pieces; the files are copies).

| member | factor changed | parameters | final training loss | held-out perplexity (transformers) | training s |
| --- | --- | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

## Provenance

| | |
|---|---|
| data | `tests/data/tinyshakespeare.txt`: the first 95% of the characters ({first['data']['train_chars']:,}) for training, the last 5% ({first['data']['heldout_chars']:,}, from byte {first['data']['train_chars']:,}; the file is ASCII) held out |
| script | `tools/gen_zoo.py`, reusing `tools/train_demo.py`'s loop (PyTorch + transformers on the CPU; versions pinned in `tools/requirements-fixtures.txt`) |
| command | `{first['command']}` |
| seed | {first['seed']} (set before building each model, and the batch generator's) |
| training | {first['steps']} steps of AdamW (lr {first['lr']}, warmup {max(1, first['steps'] // 20)} steps, cosine decay), {first['batch']} x {first['seq']} tokens per step: {first['tokens_seen']:,} tokens for every member, in the same order; plain next-token loss, no router auxiliary loss |
| versions | torch {first['versions']['torch']}, transformers {first['versions']['transformers']}, sentencepiece {first['versions']['sentencepiece']} |
| held-out perplexity | transformers in fp32 from the saved bf16 weights: the held-out text with BOS, windows of {first['heldout']['window']} tokens every {first['heldout']['stride']} (the protocol of `jamba score --window {first['heldout']['window']} --stride {first['heldout']['stride']}`), {first['heldout']['tokens_predicted']:,} tokens predicted |

Each folder's `zoo.json` holds its factor, its config changes and this record. Training times are from the
2-core development VM while other jobs shared it, with four members training at a time (one torch thread
each; four processes, each given two members with `--only`, then `--readme-only` for this file).
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=train_demo.DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "zoo"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: at this width the ops are tiny and one thread is fastest; "
                         "run disjoint --only sets as parallel processes instead)")
    ap.add_argument("--readme-only", action="store_true",
                    help="train nothing: rewrite README.md from the members' zoo.json files")
    ap.add_argument("--only", default="", help="comma-separated members to (re)generate; the README lists "
                                                "every member found in --out")
    args = ap.parse_args()
    names = [m[0] for m in MEMBERS]
    only = [n for n in args.only.split(",") if n]
    for n in only:
        if n not in names:
            ap.error(f"unknown member {n!r}; the members are {', '.join(names)}")

    torch.set_num_threads(args.threads)
    text = open(args.data, encoding="utf-8").read()
    split = train_demo.heldout_start(text)
    train_text, heldout = text[:split], text[split:]
    sp = spm.SentencePieceProcessor(model_file=os.path.join(DEMO, "tokenizer.model"))
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(DEMO, "tokenizer.json"))  # adds BOS
    train_ids = torch.tensor(sp.encode(train_text), dtype=torch.long)
    heldout_ids = torch.tensor(fast(heldout)["input_ids"], dtype=torch.long)  # with BOS, as jamba score
    assert heldout_ids[0] == BASE["bos_token_id"]
    print(f"tokens: train {train_ids.numel()}, held out {heldout_ids.numel()} (with BOS)", flush=True)
    command = "build/fixenv/bin/python tools/gen_zoo.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if k not in ("data", "out", "only", "threads", "readme_only"))

    os.makedirs(args.out, exist_ok=True)
    for index, (name, factor, overrides) in enumerate(MEMBERS):
        if args.readme_only or (only and name not in only):
            continue
        out = os.path.join(args.out, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        print(f"== {name}: {factor}", flush=True)
        torch.manual_seed(train_demo.SEED)
        model = JambaForCausalLM(member_config(overrides, sp.vocab_size()))
        params = sum(p.numel() for p in model.parameters())
        start = time.time()
        final_loss = train_demo.train(model, train_ids, args.steps, args.batch, args.seq, args.lr,
                                      seed=train_demo.SEED, log_every=50)
        seconds = round(time.time() - start)
        model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
        gen_cfg = os.path.join(out, "generation_config.json")
        if os.path.exists(gen_cfg):
            os.remove(gen_cfg)
        for f in TOKENIZER_FILES:
            shutil.copyfile(os.path.join(DEMO, f), os.path.join(out, f))
        saved = JambaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
        nll, predicted = windowed_nll(saved, heldout_ids, args.seq, args.seq // 2)
        record = {
            "name": name, "index": index, "factor": factor, "config_changes": overrides,
            "parameters": params, "seed": train_demo.SEED, "steps": args.steps, "batch": args.batch,
            "seq": args.seq, "lr": args.lr, "tokens_seen": args.steps * args.batch * args.seq,
            "final_train_loss": final_loss, "training_seconds": seconds,
            "heldout": {"window": args.seq, "stride": args.seq // 2, "tokens": int(heldout_ids.numel()),
                        "tokens_predicted": predicted, "mean_nll": nll / predicted,
                        "perplexity": math.exp(nll / predicted),
                        "bits_per_byte": nll / (len(heldout.encode("utf-8")) * math.log(2))},
            "data": {"source": "tests/data/tinyshakespeare.txt", "train_chars": split,
                     "heldout_chars": len(text) - split},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "sentencepiece": spm.__version__},
            "command": command,
        }
        with open(os.path.join(out, "zoo.json"), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        print(f"{name}: {params} parameters, final loss {final_loss:.4f}, held-out perplexity "
              f"{record['heldout']['perplexity']:.3f}, {seconds}s", flush=True)

    records = []
    for name in names:
        path = os.path.join(args.out, name, "zoo.json")
        if os.path.exists(path):
            with open(path) as f:
                records.append(json.load(f))
    write_readme(args.out, records)


if __name__ == "__main__":
    main()

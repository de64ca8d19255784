#!/usr/bin/env python3
"""Compare two model folders on one text: perplexity, per-position logit agreement, how their hidden
states drift apart layer by layer, and how each routes its tokens.

Notebook-style: each "# %%" cell runs on its own in Jupyter / VS Code, or run the whole file:

    pip install .                                  # from the repository root (docs/python.md)
    python examples/python/compare_ablations.py                  # the zoo's base against its pure-Mamba twin
    python examples/python/compare_ablations.py models/zoo/base models/zoo/top-1 [--chars N]
    python examples/python/compare_ablations.py models/demo --int8           # bf16 vs int8 weights
    python examples/python/compare_ablations.py tests/fixtures/models/tiny-hf tests/fixtures/models/tiny-pure-mamba

The default pair comes from the ablation zoo (models/zoo, tools/gen_zoo.py; docs/research.md): small
checkpoints trained identically on Tiny Shakespeare that differ from `base` in one factor each (attention
ratio, pure Mamba or attention, MoE off, 4 or 16 experts, top-1), all with the demo model's tokenizer.

A fair comparison needs the same vocabulary: both models score the same token ids. The text is tokenized
with the first folder that has a tokenizer. The fixture models under tests/fixtures/models have none (and
random weights; vocab 64): for them the text's bytes modulo the vocabulary stand in for tokens, which is
enough to see how far two ablations' logits differ, not to read anything into the perplexity.
"""

# %% Setup: which models, which text
import argparse
import os

import numpy as np

import jamba

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("model_a", nargs="?", default=os.path.join(ROOT, "models", "zoo", "base"))
parser.add_argument("model_b", nargs="?", default=None, help="default: models/zoo/pure-mamba")
parser.add_argument("--int8", action="store_true",
                    help="compare model_a with itself holding int8 expert and MLP weights (a quantization ablation)")
parser.add_argument("--text", default=os.path.join(ROOT, "tests", "data", "tinyshakespeare.txt"))
parser.add_argument("--offset", type=int, default=1059624, help="first character (default: the held-out part)")
parser.add_argument("--chars", type=int, default=2000)
parser.add_argument("--threads", type=int, default=0)
args, _ = parser.parse_known_args()  # parse_known_args: tolerate a notebook kernel's own arguments
if args.int8 and args.model_b is not None:
    parser.error("--int8 compares one model with itself: give one folder")

# %% Load both models (an ablation can be a different folder, or the same weights held differently)
a = jamba.Model(args.model_a, threads=args.threads)
if args.int8:
    b = jamba.Model(args.model_a, threads=args.threads, experts="int8", mlp="int8")
    name_a, name_b = os.path.basename(args.model_a.rstrip("/")), os.path.basename(args.model_a.rstrip("/")) + " (int8)"
else:
    if args.model_b is None:
        args.model_b = os.path.join(ROOT, "models", "zoo", "pure-mamba")
    b = jamba.Model(args.model_b, threads=args.threads)
    name_a, name_b = (os.path.basename(p.rstrip("/")) for p in (args.model_a, args.model_b))
if a.vocab_size != b.vocab_size:
    raise SystemExit("the models have different vocabularies (%d and %d): their logits cannot be compared"
                     % (a.vocab_size, b.vocab_size))
for name, m in ((name_a, a), (name_b, b)):
    c = m.config
    print("%-24s L=%d H=%d attention=%d mamba=%d moe=%d V=%d" % (name, c["num_hidden_layers"], c["hidden_size"],
          c["n_attention_layers"], c["n_mamba_layers"], c["n_moe_layers"], c["vocab_size"]))

# %% The text as token ids, shared by both models
with open(args.text, "rb") as f:
    f.seek(args.offset)
    text = f.read(args.chars).decode("utf-8", "ignore")
ids = None
for m in (a, b):
    try:
        ids = m.tokenize(text)
        break
    except jamba.Error as e:  # no tokenizer in this folder
        print("note:", e)
if ids is None:
    ids = [x % a.vocab_size for x in text.encode("utf-8")]
    print("note: no tokenizer in either folder: the text's bytes modulo V stand in for token ids")
print("%d characters, %d tokens" % (len(text), len(ids)))

# %% Perplexity of each model (mean next-token NLL, float64)
sa, sb = a.score(ids), b.score(ids)
for name, s in ((name_a, sa), (name_b, sb)):
    print("%-24s mean NLL %.5f  perplexity %.4f" % (name, s["mean_nll"], s["perplexity"]))

# %% Per-position agreement of the logits
la, lb = a.logits(ids).astype(np.float64), b.logits(ids).astype(np.float64)


def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


pa, pb = log_softmax(la), log_softmax(lb)
kl = (np.exp(pa) * (pa - pb)).sum(axis=1)                    # KL(A || B) per position, nats
top1 = la.argmax(axis=1) == lb.argmax(axis=1)                # same greedy choice
rel = np.linalg.norm(la - lb, axis=1) / np.linalg.norm(la, axis=1)
nll_a = -pa[np.arange(len(ids) - 1), ids[1:]]
nll_b = -pb[np.arange(len(ids) - 1), ids[1:]]
print("top-1 agreement        %.2f%% of %d positions" % (100 * top1.mean(), len(ids)))
print("KL(A||B) per position  mean %.3g, max %.3g (position %d)" % (kl.mean(), kl.max(), kl.argmax()))
print("relative L2 of logits  mean %.3g, max %.3g" % (rel.mean(), rel.max()))
print("NLL difference B - A   mean %+.4f, worst %+.4f" % ((nll_b - nll_a).mean(), (nll_b - nll_a).max()))

# %% Where do they disagree most? (the positions with the largest KL)
worst = np.argsort(-kl)[:5]
for t in sorted(worst):
    ctx = ids[max(0, t - 8):t + 1]
    try:
        shown = repr(a.detokenize(ctx))
    except jamba.Error:
        shown = str(ctx)
    print("position %5d  KL %.3g  A picks %d, B picks %d  after %s" % (t, kl[t], la[t].argmax(), lb[t].argmax(), shown))

# %% Hidden states layer by layer (transformers' output_hidden_states numbering: 0 the embeddings, i the
# input of decoder layer i, L after the final norm) and the routers' logits, from one forward each
ra, rb = a.run(ids, hidden="all", router=True), b.run(ids, hidden="all", router=True)
if ra["hidden"].shape == rb["hidden"].shape:
    for i, (ha, hb) in enumerate(zip(ra["hidden"], rb["hidden"])):
        d = np.linalg.norm(ha - hb, axis=1) / np.maximum(np.linalg.norm(ha, axis=1), 1e-30)
        print("hidden.%-3d relative L2 mean %.3g, max %.3g" % (i, d.mean(), d.max()))
else:
    print("different depth or width: hidden states %s and %s" % (ra["hidden"].shape, rb["hidden"].shape))

# %% Routing per MoE layer: entropy (nats), the top-k probability mass, balance (k when even), expert load
for name, m, r in ((name_a, a, ra), (name_b, b, rb)):
    k = m.config["num_experts_per_tok"]
    for layer, logits in r["router_logits"].items():
        s = jamba.router_stats(logits, k)
        print("%-24s layer %2d  entropy %.3f  top-%d share %.3f  balance %.3f  load %s"
              % (name, layer, s["mean_entropy"], k, s["top_k_share"], s["balance_loss"], s["load"].tolist()))
    if not r["router_logits"]:
        print("%-24s no MoE layers" % name)

# %% Done: free the C memory now rather than at exit
a.close()
b.close()

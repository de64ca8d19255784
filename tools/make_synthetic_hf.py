#!/usr/bin/env python3
"""Write the benchmarks' synthetic Jamba as a Hugging Face folder, so other runtimes can load it.

The config is the one of bench/synthetic_config.h (read from that header, so the two cannot drift): 16
layers of hidden 1024, 16 experts top-2 (intermediate 2048) on every other layer, attention every 8th,
vocabulary 8192. The weights are transformers' own random initialisation (JambaForCausalLM, seeded) with
initializer_range raised to 1/sqrt(hidden) so that the logits are not all near-ties; they are saved in the
chosen dtype. The tokenizer is a SentencePiece BPE of 8192 pieces trained on Tiny Shakespeare the way
tools/train_demo.py trains the demo's, so every id the model can emit is a real piece.

Not the same weights as `bench_cpu --synthetic` (runtime/synthetic.h draws its own): this folder is what
bench/llamacpp_compare.sh gives both runtimes, so that they read the same model.

Usage (in an environment with tools/requirements-fixtures.txt and sentencepiece, e.g. build/fixenv):
  python3 tools/make_synthetic_hf.py --out DIR [--dtype bfloat16|float32] [--seed N]
"""
import argparse
import json
import math
import os
import re
import shutil
import sys

import torch
from transformers import JambaConfig, JambaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import train_demo  # noqa: E402  (the demo's tokenizer recipe and special tokens)

HEADER = os.path.join(ROOT, "bench", "synthetic_config.h")


def synthetic_config():
    """The JSON object of JB_BENCH_SYNTHETIC: the header's adjacent C string literals joined and unescaped."""
    text = open(HEADER, encoding="utf-8").read()
    body = text.split("JB_BENCH_SYNTHETIC =", 1)[1].split(";", 1)[0]
    literal = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body))
    return json.loads(literal.replace('\\"', '"'))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    fields = synthetic_config()
    fields.pop("model_type")
    config = JambaConfig(**fields, initializer_range=1.0 / math.sqrt(fields["hidden_size"]),
                         use_mamba_kernels=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    text = open(train_demo.DEFAULT_DATA, encoding="utf-8").read()
    train_demo.train_tokenizer(text[:train_demo.heldout_start(text)], args.out, config.vocab_size)

    torch.manual_seed(args.seed)
    model = JambaForCausalLM(config).eval()
    model.to(getattr(torch, args.dtype)).save_pretrained(args.out, safe_serialization=True)
    gen_cfg = os.path.join(args.out, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {params} parameters, {args.dtype}, seed {args.seed}")


if __name__ == "__main__":
    main()

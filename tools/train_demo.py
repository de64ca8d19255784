#!/usr/bin/env python3
"""Train the bundled demo model: a small Jamba on Tiny Shakespeare, on the CPU.

The model keeps Jamba's real structure at toy width: 8 layers with attention on layers 2 and 6
(period 4, offset 2), Mamba everywhere else, MoE (4 experts, top-2) on every odd layer, GQA 2:1.
The tokenizer is a SentencePiece BPE built like Jamba's (byte fallback, no dummy prefix, split digits,
identity normalisation, whitespace kept, the same special-token layout at ids 0-3).

Data: tests/data/tinyshakespeare.txt (public domain text; from karpathy/char-rnn, MIT). The last 5% of
the characters are held out for validation.

Writes models/demo/ (a Hugging Face folder: config.json, model.safetensors in bf16, tokenizer.model,
tokenizer.json, tokenizer_config.json, special_tokens_map.json) plus models/demo/reference.json: the
validation loss, and what the runtime's tests compare against (transformers' perplexity on a held-out
excerpt, computed in fp32 from the saved bf16 weights, and a 64-token greedy continuation of a fixed prompt).

Usage (about an hour on 2 cores):
  pip install -r tools/requirements-fixtures.txt
  python3 tools/train_demo.py [--steps N] [--data PATH] [--out DIR]
"""
import argparse
import json
import math
import os
import shutil
import tempfile
import time

import sentencepiece as spm
import torch
import transformers
from transformers import JambaConfig, JambaForCausalLM, LlamaTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "tests", "data", "tinyshakespeare.txt")
PROMPT = "ROMEO:\nBut soft, what light"
EXCERPT_CHARS = 4000  # the held-out excerpt the runtime's perplexity test scores
GREEDY_TOKENS = 64
SEED = 1234
TRAIN_FRACTION = 0.95  # the first 95% of the characters train, the rest is held out

SPECIALS = ["<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>"]


def heldout_start(text):
    """Where the held-out part of a text begins (a character index): after its first TRAIN_FRACTION."""
    return int(len(text) * TRAIN_FRACTION)


def train_tokenizer(train_text, out_dir, vocab_size):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "train.txt")
        with open(corpus, "w") as f:
            f.write(train_text)
        prefix = os.path.join(tmp, "tok")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=vocab_size, character_coverage=1.0,
            byte_fallback=True, split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
            normalization_rule_name="identity", allow_whitespace_only_pieces=True, split_by_whitespace=True,
            max_sentencepiece_length=16, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece=SPECIALS[0],
            bos_piece=SPECIALS[1], eos_piece=SPECIALS[2], unk_piece=SPECIALS[3], user_defined_symbols=[","],
            num_threads=2, minloglevel=2)
        shutil.copy(prefix + ".model", os.path.join(out_dir, "tokenizer.model"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))
    # tokenizer.json from the same model (transformers' SentencePiece converter), with Jamba's BOS handling
    fast = LlamaTokenizerFast(vocab_file=os.path.join(out_dir, "tokenizer.model"), legacy=False,
                              add_prefix_space=False, bos_token=SPECIALS[1], eos_token=SPECIALS[2],
                              unk_token=SPECIALS[3], pad_token=SPECIALS[0], add_bos_token=True,
                              add_eos_token=False, from_slow=True)
    fast.save_pretrained(out_dir)
    return sp, fast


def training_scan(self, input_states, cache_params=None, attention_mask=None):
    """The Mamba mixer's math as in transformers' slow path, for training only: the recurrence walks views
    from unbind() instead of slicing, whose backward would zero-fill a [B, D_i, T, N] gradient per step.
    Inference and every reference value use transformers' own code."""
    assert cache_params is None and attention_mask is None
    seq_len = input_states.shape[1]
    hidden, gate = self.in_proj(input_states).transpose(1, 2).chunk(2, dim=1)
    hidden = self.act(self.conv1d(hidden)[..., :seq_len])
    dt, B, C = torch.split(self.x_proj(hidden.transpose(1, 2)),
                           [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1)
    dt, B, C = self.dt_layernorm(dt), self.b_layernorm(B), self.c_layernorm(C)
    dt = torch.nn.functional.softplus(self.dt_proj(dt)).transpose(1, 2)
    A = -torch.exp(self.A_log.float())
    dA = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    dBu = dt[:, :, :, None] * B[:, None, :, :] * hidden[:, :, :, None]
    state = torch.zeros(hidden.shape[0], self.intermediate_size, self.ssm_state_size)
    ys = []
    for dA_t, dBu_t, C_t in zip(dA.unbind(2), dBu.unbind(2), C.unbind(1)):
        state = dA_t * state + dBu_t
        ys.append(torch.bmm(state, C_t.unsqueeze(-1))[..., 0])
    y = (torch.stack(ys, dim=-1) + hidden * self.D[None, :, None]) * self.act(gate)
    return self.out_proj(y.transpose(1, 2))


def model_config(vocab_size):
    return JambaConfig(
        vocab_size=vocab_size, hidden_size=192, intermediate_size=320, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
        expert_layer_period=2, expert_layer_offset=1, attn_layer_period=4, attn_layer_offset=2,
        mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank="auto", use_mamba_kernels=False,
        max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def batches(ids, seq_len, batch, gen):
    n = ids.numel() - seq_len - 1
    while True:
        starts = torch.randint(0, n, (batch,), generator=gen)
        x = torch.stack([ids[s:s + seq_len] for s in starts])
        y = torch.stack([ids[s + 1:s + seq_len + 1] for s in starts])
        yield x, y


def train(model, train_ids, steps, batch, seq, lr, seed=SEED, log_every=20, scan=training_scan):
    """Train `model` in place for `steps` AdamW steps (betas 0.9/0.95, weight decay 0.1, gradient norm
    clipped to 1, warmup over the first 5% of the steps, then cosine decay to 0) on `batch` random windows
    of `seq` + 1 tokens of `train_ids` [N] per step, drawn from a generator seeded with `seed`. The loss is
    the plain next-token cross-entropy (no router auxiliary loss). Mamba layers use `scan` (a replacement
    for JambaMambaMixer.slow_forward) while training. Leaves the model in eval mode; returns the last step's
    loss (nats/token)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(seed)
    stream = batches(train_ids, seq, batch, gen)
    mixer = transformers.models.jamba.modeling_jamba.JambaMambaMixer
    reference_scan = mixer.slow_forward
    mixer.slow_forward = scan
    start = time.time()
    model.train()
    try:
        for step in range(steps):
            x, y = next(stream)
            logits = model(x, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % log_every == 0 or step == steps - 1:
                print(f"step {step} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                      f"{time.time() - start:.0f}s", flush=True)
    finally:
        model.eval()
        mixer.slow_forward = reference_scan
    return float(loss.item())


@torch.no_grad()
def mean_loss(model, ids, seq_len, max_windows=None):
    """Mean next-token loss over consecutive windows (each window starts from an empty state)."""
    total, count = 0.0, 0
    windows = range(0, ids.numel() - 1, seq_len)
    for i, s in enumerate(windows):
        if max_windows is not None and i >= max_windows:
            break
        x = ids[s:s + seq_len + 1]
        if x.numel() < 2:
            break
        out = model(x[None, :-1], use_cache=False)
        loss = torch.nn.functional.cross_entropy(out.logits[0].float(), x[1:], reduction="sum")
        total += float(loss)
        count += x.numel() - 1
    return total / count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--vocab", type=int, default=2048)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(os.cpu_count() or 1)
    text = open(args.data, encoding="utf-8").read()
    split = heldout_start(text)
    train_text, heldout = text[:split], text[split:]
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    sp, fast = train_tokenizer(train_text, out, args.vocab)
    train_ids = torch.tensor(sp.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(sp.encode(heldout), dtype=torch.long)
    print(f"tokens: train {train_ids.numel()}, held out {val_ids.numel()}", flush=True)

    config = model_config(args.vocab)
    model = JambaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params}", flush=True)
    start = time.time()
    final_loss = train(model, train_ids, args.steps, args.batch, args.seq, args.lr)

    # Save in bf16; every reference value is computed in fp32 from the saved (bf16-rounded) weights.
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    gen_cfg = os.path.join(out, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    saved = JambaForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    saved.config.use_mamba_kernels = False
    val_loss = mean_loss(saved, val_ids, args.seq)
    print(f"validation loss {val_loss:.4f} (perplexity {math.exp(val_loss):.2f})", flush=True)

    # The runtime's tests: perplexity of the first EXCERPT_CHARS held-out characters scored as one
    # sequence with BOS, and greedy generation from a fixed prompt.
    excerpt = heldout[:EXCERPT_CHARS]
    ex_ids = torch.tensor(fast(excerpt)["input_ids"], dtype=torch.long)
    with torch.no_grad():
        ex_loss = float(saved(ex_ids[None], labels=ex_ids[None], use_cache=False).loss)
        prompt_ids = fast(PROMPT, return_tensors="pt")["input_ids"]
        greedy = saved.generate(prompt_ids, max_new_tokens=GREEDY_TOKENS, do_sample=False, use_cache=True,
                                pad_token_id=0)[0, prompt_ids.shape[1]:]
    reference = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentencepiece": spm.__version__},
        "data": {"source": "tests/data/tinyshakespeare.txt (karpathy/char-rnn, public domain text)",
                 "train_chars": split, "heldout_chars": len(text) - split},
        "command": "python3 tools/train_demo.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if k not in ("data", "out")),
        "seed": SEED,
        "parameters": params,
        "final_train_loss": final_loss,
        "validation_loss": val_loss,
        "validation_perplexity": math.exp(val_loss),
        "validation_windows": args.seq,
        "excerpt": {"heldout_offset": 0, "chars": EXCERPT_CHARS, "tokens": int(ex_ids.numel()),
                    "bos": True, "mean_nll": ex_loss, "perplexity": math.exp(ex_loss)},
        "greedy": {"prompt": PROMPT, "prompt_ids": prompt_ids[0].tolist(), "tokens": greedy.tolist(),
                   "text": fast.decode(greedy)},
        "training_seconds": round(time.time() - start),
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f, indent=2)
        f.write("\n")
    print(json.dumps(reference["greedy"], indent=2))


if __name__ == "__main__":
    main()

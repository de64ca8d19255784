#!/usr/bin/env python3
"""Generate forward-pass fixtures with the reference implementation (transformers' JambaForCausalLM).

For each configuration: a tiny random-weight model built in float32 with use_mamba_kernels=False and eager
attention, saved with save_pretrained, and the reference outputs of that model:

  tests/fixtures/forward/<name>/model/             the checkpoint folder
  tests/fixtures/forward/<name>/reference.safetensors
      input_ids      I64 [T]        the prompt
      hidden_states  F32 [L, T, H]  the residual stream after every decoder layer
      final_norm     F32 [T, H]     after final_layernorm
      logits         F32 [T, V]     at every position (one forward from an empty cache)
      greedy_tokens  I64 [S]        greedy continuation: prefill from an empty cache, then one token per step
      step_logits    F32 [S, V]     the logits each greedy token was chosen from (row 0: the prefill's last
                                    position; row i: the step that fed greedy_tokens[i-1])
    and for the batch case (mini only):
      batch_input_ids       I64 [2, Tb]  two prompts, the second left-padded with pad id 0
      batch_attention_mask  I64 [2, Tb]
      batch_logits          F32 [2, Tb, V]
  The metadata records the versions, the seed and the configuration.

  tests/fixtures/forward/<name>/internals.safetensors   (the research captures, from the same prompt)
      hidden.<i>          F32 [T, H]   transformers' output_hidden_states[i], i = 0..L: hidden.0 the
                                       embeddings, hidden.<i> the input of decoder layer i, hidden.<L> the
                                       output of final_layernorm (not the last layer's raw output)
      router_logits.<l>   F32 [T, E]   output_router_logits, named by decoder layer l (MoE layers only)
      aux_loss            F32 [1]      transformers' load_balancing_loss_func over those router logits
      mamba.<l>.conv      F32 [D_i, K] the cache's conv window after the prompt (the last K conv inputs)
      mamba.<l>.ssm       F32 [D_i, N] the cache's SSM state after the prompt
  `python3 tools/gen_fixtures.py --internals` writes only these, from the committed model folders and the
  committed input_ids, leaving every other fixture byte as it is.

Re-run only to regenerate (the runtime and its tests never run Python):
  pip install -r tools/requirements-fixtures.txt && python3 tools/gen_fixtures.py [--internals]
"""
import json
import os
import shutil
import sys

import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import JambaConfig, JambaForCausalLM
from transformers.models.jamba.modeling_jamba import HybridMambaAttentionDynamicCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "forward")
STEPS = 16
PROMPT_LEN = 24
VERSIONS = {
    "generator": "tools/gen_fixtures.py",
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
}

# The real Jamba-Mini schedule at toy width: attention 8/4, MoE 2/1, 16 experts top-2, GQA 4:1,
# d_state 16, d_conv 4, expand 2, dt_rank "auto".
MINI = dict(vocab_size=128, hidden_size=32, intermediate_size=24, num_hidden_layers=16, num_attention_heads=8,
            num_key_value_heads=2, num_experts=16, num_experts_per_tok=2, expert_layer_period=2,
            expert_layer_offset=1, attn_layer_period=8, attn_layer_offset=4, mamba_d_state=16, mamba_d_conv=4,
            mamba_expand=2, mamba_dt_rank="auto", max_position_embeddings=4096)
SMALL = dict(MINI, num_hidden_layers=4, num_experts=4, intermediate_size=20)

CONFIGS = {
    "mini": MINI,
    "pure-mamba-moe": dict(SMALL, num_hidden_layers=6, attn_layer_period=7, attn_layer_offset=6),
    "pure-attention-dense": dict(SMALL, attn_layer_period=1, attn_layer_offset=0, num_experts=1),
    "dense-hybrid-1to3": dict(SMALL, num_hidden_layers=8, attn_layer_period=4, attn_layer_offset=1, num_experts=1),
    "moe-every-layer-top1": dict(SMALL, expert_layer_period=1, expert_layer_offset=0, num_experts_per_tok=1,
                                 attn_layer_period=4, attn_layer_offset=2),
    "moe-every-layer-top3": dict(SMALL, expert_layer_period=1, expert_layer_offset=0, num_experts=6,
                                 num_experts_per_tok=3, attn_layer_period=4, attn_layer_offset=2),
    # head_dim 6 (not a power of two), GQA 3:1, d_conv 3, d_state 8, dt_rank 3, vocab 101, tied embeddings,
    # and the optional Mamba biases flipped (in/out projection bias on, conv bias off).
    "odd-shapes": dict(SMALL, vocab_size=101, hidden_size=36, num_attention_heads=6, num_key_value_heads=2,
                       num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=1, num_experts=3,
                       mamba_d_conv=3, mamba_d_state=8, mamba_dt_rank=3, tie_word_embeddings=True,
                       mamba_proj_bias=True, mamba_conv_bias=False, pad_token_id=0, bos_token_id=1, eos_token_id=2),
}
SEEDS = {name: 1000 + i for i, name in enumerate(CONFIGS)}


ROUTER_STD = 0.5       # decisive routing: random routers at the default init leave top-k gaps near 1e-7
MIN_ROUTER_GAP = 1e-5     # smallest allowed gap between the k-th and (k+1)-th routing probability
MIN_GREEDY_MARGIN = 1e-5  # smallest allowed gap between the best and second-best logit of a greedy step


class RouterGaps:
    """Records the smallest top-k routing gap of every forward, so fixtures never hinge on a near-tie."""

    def __init__(self, model):
        self.k = model.config.num_experts_per_tok
        self.smallest = float("inf")
        self.active = True
        self.hooks = [m.register_forward_hook(self.hook) for n, m in model.named_modules() if n.endswith(".router")]

    def hook(self, module, inputs, output):
        if not self.active:
            return
        p = torch.sort(torch.softmax(output.float(), dim=-1), dim=-1, descending=True).values
        if p.shape[-1] > self.k:
            self.smallest = min(self.smallest, float((p[..., self.k - 1] - p[..., self.k]).min()))

    def close(self):
        for h in self.hooks:
            h.remove()
        return self.smallest >= MIN_ROUTER_GAP


def decisive_routers(model, seed):
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(".router"):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * ROUTER_STD)


def make_config(params):
    cfg = JambaConfig(use_mamba_kernels=False, **params)
    cfg._attn_implementation = "eager"
    return cfg


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


@torch.no_grad()
def full_forward(model, ids):
    """Logits at every position, hidden states after every layer, final norm output."""
    captured = []
    hooks = [layer.register_forward_hook(lambda m, i, o: captured.append(o[0][0].clone())) for layer in model.model.layers]
    norm_out = []
    hooks.append(model.model.final_layernorm.register_forward_hook(lambda m, i, o: norm_out.append(o[0].clone())))
    out = model(ids[None, :], use_cache=False, logits_to_keep=0)
    for h in hooks:
        h.remove()
    return out.logits[0], torch.stack(captured), norm_out[0]


@torch.no_grad()
def greedy(model, config, ids):
    """Prefill from an empty cache, then one token per step (the cache protocol HF is consistent in)."""
    cache = HybridMambaAttentionDynamicCache(config, 1, dtype=torch.float32)
    out = model(ids[None, :], past_key_values=cache, use_cache=True, cache_position=torch.arange(len(ids)),
                logits_to_keep=1)
    tokens, step_logits = [], []
    pos = len(ids)
    for _ in range(STEPS):
        logits = out.logits[0, -1]
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        step_logits.append(logits.clone())
        out = model(torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True,
                    cache_position=torch.tensor([pos]), logits_to_keep=1)
        pos += 1
    return torch.tensor(tokens, dtype=torch.int64), torch.stack(step_logits)


@torch.no_grad()
def batch_case(model, vocab, gen, gaps):
    """Two prompts of different lengths; HF runs them left-padded with pad id 0."""
    a = torch.randint(3, vocab, (11,), generator=gen)
    b = torch.randint(3, vocab, (6,), generator=gen)
    ids = torch.zeros(2, 11, dtype=torch.int64)
    mask = torch.zeros(2, 11, dtype=torch.int64)
    ids[0], mask[0] = a, 1
    ids[1, 5:], mask[1, 5:] = b, 1
    out = model(ids, attention_mask=mask, use_cache=False, logits_to_keep=0)
    gaps.active = True
    model(a[None], use_cache=False)
    model(b[None], use_cache=False)
    return ids, mask, out.logits


def reference(model, config, ids, with_batch, gen, meta):
    gaps = RouterGaps(model)
    logits, hidden, final = full_forward(model, ids)
    tokens, step_logits = greedy(model, config, ids)
    tensors = {"input_ids": ids, "hidden_states": hidden, "final_norm": final, "logits": logits,
               "greedy_tokens": tokens, "step_logits": step_logits}
    if with_batch:
        gaps.active = False  # pad rows route arbitrarily; the unpadded prompts are checked in batch_case
        b_ids, b_mask, b_logits = batch_case(model, config.vocab_size, gen, gaps)
        tensors.update(batch_input_ids=b_ids, batch_attention_mask=b_mask, batch_logits=b_logits)
    meta["min_router_gap"] = gaps.smallest
    top2 = torch.topk(step_logits, 2, dim=-1).values
    meta["min_greedy_margin"] = float((top2[:, 0] - top2[:, 1]).min())
    if not gaps.close() or meta["min_greedy_margin"] < MIN_GREEDY_MARGIN:
        return None, meta
    return {k: v.contiguous() for k, v in tensors.items()}, meta


def save_reference(path, tensors, meta):
    save_file(tensors, path, metadata={k: str(v) for k, v in {**VERSIONS, **meta}.items()})


@torch.no_grad()
def internals(model, config, ids):
    """output_hidden_states, output_router_logits, aux_loss and the Mamba cache after one prefill."""
    moe_layers = [l for l in range(config.num_hidden_layers)
                  if config.num_experts > 1 and l % config.expert_layer_period == config.expert_layer_offset]
    cache = HybridMambaAttentionDynamicCache(config, 1, dtype=torch.float32)
    # (transformers' aux loss fails on a model without MoE layers, so router logits only when there are some)
    out = model(ids[None, :], past_key_values=cache, use_cache=True, cache_position=torch.arange(len(ids)),
                logits_to_keep=0, output_hidden_states=True, output_router_logits=bool(moe_layers))
    tensors = {f"hidden.{i}": h[0] for i, h in enumerate(out.hidden_states)}
    assert len(moe_layers) == len(out.router_logits or ())
    for layer, logits in zip(moe_layers, out.router_logits or ()):
        tensors[f"router_logits.{layer}"] = logits
    if moe_layers:
        tensors["aux_loss"] = out.aux_loss.reshape(1).float()
    for layer in range(config.num_hidden_layers):
        if cache.conv_states[layer].numel():
            tensors[f"mamba.{layer}.conv"] = cache.conv_states[layer][0]
            tensors[f"mamba.{layer}.ssm"] = cache.ssm_states[layer][0]
    return {k: v.contiguous() for k, v in tensors.items()}, out.logits[0]


def save_internals(folder, model, config, ids, want_logits):
    tensors, logits = internals(model, config, ids)
    err = float((logits - want_logits).norm() / want_logits.norm())
    if err > 1e-6:
        raise SystemExit(f"{folder}: the cached forward's logits differ from the reference ({err:.3g})")
    save_file(tensors, os.path.join(folder, "internals.safetensors"), metadata={k: str(v) for k, v in VERSIONS.items()})


def internals_only():
    """internals.safetensors for every committed fixture, from its model folder and its input_ids."""
    from safetensors.torch import load_file
    for name in sorted(os.listdir(OUT)):
        ref_path = os.path.join(OUT, name, "reference.safetensors")
        if not os.path.exists(ref_path):
            continue
        ref = load_file(ref_path)
        model = JambaForCausalLM.from_pretrained(os.path.join(OUT, name, "model"), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
        model.config.use_mamba_kernels = False
        save_internals(os.path.join(OUT, name), model, model.config, ref["input_ids"], ref["logits"])
        print(f"{name}: internals.safetensors")


def ai21_names(sd, cfg):
    """AI21's March-2024 remote-code names (docs/jamba-architecture.md §6.2)."""
    out = {}
    for k, v in sd.items():
        n = k.replace(".mamba.b_layernorm.", ".mamba.B_layernorm.").replace(".mamba.c_layernorm.", ".mamba.C_layernorm.")
        n = n.replace(".pre_ff_layernorm.", ".pre_moe_layernorm.")
        if ".feed_forward." in n:
            layer = int(k.split(".")[2])
            moe = cfg.num_experts > 1 and layer % cfg.expert_layer_period == cfg.expert_layer_offset
            n = n.replace(".feed_forward.", ".moe." if moe else ".moe.experts.0.")
        out[n] = v
    return out


def stacked_experts(sd, cfg):
    """Fused experts: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I]."""
    out = {k: v for k, v in sd.items() if ".feed_forward.experts." not in k}
    for layer in range(cfg.num_hidden_layers):
        if not (cfg.num_experts > 1 and layer % cfg.expert_layer_period == cfg.expert_layer_offset):
            continue
        p = f"model.layers.{layer}.feed_forward.experts"
        out[f"{p}.gate_up_proj"] = torch.stack([torch.cat([sd[f"{p}.{e}.gate_proj.weight"], sd[f"{p}.{e}.up_proj.weight"]])
                                                for e in range(cfg.num_experts)]).contiguous()
        out[f"{p}.down_proj"] = torch.stack([sd[f"{p}.{e}.down_proj.weight"] for e in range(cfg.num_experts)]).contiguous()
    return out


def write_variant(folder, tensors, config_dict):
    fresh(folder)
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt", **VERSIONS})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
        f.write("\n")


def save_model(model, folder):
    fresh(folder)
    model.save_pretrained(folder, safe_serialization=True)
    gen_cfg = os.path.join(folder, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)


def main():
    fresh(OUT)
    for name, params in CONFIGS.items():
        # The first seed from SEEDS[name] upwards whose routing has no near-tie.
        for seed in range(SEEDS[name], SEEDS[name] + 100 * 50, 100):
            torch.manual_seed(seed)
            config = make_config(params)
            model = JambaForCausalLM(config).float().eval()
            decisive_routers(model, seed)
            gen = torch.Generator().manual_seed(seed)
            ids = torch.randint(3, config.vocab_size, (PROMPT_LEN,), generator=gen)
            tensors, meta = reference(model, config, ids, name == "mini", gen, {"config_name": name, "seed": seed})
            if tensors is not None:
                break
        else:
            raise SystemExit(f"{name}: no seed without a routing near-tie")
        save_model(model, os.path.join(OUT, name, "model"))
        save_reference(os.path.join(OUT, name, "reference.safetensors"), tensors, meta)
        save_internals(os.path.join(OUT, name), model, config, ids, tensors["logits"])

        if name == "mini":
            sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            cfg_json = json.load(open(os.path.join(OUT, name, "model", "config.json")))
            remote = dict(cfg_json)
            remote["n_ctx"] = remote.pop("max_position_embeddings")
            remote.update(mamba_inner_layernorms=True, calc_logits_for_entire_prompt=False)
            # Same weights under other names: the runtime must reproduce mini's reference exactly.
            write_variant(os.path.join(OUT, "mini-ai21", "model"), ai21_names(sd, config), remote)
            write_variant(os.path.join(OUT, "mini-stacked", "model"), stacked_experts(sd, config), cfg_json)

            # bf16 on disk; the reference computes in fp32 from the bf16-rounded weights.
            bf16_dir = os.path.join(OUT, "mini-bf16", "model")
            save_model(model.to(torch.bfloat16), bf16_dir)
            rounded = JambaForCausalLM.from_pretrained(bf16_dir, dtype=torch.float32,
                                                       attn_implementation="eager").eval()
            rounded.config.use_mamba_kernels = False
            tensors, meta = reference(rounded, rounded.config, ids, False, gen,
                                      {"config_name": "mini-bf16", "seed": seed})
            if tensors is None:
                raise SystemExit("mini-bf16: routing near-tie after bf16 rounding")
            save_reference(os.path.join(OUT, "mini-bf16", "reference.safetensors"), tensors, meta)
            save_internals(os.path.join(OUT, "mini-bf16"), rounded, rounded.config, ids, tensors["logits"])
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"forward fixtures: {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    internals_only() if sys.argv[1:] == ["--internals"] else main()

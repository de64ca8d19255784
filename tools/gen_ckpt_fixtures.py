#!/usr/bin/env python3
"""Generate the checkpoint-loading fixtures with the reference libraries.

Writes (all small, committed):
  tests/fixtures/safetensors/mixed.safetensors   one tensor of each dtype family, written by safetensors
  tests/fixtures/models/<name>/                   tiny random JambaForCausalLM folders written by
                                                  transformers' save_pretrained (plus renamed/stacked variants)
  models/tiny-random/                             the bundled tiny checkpoint the README's main command inspects

The runtime and its tests never run Python; re-run this only to regenerate the files:
  pip install -r tools/requirements-fixtures.txt
  python3 tools/gen_ckpt_fixtures.py
Versions are pinned in tools/requirements-fixtures.txt and recorded in each file's metadata.
"""
import json
import os
import shutil
import sys

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import JambaConfig, JambaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
VERSIONS = {
    "generator": "tools/gen_ckpt_fixtures.py",
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
}


def tiny_config(**overrides):
    """A Jamba small enough to commit: 4 layers, attention on layer 2, MoE on layers 1 and 3."""
    cfg = dict(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1,
        attn_layer_period=4, attn_layer_offset=2, mamba_d_state=4, mamba_d_conv=4, mamba_expand=2,
        mamba_dt_rank="auto", use_mamba_kernels=False, max_position_embeddings=1024,
    )
    cfg.update(overrides)
    return JambaConfig(**cfg)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


EXPECTED = {}  # name -> what the reference says about the model (tests/fixtures/models/expected.json)


def record_expected(name, model, config, n_tensors):
    EXPECTED[name] = {
        "total_parameters": model.num_parameters(),
        "n_tensors": n_tensors,
        "layers_block_type": list(config.layers_block_type),
        "layers_num_experts": list(config.layers_num_experts),
    }


def save_model(name, config, seed=0, dtype=torch.float32, **save_kwargs):
    torch.manual_seed(seed)
    model = JambaForCausalLM(config).to(dtype).eval()
    record_expected(name, model, config, len(model.state_dict()) - (1 if config.tie_word_embeddings else 0))
    out = fresh_dir(os.path.join(FIXTURES, "models", name))
    model.save_pretrained(out, safe_serialization=True, **save_kwargs)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    return model, out


def state_dict_of(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_variant(name, tensors, config_dict):
    out = fresh_dir(os.path.join(FIXTURES, "models", name))
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt", **VERSIONS})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
        f.write("\n")


def ai21_names(sd, config):
    """AI21's March-2024 remote-code names (docs/jamba-architecture.md §6.2)."""
    out = {}
    for k, v in sd.items():
        n = k.replace(".mamba.b_layernorm.", ".mamba.B_layernorm.").replace(".mamba.c_layernorm.", ".mamba.C_layernorm.")
        n = n.replace(".pre_ff_layernorm.", ".pre_moe_layernorm.")
        layer = int(k.split(".")[2]) if k.startswith("model.layers.") else -1
        is_moe = layer >= 0 and config.num_experts > 1 and layer % config.expert_layer_period == config.expert_layer_offset
        if ".feed_forward." in n:
            if is_moe:
                n = n.replace(".feed_forward.", ".moe.")
            else:  # the dense FFN stored as a single-expert MoE
                n = n.replace(".feed_forward.", ".moe.experts.0.")
        out[n] = v
    return out


def stacked_experts(sd, config):
    """transformers-v5 style fused experts: gate_up_proj [E, 2I, H] (gate first), down_proj [E, H, I]."""
    out = {}
    for k, v in sd.items():
        if ".feed_forward.experts." not in k:
            out[k] = v
    for layer in range(config.num_hidden_layers):
        if not (config.num_experts > 1 and layer % config.expert_layer_period == config.expert_layer_offset):
            continue
        p = f"model.layers.{layer}.feed_forward.experts"
        gate_up = [torch.cat([sd[f"{p}.{e}.gate_proj.weight"], sd[f"{p}.{e}.up_proj.weight"]], 0)
                   for e in range(config.num_experts)]
        out[f"{p}.gate_up_proj"] = torch.stack(gate_up).contiguous()
        out[f"{p}.down_proj"] = torch.stack([sd[f"{p}.{e}.down_proj.weight"] for e in range(config.num_experts)]).contiguous()
    return out


def write_mixed_safetensors():
    """One tensor per dtype family with known values (checked by tests/test_safetensors.c)."""
    t = {
        "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5,
        "f16": torch.tensor([1.0, -2.0, 0.25, 65504.0], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -1.5], [3.0, 0.0], [-0.0, 256.0]], dtype=torch.bfloat16),
        "i8": torch.tensor([-128, -1, 0, 1, 127], dtype=torch.int8),
        "u8": torch.tensor([[0, 1], [254, 255]], dtype=torch.uint8),
        "f8": torch.tensor([0.5, -1.0, 2.0, 448.0], dtype=torch.float8_e4m3fn),
        "i64_scalar": torch.tensor(42, dtype=torch.int64),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    out = fresh_dir(os.path.join(FIXTURES, "safetensors"))
    save_file(t, os.path.join(out, "mixed.safetensors"), metadata={"format": "pt", **VERSIONS})


def main():
    write_mixed_safetensors()

    # Hugging Face names, single file and sharded (same weights).
    cfg = tiny_config()
    model, _ = save_model("tiny-hf", cfg)
    save_model("tiny-hf-sharded", cfg, max_shard_size="6KB")
    sd = state_dict_of(model)
    base_cfg = json.load(open(os.path.join(FIXTURES, "models", "tiny-hf", "config.json")))

    # AI21 March-2024 names with the remote code's config keys.
    remote_cfg = dict(base_cfg)
    remote_cfg["n_ctx"] = remote_cfg.pop("max_position_embeddings")
    remote_cfg.update(mamba_inner_layernorms=True, calc_logits_for_entire_prompt=False)
    write_variant("tiny-ai21", ai21_names(sd, cfg), remote_cfg)
    record_expected("tiny-ai21", model, cfg, len(sd))
    # Stacked experts.
    stacked = stacked_experts(sd, cfg)
    write_variant("tiny-stacked", stacked, base_cfg)
    record_expected("tiny-stacked", model, cfg, len(stacked))

    # Schedules and options that change which tensors exist.
    save_model("tiny-tied", tiny_config(tie_word_embeddings=True), seed=1)
    save_model("tiny-bf16", tiny_config(), seed=2, dtype=torch.bfloat16)
    save_model("tiny-pure-mamba", tiny_config(attn_layer_period=5, attn_layer_offset=4), seed=3)
    save_model("tiny-pure-attention", tiny_config(attn_layer_period=1, attn_layer_offset=0, num_experts=1), seed=4)
    save_model("tiny-dense-1to3", tiny_config(attn_layer_period=4, attn_layer_offset=3, num_experts=1), seed=5)
    save_model("tiny-odd", tiny_config(hidden_size=18, num_attention_heads=6, num_key_value_heads=2,
                                       mamba_d_conv=3, mamba_d_state=5, mamba_dt_rank=3, mamba_proj_bias=True,
                                       mamba_conv_bias=False, vocab_size=61), seed=6)

    # The bundled checkpoint (README main command): the Jamba-Mini schedule at toy width, bf16.
    mini_like = tiny_config(num_hidden_layers=16, attn_layer_period=8, attn_layer_offset=4, hidden_size=32,
                            intermediate_size=48, num_attention_heads=4, num_key_value_heads=1, vocab_size=256,
                            num_experts=4, mamba_d_state=8)
    torch.manual_seed(7)
    bundled = JambaForCausalLM(mini_like).to(torch.bfloat16).eval()
    out = fresh_dir(os.path.join(ROOT, "models", "tiny-random"))
    bundled.save_pretrained(out, safe_serialization=True)
    if os.path.exists(os.path.join(out, "generation_config.json")):
        os.remove(os.path.join(out, "generation_config.json"))
    record_expected("tiny-random", bundled, mini_like, len(bundled.state_dict()))
    with open(os.path.join(FIXTURES, "models", "expected.json"), "w") as f:
        json.dump({"versions": VERSIONS, "models": EXPECTED}, f, indent=1, sort_keys=True)
        f.write("\n")
    print("fixtures written with", VERSIONS, file=sys.stderr)


if __name__ == "__main__":
    main()

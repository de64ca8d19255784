"""Tests of the Python package `jamba` (python/jamba) against the committed fixtures.

Run: pip install . pytest numpy && pytest tests/python   (tools/test.sh does this in build/pyenv).
No torch: the transformers references are read from tests/fixtures/forward/*/reference.safetensors
with a small safetensors reader below.
"""

import glob
import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

import jamba

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
DEMO = os.path.join(ROOT, "models", "demo")
PROMPT = "ROMEO:\nBut soft, what light"


def read_safetensors(path):
    """name -> numpy array (F32, I64, BF16 widened to F32)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = data[lo:hi]
        if t["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype={"F32": "<f4", "I64": "<i8", "I32": "<i4", "F64": "<f8"}[t["dtype"]])
        out[name] = a.reshape(t["shape"])
    return out


def rel_l2_rows(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.linalg.norm(got - want, axis=-1) / np.maximum(np.linalg.norm(want, axis=-1), 1e-30)


# Forward fixtures: model folder -> the fixture whose reference it must match (as tests/test_forward.c).
FORWARD = {os.path.basename(os.path.dirname(p)): os.path.basename(os.path.dirname(p))
           for p in glob.glob(os.path.join(FIX, "forward", "*", "reference.safetensors"))}
FORWARD.update({"mini-ai21": "mini", "mini-stacked": "mini"})


@pytest.fixture(scope="module")
def demo():
    m = jamba.Model(DEMO, threads=2)
    yield m
    m.close()


@pytest.fixture(scope="module")
def demo_reference():
    with open(os.path.join(DEMO, "reference.json")) as f:
        return json.load(f)


def test_version():
    assert jamba.version().count(".") == 2
    assert os.path.exists(jamba.library_path)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to check the struct layouts with")
def test_struct_layouts_match_jamba_h(tmp_path):
    """Every ctypes struct has jamba.h's size and field offsets."""
    from jamba import _lib
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "jamba.h"', "int main(void) {"]
    want = []
    for s in _lib.STRUCTS:
        lines.append('printf("%%zu\\n", sizeof(%s));' % s.__name__)
        want.append(jamba_ctypes_sizeof(s))
        for name, _ in s._fields_:
            lines.append('printf("%%zu\\n", offsetof(%s, %s));' % (s.__name__, name))
            want.append(getattr(s, name).offset)
    lines += ["return 0;", "}"]
    src, exe = tmp_path / "layout.c", tmp_path / "layout"
    src.write_text("\n".join(lines))
    subprocess.run(["cc", "-std=c11", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)], check=True)
    got = [int(x) for x in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    assert got == want


def jamba_ctypes_sizeof(s):
    import ctypes
    return ctypes.sizeof(s)


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_logits_match_transformers(name):
    ref = read_safetensors(os.path.join(FIX, "forward", FORWARD[name], "reference.safetensors"))
    with jamba.Model(os.path.join(FIX, "forward", name, "model"), threads=2) as m:
        ids = ref["input_ids"].tolist()
        got = m.logits(ids)
        assert got.dtype == np.float32 and got.shape == ref["logits"].shape
        err = rel_l2_rows(got, ref["logits"])
        assert err.max() <= 1e-5, "%s: worst row %d, relative L2 %.3g" % (name, err.argmax(), err.max())


def test_embed_is_final_norm():
    ref = read_safetensors(os.path.join(FIX, "forward", "mini", "reference.safetensors"))
    with jamba.Model(os.path.join(FIX, "forward", "mini", "model"), threads=2) as m:
        ids = ref["input_ids"].tolist()
        h = m.embed(ids)
        assert h.shape == ref["final_norm"].shape
        assert rel_l2_rows(h, ref["final_norm"]).max() <= 1e-5
        np.testing.assert_allclose(m.embed(ids, pooling="last"), h[-1], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(m.embed(ids, pooling="mean"), h.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_int8_weight_groups(demo):
    """mixers/lm_head="int8" (with experts and mlp: every projection matrix) stay close to the stored model."""
    ids = demo.tokenize(PROMPT)
    want = demo.logits(ids)
    with jamba.Model(DEMO, threads=2, experts="int8", mlp="int8", mixers="int8", lm_head="int8") as q:
        got = q.logits(ids)
    assert not np.array_equal(got, want)
    assert rel_l2_rows(got, want).max() <= 0.02
    assert (got.argmax(axis=-1) == want.argmax(axis=-1)).mean() >= 0.9
    with pytest.raises(KeyError):
        jamba.Model(DEMO, mixers="int4")


def test_int8_activations(demo):
    """activations="int8": the int8 weights multiply int8 activations, close to fp32 activations."""
    ids = demo.tokenize(PROMPT)
    with jamba.Model(DEMO, threads=2, experts="int8", mlp="int8", mixers="int8", lm_head="int8") as q:
        want = q.logits(ids)
        with q.context(len(ids) + 1, activations="int8", n_logits_max=len(ids)) as ctx:
            got = ctx.feed(0, ids, logits="all")
        with pytest.raises(ValueError):
            q.context(activations="int4")
    assert not np.array_equal(got, want)
    assert rel_l2_rows(got, want).max() <= 0.05
    assert (got.argmax(axis=-1) == want.argmax(axis=-1)).mean() >= 0.9


def test_config(demo):
    c = demo.config
    assert c["vocab_size"] == 2048 and c["hidden_size"] == 192 and c["num_hidden_layers"] == 8
    assert c["n_attention_layers"] + c["n_mamba_layers"] == c["num_hidden_layers"]
    assert c["eos_token_ids"] and c["torch_dtype"] == "BF16"


def test_tokenize_demo(demo, demo_reference):
    g = demo_reference["greedy"]
    ids = demo.tokenize(g["prompt"])
    assert ids == g["prompt_ids"]
    assert demo.detokenize(ids) == g["prompt"]
    assert demo.tokenize(g["prompt"], add_special=False) == g["prompt_ids"][1:]


def test_generate_greedy_matches_reference(demo, demo_reference):
    g = demo_reference["greedy"]
    n = len(g["tokens"])
    text, ids = demo.generate(g["prompt"], max_tokens=n, temperature=0, return_ids=True)
    assert ids == g["tokens"]
    assert text == g["text"]


def _cli():
    env = os.environ.get("JAMBA_CLI")
    if env:
        return env
    cli = os.path.join(ROOT, "build", "cpu", "jamba")  # tools/test.sh's CPU build
    return cli if os.path.isfile(cli) and os.access(cli, os.X_OK) else None


@pytest.mark.skipif(_cli() is None, reason="no jamba CLI (build/cpu/jamba or $JAMBA_CLI)")
def test_generate_matches_cli(demo):
    out = subprocess.run([_cli(), "generate", "--model", DEMO, "--prompt", PROMPT, "--max-tokens", "40",
                          "--temperature", "0", "--no-echo", "--json", "--threads", "2"],
                         capture_output=True, text=True)
    assert out.returncode == 0, "%s: %s" % (_cli(), out.stderr)
    want = json.loads(out.stdout)
    text, ids = demo.generate(PROMPT, max_tokens=40, temperature=0, return_ids=True)
    assert ids == want["generated_ids"]
    assert text == want["text"]


def test_generate_sampling_is_seeded(demo):
    a = demo.generate(PROMPT, max_tokens=16, temperature=0.9, top_k=20, top_p=0.9, seed=7)
    b = demo.generate(PROMPT, max_tokens=16, temperature=0.9, top_k=20, top_p=0.9, seed=7)
    assert a == b and len(a) > 0


def test_score_matches_transformers_excerpt(demo, demo_reference):
    ex = demo_reference["excerpt"]
    with open(os.path.join(ROOT, "tests", "data", "tinyshakespeare.txt"), "rb") as f:
        text = f.read()
    start = demo_reference["data"]["train_chars"] + ex["heldout_offset"]
    r = demo.score(text[start:start + ex["chars"]].decode("utf-8"))
    assert r["tokens"] == ex["tokens"]
    assert abs(r["mean_nll"] - ex["mean_nll"]) / ex["mean_nll"] <= 1e-4
    assert abs(r["perplexity"] - np.exp(r["mean_nll"])) < 1e-9


def test_state_round_trip_continues_identically(demo, tmp_path):
    prompt = demo.tokenize(PROMPT)
    more = demo.tokenize(" and the sun", add_special=False)
    with demo.context(n_ctx=64, n_seq=3) as ctx:
        ctx.feed(0, prompt, logits="none")
        saved = ctx.state(0)
        assert isinstance(saved, bytes) and len(saved) > 0
        ctx.save(0, tmp_path / "seq0.state")
        ctx.fork(0, 2)
        first = ctx.feed(0, more, logits="all")
        assert ctx.length(0) == len(prompt) + len(more)
        # bytes back into the same sequence, and into another one
        ctx.set_state(0, saved)
        assert ctx.length(0) == len(prompt)
        np.testing.assert_array_equal(ctx.feed(0, more, logits="all"), first)
        ctx.set_state(1, saved)
        np.testing.assert_array_equal(ctx.feed(1, more, logits="all"), first)
        np.testing.assert_array_equal(ctx.feed(2, more, logits="all"), first)  # the fork
        ctx.restore(0, tmp_path / "seq0.state")
        np.testing.assert_array_equal(ctx.feed(0, more, logits="all"), first)
        # and a fresh full run agrees with the continued one
        np.testing.assert_allclose(demo.logits(prompt + more)[len(prompt):], first, rtol=1e-4, atol=1e-4)
        broken = bytearray(saved)
        broken[len(broken) // 2] ^= 0xFF
        with pytest.raises(jamba.Error) as e:
            ctx.set_state(0, bytes(broken))
        assert e.value.status < 0


def test_bad_path_raises_error_naming_it(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(jamba.Error) as e:
        jamba.Model(missing)
    assert e.value.status < 0
    assert "no-such-model" in str(e.value)


def test_errors_from_bad_arguments(demo):
    with demo.context(n_ctx=8) as ctx:
        with pytest.raises(jamba.Error):
            ctx.feed(0, [demo.vocab_size + 5])
        with pytest.raises(jamba.Error):
            ctx.feed(0, list(range(1, 20)))  # more than n_ctx tokens
    with jamba.Model(os.path.join(FIX, "models", "tiny-hf")) as tiny:
        with pytest.raises(jamba.Error):
            tiny.tokenize("no tokenizer in this folder")

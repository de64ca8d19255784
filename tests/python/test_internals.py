"""The research API of the Python package (hidden states, router logits and statistics, Mamba states, the
layer hook) against transformers' outputs in tests/fixtures/forward/*/internals.safetensors
(tools/gen_fixtures.py --internals): relative L2 per row at most 1e-5, as tests/test_forward.c."""

import glob
import os

import numpy as np
import pytest

import jamba
from test_jamba import FIX, read_safetensors, rel_l2_rows

NAMES = sorted(os.path.basename(os.path.dirname(p))
               for p in glob.glob(os.path.join(FIX, "forward", "*", "internals.safetensors")))


def fixture(name):
    ref = read_safetensors(os.path.join(FIX, "forward", name, "reference.safetensors"))
    want = read_safetensors(os.path.join(FIX, "forward", name, "internals.safetensors"))
    return ref["input_ids"].tolist(), want


def test_fixtures_present():
    assert "mini" in NAMES and len(NAMES) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_hidden_and_router_match_transformers(name):
    ids, want = fixture(name)
    with jamba.Model(os.path.join(FIX, "forward", name, "model"), threads=2) as m:
        L = m.config["num_hidden_layers"]
        out = m.run(ids, hidden="all", router=True)
        assert out["hidden"].shape == (L + 1, len(ids), m.hidden_size) and out["hidden"].dtype == np.float32
        for i in range(L + 1):
            assert rel_l2_rows(out["hidden"][i], want["hidden.%d" % i]).max() <= 1e-5, "hidden.%d" % i
        router = out["router_logits"]
        assert sorted(router) == sorted(int(k.split(".")[1]) for k in want if k.startswith("router_logits."))
        for layer, logits in router.items():
            assert rel_l2_rows(logits, want["router_logits.%d" % layer]).max() <= 1e-5
        if router:  # transformers' aux loss from the per-layer statistics of all MoE layers together
            k, E = m.config["num_experts_per_tok"], m.config["num_experts"]
            stats = [jamba.router_stats(lg, k) for lg in router.values()]
            f = sum(s["load"] for s in stats) / (len(stats) * len(ids))
            p = sum(s["mean_prob"] for s in stats) / len(stats)
            assert abs(E * float((f * p).sum()) - float(want["aux_loss"][0])) <= 1e-5 * float(want["aux_loss"][0])


@pytest.mark.parametrize("name", ["mini", "odd-shapes", "pure-mamba-moe"])
def test_mamba_state_matches_transformers(name):
    ids, want = fixture(name)
    with jamba.Model(os.path.join(FIX, "forward", name, "model"), threads=2) as m:
        with m.context(n_ctx=len(ids)) as ctx:
            ctx.feed(0, ids, logits="none")
            for layer, (mixer, _) in enumerate(m.layers()):
                if mixer != "mamba":
                    continue
                conv, ssm = ctx.mamba_state(0, layer)
                hf_conv = want["mamba.%d.conv" % layer][:, 1:]  # transformers keeps K inputs, jamba K-1
                assert rel_l2_rows(conv.reshape(1, -1), hf_conv.reshape(1, -1)).max() <= 1e-5
                assert rel_l2_rows(ssm.reshape(1, -1), want["mamba.%d.ssm" % layer].reshape(1, -1)).max() <= 1e-5


def test_hidden_subset_and_router_stats():
    ids, _ = fixture("mini")
    with jamba.Model(os.path.join(FIX, "forward", "mini", "model"), threads=2) as m:
        full = m.hidden_states(ids)
        some = m.hidden_states(ids, layers=[16, 0, 3])
        np.testing.assert_array_equal(some, full[[16, 0, 3]])
        stats = m.router_stats(ids)
        assert [s["layer"] for s in stats] == [1, 3, 5, 7, 9, 11, 13, 15]
        for s in stats:
            assert s["tokens"] == len(ids) and int(s["load"].sum()) == 2 * len(ids)
            assert 0 < s["mean_entropy"] <= np.log(16) and 0 < s["top_k_share"] <= 1 and s["balance_loss"] >= 0
    with pytest.raises(jamba.Error) as e:
        jamba.router_stats(np.zeros((2, 4), np.float32), 5)
    assert e.value.status == -1


def test_patching_own_output_changes_nothing_and_a_change_does():
    ids, _ = fixture("mini")
    with jamba.Model(os.path.join(FIX, "forward", "mini", "model"), threads=2) as m:
        clean = m.run(ids, hidden="all")
        layer = 6
        own = clean["hidden"][layer + 1]

        def put_back(l, first, rows):
            if l != layer:
                return False
            rows[:] = own[first:first + len(rows)]
            return True
        np.testing.assert_array_equal(m.run(ids, hook=put_back)["logits"], clean["logits"])

        def scale(l, first, rows):
            if l == layer:
                rows *= 1.5
            return l == layer
        changed = m.run(ids, hidden=[layer + 1], hook=scale)
        np.testing.assert_array_equal(changed["hidden"][0], 1.5 * own)
        assert rel_l2_rows(changed["logits"], clean["logits"]).max() > 1e-3

        def broken(l, first, rows):
            raise RuntimeError("from the hook")
        with pytest.raises(RuntimeError, match="from the hook"):
            m.run(ids, hook=broken)


def test_set_mamba_state_carries_a_text():
    ids, _ = fixture("mini")
    with jamba.Model(os.path.join(FIX, "forward", "mini", "model"), threads=2) as m:
        with m.context(n_ctx=64, n_seq=2) as ctx:
            ctx.feed(0, ids, logits="none")
            for layer, (mixer, _) in enumerate(m.layers()):
                if mixer == "mamba":
                    ctx.set_mamba_state(1, layer, *ctx.mamba_state(0, layer))
            assert ctx.length(1) == 0
            np.testing.assert_array_equal(ctx.mamba_state(1, 0)[1], ctx.mamba_state(0, 0)[1])
        with pytest.raises(jamba.Error):
            with m.context(n_ctx=8) as ctx:
                ctx.mamba_state(0, 4)  # an attention layer

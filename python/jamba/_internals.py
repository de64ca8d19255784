"""The research calls of jamba.h ("Internals (research)") as numpy: captures of hidden states and router
logits with an optional layer hook (activation patching), router statistics, and Mamba states.
Used by jamba.Model and jamba.Context; see docs/python.md."""

import ctypes

import numpy as np

from . import _lib
from ._lib import lib


def check(status, err):
    if status != 0:
        from . import Error
        raise Error(status, err.message.decode("utf-8", "replace"))


def _f32p(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def layers(model_handle, n_layers):
    """[(mixer, ffn)] per decoder layer: "mamba"/"attention", "dense"/"moe"."""
    out = []
    for layer in range(n_layers):
        info = _lib.jamba_layer_info()
        err = _lib.jamba_error()
        check(lib.jamba_model_layer_sized(model_handle, layer, ctypes.byref(info), ctypes.sizeof(info),
                                          ctypes.byref(err)), err)
        out.append(("attention" if info.mixer == _lib.MIXER_ATTENTION else "mamba",
                    "moe" if info.ffn == _lib.FFN_MOE else "dense"))
    return out


class Capture:
    """Buffers attached to a context for `rows` positions (jamba_context_set_capture): hidden states
    [n, rows, H] numbered as transformers' output_hidden_states (`hidden`: None, "all" or a list of numbers
    in [0, L]), router logits [n_moe, rows, E] (`router`), and a layer hook: hook(layer, first_row, rows)
    with rows a float32 numpy view [n_rows, H] of the residual stream after `layer`, which it may change
    in place, returning True when it did."""

    def __init__(self, ctx_handle, config, rows, hidden=None, router=False, hook=None):
        L, H = config["num_hidden_layers"], config["hidden_size"]
        self.index = list(range(L + 1)) if hidden == "all" else (list(hidden) if hidden is not None else [])
        self.hidden = np.zeros((len(self.index), rows, H), np.float32) if self.index else None
        n_moe, E = config["n_moe_layers"], config["num_experts"]
        self.router = np.zeros((n_moe, rows, E), np.float32) if router and n_moe else None
        self._index = np.asarray(self.index, np.int64)
        self._hook = None
        if hook is not None:
            def trampoline(_user, layer, first_row, ptr, n_rows, width):
                view = np.ctypeslib.as_array(ptr, shape=(n_rows, width))
                try:
                    return bool(hook(int(layer), int(first_row), view))
                except Exception:  # never unwind through C: the exception is kept and raised afterwards
                    import sys
                    self.hook_error = sys.exc_info()[1]
                    return False
            self._hook = _lib.LAYER_HOOK(trampoline)
        self.hook_error = None
        cap = _lib.jamba_capture()
        cap.rows = rows
        if self.hidden is not None:
            cap.hidden = _f32p(self.hidden)
            cap.hidden_index = self._index.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
            cap.n_hidden = len(self.index)
        if self.router is not None:
            cap.router_logits = _f32p(self.router)
        if self._hook is not None:
            cap.hook = self._hook
        err = _lib.jamba_error()
        self._ctx = ctx_handle
        check(lib.jamba_context_set_capture(ctx_handle, ctypes.byref(cap), ctypes.byref(err)), err)

    def detach(self):
        if self._ctx is not None:
            err = _lib.jamba_error()
            check(lib.jamba_context_set_capture(self._ctx, None, ctypes.byref(err)), err)
            self._ctx = None
        if self.hook_error is not None:
            raise self.hook_error


def router_stats(logits, top_k):
    """Statistics of router logits [T, E] routed top_k (jamba_compute_router_stats): dict with tokens,
    mean_entropy (nats), top_k_share, balance_loss, load (int64 [E]) and mean_prob (float64 [E])."""
    a = np.ascontiguousarray(logits, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError("router_stats: logits must be [T, E]")
    T, E = a.shape
    load = np.zeros(E, np.int64)
    prob = np.zeros(E, np.float64)
    s = _lib.jamba_router_stats()
    err = _lib.jamba_error()
    check(lib.jamba_compute_router_stats(_f32p(a), T, E, int(top_k),
                                         load.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                                         prob.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), ctypes.byref(s),
                                         ctypes.byref(err)), err)
    return {"tokens": s.rows, "mean_entropy": s.mean_entropy, "top_k_share": s.top_k_share,
            "balance_loss": s.balance_loss, "load": load, "mean_prob": prob}


def mamba_state(ctx_handle, config, seq, layer):
    """(conv [D_i, K-1], ssm [D_i, N]) float32 of a Mamba layer of a sequence (jamba_seq_mamba_state)."""
    Di, K, N = config["mamba_d_inner"], config["mamba_d_conv"], config["mamba_d_state"]
    conv = np.zeros((Di, K - 1), np.float32)
    ssm = np.zeros((Di, N), np.float32)
    err = _lib.jamba_error()
    check(lib.jamba_seq_mamba_state(ctx_handle, seq, layer, _f32p(conv), _f32p(ssm), ctypes.byref(err)), err)
    return conv, ssm


def set_mamba_state(ctx_handle, config, seq, layer, conv=None, ssm=None):
    """Replace a Mamba layer's state of a sequence (either part may be None to keep it)."""
    Di, K, N = config["mamba_d_inner"], config["mamba_d_conv"], config["mamba_d_state"]
    c = None if conv is None else np.ascontiguousarray(conv, np.float32).reshape(Di, K - 1)
    s = None if ssm is None else np.ascontiguousarray(ssm, np.float32).reshape(Di, N)
    err = _lib.jamba_error()
    check(lib.jamba_seq_set_mamba_state(ctx_handle, seq, layer, None if c is None else _f32p(c),
                                        None if s is None else _f32p(s), ctypes.byref(err)), err)

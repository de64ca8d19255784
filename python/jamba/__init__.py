"""jamba — Python bindings (ctypes) for the Jamba runtime's C library, libjamba.so.

    import jamba
    m = jamba.Model("models/demo")
    ids = m.tokenize("ROMEO:\\nBut soft")
    logits = m.logits(ids)            # numpy float32 [T, V]
    print(m.score("some text"))       # {'tokens': T, 'mean_nll': ..., 'perplexity': ...}
    print(m.generate("ROMEO:", max_tokens=32, temperature=0))

See docs/python.md.
"""

import ctypes
import os
import weakref

import numpy as np

from . import _internals, _lib
from ._lib import lib

__all__ = ["Error", "Model", "Context", "version", "library_path", "router_stats"]

library_path = _lib.library_path


def version():
    """The C library's version string ("MAJOR.MINOR.PATCH")."""
    return lib.jamba_version().decode()


__version__ = version()


class Error(Exception):
    """A failed jamba_* call: .status is the jamba_status (negative int), .message jamba_error's line."""

    def __init__(self, status, message):
        self.status = int(status)
        self.message = message
        name = lib.jamba_status_string(self.status).decode()
        super().__init__("%s (%s)" % (message, name) if message else name)


def router_stats(logits, top_k):
    """Routing statistics of router logits [T, E] with top_k experts per token (jamba_compute_router_stats):
    dict(tokens, mean_entropy (nats), top_k_share, balance_loss, load int64 [E], mean_prob float64 [E])."""
    return _internals.router_stats(logits, top_k)


def _check(status, err):
    if status != 0:
        raise Error(status, err.message.decode("utf-8", "replace"))


def _ids(ids):
    """A contiguous int32 array of token ids and a ctypes pointer to it."""
    a = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
    if a.size and (a.min() < -2**31 or a.max() >= 2**31):
        raise ValueError("token id out of the int32 range")
    a = a.astype(np.int32)
    return a, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))


def _fs(path):
    return os.fsencode(os.fspath(path))


_CONFIG_KEYS = [name for name, _ in _lib.jamba_config._fields_ if name not in ("eos_token_ids", "n_eos_token_ids")]


class _Closeable:
    """close() on garbage collection and at the end of a with block."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Model(_Closeable):
    """A model loaded from a Hugging Face folder (config.json + safetensors), jamba_model_load.

    threads: CPU worker threads of the contexts it creates (and load-time work); 0 = the online CPUs.
    experts, mlp, mixers, lm_head: "stored" (default) or "int8" (weight-only int8, quantized while loading) for
    the MoE experts, the dense MLPs, the Mamba/attention projections and the LM head (tied: the embedding it
    shares); mixers and lm_head int8 run on the CPU only.
    """

    def __init__(self, path, *, threads=0, experts="stored", mlp="stored", mixers="stored", lm_head="stored",
                 check_finite=False):
        self._handle = None
        self._tok = None
        self._contexts = weakref.WeakSet()
        self.path = os.fspath(path)
        self.threads = int(threads)
        params = lib.jamba_model_default_params()
        params.n_threads = self.threads
        params.experts = _lib.WEIGHT_FORMATS[experts]
        params.mlp = _lib.WEIGHT_FORMATS[mlp]
        params.mixers = _lib.WEIGHT_FORMATS[mixers]
        params.lm_head = _lib.WEIGHT_FORMATS[lm_head]
        params.check_finite = bool(check_finite)
        err = _lib.jamba_error()
        handle = ctypes.c_void_p()
        _check(lib.jamba_model_load(_fs(self.path), ctypes.byref(params), ctypes.byref(handle), ctypes.byref(err)),
               err)
        self._handle = handle
        c = lib.jamba_model_config(handle).contents
        cfg = {k: getattr(c, k) for k in _CONFIG_KEYS}
        cfg["eos_token_ids"] = [c.eos_token_ids[i] for i in range(c.n_eos_token_ids)]
        t = cfg["torch_dtype"]
        cfg["torch_dtype"] = _lib.DTYPE_NAMES[t] if 0 <= t < len(_lib.DTYPE_NAMES) else "UNKNOWN"
        self.config = cfg
        self.vocab_size = cfg["vocab_size"]
        self.hidden_size = cfg["hidden_size"]

    # -- lifetime --------------------------------------------------------------------------------
    def close(self):
        """Free the model, its tokenizer and every context still open on it. Idempotent."""
        for ctx in list(self._contexts):
            ctx.close()
        if self._tok is not None:
            lib.jamba_tokenizer_free(self._tok)
            self._tok = None
        if self._handle is not None:
            lib.jamba_model_free(self._handle)
            self._handle = None

    def __repr__(self):
        return "jamba.Model(%r)" % self.path

    def _h(self):
        if self._handle is None:
            raise ValueError("the model is closed")
        return self._handle

    # -- tokenizer -------------------------------------------------------------------------------
    def _tokenizer(self):
        if self._tok is None:
            self._h()
            err = _lib.jamba_error()
            tok = ctypes.c_void_p()
            _check(lib.jamba_tokenizer_load(_fs(self.path), ctypes.byref(tok), ctypes.byref(err)), err)
            self._tok = tok
        return self._tok

    def tokenize(self, text, *, add_special=True, parse_special=False):
        """Token ids of `text` (BOS/EOS added as the tokenizer's files say unless add_special=False)."""
        tok = self._tokenizer()
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        cap = lib.jamba_tokenizer_max_ids(tok, len(data)) + 1
        ids = (ctypes.c_int32 * cap)()
        n = ctypes.c_int64()
        flags = (_lib.TOKENIZE_ADD_SPECIAL if add_special else 0) | (_lib.TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        err = _lib.jamba_error()
        _check(lib.jamba_tokenize(tok, data, len(data), flags, ids, cap, ctypes.byref(n), ctypes.byref(err)), err)
        return list(ids[:n.value])

    def detokenize(self, ids, *, keep_special=False):
        """UTF-8 text of `ids` (special tokens left out unless keep_special)."""
        tok = self._tokenizer()
        a, p = _ids(ids)
        need = ctypes.c_size_t()
        err = _lib.jamba_error()
        st = lib.jamba_detokenize(tok, p, a.size, keep_special, None, 0, ctypes.byref(need), ctypes.byref(err))
        if st not in (0, _lib.ERR_BUFFER_TOO_SMALL):
            _check(st, err)
        buf = ctypes.create_string_buffer(need.value + 1)
        n = ctypes.c_size_t()
        _check(lib.jamba_detokenize(tok, p, a.size, keep_special, buf, need.value + 1, ctypes.byref(n),
                                    ctypes.byref(err)), err)
        return buf.raw[:n.value].decode("utf-8")

    def eos_ids(self):
        """The ids that end a generation: the tokenizer's EOS ids and config.json's eos_token_id."""
        out = []
        try:
            n = ctypes.c_int64()
            p = lib.jamba_tokenizer_eos(self._tokenizer(), ctypes.byref(n))
            out = [p[i] for i in range(n.value)]
        except Error:
            pass
        for i in self.config["eos_token_ids"]:
            if i not in out:
                out.append(i)
        return out

    def _as_ids(self, text_or_ids):
        return self.tokenize(text_or_ids) if isinstance(text_or_ids, (str, bytes)) else list(text_or_ids)

    # -- contexts and forward passes -------------------------------------------------------------
    def context(self, n_ctx=0, n_seq=1, *, n_batch=0, n_logits_max=0, threads=None, activations="f32"):
        """A fresh Context (CPU) holding n_seq sequences of at most n_ctx tokens (0: the model's default).
        activations="int8": int8 weights multiply int8-quantized activations, "bf16": bf16 weights multiply
        activations rounded to bf16 (cpu_activations I8, BF16)."""
        return Context(self, n_ctx=n_ctx, n_seq=n_seq, n_batch=n_batch, n_logits_max=n_logits_max,
                       threads=self.threads if threads is None else threads, activations=activations)

    def logits(self, ids):
        """Logits of every position of `ids` run as one sequence in a fresh context: float32 [T, V]."""
        a, _ = _ids(ids)
        if a.size == 0:
            raise ValueError("logits: no token ids")
        with self.context(n_ctx=a.size, n_seq=1, n_logits_max=a.size) as ctx:
            return ctx.feed(0, a, logits="all")

    def embed(self, ids, pooling="none"):
        """Final-normed hidden states (the input of lm_head) in a fresh context: [T, H] for pooling="none",
        [H] for "mean" or "last" (jamba_embed)."""
        a, _ = _ids(ids)
        if a.size == 0:
            raise ValueError("embed: no token ids")
        with self.context(n_ctx=a.size, n_seq=1) as ctx:
            return ctx.embed(0, a, pooling)

    def score(self, text_or_ids):
        """How well the model predicts a text (tokenized with BOS) or ids: dict(tokens=T (BOS included),
        mean_nll over the T-1 next-token predictions, perplexity=exp(mean_nll)); float64 in numpy."""
        ids = np.asarray(self._as_ids(text_or_ids), dtype=np.int64)
        T = ids.size
        if T < 2:
            raise ValueError("score: at least two tokens are needed")
        lg = self.logits(ids)[:-1].astype(np.float64)
        m = lg.max(axis=1, keepdims=True)
        logz = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
        nll = logz - lg[np.arange(T - 1), ids[1:]]
        mean = float(nll.mean())
        return {"tokens": int(T), "mean_nll": mean, "perplexity": float(np.exp(mean))}

    # -- internals (research) ---------------------------------------------------------------------
    def layers(self):
        """[(mixer, ffn)] per decoder layer: ("mamba" | "attention", "dense" | "moe")."""
        if getattr(self, "_layers", None) is None:
            self._layers = _internals.layers(self._h(), self.config["num_hidden_layers"])
        return self._layers

    def run(self, ids, *, hidden=None, router=False, hook=None):
        """One forward of `ids` as one sequence in a fresh context, with captures. Returns a dict:
        logits float32 [T, V]; hidden float32 [n, T, H] when hidden is "all" (n = L + 1) or a list of
        transformers output_hidden_states numbers (0 embeddings, i the input of layer i, L the final norm),
        with hidden_index the numbers; router_logits {layer: float32 [T, E]} per MoE layer when router=True.
        hook(layer, first_row, rows) sees each layer's output rows (float32 [n, H], a view it may change in
        place, returning True when it did): activation patching."""
        a, _ = _ids(ids)
        if a.size == 0:
            raise ValueError("run: no token ids")
        with self.context(n_ctx=a.size, n_seq=1, n_logits_max=a.size) as ctx:
            cap = _internals.Capture(ctx._h(), self.config, a.size, hidden=hidden, router=router, hook=hook)
            try:
                logits = ctx.feed(0, a, logits="all")
            finally:
                cap.detach()
        out = {"logits": logits}
        if cap.hidden is not None:
            out["hidden"], out["hidden_index"] = cap.hidden, cap.index
        if router:
            moe = [i for i, (_, ffn) in enumerate(self.layers()) if ffn == "moe"]
            out["router_logits"] = {layer: cap.router[k] for k, layer in enumerate(moe)}
        return out

    def hidden_states(self, ids, layers=None):
        """Hidden states float32 [n, T, H] numbered as transformers' output_hidden_states: all L + 1
        (layers=None) or the numbers listed, in that order."""
        return self.run(ids, hidden="all" if layers is None else list(layers))["hidden"]

    def router_logits(self, ids):
        """{decoder layer: router logits float32 [T, E]} for every MoE layer (output_router_logits)."""
        return self.run(ids, router=True)["router_logits"]

    def router_stats(self, ids):
        """Per MoE layer, the routing statistics of `ids` (router_stats) with the layer index added."""
        k = self.config["num_experts_per_tok"]
        return [dict(router_stats(lg, k), layer=layer) for layer, lg in self.router_logits(ids).items()]

    def generate(self, prompt, max_tokens=256, temperature=0.8, top_k=40, top_p=0.95, seed=0x5EED, *,
                 min_p=None, repetition_penalty=None, stop_at_eos=True, return_ids=False):
        """Continue `prompt` (text, tokenized with BOS, or a list of ids) with jamba's sampler
        (temperature 0 = greedy) through jamba_decode_sample; returns the continuation's text (and its ids
        with return_ids=True). Stops at an EOS id or after max_tokens tokens."""
        ids = self._as_ids(prompt)
        if not ids:
            raise ValueError("generate: empty prompt")
        n_ctx = min(len(ids) + max_tokens, max(self.config["max_position_embeddings"], len(ids) + 1))
        sp = lib.jamba_sampler_default_params()
        sp.temperature, sp.top_k, sp.top_p, sp.seed = temperature, top_k, top_p, seed
        if min_p is not None:
            sp.min_p = min_p
        if repetition_penalty is not None:
            sp.repetition_penalty = repetition_penalty
        err = _lib.jamba_error()
        sampler = ctypes.c_void_p()
        _check(lib.jamba_sampler_create(ctypes.byref(sp), self.vocab_size, ctypes.byref(sampler), ctypes.byref(err)),
               err)
        out = []
        try:
            with self.context(n_ctx=n_ctx, n_seq=1) as ctx:
                if len(ids) > 1:
                    ctx.feed(0, ids[:-1], logits="none")
                for t in ids:
                    lib.jamba_sampler_accept(sampler, t)
                stops = set(self.eos_ids()) if stop_at_eos else set()
                pending = ids[-1]
                tok = ctypes.c_int32()
                samplers = (ctypes.c_void_p * 1)(sampler)
                one = (ctypes.c_int32 * 1)()
                for _ in range(max_tokens):
                    if ctx.length(0) >= n_ctx:
                        break
                    one[0] = pending
                    inp = _lib.jamba_seq_input(0, one, 1, _lib.LOGITS_LAST)
                    _check(lib.jamba_decode_sample(ctx._h(), ctypes.byref(inp), 1, samplers, ctypes.byref(tok),
                                                   ctypes.byref(err)), err)
                    if tok.value in stops:
                        break
                    out.append(tok.value)
                    pending = tok.value
        finally:
            lib.jamba_sampler_free(sampler)
        text = self._stream_text(out) if out else ""
        return (text, out) if return_ids else text

    def _stream_text(self, ids):
        """Text of generated ids as the CLI prints them (a streaming decoder started at the first one)."""
        err = _lib.jamba_error()
        dec = ctypes.c_void_p()
        _check(lib.jamba_stream_decoder_create(self._tokenizer(), False, ctypes.byref(dec), ctypes.byref(err)), err)
        parts = []
        try:
            piece, n = ctypes.c_char_p(), ctypes.c_size_t()
            for t in ids:
                _check(lib.jamba_stream_decoder_push(dec, t, ctypes.byref(piece), ctypes.byref(n), ctypes.byref(err)),
                       err)
                parts.append(ctypes.string_at(piece, n.value))
            _check(lib.jamba_stream_decoder_flush(dec, ctypes.byref(piece), ctypes.byref(n), ctypes.byref(err)), err)
            parts.append(ctypes.string_at(piece, n.value))
        finally:
            lib.jamba_stream_decoder_free(dec)
        return b"".join(parts).decode("utf-8")


_LOGITS = {"none": _lib.LOGITS_NONE, "last": _lib.LOGITS_LAST, "all": _lib.LOGITS_ALL}
# What int8 weights multiply on the CPU (jamba_context_params.cpu_activations).
_ACTIVATIONS = {"f32": _lib.DTYPE_NAMES.index("F32"), "int8": _lib.DTYPE_NAMES.index("I8"),
                "bf16": _lib.DTYPE_NAMES.index("BF16")}


class Context(_Closeable):
    """Sequences and their state (jamba_context): feed tokens, fork, save/restore, get/set state bytes.
    Create with Model.context(). Use from one thread at a time."""

    def __init__(self, model, *, n_ctx=0, n_seq=1, n_batch=0, n_logits_max=0, threads=0, activations="f32"):
        self._handle = None
        self.model = model
        p = lib.jamba_context_default_params()
        p.n_ctx, p.n_seq_max, p.n_batch, p.n_logits_max, p.n_threads = n_ctx, n_seq, n_batch, n_logits_max, threads
        if activations not in _ACTIVATIONS:
            raise ValueError(f"activations {activations!r}: expected one of {sorted(_ACTIVATIONS)}")
        p.cpu_activations = _ACTIVATIONS[activations]
        err = _lib.jamba_error()
        handle = ctypes.c_void_p()
        _check(lib.jamba_context_create(model._h(), ctypes.byref(p), ctypes.byref(handle), ctypes.byref(err)), err)
        self._handle = handle
        self.n_seq = n_seq
        model._contexts.add(self)

    def close(self):
        if self._handle is not None:
            lib.jamba_context_free(self._handle)
            self._handle = None

    def _h(self):
        if self._handle is None:
            raise ValueError("the context is closed")
        return self._handle

    def feed(self, seq, ids, logits="last"):
        """Append `ids` to sequence `seq` and run the model. logits: "last" returns the last position's row
        (float32 [V]), "all" every position's ([T, V]), "none" returns None."""
        a, p = _ids(ids)
        if a.size == 0:
            raise ValueError("feed: no token ids")
        mode = _LOGITS[logits]
        err = _lib.jamba_error()
        inp = _lib.jamba_seq_input(seq, p, a.size, mode)
        _check(lib.jamba_decode(self._h(), ctypes.byref(inp), 1, ctypes.byref(err)), err)
        if mode == _lib.LOGITS_NONE:
            return None
        rows = ctypes.c_int64()
        ptr = lib.jamba_logits(self._handle, 0, ctypes.byref(rows))
        V = self.model.vocab_size
        out = np.ctypeslib.as_array(ptr, shape=(rows.value, V)).copy()
        return out[0] if mode == _lib.LOGITS_LAST else out

    def embed(self, seq, ids, pooling="none"):
        """Append `ids` to `seq` (as feed) and return final-normed hidden states: [T, H] or [H] (jamba_embed)."""
        a, p = _ids(ids)
        H = self.model.hidden_size
        out = np.empty((a.size, H) if pooling == "none" else (H,), dtype=np.float32)
        err = _lib.jamba_error()
        _check(lib.jamba_embed(self._h(), seq, p, a.size, _lib.POOLING[pooling],
                               out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.byref(err)), err)
        return out

    def mamba_state(self, seq, layer):
        """(conv float32 [D_i, K-1], ssm float32 [D_i, N]): decoder layer `layer`'s Mamba state of `seq`
        (conv: the last K-1 conv inputs, oldest first; transformers' cache holds K)."""
        return _internals.mamba_state(self._h(), self.model.config, seq, layer)

    def set_mamba_state(self, seq, layer, conv=None, ssm=None):
        """Replace that state (None keeps a part); the sequence's length and KV cache stay as they are."""
        _internals.set_mamba_state(self._h(), self.model.config, seq, layer, conv, ssm)

    def length(self, seq):
        """Tokens held by sequence `seq`."""
        n = lib.jamba_seq_length(self._h(), seq)
        if n < 0:
            raise Error(-1, "sequence %d is out of range [0, %d)" % (seq, self.n_seq))
        return n

    def reset(self, seq):
        err = _lib.jamba_error()
        _check(lib.jamba_seq_reset(self._h(), seq, ctypes.byref(err)), err)

    def fork(self, src, dst):
        """Make sequence dst an exact copy of src."""
        err = _lib.jamba_error()
        _check(lib.jamba_seq_fork(self._h(), src, dst, ctypes.byref(err)), err)

    def save(self, seq, path):
        """Write the sequence's state to a file (jamba_seq_save)."""
        err = _lib.jamba_error()
        _check(lib.jamba_seq_save(self._h(), seq, _fs(path), ctypes.byref(err)), err)

    def restore(self, seq, path):
        """Replace the sequence's state with one saved by save() for the same model."""
        err = _lib.jamba_error()
        _check(lib.jamba_seq_restore(self._h(), seq, _fs(path), ctypes.byref(err)), err)

    def state(self, seq):
        """The sequence's state as bytes (the same bytes as a state file)."""
        err = _lib.jamba_error()
        size = ctypes.c_size_t()
        _check(lib.jamba_seq_state_size(self._h(), seq, ctypes.byref(size), ctypes.byref(err)), err)
        buf = ctypes.create_string_buffer(size.value)
        n = ctypes.c_size_t()
        _check(lib.jamba_seq_state_get(self._handle, seq, buf, size.value, ctypes.byref(n), ctypes.byref(err)), err)
        return buf.raw[:n.value]

    def set_state(self, seq, data):
        """Replace the sequence's state with bytes from state() (checked before anything changes)."""
        data = bytes(data)
        err = _lib.jamba_error()
        _check(lib.jamba_seq_state_set(self._h(), seq, data, len(data), ctypes.byref(err)), err)

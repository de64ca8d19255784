"""ctypes declarations of include/jamba.h (the subset the Python package uses).

Struct layouts mirror jamba.h field by field; C enums are ints, bool is ctypes.c_bool.
tests/python/test_jamba.py checks sizeof and every offsetof against a C compiler when one is present.
"""

import ctypes
import os
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int, c_int32,
                    c_int64, c_size_t, c_uint64, c_void_p)

_HERE = os.path.dirname(os.path.abspath(__file__))

ERROR_MESSAGE_SIZE = 1024
MAX_EOS_IDS = 16

# jamba_logits_mode
LOGITS_NONE, LOGITS_LAST, LOGITS_ALL = 0, 1, 2
# jamba_pooling
POOLING = {"none": 0, "mean": 1, "last": 2}
# jamba_tokenize_flags
TOKENIZE_ADD_SPECIAL, TOKENIZE_PARSE_SPECIAL = 1, 2
# jamba_status values used here
ERR_BUFFER_TOO_SMALL = -15
# jamba_weight_format
WEIGHT_FORMATS = {"stored": 0, "int8": 1}
DTYPE_NAMES = ["UNKNOWN", "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8",
               "BOOL", "F8_E4M3", "F8_E5M2"]


class jamba_error(Structure):
    _fields_ = [("status", c_int), ("message", c_char * ERROR_MESSAGE_SIZE)]


class jamba_config(Structure):
    _fields_ = [
        ("vocab_size", c_int64),
        ("hidden_size", c_int64),
        ("intermediate_size", c_int64),
        ("num_hidden_layers", c_int64),
        ("num_attention_heads", c_int64),
        ("num_key_value_heads", c_int64),
        ("head_dim", c_int64),
        ("num_experts", c_int64),
        ("num_experts_per_tok", c_int64),
        ("expert_layer_period", c_int64),
        ("expert_layer_offset", c_int64),
        ("attn_layer_period", c_int64),
        ("attn_layer_offset", c_int64),
        ("mamba_d_state", c_int64),
        ("mamba_d_conv", c_int64),
        ("mamba_expand", c_int64),
        ("mamba_d_inner", c_int64),
        ("mamba_dt_rank", c_int64),
        ("mamba_conv_bias", c_bool),
        ("mamba_proj_bias", c_bool),
        ("mamba_inner_layernorms", c_bool),
        ("tie_word_embeddings", c_bool),
        ("rms_norm_eps", c_double),
        ("max_position_embeddings", c_int64),
        ("sliding_window", c_int64),
        ("pad_token_id", c_int64),
        ("bos_token_id", c_int64),
        ("eos_token_ids", c_int64 * MAX_EOS_IDS),
        ("n_eos_token_ids", c_int64),
        ("torch_dtype", c_int),
        ("n_attention_layers", c_int64),
        ("n_mamba_layers", c_int64),
        ("n_moe_layers", c_int64),
        ("n_dense_layers", c_int64),
    ]


class jamba_model_params(Structure):
    _fields_ = [
        ("weights", c_int),
        ("allow_unexpected_tensors", c_bool),
        ("check_finite", c_bool),
        ("experts", c_int),
        ("mlp", c_int),
        ("n_threads", c_int32),
        ("log", c_void_p),            # callbacks: not used from Python
        ("log_data", c_void_p),
        ("progress", c_void_p),
        ("progress_data", c_void_p),
        ("mixers", c_int),            # appended after 0.1.0, in jamba.h's order
        ("lm_head", c_int),
    ]


class jamba_context_params(Structure):
    _fields_ = [
        ("n_seq_max", c_int32),
        ("n_ctx", c_int64),
        ("n_batch", c_int64),
        ("n_threads", c_int32),
        ("n_logits_max", c_int64),
        ("device", c_int),
        ("gpu_index", c_int32),
        ("gpu_dtype", c_int),
        ("gpu_graphs", c_bool),
        ("kv_dtype", c_int),
        ("gpu_memory", c_uint64),
        ("n_gpus", c_int32),
        ("n_nodes", c_int32),
        ("node_rank", c_int32),
        ("nccl_id_file", c_char_p),
        ("nccl_id", c_char_p),
        ("cpu_activations", c_int),
    ]


class jamba_seq_input(Structure):
    _fields_ = [
        ("seq", c_int32),
        ("tokens", POINTER(c_int32)),
        ("n_tokens", c_int64),
        ("logits", c_int),
    ]


class jamba_sampler_params(Structure):
    _fields_ = [
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repetition_penalty", c_float),
        ("presence_penalty", c_float),
        ("penalty_last_n", c_int32),
        ("seed", c_uint64),
    ]


class jamba_layer_info(Structure):
    _fields_ = [("mixer", c_int), ("ffn", c_int), ("n_experts", c_int64)]


MIXER_MAMBA, MIXER_ATTENTION = 0, 1
FFN_DENSE, FFN_MOE = 0, 1

# Internals (research): the layer hook, the capture, router statistics.
LAYER_HOOK = ctypes.CFUNCTYPE(c_bool, c_void_p, c_int64, c_int64, POINTER(c_float), c_int64, c_int64)


class jamba_capture(Structure):
    _fields_ = [
        ("rows", c_int64),
        ("hidden", POINTER(c_float)),
        ("hidden_index", POINTER(c_int64)),
        ("n_hidden", c_int64),
        ("router_logits", POINTER(c_float)),
        ("hook", LAYER_HOOK),
        ("hook_data", c_void_p),
    ]


class jamba_router_stats(Structure):
    _fields_ = [
        ("rows", c_int64),
        ("n_experts", c_int64),
        ("top_k", c_int64),
        ("mean_entropy", c_double),
        ("top_k_share", c_double),
        ("balance_loss", c_double),
    ]


STRUCTS = [jamba_error, jamba_config, jamba_model_params, jamba_context_params, jamba_seq_input,
           jamba_sampler_params, jamba_layer_info, jamba_capture, jamba_router_stats]

_ERR = POINTER(jamba_error)
_I32P = POINTER(c_int32)
_I64P = POINTER(c_int64)
_F32P = POINTER(c_float)

# name: (restype, argtypes)
_PROTOTYPES = {
    "jamba_version": (c_char_p, []),
    "jamba_status_string": (c_char_p, [c_int]),
    "jamba_model_params_init_sized": (None, [POINTER(jamba_model_params), c_size_t]),
    "jamba_model_load_sized": (c_int, [c_char_p, POINTER(jamba_model_params), c_size_t, POINTER(c_void_p), _ERR]),
    "jamba_model_free": (None, [c_void_p]),
    "jamba_model_config": (POINTER(jamba_config), [c_void_p]),
    "jamba_model_path": (c_char_p, [c_void_p]),
    "jamba_context_params_init_sized": (None, [POINTER(jamba_context_params), c_size_t]),
    "jamba_context_create_sized": (c_int, [c_void_p, POINTER(jamba_context_params), c_size_t, POINTER(c_void_p),
                                           _ERR]),
    "jamba_context_free": (None, [c_void_p]),
    "jamba_decode_sized": (c_int, [c_void_p, POINTER(jamba_seq_input), c_int64, c_size_t, _ERR]),
    "jamba_embed": (c_int, [c_void_p, c_int32, _I32P, c_int64, c_int, POINTER(c_float), _ERR]),
    "jamba_logits": (POINTER(c_float), [c_void_p, c_int64, _I64P]),
    "jamba_seq_length": (c_int64, [c_void_p, c_int32]),
    "jamba_seq_reset": (c_int, [c_void_p, c_int32, _ERR]),
    "jamba_seq_fork": (c_int, [c_void_p, c_int32, c_int32, _ERR]),
    "jamba_seq_state_size": (c_int, [c_void_p, c_int32, POINTER(c_size_t), _ERR]),
    "jamba_seq_state_get": (c_int, [c_void_p, c_int32, c_void_p, c_size_t, POINTER(c_size_t), _ERR]),
    "jamba_seq_state_set": (c_int, [c_void_p, c_int32, c_void_p, c_size_t, _ERR]),
    "jamba_seq_save": (c_int, [c_void_p, c_int32, c_char_p, _ERR]),
    "jamba_seq_restore": (c_int, [c_void_p, c_int32, c_char_p, _ERR]),
    "jamba_tokenizer_load": (c_int, [c_char_p, POINTER(c_void_p), _ERR]),
    "jamba_tokenizer_free": (None, [c_void_p]),
    "jamba_tokenizer_eos": (_I32P, [c_void_p, _I64P]),
    "jamba_tokenizer_max_ids": (c_int64, [c_void_p, c_size_t]),
    "jamba_tokenize": (c_int, [c_void_p, c_char_p, c_size_t, c_int, _I32P, c_int64, _I64P, _ERR]),
    "jamba_detokenize": (c_int, [c_void_p, _I32P, c_int64, c_bool, c_char_p, c_size_t, POINTER(c_size_t), _ERR]),
    "jamba_stream_decoder_create": (c_int, [c_void_p, c_bool, POINTER(c_void_p), _ERR]),
    "jamba_stream_decoder_free": (None, [c_void_p]),
    "jamba_stream_decoder_push": (c_int, [c_void_p, c_int32, POINTER(c_char_p), POINTER(c_size_t), _ERR]),
    "jamba_stream_decoder_flush": (c_int, [c_void_p, POINTER(c_char_p), POINTER(c_size_t), _ERR]),
    "jamba_sampler_params_init_sized": (None, [POINTER(jamba_sampler_params), c_size_t]),
    "jamba_sampler_create_sized": (c_int, [POINTER(jamba_sampler_params), c_size_t, c_int64, POINTER(c_void_p),
                                           _ERR]),
    "jamba_sampler_free": (None, [c_void_p]),
    "jamba_sampler_accept": (None, [c_void_p, c_int32]),
    "jamba_decode_sample_sized": (c_int, [c_void_p, POINTER(jamba_seq_input), c_int64, c_size_t,
                                          POINTER(c_void_p), _I32P, _ERR]),
    "jamba_model_layer_sized": (c_int, [c_void_p, c_int64, POINTER(jamba_layer_info), c_size_t, _ERR]),
    "jamba_context_set_capture_sized": (c_int, [c_void_p, POINTER(jamba_capture), c_size_t, _ERR]),
    "jamba_context_captured_rows": (c_int64, [c_void_p]),
    "jamba_compute_router_stats_sized": (c_int, [_F32P, c_int64, c_int64, c_int64, _I64P, POINTER(c_double),
                                                 POINTER(jamba_router_stats), c_size_t, _ERR]),
    "jamba_seq_mamba_state": (c_int, [c_void_p, c_int32, c_int64, _F32P, _F32P, _ERR]),
    "jamba_seq_set_mamba_state": (c_int, [c_void_p, c_int32, c_int64, _F32P, _F32P, _ERR]),
}


def _add_header_wrappers(lib):
    """The C header's static inline wrappers, which pass the struct sizes (include/jamba.h, "ABI"): the
    structs above are this binding's layout, and the library reads or fills exactly their sizes."""
    def defaults(struct, init):
        def make():
            p = struct()
            init(ctypes.byref(p), ctypes.sizeof(struct))
            return p
        return make

    lib.jamba_model_default_params = defaults(jamba_model_params, lib.jamba_model_params_init_sized)
    lib.jamba_context_default_params = defaults(jamba_context_params, lib.jamba_context_params_init_sized)
    lib.jamba_sampler_default_params = defaults(jamba_sampler_params, lib.jamba_sampler_params_init_sized)
    lib.jamba_model_load = lambda path, params, out, err: lib.jamba_model_load_sized(
        path, params, ctypes.sizeof(jamba_model_params), out, err)
    lib.jamba_context_create = lambda model, params, out, err: lib.jamba_context_create_sized(
        model, params, ctypes.sizeof(jamba_context_params), out, err)
    lib.jamba_sampler_create = lambda params, vocab, out, err: lib.jamba_sampler_create_sized(
        params, ctypes.sizeof(jamba_sampler_params), vocab, out, err)
    lib.jamba_decode = lambda ctx, inputs, n, err: lib.jamba_decode_sized(
        ctx, inputs, n, ctypes.sizeof(jamba_seq_input), err)
    lib.jamba_decode_sample = lambda ctx, inputs, n, samplers, tokens, err: lib.jamba_decode_sample_sized(
        ctx, inputs, n, ctypes.sizeof(jamba_seq_input), samplers, tokens, err)
    lib.jamba_context_set_capture = lambda ctx, cap, err: lib.jamba_context_set_capture_sized(
        ctx, cap, ctypes.sizeof(jamba_capture) if cap else 0, err)
    lib.jamba_compute_router_stats = lambda logits, rows, E, k, load, prob, out, err: \
        lib.jamba_compute_router_stats_sized(logits, rows, E, k, load, prob, out, ctypes.sizeof(jamba_router_stats),
                                             err)


def _candidates():
    for name in ("libjamba.so", "libjamba.dylib"):
        path = os.path.join(_HERE, name)
        if os.path.exists(path):
            yield path
    env = os.environ.get("JAMBA_LIBRARY")
    if env:
        yield env


def _load():
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        _add_header_wrappers(lib)
        return lib, path
    raise ImportError("jamba: libjamba.so not found in %s and $JAMBA_LIBRARY is %s%s" % (
        _HERE, "unset" if "JAMBA_LIBRARY" not in os.environ else "not loadable",
        (": " + "; ".join(tried)) if tried else ""))


lib, library_path = _load()

/*
 * jamba.h — the public C API of the Jamba runtime.
 *
 * This is the only installed header. Anything not declared here is not API.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *
 *   Errors     Fallible functions return a jamba_status (0 = JAMBA_OK, negative = error) and take an
 *              optional `jamba_error *err` as their last argument. When `err` is non-NULL and the call
 *              fails, err->status holds the same status and err->message one human-readable line that
 *              names the file, tensor or key at fault. On success `err` is left untouched. Passing NULL
 *              is allowed. The library never calls exit() or abort() on bad input.
 *   Ownership  Objects are opaque handles created by one constructor and released by one destructor;
 *              destructors accept NULL. Pointers returned into library memory state how long they stay
 *              valid.
 *   Threads    There is no global mutable state. Distinct objects may be used from different threads at
 *              the same time. A jamba_model is immutable after loading: every const query on one model
 *              may run concurrently from any number of threads.
 *   Sizes      Counts, sizes and indices are 64-bit.
 *   ABI        Within a major version the library stays binary compatible with callers built against any
 *              earlier header of that version. Structs grow only at their end, and every struct that
 *              crosses the API travels with its size: the calls below that take or fill a struct are
 *              static inline wrappers that pass sizeof to an exported `*_sized` function. A caller built
 *              against an older header passes a shorter struct: the library reads its fields and uses the
 *              defaults for the newer ones (or writes only the bytes the caller has). A caller built
 *              against a newer header that sets a field this library does not know gets
 *              JAMBA_ERR_UNSUPPORTED instead of a silently ignored setting. Library-owned structs returned
 *              by pointer (jamba_config) only grow at the end. jamba_error is frozen. Bindings that call
 *              the `*_sized` functions directly (ctypes) pass the sizes of the structs they define.
 *              Enums are append-only. A call due to go away is marked JAMBA_DEPRECATED for at least one
 *              minor version first.
 *
 * Dimension letters used in shape comments: V vocab, H hidden_size, I intermediate_size, E experts,
 * n_h attention heads, n_kv KV heads, d_h head_dim, D_i Mamba inner width, N d_state, K d_conv, R dt_rank.
 */
#ifndef JAMBA_H
#define JAMBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define JAMBA_API
#else
#define JAMBA_API __attribute__((visibility("default")))
#endif

/* Marks a call that will be removed in the next major version; the message names its replacement. */
#if defined(__GNUC__) || defined(__clang__)
#define JAMBA_DEPRECATED(message) __attribute__((deprecated(message)))
#else
#define JAMBA_DEPRECATED(message)
#endif

/* A token id: an index into the vocabulary, [0, vocab_size). */
typedef int32_t jamba_token;

/* A caller's cancellation test, polled during long calls (decoding, saving): true stops the call with
 * JAMBA_ERR_ABORTED. It runs on the calling thread and must not call into the object being worked on. */
typedef bool (*jamba_abort_fn)(void *user_data);

/* ------------------------------------------------------------------------------------------------
 * Version
 * ---------------------------------------------------------------------------------------------- */

#define JAMBA_VERSION_MAJOR 0
#define JAMBA_VERSION_MINOR 1
#define JAMBA_VERSION_PATCH 0
/* major * 10000 + minor * 100 + patch. Versions with the same major number are ABI compatible. */
#define JAMBA_VERSION_NUMBER (JAMBA_VERSION_MAJOR * 10000 + JAMBA_VERSION_MINOR * 100 + JAMBA_VERSION_PATCH)
#define JAMBA_VERSION_STRING "0.1.0"

/* The library's version as "MAJOR.MINOR.PATCH"; a static string. Compare with JAMBA_VERSION_STRING to
 * check that header and library agree. */
JAMBA_API const char *jamba_version(void);
/* The library's JAMBA_VERSION_NUMBER. */
JAMBA_API int jamba_version_number(void);

/* ------------------------------------------------------------------------------------------------
 * Status and errors
 * ---------------------------------------------------------------------------------------------- */

/* Append-only: values are never renumbered or reused. */
typedef enum jamba_status {
    JAMBA_OK = 0,
    JAMBA_ERR_INVALID_ARGUMENT = -1, /* a caller-supplied argument is out of range or NULL */
    JAMBA_ERR_OUT_OF_MEMORY = -2,    /* a host allocation failed */
    JAMBA_ERR_IO = -3,               /* a file could not be opened, read or mapped */
    JAMBA_ERR_BAD_CHECKPOINT = -4,   /* a safetensors file or shard index is malformed */
    JAMBA_ERR_BAD_CONFIG = -5,       /* config.json is malformed or describes an invalid model */
    JAMBA_ERR_WEIGHT_MISMATCH = -6,  /* tensors missing, unexpected, or of the wrong shape or dtype */
    JAMBA_ERR_UNSUPPORTED = -7,      /* well-formed input this version cannot handle */
    JAMBA_ERR_NO_WEIGHTS = -8,       /* the model was loaded for planning only (config without weights) */
    JAMBA_ERR_OVERFLOW = -9,         /* a size computation overflows 64 bits */
    JAMBA_ERR_NO_DEVICE = -10,       /* no usable accelerator (none present, or built without CUDA) */
    JAMBA_ERR_DEVICE = -11,          /* the accelerator runtime reported an error */
    JAMBA_ERR_CONTEXT_FULL = -12,    /* a sequence would exceed the context's n_ctx tokens */
    JAMBA_ERR_BAD_STATE_FILE = -13,  /* a saved sequence state is malformed or belongs to another model */
    JAMBA_ERR_BAD_TOKENIZER = -14,   /* tokenizer.json / tokenizer.model is malformed */
    JAMBA_ERR_BUFFER_TOO_SMALL = -15, /* an output buffer cannot hold the result; the size needed is returned */
    JAMBA_ERR_NUMERIC = -16,         /* logits were NaN or infinite where a number was needed */
    JAMBA_ERR_ABORTED = -17,         /* the context's abort callback stopped the call */
} jamba_status;

/* A short English name for a status ("out of memory"); a static string, never NULL. */
JAMBA_API const char *jamba_status_string(jamba_status status);

#define JAMBA_ERROR_MESSAGE_SIZE 1024

/* Caller-owned error report. Zero-initialise it or leave it as is: the library only writes it on failure. */
typedef struct jamba_error {
    jamba_status status;                     /* the failing call's status */
    char message[JAMBA_ERROR_MESSAGE_SIZE];  /* one line, NUL-terminated, truncated to fit */
} jamba_error;

/* ------------------------------------------------------------------------------------------------
 * Element types (the safetensors dtype names)
 * ---------------------------------------------------------------------------------------------- */

/* Append-only. */
typedef enum jamba_dtype {
    JAMBA_DTYPE_UNKNOWN = 0,
    JAMBA_DTYPE_F32,
    JAMBA_DTYPE_F16,
    JAMBA_DTYPE_BF16,
    JAMBA_DTYPE_F64,
    JAMBA_DTYPE_I64,
    JAMBA_DTYPE_I32,
    JAMBA_DTYPE_I16,
    JAMBA_DTYPE_I8,
    JAMBA_DTYPE_U64,
    JAMBA_DTYPE_U32,
    JAMBA_DTYPE_U16,
    JAMBA_DTYPE_U8,
    JAMBA_DTYPE_BOOL,
    JAMBA_DTYPE_F8_E4M3,
    JAMBA_DTYPE_F8_E5M2,
    JAMBA_DTYPE_COUNT_ /* not a dtype: the number of values above */
} jamba_dtype;

/* The safetensors name of a dtype ("BF16"), or "UNKNOWN"; a static string. */
JAMBA_API const char *jamba_dtype_name(jamba_dtype dtype);
/* Bytes per element, or 0 for JAMBA_DTYPE_UNKNOWN. */
JAMBA_API size_t jamba_dtype_size(jamba_dtype dtype);

/* ------------------------------------------------------------------------------------------------
 * Model configuration (config.json, validated, with the reference defaults applied)
 * ---------------------------------------------------------------------------------------------- */

#define JAMBA_MAX_EOS_IDS 16

typedef struct jamba_config {
    int64_t vocab_size;              /* V: rows of the embedding and of lm_head */
    int64_t hidden_size;             /* H */
    int64_t intermediate_size;       /* I: width of the dense MLP and of each expert */
    int64_t num_hidden_layers;       /* L */
    int64_t num_attention_heads;     /* n_h */
    int64_t num_key_value_heads;     /* n_kv (null in config.json means n_h) */
    int64_t head_dim;                /* d_h = H / n_h (derived; 0 in a model without attention layers whose
                                        n_h does not divide H) */
    int64_t num_experts;             /* E: experts per MoE layer; 1 means a fully dense model */
    int64_t num_experts_per_tok;     /* top-k */
    int64_t expert_layer_period;     /* layer i is MoE iff i % period == offset and E > 1 */
    int64_t expert_layer_offset;
    int64_t attn_layer_period;       /* layer i is attention iff i % period == offset */
    int64_t attn_layer_offset;
    int64_t mamba_d_state;           /* N */
    int64_t mamba_d_conv;            /* K */
    int64_t mamba_expand;
    int64_t mamba_d_inner;           /* D_i = expand * H (derived) */
    int64_t mamba_dt_rank;           /* R ("auto" resolved to ceil(H / 16)) */
    bool mamba_conv_bias;            /* conv1d has a bias */
    bool mamba_proj_bias;            /* in_proj and out_proj have biases */
    bool mamba_inner_layernorms;     /* dt/B/C RMSNorms present (always true in the HF port) */
    bool tie_word_embeddings;        /* lm_head shares the embedding matrix */
    double rms_norm_eps;             /* every RMSNorm */
    int64_t max_position_embeddings; /* informational; nothing is position-indexed */
    int64_t sliding_window;          /* 0 = none (every released config) */
    int64_t pad_token_id;            /* -1 when absent or null */
    int64_t bos_token_id;            /* -1 when absent or null */
    int64_t eos_token_ids[JAMBA_MAX_EOS_IDS]; /* eos_token_id as int or list */
    int64_t n_eos_token_ids;
    jamba_dtype torch_dtype;         /* the storage dtype the config declares, or UNKNOWN */
    /* Derived schedule totals. */
    int64_t n_attention_layers;
    int64_t n_mamba_layers;
    int64_t n_moe_layers;
    int64_t n_dense_layers;
} jamba_config;

typedef enum jamba_mixer_kind { JAMBA_MIXER_MAMBA = 0, JAMBA_MIXER_ATTENTION = 1 } jamba_mixer_kind;
typedef enum jamba_ffn_kind { JAMBA_FFN_DENSE = 0, JAMBA_FFN_MOE = 1 } jamba_ffn_kind;

typedef struct jamba_layer_info {
    jamba_mixer_kind mixer;
    jamba_ffn_kind ffn;
    int64_t n_experts; /* E for MoE layers, 1 for dense layers */
} jamba_layer_info;

/* ------------------------------------------------------------------------------------------------
 * Model: load, free, query
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_model jamba_model;

typedef enum jamba_weights_mode {
    JAMBA_WEIGHTS_REQUIRED = 0,   /* the folder must hold safetensors weights */
    JAMBA_WEIGHTS_IF_PRESENT = 1, /* load weights when the folder has them, else plan from config only */
    JAMBA_WEIGHTS_NONE = 2,       /* read config.json only, even when weights exist */
} jamba_weights_mode;

/* How a group of linear layers is held in memory (jamba_model_params: experts, mlp, mixers, lm_head). */
typedef enum jamba_weight_format {
    JAMBA_FORMAT_STORED = 0, /* as the checkpoint stores them (float, or already I8 / F8_E4M3 + scales) */
    JAMBA_FORMAT_INT8 = 1,   /* int8 weight-only, per output row, symmetric, fp32 scales (ExpertsInt8's
                                scheme: s = max|row| / 127, q = round(w / s)); quantized while loading
                                unless already int8 */
} jamba_weight_format;

/* Severity of a library log message. */
typedef enum jamba_log_level {
    JAMBA_LOG_ERROR = 0,
    JAMBA_LOG_WARN = 1, /* load warnings (also listed by jamba_model_warning) */
    JAMBA_LOG_INFO = 2, /* one line per load and per context created: what was done, sizes, time */
    JAMBA_LOG_DEBUG = 3,
} jamba_log_level;

/* Receives one line (no trailing newline; valid during the call only). Called on the thread making the
 * call that logs; with a model shared by threads, from any of them: it must be thread-safe. */
typedef void (*jamba_log_fn)(jamba_log_level level, const char *message, void *user_data);

/* Load progress in [0, 1], rising, 1 exactly once at the end of a successful load; return false to cancel
 * the load (it then fails with JAMBA_ERR_ABORTED and frees everything). Called on the loading thread. */
typedef bool (*jamba_progress_fn)(float progress, void *user_data);

typedef struct jamba_model_params {
    jamba_weights_mode weights;    /* default JAMBA_WEIGHTS_REQUIRED */
    bool allow_unexpected_tensors; /* default false: tensors the config does not imply are an error;
                                      when true they are skipped and listed as warnings */
    bool check_finite;             /* default false: when true, scan every weight for NaN/Inf at load
                                      and fail naming the tensor and the first bad element */
    jamba_weight_format experts;   /* MoE expert matrices; default STORED */
    jamba_weight_format mlp;       /* dense MLP matrices; default STORED */
    int32_t n_threads;             /* threads for load-time work (quantization); 0 = the online CPUs */
    jamba_log_fn log;              /* default NULL: no messages. Kept by the model for its contexts */
    void *log_data;
    jamba_progress_fn progress;    /* default NULL */
    void *progress_data;
    /* Appended after 0.1.0: a caller built against an older header gets STORED for both. */
    jamba_weight_format mixers;    /* the Mamba projections (in_proj, x_proj, dt_proj, out_proj) and the
                                      attention projections (q/k/v/o_proj); default STORED */
    jamba_weight_format lm_head;   /* the output projection; default STORED. With tie_word_embeddings the
                                      LM head is the embedding matrix: INT8 quantizes that shared matrix, so
                                      the embedding lookup reads the int8 row times its scale too. Untied,
                                      the embedding stays as stored. */
} jamba_model_params;

/*
 * The weight formats: experts, mlp, mixers and lm_head each pick one group of linear layers; INT8 holds
 * every matrix of the group as int8 weight-only (one fp32 scale per output row, symmetric, s = max|row| /
 * 127, q = round-half-even(w / s)), quantized while loading (a matrix the checkpoint already stores as I8 is
 * kept as it is). Biases, norms, the conv, A_log, D, the routers and (untied) the embedding stay as stored,
 * so all four INT8 holds every projection matrix int8 (as llama.cpp's Q8_0 files do, there with one scale
 * per 32 values). A value outside the enum is JAMBA_ERR_INVALID_ARGUMENT. Mixers or lm_head INT8 run on
 * the CPU backend only: a CUDA context (one GPU or several) for a model loaded so is refused with
 * JAMBA_ERR_UNSUPPORTED naming the option (a checkpoint that stores those matrices as I8, loaded as STORED,
 * is widened to the device dtype as FP8 ones are).
 */

/* Fill `size` bytes of *params with the defaults (the wrapper below passes sizeof). */
JAMBA_API void jamba_model_params_init_sized(jamba_model_params *params, size_t size);
/* Default parameters. Always start from these and change fields, so new fields get sane values. */
static inline jamba_model_params jamba_model_default_params(void) {
    jamba_model_params p;
    jamba_model_params_init_sized(&p, sizeof p);
    return p;
}

/*
 * Write the model's weights as they are held — after any load-time int8 quantization — to
 * out_dir/model.safetensors with canonical Hugging Face names (a quantized matrix as I8 or F8_E4M3 plus
 * "<name>_scale", F32, one per output row), and copy config.json (noting the quantization) and the
 * tokenizer files beside it. Loading the result needs no requantization (`jamba quantize` is this call).
 * The folder appears whole or not at all: it is written as a temporary sibling ("out_dir.tmp.XXXXXX"),
 * synced and renamed into place, and removed on any failure. out_dir must be missing or an empty folder;
 * jamba_model_save_replacing replaces an existing folder whole (the old one is removed only after the new
 * one is in place). The model's own folder is refused.
 */
JAMBA_API jamba_status jamba_model_save(const jamba_model *model, const char *out_dir, jamba_error *err);
JAMBA_API jamba_status jamba_model_save_replacing(const jamba_model *model, const char *out_dir, jamba_error *err);

/* Cancellable saves: abort_fn (may be NULL) is polled before the write, between tensors, before each file
 * is synced and just before the rename; when it returns true the save fails with JAMBA_ERR_ABORTED and
 * leaves nothing behind (out_dir as it was). A program stops a save on SIGINT by setting its own flag in
 * the handler and returning it here (as `jamba quantize` does); the library keeps no such state. */
typedef struct jamba_save_params {
    bool replace;             /* default false: as jamba_model_save; true: as jamba_model_save_replacing */
    jamba_abort_fn abort_fn;  /* default NULL */
    void *abort_data;
} jamba_save_params;

JAMBA_API void jamba_save_params_init_sized(jamba_save_params *params, size_t size);
static inline jamba_save_params jamba_save_default_params(void) {
    jamba_save_params p;
    jamba_save_params_init_sized(&p, sizeof p);
    return p;
}
JAMBA_API jamba_status jamba_model_save_with_sized(const jamba_model *model, const char *out_dir,
                                                   const jamba_save_params *params, size_t params_size,
                                                   jamba_error *err);
static inline jamba_status jamba_model_save_with(const jamba_model *model, const char *out_dir,
                                                 const jamba_save_params *params, jamba_error *err) {
    return jamba_model_save_with_sized(model, out_dir, params, sizeof *params, err);
}

/*
 * Load a model from a Hugging Face folder: config.json plus model.safetensors, or
 * model.safetensors.index.json with its shards. model.safetensors wins when both exist.
 * Each safetensors file is validated (header, dtypes, shapes, offsets tiling the data exactly) before
 * it is mapped; with an index, the index is then cross-checked against the mapped shards' headers.
 * Weights are memory-mapped read-only and every tensor the config implies is bound by name (Hugging
 * Face names, AI21's March-2024 names and stacked expert layouts are accepted). With
 * mamba_inner_layernorms = false the dt/B/C norms are applied when the checkpoint stores them and
 * skipped otherwise; a warning says which.
 *
 * dir     path of the folder; not retained.
 * params  NULL for the defaults.
 * out     receives the model on success, NULL on failure.
 * Returns JAMBA_OK, or an error naming the file, key or tensor. On failure nothing is leaked.
 * Thread-safety: any number of loads may run concurrently.
 */
JAMBA_API jamba_status jamba_model_load_sized(const char *dir, const jamba_model_params *params, size_t params_size,
                                              jamba_model **out, jamba_error *err);
static inline jamba_status jamba_model_load(const char *dir, const jamba_model_params *params, jamba_model **out,
                                            jamba_error *err) {
    return jamba_model_load_sized(dir, params, sizeof *params, out, err);
}

/* Unmap and free everything the model owns. NULL is a no-op. No pointer obtained from the model stays
 * valid afterwards. Must not race with other calls on the same model. */
JAMBA_API void jamba_model_free(jamba_model *model);

/* The validated configuration; valid until jamba_model_free. */
JAMBA_API const jamba_config *jamba_model_config(const jamba_model *model);

/* True when weights were loaded; false for a planning-only model (config.json alone). */
JAMBA_API bool jamba_model_has_weights(const jamba_model *model);

/* The model folder as given to jamba_model_load; valid until jamba_model_free. */
JAMBA_API const char *jamba_model_path(const jamba_model *model);

/* Layer i's mixer and FFN kind. JAMBA_ERR_INVALID_ARGUMENT when i is outside [0, L). */
JAMBA_API jamba_status jamba_model_layer_sized(const jamba_model *model, int64_t layer, jamba_layer_info *out,
                                               size_t out_size, jamba_error *err);
static inline jamba_status jamba_model_layer(const jamba_model *model, int64_t layer, jamba_layer_info *out,
                                             jamba_error *err) {
    return jamba_model_layer_sized(model, layer, out, sizeof *out, err);
}

/* Parameter counts derived from the configuration (independent of the stored dtype). */
typedef struct jamba_param_counts {
    uint64_t total;       /* every parameter, the tied head counted once */
    uint64_t active;      /* parameters used per token: top-k experts per MoE layer */
    uint64_t embedding;   /* embed_tokens */
    uint64_t lm_head;     /* 0 when tied */
    uint64_t attention;   /* q, k, v, o projections */
    uint64_t mamba;       /* every Mamba mixer tensor, inner norms included */
    uint64_t dense_mlp;   /* dense SwiGLU MLPs */
    uint64_t experts;     /* all experts of all MoE layers */
    uint64_t routers;
    uint64_t norms;       /* input, pre-FFN and final RMSNorms */
} jamba_param_counts;

JAMBA_API jamba_status jamba_model_param_counts_sized(const jamba_model *model, jamba_param_counts *out,
                                                      size_t out_size, jamba_error *err);
static inline jamba_status jamba_model_param_counts(const jamba_model *model, jamba_param_counts *out,
                                                    jamba_error *err) {
    return jamba_model_param_counts_sized(model, out, sizeof *out, err);
}

/* One tensor of the loaded checkpoint, in binding order (embedding, layers, final norm, head). */
typedef struct jamba_tensor_info {
    const char *name;      /* the name as stored in the file; valid until jamba_model_free */
    const char *file;      /* the shard's file name (no directory); valid until jamba_model_free */
    jamba_dtype dtype;
    int rank;
    int64_t shape[8];      /* shape[0 .. rank-1] */
    uint64_t n_elements;
    uint64_t n_bytes;
    uint64_t file_offset;  /* absolute byte offset of the data in its file */
    bool aligned;          /* the data offset is a multiple of the element size */
} jamba_tensor_info;

/* Number of tensors of the checkpoint (0 for a planning-only model). */
JAMBA_API int64_t jamba_model_n_tensors(const jamba_model *model);
/* Tensor i of the inventory; JAMBA_ERR_INVALID_ARGUMENT when i is out of range. */
JAMBA_API jamba_status jamba_model_tensor_sized(const jamba_model *model, int64_t index, jamba_tensor_info *out,
                                                size_t out_size, jamba_error *err);
static inline jamba_status jamba_model_tensor(const jamba_model *model, int64_t index, jamba_tensor_info *out,
                                              jamba_error *err) {
    return jamba_model_tensor_sized(model, index, out, sizeof *out, err);
}

/* Non-fatal notes gathered while loading (unknown config keys, ignored fields, skipped tensors).
 * Strings are valid until jamba_model_free. */
JAMBA_API int64_t jamba_model_n_warnings(const jamba_model *model);
JAMBA_API const char *jamba_model_warning(const jamba_model *model, int64_t index);

/* ------------------------------------------------------------------------------------------------
 * Memory estimate for a context of n_ctx tokens per sequence
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_memory_params {
    int64_t n_ctx;             /* tokens per sequence (KV cache length); default max_position_embeddings */
    int64_t n_seq;             /* sequences held at once; default 1 */
    jamba_dtype kv_dtype;      /* KV cache element type; default BF16 (F8_E4M3 counts its per-head scales) */
    jamba_dtype conv_dtype;    /* Mamba conv window element type; default BF16 (the SSM state is F32) */
    jamba_dtype weight_dtype;  /* planning-only models: the weights' dtype; default the config's
                                  torch_dtype, else BF16. Ignored when weights are loaded. */
} jamba_memory_params;

typedef struct jamba_memory_estimate {
    uint64_t weight_bytes;              /* bytes of every weight as held (after load-time int8 quantization) */
    uint64_t kv_bytes_per_token;        /* per sequence, all attention layers, K and V */
    uint64_t kv_bytes;                  /* n_seq * n_ctx * kv_bytes_per_token */
    uint64_t mamba_state_bytes_per_seq; /* conv windows (K-1 inputs) + F32 SSM states, all Mamba layers */
    uint64_t mamba_state_bytes;         /* n_seq * mamba_state_bytes_per_seq */
    uint64_t total_bytes;               /* weights + KV + Mamba state (activations not included) */
} jamba_memory_estimate;

JAMBA_API void jamba_memory_params_init_sized(const jamba_model *model, jamba_memory_params *params, size_t size);
static inline jamba_memory_params jamba_memory_default_params(const jamba_model *model) {
    jamba_memory_params p;
    jamba_memory_params_init_sized(model, &p, sizeof p);
    return p;
}
JAMBA_API jamba_status jamba_model_memory_sized(const jamba_model *model, const jamba_memory_params *params,
                                                size_t params_size, jamba_memory_estimate *out, size_t out_size,
                                                jamba_error *err);
static inline jamba_status jamba_model_memory(const jamba_model *model, const jamba_memory_params *params,
                                              jamba_memory_estimate *out, jamba_error *err) {
    return jamba_model_memory_sized(model, params, sizeof *params, out, sizeof *out, err);
}

/* ------------------------------------------------------------------------------------------------
 * Contexts: sequences, their state, and the forward pass
 *
 * A context holds up to n_seq_max sequences (ids 0 .. n_seq_max-1), each with its own state: a KV cache
 * for every attention layer and, for every Mamba layer, the conv window (d_conv-1 past inputs) and the
 * fp32 SSM state. All of it, and every workspace, is allocated when the context is created; decoding
 * never allocates.
 *
 * Lifetime: the model must outlive every context created from it.
 * Threads: a context must be used by one thread at a time. Distinct contexts (also of the same model)
 * may run concurrently. A context runs its own worker threads (n_threads) inside jamba_decode.
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_context jamba_context;

/* Where a context runs the model. */
typedef enum jamba_device_type {
    JAMBA_DEVICE_CPU = 0,  /* the fp32 CPU reference path */
    JAMBA_DEVICE_CUDA = 1, /* the CUDA backend (builds with JAMBA_CUDA) */
} jamba_device_type;

/* The context length of n_ctx = 0: min(max_position_embeddings, JAMBA_DEFAULT_N_CTX). The one default
 * every caller (the CLI included) uses. */
#define JAMBA_DEFAULT_N_CTX 4096

typedef struct jamba_context_params {
    int32_t n_seq_max; /* sequences held at once; default 1 */
    int64_t n_ctx;     /* most tokens one sequence can hold; 0 = min(max_position_embeddings,
                          JAMBA_DEFAULT_N_CTX) */
    int64_t n_batch;   /* most tokens per internal step; longer inputs run in steps of this size
                          (chunked prefill, constant workspace); 0 (default) = 512 on the CPU, and on CUDA
                          the largest of 4096, 2048, ..., 16 whose workspace fits (jamba_context_plan) */
    int32_t n_threads; /* CPU worker threads; 0 = the online CPUs (at most 64); default 0 */
    int64_t n_logits_max; /* most logit rows one jamba_decode may return; 0 = max(n_batch, n_seq_max), or
                             with a chosen CUDA n_batch max(min(n_batch, 512), n_seq_max) */
    jamba_device_type device; /* default JAMBA_DEVICE_CPU */
    int32_t gpu_index;     /* CUDA device ordinal when device is CUDA; default 0 */
    jamba_dtype gpu_dtype; /* CUDA: BF16 (default) runs bf16 weights and activations with fp32 accumulation,
                              fp32 SSM state and fp32 softmax; F32 runs fp32 throughout (no TF32), the mode
                              checked against the CPU path */
    bool gpu_graphs;       /* CUDA: replay decode steps as CUDA graphs; default true */
    jamba_dtype kv_dtype;  /* CUDA: the KV cache's element type: UNKNOWN (default) = gpu_dtype, or F8_E4M3
                              (e4m3 with one fp32 scale per token and KV head: about half the bytes) */
    uint64_t gpu_memory;   /* CUDA: device bytes the context (and the weights, if not yet on the device) may
                              use; 0 (default) = the device's free memory */
    int32_t n_gpus;        /* CUDA: GPUs the model is split over (tensor and expert parallelism, docs/multi-gpu.md);
                              0 (default) or 1 = one, at most JAMBA_MAX_GPUS. jamba_context_plan_memory plans
                              each GPU (gpu_memory is then per GPU); with more than one, jamba_context_create
                              uses the NCCL backend over GPUs gpu_index .. gpu_index + n_gpus - 1 of this
                              process (JAMBA_ERR_NO_DEVICE when fewer are visible, JAMBA_ERR_UNSUPPORTED in a
                              build without NCCL). That backend has compiled but never run (docs/multi-gpu.md) */
    int32_t n_nodes;       /* CUDA, several nodes (one process each): the n_gpus GPUs are n_gpus / n_nodes on each
                              node, GPUs gpu_index .. of every node, joined over NCCL; 0 (default) or 1 = this
                              process holds all n_gpus. Never run on several nodes (docs/multi-gpu.md) */
    int32_t node_rank;     /* several nodes: this process's node, 0 .. n_nodes - 1 (default 0). Node 0 runs the
                              context as usual (its steps, sequence resets and copies go to the other nodes); a
                              context on another node only runs jamba_context_follow */
    const char *nccl_id_file; /* several nodes: a file every node sees, where node 0 writes the NCCL id (atomically;
                              removed once all joined) and the others wait for it (600 s at most); default NULL */
    const char *nccl_id;   /* several nodes, instead of the file: the NCCL id as hex, made in node 0's process
                              (jamba_nccl_unique_id) and the same on every node; NULL (default) = the
                              environment's JAMBA_NCCL_ID when set */
    /* Appended after 0.1.0: a caller built against an older header gets the default. */
    jamba_dtype cpu_activations; /* CPU: what int8 and bf16 weights multiply. F32 (default; UNKNOWN means it):
                              fp32 activations, the weights widened in registers (the reference numerics).
                              I8: int8 weights (jamba_model_params INT8) multiply activation rows quantized
                              to int8 with one scale each (symmetric, dynamic per token, as vLLM's W8A8 and,
                              per 32 values, llama.cpp's Q8_0) in integers (AVX-512 VNNI where the CPU has it).
                              BF16: bf16 weights multiply activations rounded to bf16 (as llama.cpp's BF16), in
                              pairs with fp32 sums (AVX-512 BF16's vdpbf16ps where present). Both faster and
                              less exact (docs/design.md, "low-precision activations"); weights of other types
                              are unaffected. Another dtype is JAMBA_ERR_INVALID_ARGUMENT; anything but F32 with
                              the CUDA device JAMBA_ERR_UNSUPPORTED */
} jamba_context_params;

JAMBA_API void jamba_context_params_init_sized(jamba_context_params *params, size_t size);
static inline jamba_context_params jamba_context_default_params(void) {
    jamba_context_params p;
    jamba_context_params_init_sized(&p, sizeof p);
    return p;
}

#define JAMBA_MAX_GPUS 64 /* the most GPUs one plan splits a model over */

/* One GPU's share of a context split over several (jamba_context_plan.per_gpu). */
typedef struct jamba_gpu_plan {
    uint64_t weights, kv_cache, mamba_state, workspace, total; /* as in jamba_context_plan */
    bool fits;                                                 /* total <= the plan's budget */
} jamba_gpu_plan;

/* The device memory a context would use, computed before anything is allocated (the same computation
 * jamba_context_create follows). CUDA: the weights as the device holds them (int8 experts and MLPs when
 * the model holds them so, or for a planning-only model loaded with those formats), the KV cache, the
 * Mamba state, and every workspace; the step size (prefill chunk) is chosen when n_batch is 0. The budget
 * is gpu_memory, else the device's free memory less 512 MiB (for cuBLAS internals, graphs and kernel
 * modules, which live outside the plan), else (no device present: planning) 80 GB. CPU: weights,
 * KV cache (fp32) and Mamba state; workspace is not counted and budget is 0. */
typedef struct jamba_context_plan {
    jamba_device_type device;
    uint64_t weights;      /* the weights' bytes on the device (0 when this device already holds them) */
    uint64_t kv_cache;     /* K and V of every attention layer, fp8 scales included */
    uint64_t mamba_state;  /* conv windows and SSM states */
    uint64_t workspace;    /* activations, MoE buffers, logits, step layout, cuBLAS workspace */
    uint64_t total;        /* the sum */
    uint64_t budget;       /* what it must fit in (0: not checked) */
    int64_t n_batch;       /* rows per step: the prefill chunk */
    int64_t n_logits_max;
    bool budget_queried;   /* budget is the device's free memory (else gpu_memory or the planning default) */
    bool fits;
    char advice[512];      /* when it does not fit: what would (shorter context, fewer sequences, int8, fp8 KV) */
    int32_t n_gpus;        /* CUDA: the GPUs planned (params n_gpus, at least 1); CPU: 0. With several, the
                              figures above are the fullest GPU's, budget is per GPU, and fits means every
                              GPU fits */
    jamba_gpu_plan per_gpu[JAMBA_MAX_GPUS]; /* [n_gpus]: each GPU's share, rank order */
} jamba_context_plan;

JAMBA_API jamba_status jamba_context_plan_memory_sized(const jamba_model *model, const jamba_context_params *params,
                                                       size_t params_size, jamba_context_plan *out, size_t out_size,
                                                       jamba_error *err);
static inline jamba_status jamba_context_plan_memory(const jamba_model *model, const jamba_context_params *params,
                                                     jamba_context_plan *out, jamba_error *err) {
    return jamba_context_plan_memory_sized(model, params, sizeof *params, out, sizeof *out, err);
}

/* Create a context for `model`, which must have weights (JAMBA_ERR_NO_WEIGHTS otherwise). Sizes are
 * checked before anything is allocated; JAMBA_ERR_OUT_OF_MEMORY names the bytes that did not fit.
 * CUDA contexts: the device is checked first (JAMBA_ERR_NO_DEVICE: no GPU or a build without CUDA;
 * JAMBA_ERR_DEVICE: this build's kernels do not run there, e.g. an older architecture or driver). The
 * model's weights are uploaded once per (device, gpu_dtype) and shared by its contexts until
 * jamba_model_free; the context's KV cache, Mamba state and workspaces are one device allocation. A
 * device fault during a call marks the context dead: that call and every later one return
 * JAMBA_ERR_DEVICE, and the context can only be freed. */
JAMBA_API jamba_status jamba_context_create_sized(const jamba_model *model, const jamba_context_params *params,
                                                  size_t params_size, jamba_context **out, jamba_error *err);
static inline jamba_status jamba_context_create(const jamba_model *model, const jamba_context_params *params,
                                                jamba_context **out, jamba_error *err) {
    return jamba_context_create_sized(model, params, sizeof *params, out, err);
}

/* Several nodes (n_nodes > 1). jamba_nccl_unique_id makes an NCCL id in this process, which must then be
 * node 0's and stay alive while the others join (NCCL's bootstrap runs in it), as JAMBA_NCCL_ID_HEX_SIZE - 1
 * hex digits and a NUL: pass it as every node's nccl_id (or JAMBA_NCCL_ID). JAMBA_ERR_UNSUPPORTED in a build
 * without NCCL, JAMBA_ERR_BUFFER_TOO_SMALL when size < JAMBA_NCCL_ID_HEX_SIZE.
 * jamba_context_follow, on a context of node_rank > 0: runs every step and sequence operation node 0's
 * context makes, on this node's GPUs, until node 0 frees its context (JAMBA_OK) or something fails (the
 * context is then unusable). Any other call that would run the model on such a context is refused.
 * JAMBA_ERR_INVALID_ARGUMENT on a context that is not a follower. Neither has run on several nodes yet. */
#define JAMBA_NCCL_ID_HEX_SIZE 257
JAMBA_API jamba_status jamba_nccl_unique_id(char *hex, size_t size, jamba_error *err);
JAMBA_API jamba_status jamba_context_follow(jamba_context *ctx, jamba_error *err);

/* Free the context and its state; NULL is a no-op. */
JAMBA_API void jamba_context_free(jamba_context *ctx);

/* The context's parameters as resolved at creation: the defaults filled in (n_ctx, n_batch, n_threads,
 * n_logits_max as chosen), n_threads as last set. Safe with concurrent const calls on the context. */
JAMBA_API jamba_status jamba_context_get_params_sized(const jamba_context *ctx, jamba_context_params *out,
                                                      size_t out_size, jamba_error *err);
static inline jamba_status jamba_context_get_params(const jamba_context *ctx, jamba_context_params *out,
                                                    jamba_error *err) {
    return jamba_context_get_params_sized(ctx, out, sizeof *out, err);
}

typedef enum jamba_logits_mode {
    JAMBA_LOGITS_NONE = 0, /* no logits (prefill only) */
    JAMBA_LOGITS_LAST = 1, /* the last fed position */
    JAMBA_LOGITS_ALL = 2,  /* every fed position */
} jamba_logits_mode;

/* Tokens to append to one sequence. */
typedef struct jamba_seq_input {
    int32_t seq;             /* sequence id in [0, n_seq_max) */
    const jamba_token *tokens; /* n_tokens ids in [0, vocab_size); read during the call only */
    int64_t n_tokens;        /* >= 1 */
    jamba_logits_mode logits;
} jamba_seq_input;

/*
 * Append tokens to one or more sequences in a single step and run the model over them. Sequences may be
 * at different positions, some prefilling and some decoding; each result equals running that sequence
 * alone. Inputs of any length are processed in internal steps of at most n_batch tokens.
 *
 * At most n_logits_max logit rows may be requested per call (LAST counts 1, ALL n_tokens).
 * Everything is validated first: a sequence id out of range or given twice, an empty input, a token id
 * outside the vocabulary, too many logit rows (JAMBA_ERR_INVALID_ARGUMENT), or a sequence that would pass
 * n_ctx tokens (JAMBA_ERR_CONTEXT_FULL) fail before any state changes.
 */
JAMBA_API jamba_status jamba_decode_sized(jamba_context *ctx, const jamba_seq_input *inputs, int64_t n_inputs,
                                         size_t input_size, jamba_error *err);
static inline jamba_status jamba_decode(jamba_context *ctx, const jamba_seq_input *inputs, int64_t n_inputs,
                                        jamba_error *err) {
    return jamba_decode_sized(ctx, inputs, n_inputs, sizeof *inputs, err);
}

/*
 * Cancellation: `fn(user_data)` is called before every internal step of jamba_decode and
 * jamba_decode_sample (a step is at most n_batch tokens), and in a call of more than 64 tokens also between
 * the layers of each step (on CUDA: between layers of steps that are not replayed graphs, after the device
 * has finished the layer). When it returns true the call stops with JAMBA_ERR_ABORTED and every sequence of
 * the call is as it was before the call: its length, and its Mamba state, which the context restores from a
 * snapshot taken at the start of any call that can stop midway (more than one step or more than 64 tokens;
 * KV rows past a sequence's length are never read, so they need no restoring). Decode steps of a few
 * tokens per sequence are polled between steps only, so they pay no snapshot. The snapshot room, one Mamba state
 * per sequence (n_seq_max x 17 MB for Jamba-Mini; the CUDA backend copies through host memory), is
 * allocated by this call, which is why it can fail (JAMBA_ERR_OUT_OF_MEMORY). fn NULL removes the callback
 * and frees the room. fn runs on the calling thread; it must not call into this context.
 */
JAMBA_API jamba_status jamba_context_set_abort_callback(jamba_context *ctx, jamba_abort_fn fn, void *user_data,
                                                        jamba_error *err);

/* Change the number of CPU worker threads of a live context (between calls, not during one): 1 .. 1024, or
 * 0 for the online CPUs. Results do not depend on it. The CUDA backend's host side is one thread: accepted
 * and ignored. Not thread-safe with other calls on the same context. */
JAMBA_API jamba_status jamba_context_set_threads(jamba_context *ctx, int32_t n_threads, jamba_error *err);

/* How jamba_embed reduces the positions. */
typedef enum jamba_pooling {
    JAMBA_POOLING_NONE = 0, /* every position: [n_tokens, hidden_size] */
    JAMBA_POOLING_MEAN = 1, /* their mean: [hidden_size] */
    JAMBA_POOLING_LAST = 2, /* the last position: [hidden_size] */
} jamba_pooling;

/* Embeddings: append `tokens` to sequence `seq` as jamba_decode does (same validation, same state
 * changes, no logits) and write the final-normed hidden state of each position (the input of lm_head,
 * transformers' last hidden state), reduced by `pooling`, to `out` (caller-owned, the size above). MEAN
 * allocates n_tokens x hidden_size floats for the call. Not thread-safe with other calls on the context. */
JAMBA_API jamba_status jamba_embed(jamba_context *ctx, int32_t seq, const jamba_token *tokens, int64_t n_tokens,
                                   jamba_pooling pooling, float *out, jamba_error *err);

/* Logits of input `index` of the last jamba_decode: *n_rows rows of vocab_size floats, row-major (one row
 * for LAST, n_tokens rows for ALL). NULL (and *n_rows = 0) when none were requested, the index is out of
 * range, or the last call was jamba_decode_sample. Valid until the next jamba_decode or sequence operation
 * on the context. */
JAMBA_API const float *jamba_logits(const jamba_context *ctx, int64_t index, int64_t *n_rows);

/* Tokens held by sequence `seq`, or -1 when the id is out of range. */
JAMBA_API int64_t jamba_seq_length(const jamba_context *ctx, int32_t seq);

/* Empty a sequence (zero state, length 0). */
JAMBA_API jamba_status jamba_seq_reset(jamba_context *ctx, int32_t seq, jamba_error *err);

/* Make `dst` an exact copy of `src` (state and length); dst's previous state is discarded. */
JAMBA_API jamba_status jamba_seq_fork(jamba_context *ctx, int32_t src, int32_t dst, jamba_error *err);

/*
 * A sequence's state in caller memory: the same bytes as a state file (format, model fingerprint, payload,
 * checksum), so a buffer can be written to a file and restored from either. jamba_seq_state_size gives the
 * bytes for the sequence's current length; jamba_seq_state_get writes them (JAMBA_ERR_BUFFER_TOO_SMALL with
 * *len = the size needed when capacity is short, nothing written); jamba_seq_state_set checks the whole
 * buffer as jamba_seq_restore checks a file before it touches the sequence, and never writes to the buffer.
 * The caller owns the buffer. Not thread-safe with other calls on the same context.
 */
JAMBA_API jamba_status jamba_seq_state_size(const jamba_context *ctx, int32_t seq, size_t *bytes, jamba_error *err);
JAMBA_API jamba_status jamba_seq_state_get(const jamba_context *ctx, int32_t seq, void *buf, size_t capacity,
                                           size_t *len, jamba_error *err);
JAMBA_API jamba_status jamba_seq_state_set(jamba_context *ctx, int32_t seq, const void *buf, size_t len,
                                           jamba_error *err);

/* Write a sequence's state to `path` (magic, version, model fingerprint, payload, checksum). The file is
 * written to a temporary name in the same folder and renamed, so a failure leaves no partial file. */
JAMBA_API jamba_status jamba_seq_save(const jamba_context *ctx, int32_t seq, const char *path, jamba_error *err);

/* Replace a sequence's state with one saved by jamba_seq_save for the same model. The file is checked
 * completely (format, fingerprint, length within n_ctx, checksum) before the sequence is touched; on any
 * failure the sequence is unchanged. A restored sequence continues bit-identically. */
JAMBA_API jamba_status jamba_seq_restore(jamba_context *ctx, int32_t seq, const char *path, jamba_error *err);

/*
 * Rollback: shorten sequence `seq` to its first n_tokens tokens, exactly (the result equals feeding those
 * tokens to an empty sequence). The context records every sequence's tokens, so it restores the longest
 * state `cache` holds for a prefix of them (cache may be NULL) and feeds the rest again: the cost is a
 * prefill of n_tokens minus the restored length (with no usable cache entry, of all n_tokens).
 * JAMBA_ERR_INVALID_ARGUMENT when n_tokens exceeds the length; JAMBA_ERR_UNSUPPORTED for a sequence set from
 * a state buffer or file (jamba_seq_state_set, jamba_seq_restore), whose tokens are unknown. On failure the
 * sequence is empty (length 0). Not thread-safe with other calls on the context.
 */
typedef struct jamba_prefix_cache jamba_prefix_cache;
JAMBA_API jamba_status jamba_seq_rollback(jamba_context *ctx, int32_t seq, int64_t n_tokens, jamba_prefix_cache *cache,
                                          jamba_error *err);

/* The tokens a sequence holds, in order: *n_tokens = its length; at most `capacity` are copied to `tokens`
 * (JAMBA_ERR_BUFFER_TOO_SMALL when short). JAMBA_ERR_UNSUPPORTED when they are unknown (see rollback). */
JAMBA_API jamba_status jamba_seq_tokens(const jamba_context *ctx, int32_t seq, jamba_token *tokens, int64_t capacity,
                                        int64_t *n_tokens, jamba_error *err);

/* ------------------------------------------------------------------------------------------------
 * Prefix-state cache
 *
 * Snapshots of complete sequence states (every Mamba layer's conv window and SSM state, and the KV rows),
 * each keyed by the exact tokens that made it, in host memory under a byte budget with least-recently-used
 * eviction. A sequence restored from an entry continues bit-identically to one that was fed the same
 * tokens (on the CPU; on CUDA when the prefill is split at the same positions). Entries are tied to their
 * model (jamba_seq_state_set checks the fingerprint) and may serve any context of it. A cache locks
 * itself: it may be shared by contexts used from different threads.
 * ---------------------------------------------------------------------------------------------- */

/* An empty cache that holds at most max_bytes of snapshots (>= 1). */
JAMBA_API jamba_status jamba_prefix_cache_create(uint64_t max_bytes, jamba_prefix_cache **out, jamba_error *err);
JAMBA_API void jamba_prefix_cache_free(jamba_prefix_cache *cache);

/* Snapshot sequence `seq` of ctx as it is now, keyed by its tokens (jamba_seq_tokens). An entry for the
 * same tokens is refreshed instead; a snapshot larger than the whole budget is skipped (JAMBA_OK, nothing
 * stored); older entries are evicted to make room. */
JAMBA_API jamba_status jamba_prefix_cache_store(jamba_prefix_cache *cache, const jamba_context *ctx, int32_t seq,
                                                jamba_error *err);

/* Make `seq` (emptied first) hold the longest cached prefix of tokens[0 .. max_len) and set *n_restored to
 * its length (0: nothing cached applies; the sequence is empty). max_len is usually n - 1, so that at least
 * one token is left to feed for logits. */
JAMBA_API jamba_status jamba_prefix_cache_restore(jamba_prefix_cache *cache, jamba_context *ctx, int32_t seq,
                                                  const jamba_token *tokens, int64_t max_len, int64_t *n_restored,
                                                  jamba_error *err);

typedef struct jamba_prefix_cache_stats {
    uint64_t bytes, max_bytes;  /* held now, budget */
    int64_t entries;
    int64_t lookups, hits;      /* restore calls, and those that restored something */
    int64_t tokens_restored;    /* prompt tokens not fed again thanks to hits, in total */
    int64_t stores, evictions;
} jamba_prefix_cache_stats;

JAMBA_API jamba_status jamba_prefix_cache_stats_sized(const jamba_prefix_cache *cache, jamba_prefix_cache_stats *out,
                                                      size_t out_size, jamba_error *err);
static inline jamba_status jamba_prefix_cache_get_stats(const jamba_prefix_cache *cache, jamba_prefix_cache_stats *out,
                                                        jamba_error *err) {
    return jamba_prefix_cache_stats_sized(cache, out, sizeof *out, err);
}

/* ------------------------------------------------------------------------------------------------
 * Tokenizer
 *
 * Loaded from a model folder without Python: tokenizer.json (a Hugging Face BPE tokenizer, SentencePiece
 * style or byte-level GPT-2 style) wins over tokenizer.model (a SentencePiece BPE model).
 * tokenizer_config.json gives BOS/EOS handling and generation_config.json extra EOS ids. A component this
 * version does not implement is an error naming it, never an approximation. A tokenizer is immutable after
 * loading and may be used from any number of threads at once.
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_tokenizer jamba_tokenizer;

/* Load from `path`: a model folder, a tokenizer.json file or a tokenizer.model file. */
JAMBA_API jamba_status jamba_tokenizer_load(const char *path, jamba_tokenizer **out, jamba_error *err);
JAMBA_API void jamba_tokenizer_free(jamba_tokenizer *tok);

JAMBA_API int64_t jamba_tokenizer_vocab_size(const jamba_tokenizer *tok);
/* BOS id, or -1 when the tokenizer has none. */
JAMBA_API jamba_token jamba_tokenizer_bos(const jamba_tokenizer *tok);
/* End-of-sequence ids (tokenizer files and generation_config.json); valid until jamba_tokenizer_free. */
JAMBA_API const jamba_token *jamba_tokenizer_eos(const jamba_tokenizer *tok, int64_t *n_eos);
/* The id of an exact token string (special tokens included), or -1. */
JAMBA_API jamba_token jamba_tokenizer_find(const jamba_tokenizer *tok, const char *piece);
/* The stored string of token `id` (e.g. "▁the", "<0x0A>", "<|eom|>"), or NULL when out of range. */
JAMBA_API const char *jamba_tokenizer_piece(const jamba_tokenizer *tok, jamba_token id);

typedef enum jamba_tokenize_flags {
    JAMBA_TOKENIZE_ADD_SPECIAL = 1,   /* add BOS/EOS as the tokenizer's files say */
    JAMBA_TOKENIZE_PARSE_SPECIAL = 2, /* text like "<|startoftext|>" becomes the special token */
} jamba_tokenize_flags;

/* An upper bound on the ids jamba_tokenize can make of `len` bytes of text with this tokenizer, for sizing
 * buffers (it accounts for U+FFFD replacements, byte fallback, normalizers that expand text, prefixes and
 * special tokens). */
JAMBA_API int64_t jamba_tokenizer_max_ids(const jamba_tokenizer *tok, size_t len);

/*
 * Encode `len` bytes of UTF-8 text (invalid bytes are encoded as U+FFFD) into at most `capacity` ids;
 * flags: jamba_tokenize_flags. *n_ids receives the count, never more than jamba_tokenizer_max_ids(tok, len).
 * When capacity is too small the call returns JAMBA_ERR_BUFFER_TOO_SMALL with *n_ids set to the count
 * needed and writes nothing.
 */
JAMBA_API jamba_status jamba_tokenize(const jamba_tokenizer *tok, const char *text, size_t len, int flags,
                                      jamba_token *ids, int64_t capacity, int64_t *n_ids, jamba_error *err);

/*
 * Decode ids to UTF-8 text (always valid UTF-8; incomplete or invalid byte sequences become U+FFFD).
 * Special tokens are left out unless keep_special. Writes the text and a terminating NUL into the
 * `capacity` bytes of `text` (so at most capacity - 1 bytes of text); *len gets the text length.
 * JAMBA_ERR_BUFFER_TOO_SMALL (with *len = the text length, NUL excluded: capacity must be at least *len + 1)
 * when they do not fit; text may then be NULL with capacity 0, to ask for the length.
 */
JAMBA_API jamba_status jamba_detokenize(const jamba_tokenizer *tok, const jamba_token *ids, int64_t n_ids,
                                        bool keep_special, char *text, size_t capacity, size_t *len,
                                        jamba_error *err);

/* Streaming decode for generated tokens: push one id at a time and get only text that is complete (a
 * token ending inside a UTF-8 character prints nothing until the character completes). */
typedef struct jamba_stream_decoder jamba_stream_decoder;
JAMBA_API jamba_status jamba_stream_decoder_create(const jamba_tokenizer *tok, bool keep_special,
                                                   jamba_stream_decoder **out, jamba_error *err);
JAMBA_API void jamba_stream_decoder_free(jamba_stream_decoder *dec);
/* Append `id`; *text points at the newly completed text (NUL-terminated, *len bytes, possibly empty),
 * valid until the next call on the decoder. The first token after create or flush starts a text: a
 * decoder that strips a leading space (sentencepiece's "▁") does so only there. */
JAMBA_API jamba_status jamba_stream_decoder_push(jamba_stream_decoder *dec, jamba_token id, const char **text,
                                                 size_t *len, jamba_error *err);
/* Whatever is still pending (an incomplete character becomes U+FFFD); then the decoder starts afresh. */
JAMBA_API jamba_status jamba_stream_decoder_flush(jamba_stream_decoder *dec, const char **text, size_t *len,
                                                  jamba_error *err);

/* ------------------------------------------------------------------------------------------------
 * Chat format (Jamba 1.5 / 1.6 / 1.7), rendered in code; a template from a model file is never executed.
 *
 *   <|startoftext|><|bom|><|system|> SYSTEM<|eom|><|bom|><|user|> USER<|eom|><|bom|><|assistant|>
 *
 * A system turn is always emitted (empty text when none is given). Message text is tokenized as plain
 * text: special tokens written in it are not parsed. (User-defined symbols of a SentencePiece model, such
 * as the chat markers in Jamba's tokenizer.model, are matched in any text, as sentencepiece does.)
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_chat_message {
    const char *role;    /* "system", "user", "assistant" or "tool" */
    const char *content; /* UTF-8 text */
} jamba_chat_message;

typedef enum jamba_chat_flags {
    JAMBA_CHAT_GENERATION_PROMPT = 1, /* end with <|eom|><|bom|><|assistant|> for the model's reply */
    JAMBA_CHAT_CONTINUE = 2,          /* messages continue a conversation already in a sequence: no BOS or
                                         system turn, and an <|eom|> before the first message */
} jamba_chat_flags;

/* True when the tokenizer has the chat tokens (<|bom|>, <|eom|>, <|system|>, <|user|>, <|assistant|>). */
JAMBA_API bool jamba_chat_supported(const jamba_tokenizer *tok);

/* Render and tokenize messages. Capacity and JAMBA_ERR_BUFFER_TOO_SMALL as for jamba_tokenize.
 * JAMBA_ERR_UNSUPPORTED when the tokenizer has no chat tokens or a role is unknown. */
JAMBA_API jamba_status jamba_chat_tokenize_sized(const jamba_tokenizer *tok, const jamba_chat_message *messages,
                                                 int64_t n_messages, size_t message_size, int flags, jamba_token *ids,
                                                 int64_t capacity, int64_t *n_ids, jamba_error *err);
static inline jamba_status jamba_chat_tokenize(const jamba_tokenizer *tok, const jamba_chat_message *messages,
                                               int64_t n_messages, int flags, jamba_token *ids, int64_t capacity,
                                               int64_t *n_ids, jamba_error *err) {
    return jamba_chat_tokenize_sized(tok, messages, n_messages, sizeof *messages, flags, ids, capacity, n_ids, err);
}

/* ------------------------------------------------------------------------------------------------
 * Sampling
 *
 * A sampler owns its random state (seeded; the same seed, logits and history give the same tokens) and
 * the history used by the penalties. One thread at a time per sampler.
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_sampler_params {
    float temperature;        /* 0 = greedy; default 0.8 */
    int32_t top_k;            /* keep the k most likely; 0 = off; default 40 */
    float top_p;              /* nucleus: keep the smallest set with this probability mass; 1 = off; default 0.95 */
    float min_p;              /* drop tokens below min_p x the top probability; 0 = off; default 0.05 */
    float repetition_penalty; /* > 1 discourages tokens seen in the history (divide positive logits, multiply
                                 negative ones); 1 = off; default 1.0 */
    float presence_penalty;   /* subtracted once from every token seen in the history; 0 = off; default 0 */
    int32_t penalty_last_n;   /* how much history the penalties look at; default 256 */
    uint64_t seed;            /* default 0x5eed */
} jamba_sampler_params;

typedef struct jamba_sampler jamba_sampler;

JAMBA_API void jamba_sampler_params_init_sized(jamba_sampler_params *params, size_t size);
static inline jamba_sampler_params jamba_sampler_default_params(void) {
    jamba_sampler_params p;
    jamba_sampler_params_init_sized(&p, sizeof p);
    return p;
}
/* JAMBA_ERR_INVALID_ARGUMENT for a negative or NaN temperature, top_p outside (0, 1], min_p outside
 * [0, 1), a repetition penalty <= 0, negative counts. */
JAMBA_API jamba_status jamba_sampler_create_sized(const jamba_sampler_params *params, size_t params_size,
                                                  int64_t vocab_size, jamba_sampler **out, jamba_error *err);
static inline jamba_status jamba_sampler_create(const jamba_sampler_params *params, int64_t vocab_size,
                                                jamba_sampler **out, jamba_error *err) {
    return jamba_sampler_create_sized(params, sizeof *params, vocab_size, out, err);
}
JAMBA_API void jamba_sampler_free(jamba_sampler *s);
/* Add a token to the penalty history (prompt tokens and sampled ones). */
JAMBA_API void jamba_sampler_accept(jamba_sampler *s, jamba_token token);
/* Choose the next token from vocab_size logits (not modified). NaN logits never win; a +inf logit wins
 * outright (the lowest such id); when every logit is NaN or -inf, JAMBA_ERR_NUMERIC. */
JAMBA_API jamba_status jamba_sampler_sample(jamba_sampler *s, const float *logits, jamba_token *token,
                                            jamba_error *err);

/*
 * Decode and sample in one call: run the inputs as jamba_decode does (each input's logits mode is ignored:
 * its last token is sampled) and choose the next token of input i with samplers[i], which then accepts
 * it (its penalty history and generator advance exactly as jamba_sampler_sample + jamba_sampler_accept
 * would). On a CUDA context the logits stay on the GPU and only the tokens are read back when the sampler
 * is greedy or uses top_k in [1, 256] with at most 512 distinct penalised tokens; otherwise that row's
 * logits are copied to the host and sampled there. The same seed gives the same tokens on either device
 * for the same logits. Afterwards jamba_logits returns NULL until the next jamba_decode.
 * tokens: n_inputs ids. Errors as jamba_decode and jamba_sampler_sample; on a sampling error the
 * sequences have already advanced.
 */
JAMBA_API jamba_status jamba_decode_sample_sized(jamba_context *ctx, const jamba_seq_input *inputs, int64_t n_inputs,
                                                size_t input_size, jamba_sampler *const *samplers, jamba_token *tokens,
                                                jamba_error *err);
static inline jamba_status jamba_decode_sample(jamba_context *ctx, const jamba_seq_input *inputs, int64_t n_inputs,
                                               jamba_sampler *const *samplers, jamba_token *tokens, jamba_error *err) {
    return jamba_decode_sample_sized(ctx, inputs, n_inputs, sizeof *inputs, samplers, tokens, err);
}

/* ------------------------------------------------------------------------------------------------
 * Scheduler: continuous batching of generation requests
 *
 * A scheduler owns a context and serves a queue of requests. Each jamba_scheduler_step runs one forward
 * step that mixes one decode token of every running request with prefill chunks of admitted ones, up to a
 * token budget, and samples each request with its own parameters; generated tokens are streamed through
 * the request's callback. A request is admitted when a sequence of the context is free: how many
 * sequences the context holds is chosen from memory (the planner's figures) when n_seq_max is 0. With a
 * prefix cache, an admitted request resumes from the longest cached state of its prompt and prefills only
 * the rest; the scheduler stores snapshots every snapshot_interval tokens, at the request's cache_prefix
 * boundary, at the end of its prompt and when it finishes.
 *
 * Threads: jamba_scheduler_submit, _cancel, _wait and _get_stats may be called from any thread at any
 * time; jamba_scheduler_step from one thread at a time, and token callbacks run on that thread during it.
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_scheduler jamba_scheduler;

/* Why a request ended. Append-only. */
typedef enum jamba_finish_reason {
    JAMBA_FINISH_NONE = 0,      /* not finished: more tokens follow */
    JAMBA_FINISH_STOP = 1,      /* a stop token (the model's EOS ids unless ignore_eos, or stop_tokens) */
    JAMBA_FINISH_LENGTH = 2,    /* max_tokens were generated */
    JAMBA_FINISH_CONTEXT = 3,   /* the sequence reached the context's n_ctx */
    JAMBA_FINISH_CANCELLED = 4, /* jamba_scheduler_cancel, the callback returned false, or the scheduler was freed */
    JAMBA_FINISH_ERROR = 5,     /* see the event's status and message */
} jamba_finish_reason;

/* One event of a request, passed to its callback; valid during the call only. */
typedef struct jamba_token_event {
    int64_t request;            /* the id jamba_scheduler_submit gave */
    jamba_token token;          /* the generated token, or -1 in a final event that carries none */
    float logprob;              /* with logprobs: log-probability of token under the model's distribution
                                   (log-softmax of the logits, before temperature and penalties); else 0 */
    int32_t n_top;              /* entries of top_tokens / top_logprobs (the request's top_logprobs) */
    const jamba_token *top_tokens;  /* [n_top] the most likely tokens, most likely first */
    const float *top_logprobs;      /* [n_top] their log-probabilities */
    int64_t n_generated;        /* tokens generated so far, this one included */
    int64_t n_prompt;           /* prompt tokens */
    int64_t n_cached;           /* prompt tokens restored from the prefix cache instead of prefilled */
    jamba_finish_reason finish; /* NONE, or why this (last) event ends the request; a STOP event's token is
                                   the stop token */
    jamba_status status;        /* JAMBA_FINISH_ERROR: the error; else JAMBA_OK */
    const char *message;        /* JAMBA_FINISH_ERROR: one line; else "" */
} jamba_token_event;

/* Receives each event; return false to end the request (JAMBA_FINISH_CANCELLED; no further event follows).
 * Must not call jamba_scheduler_step; may call submit and cancel. */
typedef bool (*jamba_token_fn)(const jamba_token_event *event, void *user_data);

#define JAMBA_MAX_TOP_LOGPROBS 20

typedef struct jamba_request_params {
    const jamba_token *prompt;  /* n_prompt >= 1 ids, copied by submit */
    int64_t n_prompt;
    int64_t max_tokens;         /* tokens to generate at most, >= 1; default 256 */
    jamba_sampler_params sampling; /* default jamba_sampler_default_params(); the penalty history starts with
                                      the prompt, as with jamba_sampler_accept over the prompt before sampling */
    const jamba_token *stop_tokens; /* n_stop_tokens more ids that end the request; copied by submit */
    int64_t n_stop_tokens;
    bool ignore_eos;            /* default false: the config's eos_token_id ids end the request */
    bool logprobs;              /* default false: fill event.logprob */
    int32_t top_logprobs;       /* 0 .. JAMBA_MAX_TOP_LOGPROBS alternatives per token (needs logprobs) */
    int64_t cache_prefix;       /* > 0: also snapshot the state after this many prompt tokens (e.g. the end of
                                   a shared system prompt); default 0 */
    jamba_token_fn on_token;    /* may be NULL (then only the counts in jamba_scheduler_stats tell) */
    void *user_data;
} jamba_request_params;

JAMBA_API void jamba_request_params_init_sized(jamba_request_params *params, size_t size);
static inline jamba_request_params jamba_request_default_params(void) {
    jamba_request_params p;
    jamba_request_params_init_sized(&p, sizeof p);
    return p;
}

typedef struct jamba_scheduler_params {
    int64_t token_budget;       /* most tokens per step (decode tokens plus prefill chunks); 0 (default) = the
                                   context's n_batch */
    uint64_t memory_bytes;      /* n_seq_max 0, CPU context: the bytes its sequences may use (default 0 = a
                                   quarter of physical memory); a CUDA context plans against its gpu_memory */
    int32_t max_sequences;      /* n_seq_max 0: at most this many (default 256) */
    jamba_prefix_cache *cache;  /* NULL (default): no prefix cache; else used (not owned) by the scheduler */
    int64_t snapshot_interval;  /* tokens between prefix snapshots while prefilling; default 512; 0 = none */
    int64_t max_waiting;        /* most requests queued; submit fails with JAMBA_ERR_BUFFER_TOO_SMALL beyond;
                                   default 0 = no limit */
} jamba_scheduler_params;

JAMBA_API void jamba_scheduler_params_init_sized(jamba_scheduler_params *params, size_t size);
static inline jamba_scheduler_params jamba_scheduler_default_params(void) {
    jamba_scheduler_params p;
    jamba_scheduler_params_init_sized(&p, sizeof p);
    return p;
}

/* Create a scheduler and its context (context params as jamba_context_create; n_seq_max 0 = as many as
 * memory allows, at least 1). The model must outlive it. */
JAMBA_API jamba_status jamba_scheduler_create_sized(const jamba_model *model, const jamba_context_params *context,
                                                    size_t context_size, const jamba_scheduler_params *params,
                                                    size_t params_size, jamba_scheduler **out, jamba_error *err);
static inline jamba_status jamba_scheduler_create(const jamba_model *model, const jamba_context_params *context,
                                                  const jamba_scheduler_params *params, jamba_scheduler **out,
                                                  jamba_error *err) {
    return jamba_scheduler_create_sized(model, context, sizeof *context, params, sizeof *params, out, err);
}

/* Cancel every request (each gets its JAMBA_FINISH_CANCELLED event, on the calling thread) and free. */
JAMBA_API void jamba_scheduler_free(jamba_scheduler *s);

/* The scheduler's context (for queries such as n_seq_max; do not decode on it). */
JAMBA_API const jamba_context *jamba_scheduler_context(const jamba_scheduler *s);

/* Queue a request; *id receives its id (> 0). Checked at once: a prompt that does not fit the context
 * (JAMBA_ERR_CONTEXT_FULL), a token outside the vocabulary, bad sampling parameters
 * (JAMBA_ERR_INVALID_ARGUMENT), a full queue (JAMBA_ERR_BUFFER_TOO_SMALL). */
JAMBA_API jamba_status jamba_scheduler_submit_sized(jamba_scheduler *s, const jamba_request_params *params,
                                                    size_t params_size, int64_t *id, jamba_error *err);
static inline jamba_status jamba_scheduler_submit(jamba_scheduler *s, const jamba_request_params *params, int64_t *id,
                                                  jamba_error *err) {
    return jamba_scheduler_submit_sized(s, params, sizeof *params, id, err);
}

/* Cancel a request: it ends at the start of the next step (its final event: JAMBA_FINISH_CANCELLED) and
 * its sequence is freed. Unknown or finished ids: JAMBA_ERR_INVALID_ARGUMENT. */
JAMBA_API jamba_status jamba_scheduler_cancel(jamba_scheduler *s, int64_t id, jamba_error *err);

/* Run one step: admit waiting requests into free sequences, then one forward step over the running ones,
 * then the events. *n_active (may be NULL) receives the requests still waiting or running afterwards. A
 * step with nothing to do returns at once. A failing forward step ends the requests of that step with
 * JAMBA_FINISH_ERROR and returns JAMBA_OK (the others go on); only a dead context (device fault) fails. */
JAMBA_API jamba_status jamba_scheduler_step(jamba_scheduler *s, int64_t *n_active, jamba_error *err);

/* Block until a request is waiting or running, or timeout_ms pass (< 0: no limit); true when there is work. */
JAMBA_API bool jamba_scheduler_wait(jamba_scheduler *s, int64_t timeout_ms);

typedef struct jamba_scheduler_stats {
    int32_t n_seq_max;          /* sequences of the context: requests that can run at once */
    int64_t waiting, running;   /* requests now */
    int64_t submitted, finished, cancelled, failed; /* requests so far */
    int64_t steps;              /* forward steps so far */
    int64_t last_batch_tokens;  /* tokens of the last step */
    int64_t last_batch_requests;
    int64_t prompt_tokens;      /* prompt tokens submitted */
    int64_t prefill_tokens;     /* prompt tokens prefilled (the rest came from the prefix cache) */
    int64_t generated_tokens;
} jamba_scheduler_stats;

JAMBA_API jamba_status jamba_scheduler_stats_sized(jamba_scheduler *s, jamba_scheduler_stats *out, size_t out_size,
                                                   jamba_error *err);
static inline jamba_status jamba_scheduler_get_stats(jamba_scheduler *s, jamba_scheduler_stats *out,
                                                     jamba_error *err) {
    return jamba_scheduler_stats_sized(s, out, sizeof *out, err);
}

/* ------------------------------------------------------------------------------------------------
 * Internals (research)
 *
 * What happens inside the forward pass, for studying checkpoints: the hidden states numbered as
 * transformers' output_hidden_states, the MoE routers' logits (output_router_logits) and statistics over
 * them, the Mamba state of a sequence, and a layer hook that reads and may replace a layer's output
 * (activation patching). Every buffer is caller-owned, f32, row-major. On a CUDA context the captures are
 * copied to the host after each step, and steps with a capture attached run outside CUDA graphs.
 * ---------------------------------------------------------------------------------------------- */

/*
 * The layer hook: called after decoder layer `layer` (0 .. L-1) of every internal step with the residual
 * stream after that layer, `rows` [n_rows, hidden_size] (the step's rows; first_row is the capture row of
 * the first of them, rows being numbered as jamba_capture.rows says). It may overwrite rows in place and
 * must then return true; the forward continues from what it leaves (a CUDA context copies the rows back
 * only when it returns true). `rows` is valid during the call only. The hook runs on the thread calling
 * jamba_decode and must not call into the context.
 */
typedef bool (*jamba_layer_hook)(void *user_data, int64_t layer, int64_t first_row, float *rows, int64_t n_rows,
                                 int64_t hidden_size);

typedef struct jamba_capture {
    int64_t rows;                /* rows each buffer holds: the first `rows` token positions the context runs
                                    after jamba_context_set_capture, numbered from 0 in run order (a call's
                                    inputs in order, each input's tokens in order; for one sequence, its next
                                    tokens). Later rows are not stored; the hook still sees them */
    float *hidden;               /* NULL, or [n_hidden, rows, H]: hidden states numbered as transformers'
                                    output_hidden_states: 0 the embeddings, i in 1 .. L-1 the input of decoder
                                    layer i (the residual stream after layer i-1), L the output of the final
                                    norm (not the last layer's raw output) */
    const int64_t *hidden_index; /* [n_hidden]: the distinct numbers in [0, L] of the hidden states the slots
                                    of `hidden` hold. Read by every step while the capture is attached, so it
                                    must live that long. NULL: all of them, n_hidden = L + 1, slot i = number i */
    int64_t n_hidden;
    float *router_logits;        /* NULL, or [n_moe_layers, rows, E]: each MoE layer's router logits before
                                    the softmax, MoE layers in layer order (output_router_logits) */
    jamba_layer_hook hook;       /* NULL, or called after every decoder layer (above) */
    void *hook_data;
} jamba_capture;

/*
 * Attach a capture to the context, replacing any attached one (cap NULL, or a capture asking for nothing:
 * detach). From then on every jamba_decode and jamba_decode_sample writes the captured rows into the
 * caller's buffers, which must stay valid until the capture is detached or the context freed; the library
 * never frees them. jamba_embed uses the same machinery and detaches any capture. Rows are counted from 0
 * again at each call of this function. Errors: JAMBA_ERR_INVALID_ARGUMENT for a negative row count, a
 * hidden number outside [0, L] or repeated, hidden_index without hidden; JAMBA_ERR_OVERFLOW when a buffer
 * size overflows. Not thread-safe with other calls on the context.
 */
JAMBA_API jamba_status jamba_context_set_capture_sized(jamba_context *ctx, const jamba_capture *cap, size_t cap_size,
                                                       jamba_error *err);
static inline jamba_status jamba_context_set_capture(jamba_context *ctx, const jamba_capture *cap, jamba_error *err) {
    return jamba_context_set_capture_sized(ctx, cap, cap ? sizeof *cap : 0, err);
}

/* Rows run since the capture was attached (may exceed its `rows`: those were not stored); 0 when none is
 * attached or ctx is NULL. */
JAMBA_API int64_t jamba_context_captured_rows(const jamba_context *ctx);

/* Statistics of one MoE layer's routing over a set of rows (jamba_compute_router_stats). */
typedef struct jamba_router_stats {
    int64_t rows;          /* token rows counted */
    int64_t n_experts;     /* E */
    int64_t top_k;         /* k */
    double mean_entropy;   /* mean over rows of the entropy of softmax(router logits), nats (at most log E) */
    double top_k_share;    /* mean over rows of the probability mass of the k experts chosen */
    double balance_loss;   /* E Σ_e f_e P_e with f_e = load[e] / rows and P_e = mean_prob[e]: transformers'
                              load_balancing_loss_func for this layer alone; k when perfectly balanced */
} jamba_router_stats;

/*
 * Route router logits [n_rows, n_experts] with the runtime's rule (softmax, top k, ties to the lower
 * index, NaN never chosen) and summarise: load[e] (caller-owned [n_experts], may be NULL) the number of
 * rows that chose expert e among their k (Σ load = n_rows k), mean_prob[e] (may be NULL) the mean routing
 * probability of expert e, and the figures of *out. The logits are not modified. Allocates O(n_experts)
 * scratch for the call. JAMBA_ERR_INVALID_ARGUMENT for NULL logits or out with rows, n_experts < 1 or top_k
 * outside [1, n_experts]; JAMBA_ERR_NUMERIC when a row has no finite logit. Thread-safe: a pure function.
 */
JAMBA_API jamba_status jamba_compute_router_stats_sized(const float *logits, int64_t n_rows, int64_t n_experts,
                                                        int64_t top_k, int64_t *load, double *mean_prob,
                                                        jamba_router_stats *out, size_t out_size, jamba_error *err);
static inline jamba_status jamba_compute_router_stats(const float *logits, int64_t n_rows, int64_t n_experts,
                                                      int64_t top_k, int64_t *load, double *mean_prob,
                                                      jamba_router_stats *out, jamba_error *err) {
    return jamba_compute_router_stats_sized(logits, n_rows, n_experts, top_k, load, mean_prob, out, sizeof *out, err);
}

/*
 * The Mamba state of decoder layer `layer` (a Mamba layer) of sequence `seq`: conv [D_i, K-1], the last
 * K-1 inputs of the causal conv, oldest first (transformers' cache holds the last K: its conv_states[...,
 * 1:]), and ssm [D_i, N], the SSM state in f32. Either may be NULL to skip it. A CUDA context converts
 * from its cache dtype. JAMBA_ERR_INVALID_ARGUMENT for a sequence or layer out of range or an attention
 * layer. Not thread-safe with other calls on the context.
 */
JAMBA_API jamba_status jamba_seq_mamba_state(const jamba_context *ctx, int32_t seq, int64_t layer, float *conv,
                                             float *ssm, jamba_error *err);
/* Replace that state (either part may be NULL to keep it); the sequence's length and KV cache are not
 * touched, so after jamba_seq_reset it starts a new text from a carried Mamba state. */
JAMBA_API jamba_status jamba_seq_set_mamba_state(jamba_context *ctx, int32_t seq, int64_t layer, const float *conv,
                                                 const float *ssm, jamba_error *err);

/* ------------------------------------------------------------------------------------------------
 * Accelerators
 * ---------------------------------------------------------------------------------------------- */

typedef struct jamba_backend_info {
    bool cuda_built;          /* compiled with the CUDA backend */
    bool nccl_built;          /* compiled with NCCL */
    int cuda_runtime_version; /* e.g. 13000; 0 when not built */
    int cuda_driver_version;  /* 0 when no driver is installed */
    int cublas_version;       /* e.g. 130100; 0 when not built */
    int nccl_version;         /* e.g. 22705; 0 when not built */
    int device_count;         /* usable CUDA devices (0 when none) */
    char note[256];           /* why device_count is 0, when it is; else empty */
} jamba_backend_info;

/* Describe the compiled backends and the devices present. Never fails because no GPU is present:
 * that is reported through device_count = 0 and note. Safe to call from any thread. */
JAMBA_API jamba_status jamba_backend_query_sized(jamba_backend_info *out, size_t out_size, jamba_error *err);
static inline jamba_status jamba_backend_query(jamba_backend_info *out, jamba_error *err) {
    return jamba_backend_query_sized(out, sizeof *out, err);
}

typedef struct jamba_device_info {
    char name[256];
    int compute_major, compute_minor; /* e.g. 9, 0 for an H100 */
    int multiprocessors;
    uint64_t total_memory;            /* bytes */
    uint64_t free_memory;             /* bytes, at the time of the call */
    bool kernels_run;                 /* this build's kernels launched and ran correctly on the device */
} jamba_device_info;

/* Query CUDA device `index` and run a tiny self-test kernel on it. JAMBA_ERR_NO_DEVICE when the index
 * is out of range or the build has no CUDA backend. */
JAMBA_API jamba_status jamba_device_query_sized(int index, jamba_device_info *out, size_t out_size, jamba_error *err);
static inline jamba_status jamba_device_query(int index, jamba_device_info *out, jamba_error *err) {
    return jamba_device_query_sized(index, out, sizeof *out, err);
}

#ifdef __cplusplus
}
#endif

#endif /* JAMBA_H */

/*
 * context.h — the jamba_context object: a backend (its operations table and opaque state) plus what
 * every backend shares and the runtime alone writes: sequence lengths, the step plan, the host logits,
 * the capture hook, and jamba_decode_sample's per-input buffers.
 *
 * Letters: S sequences (n_seq_max), cap n_logits_max, V vocabulary.
 */
#ifndef JB_CONTEXT_H
#define JB_CONTEXT_H

#include <stdint.h>

#include "backend/backend.h"
#include "jamba.h"
#include "runtime/model.h"

struct jamba_context {
    const jamba_model *model;
    jamba_context_params params;   /* resolved: n_ctx, n_batch, n_logits_max, n_threads filled in */
    const jb_backend_i *be;        /* the backend's operations */
    jb_backend_ctx *state;         /* the backend's state */
    int64_t *n_past;               /* [S] sequence lengths (written here alone) */
    jamba_token *history;          /* [S, n_ctx] the tokens each sequence holds: row s, columns [0, n_past[s]) */
    bool *history_known;           /* [S] false for a sequence set from a state buffer or file (tokens unknown) */
    int64_t *seq_input;            /* [S] jamba_decode's input naming each sequence while it checks; else -1 */
    float *logits;                 /* [cap, V] */
    int64_t *logit_first;          /* [S] per input of the last call: first row, or -1 */
    int64_t *logit_rows;           /* [S] per input of the last call: row count */
    int64_t n_last_inputs;
    jb_segment *segments;          /* [S] one step's segments */
    int64_t *logit_src;            /* [cap] workspace row of each logit row of a step */
    jb_capture capture;
    bool logits_on_host;           /* the last call's logit rows are in `logits` (not so after decode_sample) */
    jamba_seq_input *sample_inputs;/* [S] jamba_decode_sample's inputs with LAST logits */
    jamba_sampler **sample_samplers; /* [S] the samplers of the inputs that are sampled, in call order */
    int32_t *sample_tokens;        /* [S] their tokens */
    jamba_seq_input *abi_inputs;   /* [S] jamba_decode's inputs copied from a caller's layout of another size */
    /* backends that sample (be->sample): the device sampler's inputs */
    jb_sample_params *sample_params; /* [S] */
    int32_t *sample_penalized;     /* [S, JB_SAMPLE_MAX_PENALIZED] */
    int32_t *sample_used;          /* [S] */
    bool *sample_on_device;        /* [S] */
    /* cancellation (jamba_context_set_abort_callback) */
    jamba_abort_fn abort_fn;
    void *abort_data;
    float *snapshot;               /* [S, M, D_i (K-1) + D_i N] the Mamba state of a multi-step call's sequences */
    int64_t *snapshot_len;         /* [S] their lengths */
};

/* Calls of more tokens than this are polled by the abort callback between layers too (not only between
 * steps), which costs a snapshot of their sequences' Mamba state per call; shorter ones (decode steps) are
 * polled between steps only. */
#define JB_ABORT_LAYER_ROWS 64

/* The backend of a device type (runtime/backends.c, the one registration point); NULL when unknown. */
const jb_backend_i *jb_backend_for(jamba_device_type device);
/* The backend of a context with resolved params (several GPUs: the NCCL backend); NULL when unknown. */
const jb_backend_i *jb_backend_for_context(const jamba_context_params *p);

/* jamba_decode with the logits left on the device when keep_on_device (backends that sample). */
jamba_status jb_decode(jamba_context *ctx, const jamba_seq_input *in, int64_t n, bool keep_on_device,
                       jamba_error *err);

/* jamba_decode_sample over inputs in this library's layout (they may be ctx->sample_inputs), where
 * samplers[i] may be NULL: that input is only fed (no logits) and tokens[i] = -1. */
jamba_status jb_decode_sample(jamba_context *ctx, const jamba_seq_input *in, int64_t n,
                              jamba_sampler *const *samplers, int32_t *tokens, jamba_error *err);

/* Copy n inputs laid out input_size bytes apart (a caller's jamba_seq_input, of any header version) into
 * dst [n], checking ctx, in, n in [1, n_seq_max] and the size; `call` names the API call in messages. */
jamba_status jb_inputs_in(jamba_context *ctx, const jamba_seq_input *in, int64_t n, size_t input_size,
                          jamba_seq_input *dst, const char *call, jamba_error *err);

/* Check `in` (NULL: the defaults) and fill what defaults to the model or the backend: n_ctx, n_batch,
 * n_logits_max, n_threads. A CUDA n_batch of 0 stays 0 (the planner chooses it), as does n_logits_max. */
jamba_status jb_context_resolve_params(const jamba_model *m, const jamba_context_params *in, jamba_context_params *p,
                                       jamba_error *err);

/* Capture only the final-normed rows of the next calls into final [rows, H] (jamba_embed), replacing any
 * capture set through the API; final NULL detaches every capture. */
void jb_context_capture_final(jamba_context *ctx, float *final, int64_t rows);

#endif /* JB_CONTEXT_H */

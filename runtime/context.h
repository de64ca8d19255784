/*
 * context.h — the jamba_context object (internal layout shared by context.c, forward_cpu.c and
 * seq_state.c): per-sequence state slabs, the activation workspace for n_batch tokens, and the logits.
 *
 * Letters: S sequences (n_seq_max), C n_ctx, Tb n_batch, L layers, A attention layers, M Mamba layers,
 * kv = n_kv * d_h, q = n_h * d_h, others as in ckpt/weights.h.
 */
#ifndef JB_CONTEXT_H
#define JB_CONTEXT_H

#include <stdint.h>

#include "cpu_ffn.h"
#include "jamba.h"
#include "model.h"
#include "step.h"
#include "../cuda/gpu_types.h"

#include "threadpool.h"

/* The activation workspace, sized for Tb rows. */
typedef struct jb_workspace {
    float *x;          /* [Tb, H] residual stream */
    float *xn;         /* [Tb, H] normalised input of the current half-layer */
    float *mix;        /* [Tb, H] mixer or FFN output */
    float *proj;       /* [Tb, 2 D_i] in_proj output: u_raw | z */
    float *u;          /* [Tb, D_i] after conv + SiLU */
    float *xdbl;       /* [Tb, R + 2N] x_proj output: dt | B | C */
    float *dt_in;      /* [Tb, R] the (normalised) dt columns, contiguous */
    float *delta;      /* [Tb, D_i] softplus(dt_proj) */
    float *y;          /* [Tb, D_i] gated scan output */
    float *q;          /* [Tb, q] */
    float *k_new;      /* [Tb, kv] */
    float *v_new;      /* [Tb, kv] */
    float *att;        /* [Tb, q] attention output */
    float *attn_scratch;   /* [threads, C] score rows */
    float *wbuf;       /* small weights widened to fp32: A [D_i N], conv [D_i K], 3 x [D_i], [2 D_i], 4 x [max(H, R, N)] */
    float *final_rows; /* [n_logits_max, H] rows that get logits, final-normed */
    jb_ffn_workspace ffn;
} jb_workspace;



struct jamba_context {
    const jamba_model *model;
    jamba_context_params params;   /* resolved: n_ctx, n_threads filled in */
    jb_pool *pool;
    int64_t *layer_slot;           /* [L] index among attention layers or among Mamba layers */
    float *kv;                     /* [S, A, 2, C, kv] */
    float *conv;                   /* [S, M, D_i, K-1] */
    float *ssm;                    /* [S, M, D_i, N] */
    int64_t *n_past;               /* [S] */
    int64_t *seq_input;            /* [S] jamba_decode's input naming each sequence while it checks; else -1 */
    jb_workspace ws;
    float *logits;                 /* [logit_capacity, V] */
    int64_t logit_capacity;
    int64_t *logit_first;          /* [S] per input of the last call: first row, or -1 */
    int64_t *logit_rows;           /* [S] per input of the last call: row count */
    int64_t n_last_inputs;
    jb_segment *segments;          /* [S] one step's segments */
    int64_t *logit_src;            /* [logit_capacity] workspace row of each logit row of a step */
    jb_capture capture;
    struct jb_cuda_ctx *cuda;      /* the CUDA backend's device state when params.device is CUDA */
    bool logits_on_host;           /* the last call's logit rows are in `logits` (not so after decode_sample) */
    jamba_seq_input *sample_inputs;/* [S] jamba_decode_sample's inputs with LAST logits */
    /* CUDA contexts: jamba_decode_sample's device-sampler inputs, allocated with the context */
    jb_gpu_sample_params *sample_params; /* [S] */
    int32_t *sample_penalized;     /* [S, JB_GPU_SAMPLE_MAX_PENALIZED] */
    int32_t *sample_used;          /* [S] */
    bool *sample_on_device;        /* [S] */
};

/* jamba_decode with the logits of CUDA contexts left on the device when keep_on_device. */
jamba_status jb_decode(jamba_context *ctx, const jamba_seq_input *in, int64_t n, bool keep_on_device,
                       jamba_error *err);

/* State slices of sequence `seq`. */
float *jb_ctx_kv(const jamba_context *ctx, int32_t seq, int64_t attn_layer, int which /* 0 K, 1 V */);
float *jb_ctx_conv(const jamba_context *ctx, int32_t seq, int64_t mamba_layer);
float *jb_ctx_ssm(const jamba_context *ctx, int32_t seq, int64_t mamba_layer);

/* Run one internal step: segments over n_rows workspace rows; logits for the `n_logits` rows listed in
 * ctx->logit_src go to ctx->logits rows [logit_dst, logit_dst + n_logits). Updates n_past. */
void jb_forward_step(jamba_context *ctx, const jb_segment *segs, int64_t n_segs, int64_t n_rows,
                     int64_t n_logits, int64_t logit_dst);

/* The CPU path's step size when n_batch is 0. */
#define JB_CPU_DEFAULT_BATCH 512

/* Check `in` (NULL: the defaults) and fill what defaults to the model: n_ctx, the CPU's n_batch and
 * n_logits_max, n_threads. A CUDA n_batch of 0 stays 0 (the planner chooses it), as does n_logits_max. */
jamba_status jb_context_resolve_params(const jamba_model *m, const jamba_context_params *in, jamba_context_params *p,
                                       jamba_error *err);

/* The CUDA plan for resolved params p, given the device's free memory (0: unknown) and whether the
 * weights are already on it (then they do not count). */
jamba_status jb_context_plan_cuda(const jamba_model *m, const jamba_context_params *p, uint64_t free_bytes,
                                  bool weights_resident, jamba_context_plan *out, jamba_error *err);

/* Enable (hidden != NULL) or disable the capture hook. */
void jb_context_set_capture(jamba_context *ctx, float *hidden, float *final, int64_t rows);

#endif /* JB_CONTEXT_H */

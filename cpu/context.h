/*
 * context.h — the CPU backend's per-context state: the thread pool, the sequence state slabs and the
 * activation workspace for n_batch rows (shared by forward.c and state.c; created by context.c).
 *
 * Letters: S sequences (n_seq_max), C n_ctx, Tb n_batch, L layers, A attention layers, M Mamba layers,
 * kv = n_kv * d_h, q = n_h * d_h, others as in ckpt/weights.h.
 */
#ifndef JB_CPU_CONTEXT_H
#define JB_CPU_CONTEXT_H

#include <stdint.h>

#include "backend/backend.h"
#include "base/threadpool.h"
#include "cpu/attention.h"
#include "cpu/ffn.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"

/* The activation workspace, sized for Tb rows. */
typedef struct jb_cpu_workspace {
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
    jb_attn_args *attn_args; /* [S] one per segment of a step (a step has one segment per sequence at most) */
    jb_conv_args *conv_args; /* [S] */
    jb_scan_args *scan_args; /* [S] */
    jb_ffn_workspace ffn;
} jb_cpu_workspace;

struct jb_backend_ctx {
    const jamba_model *model;
    jamba_context_params params;   /* resolved */
    jb_cpu_exec exec;              /* the thread pool, and the int8 or bf16 activation rows of cpu_activations
                                      I8 or BF16 */
    int64_t *layer_slot;           /* [L] index among attention layers or among Mamba layers */
    float *kv;                     /* [S, A, 2, C, kv] */
    float *conv;                   /* [S, M, D_i, K-1] */
    float *ssm;                    /* [S, M, D_i, N] */
    jb_cpu_workspace ws;
};

/* State slices of sequence `seq` (the one place that addresses them). */
float *jb_cpu_kv(const jb_backend_ctx *b, int32_t seq, int64_t attn_layer, int which /* 0 K, 1 V */);
float *jb_cpu_conv(const jb_backend_ctx *b, int32_t seq, int64_t mamba_layer);
float *jb_cpu_ssm(const jb_backend_ctx *b, int32_t seq, int64_t mamba_layer);

/* The context's buffers and their total (the figures of the memory plan). */
jamba_status jb_cpu_ctx_create(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                               jamba_error *err);
void jb_cpu_ctx_free(jb_backend_ctx *b);
/* Bytes of the buffers a context with params p holds: state (kv, conv + ssm) and the rest. */
jamba_status jb_cpu_ctx_bytes(const jamba_model *m, const jamba_context_params *p, uint64_t *kv, uint64_t *mamba,
                              uint64_t *workspace, jamba_error *err);

/* Change the worker threads (backend `set_threads`): new per-thread buffers and pool, or nothing. */
jamba_status jb_cpu_set_threads(jb_backend_ctx *b, int32_t n_threads, jamba_error *err);

/* One step (backend `step`); sequence state operations (backend `seq_*`, `state_*`). */
jamba_status jb_cpu_step(jb_backend_ctx *b, const jb_step_io *io, jamba_error *err);
jamba_status jb_cpu_seq_reset(jb_backend_ctx *b, int32_t seq, jamba_error *err);
jamba_status jb_cpu_seq_copy(jb_backend_ctx *b, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err);
jamba_status jb_cpu_state_read(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                               int64_t n, float *dst, jamba_error *err);
jamba_status jb_cpu_state_write(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                int64_t n, const float *src, jamba_error *err);

#endif /* JB_CPU_CONTEXT_H */

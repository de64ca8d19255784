/*
 * context_dev.h — a CUDA context's device state (C++ only): cuda/context.cu creates it and owns the
 * state operations, cuda/forward.cu runs steps on it.
 *
 * Letters: S n_seq_max, C n_ctx, Tb n_batch, cap n_logits_max, A attention layers, M Mamba layers,
 * kv = n_kv d_h, q = n_h d_h, k top-k; others as in ckpt/weights.h. "dt" buffers hold the context's
 * element type (F32 or BF16); the rest are fp32 unless marked.
 */
#ifndef JB_CUDA_CONTEXT_DEV_H
#define JB_CUDA_CONTEXT_DEV_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/model.h"
#include "cuda/cuda_ctx.h"
#include "cuda/ctx_layout.h"
#include "cuda/ops.h"
#include "cuda/weights_dev.h"

struct jb_backend_ctx { /* jb_cuda_ctx */
    const jamba_model *model;
    const jamba_config *cfg;
    const jb_cuda_weights *w;
    int device, sms;
    jamba_dtype dt;
    size_t es;                   /* bytes per dt element */
    int32_t S;
    int64_t C, Tb, cap, rows_max; /* rows_max = min(Tb, ...) segments per step bound */
    int64_t V, H, Di, N, K, R, I, E, k, q, kv, A, M, L;
    cudaStream_t stream;
    cublasHandle_t blas;
    char *arena;
    size_t arena_bytes;
    void *blas_ws;               /* the cuBLAS workspace inside the arena */
    unsigned int *sync_counter;  /* zero between kernels: the fused decode products' last-block count */
    int mamba_grid[2];           /* the cooperative Mamba mixer's grid for 1 and for 2..FUSED_ROWS rows; 0: the
                                    four-launch path (no cooperative launch, or JAMBA_CUDA_NO_COOPERATIVE set) */

    /* sequence state */
    jamba_dtype kv_dt;           /* dt, or F8_E4M3 with kv_scale */
    size_t kv_es;
    void *kv_cache;              /* [S][A][2][C][kv] kv_dt */
    float *kv_scale;             /* F8_E4M3: [S][A][2][C][n_kv] per (token, head); else NULL */
    float *conv;                 /* [S][M][D_i][K-1] */
    float *ssm;                  /* [S][M][D_i][N] */

    /* workspaces, Tb rows */
    float *x, *mix;              /* [Tb, H] residual stream, mixer/FFN output */
    void *xn;                    /* [Tb, H] dt normalised input */
    void *wide;                  /* [Tb, max(2 D_i, q + 2kv, 2I)] dt: in_proj | qkv | dense gate_up */
    void *u;                     /* [Tb, D_i] dt conv output */
    float *xdbl;                 /* [Tb, R + 2N] */
    void *dt_in;                 /* [Tb, R] dt */
    void *delta;                 /* [Tb, D_i] dt */
    void *y;                     /* [Tb, max(D_i, q, I)] dt: scan out | attention out | dense act */
    float *summary;              /* [2, SCAN_SLOTS, D_i, N] */
    float *partial;              /* attention split scratch */
    int64_t partial_cap;
    unsigned int *split_count;   /* zero between kernels: attention's split arrivals per (row, head group) */
    int64_t split_count_cap;
    int64_t split_len_min;
    /* MoE, Tb * k slots */
    float *router;               /* [Tb, E] */
    int32_t *experts;            /* [Tb, k] */
    float *weights;              /* [Tb, k] */
    int32_t *begin;              /* [E + 1] */
    int32_t *slot_token, *slot_pos;
    float *slot_weight;
    void *gathered;              /* [Tb k, H] dt */
    void *gu;                    /* [Tb k, 2I] dt */
    void *act;                   /* [Tb k, I] dt */
    float *expert_out;           /* [Tb k, H] */
    int32_t *h_begin;            /* pinned [E + 1] */
    /* logits */
    float *final_rows;           /* [max(cap, graph rows), H] */
    void *final_act;             /* [max(cap, graph rows), H] dt */
    float *logits;               /* [cap, V]: this call's logit rows */
    float *graph_logits;         /* [GRAPH_ROWS, V]: a graph step's logits of all its rows */

    /* step metadata: device copy and pinned host mirror of one block */
    char *d_meta, *h_meta;
    size_t meta_bytes;
    int64_t max_segs, max_chunks;
    int32_t *d_tokens, *h_tokens;       /* [Tb] */
    int32_t *d_row_seg, *h_row_seg;     /* [Tb] */
    jb_cuda_seg *d_segs, *h_segs;        /* [max_segs] */
    jb_cuda_chunk *d_chunks, *h_chunks;  /* [max_chunks] */
    int64_t *d_logit_src, *h_logit_src; /* [max(cap, GRAPH_ROWS)] */

    /* sampling */
    jb_sample_params *d_sample_params, *h_sample_params;  /* [SAMPLE_ROWS] */
    int32_t *d_penalized, *h_penalized;             /* [SAMPLE_ROWS, MAX_PENALIZED] */
    float *d_sample_work;                     /* [SAMPLE_ROWS, V] */
    int32_t *d_sample_tokens, *h_sample_tokens, *d_sample_used, *h_sample_used; /* [SAMPLE_ROWS] */

    /* CUDA graphs of decode steps, by row count */
    bool graphs;
    cudaGraphExec_t graph[JB_CUDA_GRAPH_ROWS + 1];
    jb_graph_census census[JB_CUDA_GRAPH_ROWS + 1]; /* each graph's nodes, counted at capture */

    /* a step queued without a final synchronisation (its pinned layout may still be in flight) */
    bool pending;

    /* the first device fault; the context is dead after it */
    bool dead;
    char fault[256];
};

/* Record a fault (the first one wins), mark the context dead, return JAMBA_ERR_DEVICE. */
jamba_status jb_cuda_fault(jb_cuda_ctx *c, jamba_error *err, const char *what, const char *detail);
/* JAMBA_ERR_DEVICE when the context is dead, else JAMBA_OK. */
jamba_status jb_cuda_check_alive(const jb_cuda_ctx *c, jamba_error *err);

/* Selects the context's device for the lifetime of the object, restoring the caller's afterwards. */
struct jb_device_scope {
    int previous;
    explicit jb_device_scope(int device) : previous(0) {
        cudaGetDevice(&previous);
        cudaSetDevice(device);
    }
    ~jb_device_scope() { cudaSetDevice(previous); }
};

#endif /* JB_CUDA_CONTEXT_DEV_H */

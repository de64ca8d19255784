/*
 * ctx_layout.h — the device memory of a CUDA context and of a model's device weights, computed from the
 * config and the sizes alone. The one size computation behind both the allocation (cuda/context.cu,
 * cuda/weights.cu) and the memory planner (runtime/plan.c, `jamba inspect --device cuda`). Plain C, built
 * in every configuration.
 *
 * Letters: S sequences, C tokens per sequence, Tb rows per step (the prefill chunk), cap logit rows; the
 * rest as in ckpt/weights.h.
 */
#ifndef JB_CUDA_CTX_LAYOUT_H
#define JB_CUDA_CTX_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JB_CUDA_ARENA_ALIGN 256
#define JB_CUDA_SPLIT_BUDGET 4096   /* rows x key splits one attention call may use */
#define JB_CUDA_MIN_SPLIT_LEN 256   /* keys per split at least */
#define JB_CUDA_SCAN_SLOTS 64       /* time-chunk summaries per step */
#define JB_CUDA_GEMV_SLOTS 64       /* MoE (token, expert) slots up to which experts run as GEMVs */
#define JB_CUDA_GRAPH_ROWS 64       /* decode steps up to this many rows become CUDA graphs */
#define JB_CUDA_SAMPLE_ROWS 64      /* rows per sampling launch */
#define JB_CUDA_BLAS_WORKSPACE ((uint64_t)32 << 20) /* cuBLAS's recommendation for Hopper */

/* The buffers of a context's one device allocation, in arena order. */
typedef enum jb_ctx_buf {
    JB_BUF_KV,           /* [S][A][2][C][kv] kv_dt */
    JB_BUF_KV_SCALE,     /* fp8 KV: [S][A][2][C][n_kv] f32 */
    JB_BUF_CONV,         /* [S][M][D_i][K-1] f32 */
    JB_BUF_SSM,          /* [S][M][D_i][N] f32 */
    JB_BUF_X,            /* [Tb, H] f32 */
    JB_BUF_MIX,          /* [Tb, H] f32 */
    JB_BUF_XN,           /* [Tb, H] dt */
    JB_BUF_WIDE,         /* [Tb, max(2 D_i, q + 2kv, 2I)] dt */
    JB_BUF_U,            /* [Tb, D_i] dt */
    JB_BUF_XDBL,         /* [Tb, R + 2N] f32 */
    JB_BUF_DT_IN,        /* [Tb, R] dt */
    JB_BUF_DELTA,        /* [Tb, D_i] dt */
    JB_BUF_Y,            /* [Tb, max(D_i, q, I)] dt */
    JB_BUF_SUMMARY,      /* [2, SCAN_SLOTS, D_i, N] f32 */
    JB_BUF_PARTIAL,      /* attention split scratch, f32 */
    JB_BUF_ROUTER,       /* [Tb, E] f32 */
    JB_BUF_EXPERTS,      /* [Tb k] i32 */
    JB_BUF_WEIGHTS,      /* [Tb k] f32 */
    JB_BUF_BEGIN,        /* [E + 1] i32 */
    JB_BUF_SLOT_TOKEN,   /* [Tb k] i32 */
    JB_BUF_SLOT_POS,     /* [Tb k] i32 */
    JB_BUF_SLOT_WEIGHT,  /* [Tb k] f32 */
    JB_BUF_GATHERED,     /* [Tb k, H] dt */
    JB_BUF_GU,           /* [Tb k, 2I] dt */
    JB_BUF_ACT,          /* [Tb k, I] dt */
    JB_BUF_EXPERT_OUT,   /* [Tb k, H] f32 */
    JB_BUF_DEQUANT,      /* int8 FFN block widened for cuBLAS: [2I, H] dt */
    JB_BUF_FINAL_ROWS,   /* [max(cap, GRAPH_ROWS), H] f32 */
    JB_BUF_FINAL_ACT,    /* [max(cap, GRAPH_ROWS), H] dt */
    JB_BUF_LOGITS,       /* [cap, V] f32 */
    JB_BUF_GRAPH_LOGITS, /* [GRAPH_ROWS, V] f32 when graphs are on */
    JB_BUF_META,         /* the step layout block */
    JB_BUF_SAMPLE_PARAMS,
    JB_BUF_SAMPLE_PEN,
    JB_BUF_SAMPLE_WORK,  /* [SAMPLE_ROWS, V] f32 */
    JB_BUF_SAMPLE_TOK,
    JB_BUF_SAMPLE_USED,
    JB_BUF_BLAS,         /* the cuBLAS workspace */
    JB_BUF_COUNT
} jb_ctx_buf;

/* What a context's device memory depends on besides the config. */
typedef struct jb_ctx_shape {
    int32_t S;
    int64_t C, Tb, cap;
    jamba_dtype dt;        /* activations: F32 or BF16 */
    jamba_dtype kv_dt;     /* dt, or F8_E4M3 */
    bool graphs;
    uint64_t dequant_elems; /* the weights' largest int8 FFN block (2I x H), 0 without int8 */
} jb_ctx_shape;

typedef struct jb_ctx_layout {
    uint64_t bytes[JB_BUF_COUNT];  /* each buffer's size */
    uint64_t offset[JB_BUF_COUNT]; /* its place in the arena (JB_CUDA_ARENA_ALIGN aligned) */
    uint64_t total;                /* the arena */
    int64_t max_segs, max_chunks;  /* step layout capacities */
    int64_t partial_floats;        /* attention split scratch */
} jb_ctx_layout;

/* The arena of a context; JAMBA_ERR_OVERFLOW naming the sizes when they do not fit 64 bits. */
jamba_status jb_ctx_layout_plan(const jamba_config *cfg, const jb_ctx_shape *s, jb_ctx_layout *out,
                                jamba_error *err);

/* The parts of the step layout block, in order. */
typedef enum jb_meta_part {
    JB_META_TOKENS,     /* [Tb] i32 */
    JB_META_ROW_SEG,    /* [Tb] i32 */
    JB_META_SEGS,       /* [max_segs] jb_cuda_seg */
    JB_META_CHUNKS,     /* [max_chunks] jb_cuda_chunk */
    JB_META_LOGIT_SRC,  /* [max(cap, GRAPH_ROWS)] i64 */
    JB_META_PARTS
} jb_meta_part;

/* The step layout block for these capacities: each part's offset (16-byte aligned) into offset[] when
 * it is not NULL; returns the block's bytes. cuda/context.cu places its pointers by these offsets. */
uint64_t jb_ctx_meta_layout(int64_t Tb, int64_t max_segs, int64_t max_chunks, int64_t cap,
                            uint64_t offset[JB_META_PARTS]);

/* Device weight formats. */
typedef struct jb_weight_shape {
    jamba_dtype dt;    /* matrices: F32 or BF16 */
    bool experts_int8; /* MoE experts held as int8 with row scales */
    bool mlp_int8;     /* dense MLPs likewise */
    bool inner_norms;  /* dt/B/C norm weights present */
} jb_weight_shape;

/* The device arena cuda/weights.cu plans for a model of this config and these formats (the same
 * tensors, sizes and alignment); *dequant_elems = the largest int8 FFN block. false on overflow. */
bool jb_weights_device_bytes(const jamba_config *cfg, const jb_weight_shape *w, uint64_t *bytes,
                             uint64_t *dequant_elems);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_CTX_LAYOUT_H */

/*
 * ctx_layout.h — the device memory of a CUDA context and of a model's device weights, computed from the
 * config and the sizes alone. The one size computation behind both the allocation (cuda/context.cu,
 * cuda/weights.cu) and the memory planner (cuda/plan.c, `jamba inspect --device cuda`). Plain C, built
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

/* The buffers of a context's one device allocation, in arena order: BUF(NAME, field of the CUDA context
 * that points at it, its bytes). The one list: the enum below, the sizes (jb_ctx_layout_plan, whose
 * locals the byte expressions name) and the context's pointers (cuda/context.cu) all expand it. */
#define JB_CTX_BUFFERS(BUF) \
    BUF(KV, kv_cache, prod(&z, S * A * 2, C, kv, kv_es)) /* [S][A][2][C][kv] kv_dt */ \
    BUF(KV_SCALE, kv_scale, fp8 ? prod(&z, S * A * 2, C, n_kv, 4) : 0) /* fp8 KV: [S][A][2][C][n_kv] f32 */ \
    BUF(CONV, conv, prod(&z, S * M, Di, (uint64_t)(c->mamba_d_conv - 1), 4)) /* [S][M][D_i][K-1] f32 */ \
    BUF(SSM, ssm, prod(&z, S * M, Di, N, 4)) /* [S][M][D_i][N] f32 */ \
    BUF(X, x, prod(&z, Tb, H, 4, 1)) /* [Tb, H] f32 */ \
    BUF(MIX, mix, prod(&z, Tb, H, 4, 1)) /* [Tb, H] f32 */ \
    BUF(XN, xn, prod(&z, Tb, H, es, 1)) /* [Tb, H] dt */ \
    BUF(WIDE, wide, prod(&z, Tb, (uint64_t)max3(M ? 2 * c->mamba_d_inner : 0, A ? q + 2 * (int64_t)kv : 0, 2 * c->intermediate_size), es, 1)) /* [Tb, max(2 D_i, q + 2kv, 2I)] dt */ \
    BUF(U, u, prod(&z, m_on * Tb, Di, es, 1)) /* [Tb, D_i] dt */ \
    BUF(XDBL, xdbl, prod(&z, m_on * Tb, R + 2 * N, 4, 1)) /* [Tb, R + 2N] f32 */ \
    BUF(DT_IN, dt_in, prod(&z, m_on * Tb, R, es, 1)) /* [Tb, R] dt */ \
    BUF(DELTA, delta, prod(&z, m_on * Tb, Di, es, 1)) /* [Tb, D_i] dt */ \
    BUF(Y, y, prod(&z, Tb, (uint64_t)max3(M ? c->mamba_d_inner : 0, A ? q : 0, c->intermediate_size), es, 1)) /* [Tb, max(D_i, q, I)] dt */ \
    BUF(SUMMARY, summary, prod(&z, m_on * 2 * JB_CUDA_SCAN_SLOTS, Di, N, 4)) /* [2, SCAN_SLOTS, D_i, N] f32 */ \
    BUF(PARTIAL, partial, prod(&z, a_on * (uint64_t)out->partial_floats, 4, 1, 1)) /* attention split scratch, f32 */ \
    BUF(SPLIT_COUNT, split_count, prod(&z, (uint64_t)out->split_counters, 4, 1, 1)) /* u32, zero between launches: attention's split arrivals */ \
    BUF(ROUTER, router, prod(&z, moe ? Tb : 0, E, 4, 1)) /* [Tb, E] f32 */ \
    BUF(EXPERTS, experts, prod(&z, slots, 4, 1, 1)) /* [Tb k] i32 */ \
    BUF(WEIGHTS, weights, prod(&z, slots, 4, 1, 1)) /* [Tb k] f32 */ \
    BUF(BEGIN, begin, moe ? (E + 1) * 4 : 0) /* [E + 1] i32 */ \
    BUF(SLOT_TOKEN, slot_token, prod(&z, slots, 4, 1, 1)) /* [Tb k] i32 */ \
    BUF(SLOT_POS, slot_pos, prod(&z, slots, 4, 1, 1)) /* [Tb k] i32 */ \
    BUF(SLOT_WEIGHT, slot_weight, prod(&z, slots, 4, 1, 1)) /* [Tb k] f32 */ \
    BUF(GATHERED, gathered, prod(&z, slots, H, es, 1)) /* [Tb k, H] dt */ \
    BUF(GU, gu, prod(&z, slots, 2 * I, es, 1)) /* [Tb k, 2I] dt */ \
    BUF(ACT, act, prod(&z, slots, I, es, 1)) /* [Tb k, I] dt */ \
    BUF(EXPERT_OUT, expert_out, prod(&z, slots, H, 4, 1)) /* [Tb k, H] f32 */ \
    BUF(FINAL_ROWS, final_rows, prod(&z, logit_rows, H, 4, 1)) /* [max(cap, GRAPH_ROWS), H] f32 */ \
    BUF(FINAL_ACT, final_act, prod(&z, logit_rows, H, es, 1)) /* [max(cap, GRAPH_ROWS), H] dt */ \
    BUF(LOGITS, logits, prod(&z, (uint64_t)s->cap, V, 4, 1)) /* [cap, V] f32 */ \
    BUF(GRAPH_LOGITS, graph_logits, prod(&z, s->graphs ? JB_CUDA_GRAPH_ROWS : 0, V, 4, 1)) /* [GRAPH_ROWS, V] f32 when graphs are on */ \
    BUF(META, d_meta, jb_ctx_meta_layout(s->Tb, out->max_segs, out->max_chunks, s->cap, NULL)) /* the step layout block */ \
    BUF(SAMPLE_PARAMS, d_sample_params, JB_CUDA_SAMPLE_ROWS * sizeof(jb_sample_params)) \
    BUF(SAMPLE_PEN, d_penalized, (uint64_t)JB_CUDA_SAMPLE_ROWS * JB_SAMPLE_MAX_PENALIZED * 4) \
    BUF(SAMPLE_WORK, d_sample_work, prod(&z, JB_CUDA_SAMPLE_ROWS, V, 4, 1)) /* [SAMPLE_ROWS, V] f32 */ \
    BUF(SAMPLE_TOK, d_sample_tokens, JB_CUDA_SAMPLE_ROWS * 4) \
    BUF(SAMPLE_USED, d_sample_used, JB_CUDA_SAMPLE_ROWS * 4) \
    BUF(BLAS, blas_ws, JB_CUDA_BLAS_WORKSPACE) /* the cuBLAS workspace */ \
    BUF(SYNC, sync_counter, 4) /* u32, zero between kernels: the last-block count of the fused decode products */

typedef enum jb_ctx_buf {
#define JB_CTX_BUF_ENUM(name, field, bytes) JB_BUF_##name,
    JB_CTX_BUFFERS(JB_CTX_BUF_ENUM)
#undef JB_CTX_BUF_ENUM
    JB_BUF_COUNT
} jb_ctx_buf;

/* What a context's device memory depends on besides the config. */
typedef struct jb_ctx_shape {
    int32_t S;
    int64_t C, Tb, cap;
    jamba_dtype dt;        /* activations: F32 or BF16 */
    jamba_dtype kv_dt;     /* dt, or F8_E4M3 */
    bool graphs;
} jb_ctx_shape;

typedef struct jb_ctx_layout {
    uint64_t bytes[JB_BUF_COUNT];  /* each buffer's size */
    uint64_t offset[JB_BUF_COUNT]; /* its place in the arena (JB_CUDA_ARENA_ALIGN aligned) */
    uint64_t total;                /* the arena */
    int64_t max_segs, max_chunks;  /* step layout capacities */
    int64_t partial_floats;        /* attention split scratch */
    int64_t split_counters;        /* attention's arrival counters, one per (row, KV head, head group) */
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
 * tensors, sizes and alignment). false on overflow. */
bool jb_weights_device_bytes(const jamba_config *cfg, const jb_weight_shape *w, uint64_t *bytes);

/* The config whose tensors the device holds: stored dt/B/C norms are applied whatever the config says. A
 * sharding plan for device weights is made from it. */
jamba_config jb_weights_device_config(const jamba_config *cfg, const jb_weight_shape *w);

/* One GPU's share of the device weights under a sharding plan (parallel/shard.h), by the rules above. */
typedef struct jb_weights_share {
    uint64_t bytes;         /* the arena: the slices held, in the blocks and alignment of a whole model */
    uint64_t payload;       /* the same without alignment padding */
    uint64_t replicated;    /* of payload: what every GPU holds in full (replicated tensors, and the row
                               scales of int8 matrices whose columns are split) */
} jb_weights_share;

/* Rank `rank`'s share under `plan` (made from jb_weights_device_config's config), or the whole model when
 * plan is NULL (then equal to jb_weights_device_bytes). false on overflow or a plan for other tensors. */
struct jb_shard_plan;
bool jb_weights_device_share(const jamba_config *cfg, const jb_weight_shape *w, const struct jb_shard_plan *plan,
                             int rank, jb_weights_share *out);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_CTX_LAYOUT_H */

/*
 * decode_plan.c — the launches of a decode step, counted from the config (decode_plan.h). Each figure
 * names the kernels it stands for; they follow cuda/forward.cu, layers.cu, ffn.cu and moe.cu, and the GPU
 * test that captures a decode graph fails when the two disagree.
 */
#include "cuda/decode_plan.h"

#include "ckpt/config.h"
#include "cuda/ctx_layout.h"

bool jb_cuda_decode_fused(bool every_segment_one_row, bool capture, int64_t T, int64_t n_logits) {
    return every_segment_one_row && !capture && T >= 1 && T <= JB_CUDA_FUSED_ROWS && n_logits <= JB_CUDA_FUSED_ROWS;
}

bool jb_cuda_decode_launches(const jamba_config *cfg, const jb_decode_shape *shape, jb_decode_launches *out) {
    const int64_t T = shape->T, L = cfg->num_hidden_layers;
    const int64_t k = cfg->num_experts > 1 ? cfg->num_experts_per_tok : 0;
    /* a decode step is a graph only within these bounds; beyond them MoE's launches depend on the routing */
    if (T < 1 || L < 1 || T > JB_CUDA_GRAPH_ROWS || T * k > JB_CUDA_GEMV_SLOTS || cfg->attn_layer_period < 1 ||
        cfg->expert_layer_period < 1)
        return false;
    jb_decode_launches n = {0};
    n.fused = jb_cuda_decode_fused(true, false, T, T);
    const int64_t bias = cfg->mamba_proj_bias, window = cfg->mamba_d_conv > 1;
    const int64_t scan = 1;   /* decode rows are one-chunk segments: the chunk kernel alone */
    const int64_t moe = 6;    /* router (cuBLAS), route, plan, gate|up with SwiGLU, down, combine (moe.cu) */
    /* a fused step's MoE block: router + route + plan, gate|up with SwiGLU, down + combine + residual + norm */
    const bool moe_fused = n.fused && cfg->num_experts <= JB_CUDA_FUSED_ROUTER_EXPERTS;
    int64_t blas_moe = moe_fused ? 0 : 1, blas_mamba, blas_attention, blas_dense, blas_tail;
    if (n.fused) {
        n.head = 1;           /* embedding with the first input norm */
        /* mamba_decode.cu: one cooperative kernel, or in_proj + conv1d, x_proj + dt/B/C norms, dt_proj + scan,
         * out_proj + residual + norm */
        n.mamba = shape->mamba_coop ? 1 : 4;
        n.attention = 4;      /* qkv, KV append, attention (its splits merged by their last block), o_proj +
                                 residual + norm */
        n.dense = shape->mlp_int8 ? 3 : 2; /* int8: GEMV, SwiGLU, GEMV into mix; else gate|up + SwiGLU, down + norm */
        n.moe = moe_fused ? 3 : moe;
        n.between = 1;        /* residual add + norm after an FFN whose output stays in mix (int8 MLP, unfused MoE) */
        n.tail = 1;           /* lm_head (the final norm is in the last output product or a boundary) */
        blas_mamba = blas_attention = blas_dense = blas_tail = 0;
    } else {
        n.head = 1;           /* embedding */
        n.mamba = 6 + window + 2 * bias + scan; /* in_proj (+ bias), conv (+ window), x_proj, norms, dt_proj,
                                                    scan, out_proj (+ bias) */
        n.attention = 4;      /* qkv, KV append, attention, o_proj */
        n.dense = 3;          /* gate|up, SwiGLU, down */
        n.moe = moe;
        n.between = 1;        /* every input norm and pre-FFN norm, each with its residual add */
        n.tail = 4;           /* residual add, logit rows, final norm, lm_head */
        blas_mamba = 4, blas_attention = 2, blas_dense = shape->mlp_int8 ? 0 : 2, blas_tail = 1;
    }
    int64_t n_mamba = 0, n_attn = 0, n_moe = 0;
    for (int64_t l = 0; l < L; l++) {
        n_attn += jb_layer_is_attention(cfg, l);
        n_moe += jb_layer_is_moe(cfg, l);
    }
    n_mamba = L - n_attn;
    const int64_t n_dense = L - n_moe;
    n.n_between = n.fused ? (moe_fused ? 0 : n_moe) + (shape->mlp_int8 ? n_dense : 0) : 2 * L;
    n.total = n.head + n_mamba * n.mamba + n_attn * n.attention + n_dense * n.dense + n_moe * n.moe +
              n.n_between * n.between + n.tail;
    n.blas_calls = n_mamba * blas_mamba + n_attn * blas_attention + n_dense * blas_dense + n_moe * blas_moe + blas_tail;
    *out = n;
    return true;
}

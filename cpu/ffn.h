/*
 * cpu_ffn.h — the feed-forward half of a layer on the CPU: the dense SwiGLU MLP and the sparse MoE block
 * (route with moe/router.h, then one grouped product per expert over all of its tokens, weighted combine).
 */
#ifndef JB_CPU_FFN_H
#define JB_CPU_FFN_H

#include <stdint.h>

#include "ckpt/weights.h"
#include "moe/router.h"
#include "base/threadpool.h"
#include "cpu/ops.h"

typedef struct jb_ffn_workspace {
    float *gate;           /* [T, I] */
    float *up;             /* [T, I] */
    float *gathered;       /* [T, H] an expert's input rows */
    float *expert_out;     /* [T, H] an expert's output rows */
    float *router;         /* [T, E] logits, then probabilities */
    int32_t *experts;      /* [T, k] */
    float *weights;        /* [T, k] */
    jb_moe_plan plan;      /* arrays sized for T tokens */
    int64_t rows;          /* rows gate, up, gathered and expert_out hold (0: the T of the call) */
} jb_ffn_workspace;

/* out[T, H] = down(SiLU(gate(x)) ⊙ up(x)) */
void jb_cpu_mlp(const jb_cpu_exec *ex, jb_ffn_workspace *ws, const jb_mlp_weights *w, const float *x, int64_t T,
                float *out);

/* Where a copy of the router's logits goes: the first `rows` rows of [T, E], or nowhere (dst NULL). */
typedef struct jb_moe_logits_out {
    float *dst;   /* [rows, E] */
    int64_t rows;
} jb_moe_logits_out;

/* out[T, H] = Σ over each token's top-k experts of weight · expert(x); router [E, H]; experts [E].
 * logits_out (or NULL) receives the router logits before routing. */
void jb_cpu_moe(const jb_cpu_exec *ex, jb_ffn_workspace *ws, const jb_weight *router, const jb_mlp_weights *experts,
                int64_t n_experts, int64_t top_k, const float *x, int64_t T, float *out,
                const jb_moe_logits_out *logits_out);

#endif /* JB_CPU_FFN_H */

/*
 * cpu_ffn.c — dense SwiGLU and the MoE block.
 */
#include "cpu/ffn.h"

#include "cpu/ops.h"

#include <string.h>

void jb_cpu_mlp(const jb_cpu_exec *ex, jb_ffn_workspace *ws, const jb_mlp_weights *w, const float *x, int64_t T,
                float *out) {
    jb_cpu_matmul_swiglu(ex, ws->gate, ws->up, x, T, &w->gate_proj, &w->up_proj);
    jb_cpu_matmul_ex(ex, out, ws->gate, T, &w->down_proj, NULL);
}

void jb_cpu_moe(const jb_cpu_exec *ex, jb_ffn_workspace *ws, const jb_weight *router, const jb_mlp_weights *experts,
                int64_t n_experts, int64_t top_k, const float *x, int64_t T, float *out,
                const jb_moe_logits_out *logits_out) {
    const int64_t H = router->shape[1];
    jb_cpu_matmul_ex(ex, ws->router, x, T, router, NULL);
    if (logits_out && logits_out->dst && logits_out->rows > 0)
        memcpy(logits_out->dst, ws->router, (size_t)(logits_out->rows * n_experts) * sizeof *ws->router);
    jb_moe_route(ws->router, T, n_experts, top_k, ws->experts, ws->weights);
    jb_moe_plan_build(&ws->plan, ws->experts, ws->weights, T, n_experts, top_k);
    memset(out, 0, (size_t)(T * H) * sizeof *out);
    /* Experts in ascending order, so each token's contributions are added in expert-id order. */
    for (int64_t e = 0; e < n_experts; e++) {
        const int64_t first = ws->plan.expert_begin[e], count = ws->plan.expert_begin[e + 1] - first;
        if (count == 0)
            continue;
        for (int64_t i = 0; i < count; i++)
            memcpy(ws->gathered + i * H, x + ws->plan.slot_token[first + i] * H, (size_t)H * sizeof *x);
        jb_cpu_mlp(ex, ws, &experts[e], ws->gathered, count, ws->expert_out);
        for (int64_t i = 0; i < count; i++) {
            float *dst = out + ws->plan.slot_token[first + i] * H;
            const float *src = ws->expert_out + i * H, w = ws->plan.slot_weight[first + i];
            for (int64_t h = 0; h < H; h++)
                dst[h] += src[h] * w;
        }
    }
}

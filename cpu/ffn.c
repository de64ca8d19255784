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
    /* The used experts in ascending order, as many at a time as the workspace has rows for (all of them in a
     * decode step): their rows gathered one expert after another, the gate and up products of all of them
     * one parallel job, the down products another; each token's contributions added in expert-id order. */
    const int64_t capacity = ws->rows > T ? ws->rows : T; /* an expert has at most T rows */
    for (int64_t e0 = 0; e0 < n_experts;) {
        jb_cpu_part ffn[JB_CPU_MAX_PARTS], down[JB_CPU_MAX_PARTS];
        int64_t used[JB_CPU_MAX_PARTS], rows = 0;
        int n = 0;
        for (; e0 < n_experts && n < JB_CPU_MAX_PARTS; e0++) {
            const int64_t first = ws->plan.expert_begin[e0], count = ws->plan.expert_begin[e0 + 1] - first;
            if (count == 0)
                continue;
            if (rows + count > capacity)
                break;
            for (int64_t i = 0; i < count; i++)
                memcpy(ws->gathered + (rows + i) * H, x + ws->plan.slot_token[first + i] * H, (size_t)H * sizeof *x);
            const jb_mlp_weights *w = &experts[e0];
            const int64_t I = w->gate_proj.shape[0];
            ffn[n] = (jb_cpu_part){ws->gathered + rows * H, count, &w->gate_proj, &w->up_proj, ws->gate + rows * I,
                                   ws->up + rows * I};
            down[n] = (jb_cpu_part){ws->gate + rows * I, count, &w->down_proj, NULL, ws->expert_out + rows * H, NULL};
            used[n++] = e0;
            rows += count;
        }
        jb_cpu_matmul_parts(ex, ffn, n);
        jb_cpu_matmul_parts(ex, down, n);
        int64_t r = 0;
        for (int i = 0; i < n; r += down[i].T, i++) {
            const int64_t first = ws->plan.expert_begin[used[i]];
            for (int64_t j = 0; j < down[i].T; j++) {
                float *dst = out + ws->plan.slot_token[first + j] * H;
                const float *src = ws->expert_out + (r + j) * H, w = ws->plan.slot_weight[first + j];
                for (int64_t h = 0; h < H; h++)
                    dst[h] += src[h] * w;
            }
        }
    }
}

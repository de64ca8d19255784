/*
 * router.c — softmax + top-k routing and the expert-grouped dispatch plan.
 */
#include "moe/router.h"

#include "base/numeric.h"
#include "moe/rule.h"

#include <math.h>

void jb_moe_route(float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts_out, float *weights_out) {
    for (int64_t t = 0; t < T; t++) {
        float *p = logits + t * E;
        jb_softmax(p, E);
        int32_t *ex = experts_out + t * k;
        float *w = weights_out + t * k;
        for (int64_t j = 0; j < k; j++) {
            /* the best expert not yet chosen (moe/rule.h); the first unchosen index is the fallback, so the
             * result is always valid */
            int64_t best = -1;
            for (int64_t e = 0; e < E; e++) {
                int taken = 0;
                for (int64_t i = 0; i < j; i++)
                    taken |= ex[i] == e;
                if (taken)
                    continue;
                if (best < 0 || jb_moe_prefer(p[e], (int)e, p[best], (int)best))
                    best = e;
            }
            ex[j] = (int32_t)best;
            w[j] = p[best];
        }
    }
}

void jb_moe_plan_build(jb_moe_plan *plan, const int32_t *experts, const float *weights, int64_t T, int64_t E,
                       int64_t k) {
    plan->n_tokens = T;
    plan->n_experts = E;
    plan->top_k = k;
    for (int64_t e = 0; e <= E; e++)
        plan->expert_begin[e] = 0;
    for (int64_t s = 0; s < T * k; s++)
        plan->expert_begin[experts[s] + 1]++;
    for (int64_t e = 0; e < E; e++)
        plan->expert_begin[e + 1] += plan->expert_begin[e];
    /* Stable fill: slots are visited in token order, so each expert lists its tokens ascending. The
     * begin offsets serve as cursors and are shifted back afterwards. */
    for (int64_t s = 0; s < T * k; s++) {
        int64_t pos = plan->expert_begin[experts[s]]++;
        plan->slot_token[pos] = s / k;
        plan->slot_weight[pos] = weights[s];
    }
    for (int64_t e = E; e > 0; e--)
        plan->expert_begin[e] = plan->expert_begin[e - 1];
    plan->expert_begin[0] = 0;
}

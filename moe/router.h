/*
 * router.h — Jamba's MoE routing and the dispatch plan shared by every backend.
 *
 * Routing (docs/jamba-architecture.md §3.8): p = softmax(router logits) in fp32 over all E experts; the top-k
 * probabilities are the weights, with no renormalisation. Ties go to the lower expert index, NaN never
 * wins, and every chosen index is in [0, E).
 *
 * The plan groups the T*k (token, expert) slots by expert in ascending expert order, tokens ascending
 * within an expert (a stable counting sort), so each expert runs once over all of its tokens and the
 * combine adds a token's contributions in ascending expert order, as the reference does.
 */
#ifndef JB_MOE_ROUTER_H
#define JB_MOE_ROUTER_H

#include <stdint.h>

#include "jamba.h"

/* Route T tokens. logits [T, E] (overwritten with the probabilities); experts_out, weights_out [T, k]
 * in descending-probability order. */
void jb_moe_route(float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts_out, float *weights_out);

typedef struct jb_moe_plan {
    int64_t n_tokens, n_experts, top_k;
    int64_t *expert_begin; /* [E + 1]: expert e owns slots [expert_begin[e], expert_begin[e + 1]) */
    int64_t *slot_token;   /* [T * k]: the token of each slot */
    float *slot_weight;    /* [T * k]: its routing weight */
} jb_moe_plan;

/* Build the plan from routing results (experts, weights [T, k]). The caller provides the arrays:
 * expert_begin with E + 1 entries, slot_token and slot_weight with T * k each. */
void jb_moe_plan_build(jb_moe_plan *plan, const int32_t *experts, const float *weights, int64_t T, int64_t E,
                       int64_t k);

#endif /* JB_MOE_ROUTER_H */

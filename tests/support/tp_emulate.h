/*
 * tp_emulate.h — the forward pass as N tensor- and expert-parallel ranks in one process, for tests: each
 * rank holds only its slices of the weights (jb_shard_bind_rank, parallel/slice.h), the KV cache of its KV
 * heads and the Mamba state of its channels, and computes with the CPU op kernels (cpu/ops.h, mamba.h,
 * attention.h, ffn.h) on its own shapes (jb_shard_rank_config). The ranks meet only in this file's
 * reference collectives: all-reduce, reduce-scatter and all-gather of fp32 rows, and the all-to-all of
 * the MoE dispatch and combine; each layer runs exactly the collectives jb_shard_layer_collectives lists
 * for it, in its order and with its bytes per token, which the emulation asserts as it runs them.
 *
 * One sequence; every row of a step gets logits. Failures (a refused plan included) fail the test.
 */
#ifndef JB_TEST_TP_EMULATE_H
#define JB_TEST_TP_EMULATE_H

#include <stdint.h>

#include "jamba.h"
#include "parallel/shard.h"

typedef struct tp_model tp_model;

/* N ranks of model m (loaded with weights) for a sequence of up to n_ctx tokens. act_bytes: the activation
 * element size the plan's choices are made for (2: bf16, as a GPU runs; the MoE prefill exchange is
 * all-to-all when that moves fewer bytes); the emulation itself computes in fp32. */
tp_model *tp_create(const jamba_model *m, int n_ranks, int64_t n_ctx, int act_bytes);
void tp_free(tp_model *tp);

/* n tokens continuing the sequence, as one step of `phase`; logits [n, V] for every row. */
void tp_step(tp_model *tp, const int32_t *tokens, int64_t n, jb_phase phase, float *logits);

const jb_shard_plan *tp_plan(const tp_model *tp);

/* What the ranks exchanged so far: collectives run, and each op's payload in bytes (jb_collective.bytes
 * summed over the rows they carried). */
typedef struct tp_traffic {
    int64_t collectives;
    uint64_t bytes[JB_COLL_ALL_TO_ALL + 1]; /* by jb_coll_op */
} tp_traffic;

tp_traffic tp_traffic_so_far(const tp_model *tp);

/* Rank r's weights (its slices), in jb_weights_visit order like the plan's tensors. */
const struct jb_weights *tp_rank_weights(const tp_model *tp, int r);

#endif /* JB_TEST_TP_EMULATE_H */

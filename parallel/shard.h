/*
 * shard.h — how a model is split over N GPUs ("ranks"): for every tensor jb_weights_visit enumerates (the
 * one list of them), the slice each rank holds; the shapes a rank then computes with; and the collectives
 * one layer's forward needs, with their bytes per token (collectives.c); slice.h turns slices into bytes.
 * Backend-neutral host C: plans are made and checked without a GPU or NCCL (tests/test_tensor_parallel.c
 * runs them as emulated ranks). The plan: docs/multi-gpu.md; the layout and its arithmetic: docs/design.md.
 *
 *   attention   by KV-head groups: rank r holds KV heads [r n_kv/N, (r+1) n_kv/N) and the query heads that
 *               read them (GQA maps query head h to KV head h / (n_h/n_kv), so both are contiguous):
 *               q/k/v rows split, o_proj columns split, then an all-reduce of [H]. Needs N | n_h, and
 *               N | n_kv or n_kv | N: past n_kv ranks each KV head is held by N/n_kv ranks, each with
 *               n_h/N of its query heads (rank r: KV head r / (N/n_kv); copies = N/n_kv).
 *   Mamba       by inner channels: rank r holds channels [r D_i/N, (r+1) D_i/N): in_proj rows of the x half
 *               and of the z half, conv1d (+bias), dt_proj rows, dt bias, A_log, D; x_proj columns split
 *               with an all-reduce of its [R + 2N] output (dt, B, C: every channel needs all of them);
 *               out_proj columns split, then an all-reduce of [H]. Needs N | D_i.
 *   dense MLP   gate/up rows split over I, down columns split, then an all-reduce of [H]. Needs N | I.
 *   MoE         expert parallelism when N | E: rank r owns experts [r E/N, (r+1) E/N) whole. Otherwise each
 *               expert's I is split like a dense MLP (needs N | I), so any N dividing the heads and
 *               channels still plans; the choice is jb_shard_plan.moe.
 *   vocabulary  embed_tokens and lm_head rows split (balanced blocks; V need not divide): the embedding
 *               lookup ends in an all-reduce of [H], the logits in an all-gather.
 *   replicated  the norms, the router, the dt/B/C norms, out_proj's bias (added once, after the reduce).
 *
 * Letters as in ckpt/weights.h; N is the rank count here (d_state is written d_state).
 */
#ifndef JB_PARALLEL_SHARD_H
#define JB_PARALLEL_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "ckpt/weights.h"
#include "jamba.h"

#define JB_SHARD_MAX_RANKS JAMBA_MAX_GPUS

/* What one rank holds of one tensor: indices [begin, begin + count) of dimension dim, in each of the
 * tensor's `parts` equal parts of that dimension, and all of every other dimension. count 0: nothing. */
typedef struct jb_slice {
    int dim;
    int64_t begin;
    int64_t count;
} jb_slice;

typedef enum jb_split {
    JB_SPLIT_REPLICATED, /* every rank holds all of it: dim 0, begin 0, count = shape[0] */
    JB_SPLIT_SHARDED,    /* dim cut into N contiguous blocks (per part), block r on rank r; KV heads past n_kv
                            ranks: n_kv blocks, block r / (N/n_kv) on rank r */
    JB_SPLIT_OWNED,      /* one rank holds it whole (an expert under expert parallelism), the others nothing */
} jb_split;

/* The unit a sharded dimension is cut in. */
typedef enum jb_shard_axis {
    JB_AXIS_NONE,
    JB_AXIS_HEADS,   /* query heads (N | n_h): whole KV-head groups, or parts of one past n_kv ranks */
    JB_AXIS_KV,      /* KV heads (N | n_kv, or n_kv | N: each held by N/n_kv ranks) */
    JB_AXIS_INNER,   /* Mamba inner channels (N | D_i) */
    JB_AXIS_FFN,     /* an MLP's or expert's intermediate dim (N | I) */
    JB_AXIS_VOCAB,   /* vocabulary rows (balanced; any N) */
} jb_shard_axis;

typedef struct jb_shard_tensor {
    char name[NAME_BYTES]; /* canonical (Hugging Face, per-expert) name */
    int rank;
    int64_t shape[3];
    bool linear;           /* a linear layer's matrix (may be held int8) */
    int64_t layer;         /* -1: embedding, final norm, lm_head */
    jb_split split;
    jb_shard_axis axis;    /* JB_SPLIT_SHARDED: what the dimension is cut in */
    int parts;             /* the split dimension is this many equal parts each cut alike (in_proj: x | z) */
    int copies;            /* ranks holding each index it is split in: 1, N (replicated), N/n_kv (KV heads
                              past n_kv ranks) */
} jb_shard_tensor;

/* How the experts of the MoE layers are split. */
typedef enum jb_moe_split {
    JB_MOE_NONE,         /* no MoE layers */
    JB_MOE_EXPERTS,      /* expert parallelism: E/N whole experts per rank */
    JB_MOE_INTERMEDIATE, /* N does not divide E: every expert's I split over the ranks */
} jb_moe_split;

typedef struct jb_shard_plan {
    int n_ranks;
    jb_moe_split moe;
    jb_shard_tensor *tensors; /* [n_tensors], in jb_weights_visit order */
    int64_t n_tensors;
    jb_slice *slices;         /* [n_tensors][n_ranks] */
} jb_shard_plan;

/* The plan for n_ranks ranks, or JAMBA_ERR_INVALID_ARGUMENT saying which number n_ranks must divide (and
 * which counts would do) when it cannot split the model evenly. Free with jb_shard_plan_free. */
jamba_status jb_shard_plan_make(const jamba_config *cfg, int n_ranks, jb_shard_plan *out, jamba_error *err);
void jb_shard_plan_free(jb_shard_plan *p);

/* Rank r's slice of tensor t. */
static inline const jb_slice *jb_shard_slice(const jb_shard_plan *p, int64_t t, int r) {
    return &p->slices[t * p->n_ranks + r];
}

/* The elements of tensor t rank r holds; false when the count overflows 64 bits. */
bool jb_shard_held_elems(const jb_shard_plan *p, int64_t t, int r, uint64_t *out);

/* The rows (dimension-0 indices) of tensor t rank r holds: all of them under a column split, since a
 * partial product still needs every output row (and its int8 row scale). */
int64_t jb_shard_held_rows(const jb_shard_plan *p, int64_t t, int r);

/* The single-GPU shapes a rank computes with: heads, KV heads (at least 1) and Mamba channels divided by N, and the
 * intermediate width too unless experts stay whole (then I: the widest FFN block a rank runs). The vocab
 * and the expert count stay (the router runs on every rank; the logits are gathered whole). Every rank
 * has the same shapes, as the plan splits evenly. */
void jb_shard_rank_config(const jb_shard_plan *p, const jamba_config *cfg, jamba_config *out);

/* ---- collectives (collectives.c) ----------------------------------------------------------------- */

typedef enum jb_coll_op {
    JB_COLL_ALL_REDUCE,     /* partial sums to the sum on every rank */
    JB_COLL_REDUCE_SCATTER, /* partial sums to the sum, each rank keeping its 1/N of the tokens */
    JB_COLL_ALL_GATHER,     /* each rank's 1/N of the tokens to all of them on every rank */
    JB_COLL_ALL_TO_ALL,     /* token vectors to the ranks of their experts, or the results back */
} jb_coll_op;

/* The step kind: decode steps run few rows (latency-bound), prefill chunks many (bandwidth-bound). */
typedef enum jb_phase { JB_PHASE_DECODE, JB_PHASE_PREFILL } jb_phase;

typedef struct jb_collective {
    jb_coll_op op;
    const char *after; /* the operation it follows, e.g. "o_proj" */
    uint64_t bytes;    /* payload per token: the vector reduced or gathered (all-to-all: what a token sends) */
    uint64_t wire;     /* bytes each rank sends per token: ring algorithms; all-to-all with routing spread evenly */
} jb_collective;

#define JB_LAYER_COLLECTIVES_MAX 5

/* The collectives layer `layer` runs for one token, in order, into out; returns how many (0 with one
 * rank). act_bytes: the activation element size (2 for bf16, 4 for f32); reductions are fp32. */
int jb_shard_layer_collectives(const jb_shard_plan *p, const jamba_config *cfg, int64_t layer, jb_phase phase,
                               int act_bytes, jb_collective out[JB_LAYER_COLLECTIVES_MAX]);

/* The embedding's collective (an all-reduce of [H] fp32, per token) and the logits' (an all-gather of
 * [V] fp32, per logit row); both zero with one rank. */
jb_collective jb_shard_embed_collective(const jb_shard_plan *p, const jamba_config *cfg);
jb_collective jb_shard_logits_collective(const jb_shard_plan *p, const jamba_config *cfg);

/* One token through the whole model (embedding and every layer; the logits not included). */
typedef struct jb_token_traffic {
    int64_t collectives; /* launches per step */
    uint64_t bytes;      /* payload per token, summed */
    uint64_t wire;       /* bytes each rank sends per token, summed */
} jb_token_traffic;

jb_token_traffic jb_shard_token_traffic(const jb_shard_plan *p, const jamba_config *cfg, jb_phase phase,
                                        int act_bytes);

#endif /* JB_PARALLEL_SHARD_H */

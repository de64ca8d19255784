/*
 * decode_plan.h — the kernels one decode step launches on a single GPU (cuda/forward.cu and the files it
 * calls), counted on the host from the config: the figure a captured decode graph must show
 * (tests/gpu/test_gpu_model.c compares them) and the table of docs/design.md, "Decode step launches".
 * Also the rules the forward pass takes those decisions by, so the count and the code cannot drift apart:
 * which decode steps run the fused products (fused.cu).
 * Plain C, built and tested in every configuration.
 */
#ifndef JB_CUDA_DECODE_PLAN_H
#define JB_CUDA_DECODE_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JB_CUDA_FUSED_ROWS 8 /* decode steps up to this many rows run the fused products instead of cuBLAS */
#define JB_CUDA_FUSED_ROUTER_EXPERTS 1024 /* experts up to which a fused step's MoE block is three launches */

/* Whether a step runs the fused decode path: every segment one row, no hidden-state capture, at most
 * FUSED_ROWS rows and logit rows. */
bool jb_cuda_decode_fused(bool every_segment_one_row, bool capture, int64_t T, int64_t n_logits);

/* What the count depends on besides the config. */
typedef struct jb_decode_shape {
    int64_t T;          /* rows of the step, one per sequence */
    bool mlp_int8;      /* dense MLPs held as int8 (they keep the unfused products) */
    bool mamba_coop;    /* the context runs a fused step's Mamba mixer as one cooperative kernel */
} jb_decode_shape;

/* Launches of one decode step (a CUDA graph's kernel nodes), by where they happen. */
typedef struct jb_decode_launches {
    bool fused;                   /* the fused path (T <= FUSED_ROWS) */
    int64_t mamba, attention;     /* per mixer of each kind, its output's residual add and next norm included */
    int64_t dense, moe;           /* per FFN of each kind, likewise */
    int64_t between;              /* per layer boundary whose residual add + norm is a launch of its own */
    int64_t n_between;            /* how many such boundaries the step has */
    int64_t head, tail;           /* embedding and first norm; final norm and lm_head */
    int64_t total;
    int64_t blas_calls;           /* of total, cuBLAS calls (counted as one kernel; cuBLAS may launch two) */
} jb_decode_launches;

/* The count for `cfg` (its layer kinds from the periods and offsets) and `shape`; false when the config
 * or shape is out of range (T < 1, no layers). */
bool jb_cuda_decode_launches(const jamba_config *cfg, const jb_decode_shape *shape, jb_decode_launches *out);

/* A captured decode graph beside its plan. */
typedef struct jb_graph_census {
    int64_t kernels, nodes;   /* its kernel nodes, all its nodes */
    jb_decode_launches plan;  /* jb_cuda_decode_launches for the step it recorded */
    bool planned;             /* plan is filled in */
} jb_graph_census;

/* The census of the decode graph of T rows a CUDA context captured; false when it has none. Defined with
 * the kernels (cuda/forward.cu): CUDA builds only. */
struct jb_backend_ctx;
bool jb_cuda_graph_census(const struct jb_backend_ctx *c, int64_t T, jb_graph_census *out);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_DECODE_PLAN_H */

/*
 * tp_dev.h — a multi-GPU context's state (C++ only): cuda/tp_context.cu makes it and owns the state
 * operations and what the nodes exchange, cuda/tp_forward.cu runs steps on it. A process holds the ranks
 * of its node only. Letters as in context_dev.h; per rank (r of N):
 * vc_r its vocabulary rows, kv_r = its KV heads x d_h, D_r = D_i/N, I_r = I/N.
 */
#ifndef JB_CUDA_TP_DEV_H
#define JB_CUDA_TP_DEV_H

#include <nccl.h>

#include "cuda/context_dev.h"
#include "cuda/tp_ctx.h"
#include "cuda/tp_desc.h"
#include "cuda/tp_launch.h"
extern "C" {
#include "parallel/shard.h" /* a C header */
}

struct jb_tp_rank {
    int device;
    int rank;                  /* its global rank: node_rank x (N / n_nodes) + its index on this node */
    jamba_model view;          /* the model as the rank sees it: its config (jb_shard_rank_config), path, log;
                                  its CUDA context points at view.config */
    jb_cuda_weights *w;        /* its slices on its device */
    jb_cuda_ctx *c;            /* its KV heads, Mamba channels, workspaces, stream, and decode graphs by row
                                  count (c->graph[T], jb_cuda_graph_step decides, as on one GPU) */
    ncclComm_t comm;
    int64_t vocab_begin, vocab_count; /* its embedding and lm_head rows */
    int64_t kv_begin;          /* the first of the full [n_kv d_h] KV columns it holds (kv_r of them) */
    int64_t expert_first, expert_count; /* expert parallelism: the experts it owns; else 0, 0 */
    int64_t dense_I;           /* I_r: the intermediate width of its dense MLPs */
    unsigned char *d_desc;     /* several nodes: [desc_cap] the descriptor broadcast from global rank 0 */
    float *d_gather;           /* several nodes, global rank 0 only: [N, gather_rows, vc_max] every rank's logit
                                  rows, received from each */
};

struct jb_tp_ctx {
    const jamba_model *model;
    jamba_config cfg;          /* the model's, with the dt/B/C norms applied when stored (as on one GPU) */
    jb_shard_plan plan;
    int n;                     /* ranks over all nodes (the plan's N) */
    int n_local;               /* ranks in this process: N / n_nodes */
    int32_t n_nodes, node_rank;
    jb_tp_rank *ranks;         /* [n_local], global ranks node_rank x n_local .. */
    int32_t S;
    int64_t C, Tb, cap;
    bool graphs;               /* decode steps as per-rank CUDA graphs (params gpu_graphs) */
    jb_tp_launcher *launcher;  /* graphs: one thread per local rank past the first, for their launches */
    /* several nodes */
    jb_tp_desc_limits limits;  /* what a descriptor may hold */
    uint64_t desc_cap;         /* its largest size */
    unsigned char *h_desc;     /* [desc_cap] pinned: the descriptor sent or received */
    jb_tp_desc desc;           /* a follower's decoded descriptor */
    int64_t gather_rows, vc_max; /* the logit rows a step sends to global rank 0, the widest vocabulary slice */
    bool stopped;              /* node 0 sent stop (node 0) or a follower received it */
    bool dead;                 /* the first fault; the context can only be freed after it */
    char fault[256];
};

/* Record the first fault and return JAMBA_ERR_DEVICE naming it. */
jamba_status jb_tp_fault(jb_tp_ctx *t, jamba_error *err, int rank, const char *what, const char *detail);

/* Several nodes: broadcast the descriptor of len bytes in t->h_desc from global rank 0 (node 0) to every
 * rank, or (another node) receive it into t->h_desc and return its length in *len; JB_TP_DESC_HEAD bytes,
 * then the rest when there is more. tp_context.cu. */
jamba_status jb_tp_broadcast_desc(jb_tp_ctx *t, uint64_t *len, jamba_error *err);

/* The forward step itself, on every local rank (tp_forward.cu); host_logits may be NULL on another node. */
jamba_status jb_tp_run_step(jb_tp_ctx *t, const jb_step_io *io, jamba_error *err);
/* Record the first fault and return JAMBA_ERR_DEVICE naming it. */
jamba_status jb_tp_fault(jb_tp_ctx *t, jamba_error *err, int rank, const char *what, const char *detail);

#endif /* JB_CUDA_TP_DEV_H */

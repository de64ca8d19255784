/*
 * tp_dev.h — a multi-GPU context's state (C++ only): cuda/tp_context.cu makes it and owns the state
 * operations, cuda/tp_forward.cu runs steps on it. Letters as in context_dev.h; per rank (r of N):
 * vc_r its vocabulary rows, kv_r = its KV heads x d_h, D_r = D_i/N, I_r = I/N.
 */
#ifndef JB_CUDA_TP_DEV_H
#define JB_CUDA_TP_DEV_H

#include <nccl.h>

#include "cuda/context_dev.h"
#include "cuda/tp_ctx.h"
extern "C" {
#include "parallel/shard.h" /* a C header */
}

struct jb_tp_rank {
    int device;
    jamba_model view;          /* the model as the rank sees it: its config (jb_shard_rank_config), path, log;
                                  its CUDA context points at view.config */
    jb_cuda_weights *w;        /* its slices on its device */
    jb_cuda_ctx *c;            /* its KV heads, Mamba channels, workspaces and stream (graphs off) */
    ncclComm_t comm;
    int64_t vocab_begin, vocab_count; /* its embedding and lm_head rows */
    int64_t kv_begin;          /* the first of the full [n_kv d_h] KV columns it holds (kv_r of them) */
    int64_t expert_first, expert_count; /* expert parallelism: the experts it owns; else 0, 0 */
    int64_t dense_I;           /* I_r: the intermediate width of its dense MLP slices */
    int64_t *d_embed_src, *h_embed_src; /* [Tb] per step row: its row in the rank's embedding rows, or the
                                           zero row (device, pinned host mirror) */
};

struct jb_tp_ctx {
    const jamba_model *model;
    jamba_config cfg;          /* the model's, with the dt/B/C norms applied when stored (as on one GPU) */
    jb_shard_plan plan;
    int n;                     /* ranks */
    jb_tp_rank *ranks;         /* [n] */
    int32_t S;
    int64_t C, Tb, cap;
    bool dead;                 /* the first fault; the context can only be freed after it */
    char fault[256];
};

/* Record the first fault and return JAMBA_ERR_DEVICE naming it. */
jamba_status jb_tp_fault(jb_tp_ctx *t, jamba_error *err, int rank, const char *what, const char *detail);

#endif /* JB_CUDA_TP_DEV_H */

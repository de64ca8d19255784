/*
 * tp.h — the multi-GPU backend's operations table: one process driving the GPUs of one node over NCCL (all
 * N of them, or N / n_nodes when the context spans several nodes, one process each), each
 * GPU a rank of parallel/shard.h's plan (tensor parallelism for attention, Mamba and dense MLPs, expert
 * parallelism for the MoE layers). runtime/backends.c hands it CUDA contexts with n_gpus > 1. In a build
 * without CUDA or without NCCL it plans like the CUDA backend and refuses contexts with a clear status.
 * Design: docs/design.md "Several GPUs"; what has run: docs/multi-gpu.md.
 */
#ifndef JB_CUDA_TP_H
#define JB_CUDA_TP_H

#include <stddef.h>

#include "backend/backend.h"

extern const jb_backend_i jb_cuda_tp_backend;

/* Several nodes (jamba_context_follow): a context of node_rank > 0 runs node 0's operations until node 0
 * stops. JAMBA_ERR_INVALID_ARGUMENT for another context; without NCCL no such context exists. */
jamba_status jb_cuda_tp_follow(jb_backend_ctx *b, jamba_error *err);

/* jamba_nccl_unique_id: a fresh NCCL id made in this process, as hex (JAMBA_ERR_UNSUPPORTED without NCCL). */
jamba_status jb_cuda_tp_unique_id(char *hex, size_t size, jamba_error *err);

#endif /* JB_CUDA_TP_H */

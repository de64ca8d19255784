/*
 * tp.h — the multi-GPU backend's operations table: one process driving N GPUs of one node over NCCL, each
 * GPU a rank of parallel/shard.h's plan (tensor parallelism for attention, Mamba and dense MLPs, expert
 * parallelism for the MoE layers). runtime/backends.c hands it CUDA contexts with n_gpus > 1. In a build
 * without CUDA or without NCCL it plans like the CUDA backend and refuses contexts with a clear status.
 * Design: docs/design.md "Several GPUs"; what has run: docs/multi-gpu.md.
 */
#ifndef JB_CUDA_TP_H
#define JB_CUDA_TP_H

#include "backend/backend.h"

extern const jb_backend_i jb_cuda_tp_backend;

#endif /* JB_CUDA_TP_H */

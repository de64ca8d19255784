/*
 * tp_ctx.h — the C ABI of the multi-GPU backend's device side (cuda/tp_context.cu, cuda/tp_forward.cu),
 * compiled in with CUDA and NCCL; cuda/tp_backend.c wraps it into the backend table (tp.h).
 *
 * A context holds one rank per GPU of this process (devices gpu_index .. gpu_index + N / n_nodes - 1): its
 * slices of the weights (parallel/slice.h), a single-GPU CUDA context built for the rank's shapes
 * (jb_shard_rank_config) that holds its KV heads, Mamba channels, workspaces and decode graphs, and its NCCL
 * communicator (one node: one clique made by ncclCommInitAll; several: ncclCommInitRank per GPU from the
 * NCCL id of parallel/nccl_id.h, global rank node_rank x N / n_nodes + local index). Errors as cuda_ctx.h: a fault inside a step or state operation leaves the context dead.
 */
#ifndef JB_CUDA_TP_CTX_H
#define JB_CUDA_TP_CTX_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct jb_tp_ctx jb_tp_ctx;

/* The context for resolved and planned params p (n_gpus >= 1 ranks from p->gpu_index): JAMBA_ERR_NO_DEVICE
 * when fewer CUDA devices are visible, JAMBA_ERR_UNSUPPORTED for a device-synthetic model, the plan's
 * message when the model does not split over n_gpus. */
jamba_status jb_tp_ctx_create(const struct jamba_model *m, const jamba_context_params *p, jb_tp_ctx **out,
                              jamba_error *err);
void jb_tp_ctx_free(jb_tp_ctx *t);
/* Device bytes over all ranks: weights and contexts. */
uint64_t jb_tp_ctx_bytes(const jb_tp_ctx *t);

/* One forward step (backend `step`): io->host_logits is required (the logits are gathered to the host);
 * a capture is refused (JAMBA_ERR_UNSUPPORTED). Several nodes: node 0 first sends the step to the others
 * (they run it in jb_tp_follow), the abort callback is not polled inside a step (the other nodes could not
 * stop with it), and another node refuses steps of its own (JAMBA_ERR_UNSUPPORTED). */
jamba_status jb_tp_step(jb_tp_ctx *t, const jb_step_io *io, jamba_error *err);

/* Several nodes, node_rank > 0: run node 0's steps and sequence operations on this node's ranks until node 0
 * frees its context (JAMBA_OK) or a fault. JAMBA_ERR_INVALID_ARGUMENT on node 0 or a one-node context. */
jamba_status jb_tp_follow(jb_tp_ctx *t, jamba_error *err);

/* A fresh NCCL id made in this process (ncclGetUniqueId), as hex: size >= JAMBA_NCCL_ID_HEX_SIZE. */
jamba_status jb_tp_unique_id(char *hex, size_t size, jamba_error *err);

/* Sequence state over the ranks' shards, in the single-GPU layout of every piece (backend.h). With several
 * nodes, node 0's resets and copies run on every node; reads and writes are refused (JAMBA_ERR_UNSUPPORTED:
 * the pieces lie on other nodes). */
jamba_status jb_tp_seq_reset(jb_tp_ctx *t, int32_t seq, jamba_error *err);
jamba_status jb_tp_seq_copy(jb_tp_ctx *t, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err);
jamba_status jb_tp_state_read(jb_tp_ctx *t, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                              int64_t n, float *dst, jamba_error *err);
jamba_status jb_tp_state_write(jb_tp_ctx *t, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                               int64_t n, const float *src, jamba_error *err);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_TP_CTX_H */

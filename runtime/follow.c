/*
 * follow.c — a context split over several nodes, from the public API: the NCCL id node 0's process makes,
 * and the loop in which another node's context runs node 0's operations (cuda/tp.h; docs/multi-gpu.md).
 */
#include "runtime/context.h"

#include "base/error.h"
#include "cuda/tp.h"

jamba_status jamba_nccl_unique_id(char *hex, size_t size, jamba_error *err) {
    return jb_cuda_tp_unique_id(hex, size, err);
}

jamba_status jamba_context_follow(jamba_context *ctx, jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_follow: ctx is NULL");
    if (ctx->be != &jb_cuda_tp_backend || ctx->params.n_nodes < 2 || ctx->params.node_rank == 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_follow: the context is not another node's "
                       "part of a context over several nodes (n_nodes %d, node_rank %d)", ctx->params.n_nodes,
                       ctx->params.node_rank);
    return jb_cuda_tp_follow(ctx->state, err);
}

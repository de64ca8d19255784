/*
 * tp_backend.c — the multi-GPU backend's operations table (tp.h): the CUDA backend's parameter checks, the
 * memory plan of every GPU against the fullest one's free memory, and the context operations of
 * tp_ctx.h. Without CUDA or without NCCL it plans and refuses contexts.
 */
#include "cuda/tp.h"

#include "base/error.h"
#include "cuda/cuda.h"
#include "cuda/plan.h"

#include <string.h>

#if defined(JAMBA_WITH_CUDA) && defined(JAMBA_WITH_NCCL)
#include "cuda/cuda_ctx.h"
#include "cuda/device.h"
#include "cuda/tp_ctx.h"
#endif

/* The CUDA backend's parameter checks and defaults: the ranks are CUDA contexts. */
static jamba_status tp_resolve(const jamba_model *m, jamba_context_params *p, jamba_error *err) {
    return jb_cuda_backend.resolve(m, p, err);
}

/* The plan against the least free memory of this process's GPUs, gpu_index .. gpu_index + n_gpus / n_nodes - 1
 * (0: unknown). */
static jamba_status tp_plan(const jamba_model *m, const jamba_context_params *p, jamba_context_plan *out,
                            jamba_error *err) {
    uint64_t least = 0;
#if defined(JAMBA_WITH_CUDA) && defined(JAMBA_WITH_NCCL)
    const int local = (p->n_gpus > 1 ? p->n_gpus : 1) / (p->n_nodes > 1 ? p->n_nodes : 1);
    for (int g = 0; g < local; g++) {
        jamba_device_info info;
        memset(&info, 0, sizeof info);
        if (jb_cuda_device_query(p->gpu_index + g, &info, NULL) != JAMBA_OK) {
            least = 0;
            break;
        }
        least = g == 0 || info.free_memory < least ? info.free_memory : least;
    }
#endif
    return jb_cuda_plan_memory(m, p, least, false, out, err);
}

#if defined(JAMBA_WITH_CUDA) && defined(JAMBA_WITH_NCCL)

/* The table's state is a jb_tp_ctx (the single-GPU backend's jb_backend_ctx is its CUDA context). */
static jb_tp_ctx *tp(jb_backend_ctx *b) { return (jb_tp_ctx *)b; }

static jamba_status tp_create(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                              jamba_error *err) {
    jb_tp_ctx *t = NULL;
    JB_TRY(jb_tp_ctx_create(m, p, &t, err));
    *out = (jb_backend_ctx *)t;
    return JAMBA_OK;
}

static void tp_free(jb_backend_ctx *b) { jb_tp_ctx_free(tp(b)); }
static uint64_t tp_bytes(const jb_backend_ctx *b) { return jb_tp_ctx_bytes((const jb_tp_ctx *)b); }

/* The host side is one thread driving every GPU: nothing to change. */
static jamba_status tp_set_threads(jb_backend_ctx *b, int32_t n_threads, jamba_error *err) {
    (void)b, (void)n_threads, (void)err;
    return JAMBA_OK;
}

static jamba_status tp_step(jb_backend_ctx *b, const jb_step_io *io, jamba_error *err) {
    return jb_tp_step(tp(b), io, err);
}

static jamba_status tp_seq_reset(jb_backend_ctx *b, int32_t seq, jamba_error *err) {
    return jb_tp_seq_reset(tp(b), seq, err);
}

static jamba_status tp_seq_copy(jb_backend_ctx *b, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err) {
    return jb_tp_seq_copy(tp(b), src, dst, n_tokens, err);
}

static jamba_status tp_state_read(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                  int64_t n, float *dst, jamba_error *err) {
    return jb_tp_state_read(tp(b), seq, kind, layer, offset, n, dst, err);
}

static jamba_status tp_state_write(jb_backend_ctx *b, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                   int64_t n, const float *src, jamba_error *err) {
    return jb_tp_state_write(tp(b), seq, kind, layer, offset, n, src, err);
}

jamba_status jb_cuda_tp_follow(jb_backend_ctx *b, jamba_error *err) { return jb_tp_follow(tp(b), err); }

jamba_status jb_cuda_tp_unique_id(char *hex, size_t size, jamba_error *err) { return jb_tp_unique_id(hex, size, err); }

/* Logits always reach the host (each rank's vocabulary columns), where the runtime samples. */
const jb_backend_i jb_cuda_tp_backend = {
    .name = "CUDA x N (NCCL)",
    .device = JAMBA_DEVICE_CUDA,
    .resolve = tp_resolve,
    .plan = tp_plan,
    .create = tp_create,
    .free = tp_free,
    .bytes = tp_bytes,
    .set_threads = tp_set_threads,
    .step = tp_step,
    .seq_reset = tp_seq_reset,
    .seq_copy = tp_seq_copy,
    .state_read = tp_state_read,
    .state_write = tp_state_write,
};

#else /* without CUDA or NCCL: plans, but no contexts */

static jamba_status tp_create(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                              jamba_error *err) {
    (void)m;
    *out = NULL;
#ifdef JAMBA_WITH_CUDA
    return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "context: n_gpus %d: this build has no NCCL (configure with "
                   "-DJAMBA_NCCL=ON where nccl.h and libnccl are installed)", p->n_gpus);
#else
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "context: n_gpus %d: this build has no CUDA backend (configure with "
                   "-DJAMBA_CUDA=ON on a machine with the CUDA toolkit)", p->n_gpus);
#endif
}

jamba_status jb_cuda_tp_follow(jb_backend_ctx *b, jamba_error *err) {
    (void)b;
    return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_follow: this build makes no multi-GPU contexts");
}

jamba_status jb_cuda_tp_unique_id(char *hex, size_t size, jamba_error *err) {
    (void)hex, (void)size;
    return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "jamba_nccl_unique_id: this build has no NCCL (configure with "
                   "-DJAMBA_CUDA=ON and -DJAMBA_NCCL=ON where nccl.h and libnccl are installed)");
}

/* Only create is reachable without a context. */
const jb_backend_i jb_cuda_tp_backend = {
    .name = "CUDA x N (NCCL)",
    .device = JAMBA_DEVICE_CUDA,
    .resolve = tp_resolve,
    .plan = tp_plan,
    .create = tp_create,
};

#endif

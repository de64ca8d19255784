/*
 * backend.c — the CUDA backend's operations table: parameter checks, the memory plan (plan.c) against the
 * device's free memory, the model's device weights as a per-model resource (uploaded by the first
 * context that needs them for a (device, dtype), shared by later ones, freed with the model), and the
 * context operations of the .cu side (cuda_ctx.h). Without the toolkit, contexts are refused.
 */
#include "cuda/cuda.h"

#include "base/error.h"
#include "cuda/plan.h"

#include <stdio.h>
#include <string.h>

#ifdef JAMBA_WITH_CUDA
#include "cuda/cuda_ctx.h"
#include "cuda/device.h"
#endif

static jamba_status cuda_resolve(const jamba_model *m, jamba_context_params *p, jamba_error *err) {
    if (p->cpu_activations != JAMBA_DTYPE_UNKNOWN && p->cpu_activations != JAMBA_DTYPE_F32)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "context: cpu_activations %s is a CPU option (the CUDA "
                       "backend multiplies int8 weights with its gpu_dtype activations)",
                       jamba_dtype_name(p->cpu_activations));
    /* no device kernels for these int8 matrices: refused rather than widened behind the caller's back (one GPU
     * and the NCCL backend, whose resolve this is too; plans included) */
    if (m->plan_mixers_int8 || m->plan_lm_head_int8)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: int8 %s (%s int8) run on the CPU backend only; load the "
                       "model with them stored for a CUDA context", m->path,
                       m->plan_mixers_int8 ? "Mamba/attention projections" : "LM head",
                       m->plan_mixers_int8 ? "--mixers" : "--lm-head");
    if (p->gpu_index < 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: gpu_index %d must be >= 0", p->gpu_index);
    if (p->gpu_dtype != JAMBA_DTYPE_BF16 && p->gpu_dtype != JAMBA_DTYPE_F32)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: gpu_dtype %s (BF16 or F32)",
                       jamba_dtype_name(p->gpu_dtype));
    if (p->kv_dtype != JAMBA_DTYPE_UNKNOWN && p->kv_dtype != p->gpu_dtype && p->kv_dtype != JAMBA_DTYPE_F8_E4M3)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: kv_dtype %s (the gpu_dtype or F8_E4M3)",
                       jamba_dtype_name(p->kv_dtype));
    p->n_threads = 1; /* the host side of a CUDA context is one thread */
    return JAMBA_OK;
}

/* The plan against the device's free memory, not counting weights already there; without a device (or
 * without the toolkit) against the planning budget, and a context would then fail to create. */
static jamba_status cuda_plan(const jamba_model *m, const jamba_context_params *p, jamba_context_plan *out,
                              jamba_error *err) {
    uint64_t free_bytes = 0;
#ifdef JAMBA_WITH_CUDA
    jamba_device_info info;
    memset(&info, 0, sizeof info);
    if (jb_cuda_device_query(p->gpu_index, &info, NULL) == JAMBA_OK)
        free_bytes = info.free_memory;
#endif
    const bool resident = jb_model_resource_present(m, &jb_cuda_backend, p->gpu_index, p->gpu_dtype);
    return jb_cuda_plan_memory(m, p, free_bytes, resident, out, err);
}

#ifdef JAMBA_WITH_CUDA

static jamba_status make_weights(const jamba_model *m, int device, jamba_dtype dtype, void **out, jamba_error *err) {
    jb_cuda_weights *w = NULL;
    JB_TRY(jb_cuda_weights_create(m, device, dtype, &w, err));
    *out = w;
    return JAMBA_OK;
}

static void free_weights(void *w) { jb_cuda_weights_free(w); }

static jamba_status cuda_create(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                                jamba_error *err) {
    /* n_gpus > 1 never comes here: runtime/backends.c hands such contexts to the NCCL backend (cuda/tp.h) */
    void *w = NULL;
    JB_TRY(jb_model_resource_get(m, &jb_cuda_backend, p->gpu_index, p->gpu_dtype, make_weights, free_weights, &w,
                                 err));
    jb_cuda_ctx_params cp = {.n_seq_max = p->n_seq_max, .n_ctx = p->n_ctx, .n_batch = p->n_batch,
                             .n_logits_max = p->n_logits_max, .graphs = p->gpu_graphs, .kv_dtype = p->kv_dtype};
    return jb_cuda_ctx_create(m, w, &cp, out, err);
}

static uint64_t cuda_bytes(const jb_backend_ctx *b) { return jb_cuda_ctx_bytes(b); }

/* The host side of a CUDA context is one thread: nothing to change. */
static jamba_status cuda_set_threads(jb_backend_ctx *b, int32_t n_threads, jamba_error *err) {
    (void)b, (void)n_threads, (void)err;
    return JAMBA_OK;
}

const jb_backend_i jb_cuda_backend = {
    .name = "CUDA",
    .device = JAMBA_DEVICE_CUDA,
    .resolve = cuda_resolve,
    .plan = cuda_plan,
    .create = cuda_create,
    .free = jb_cuda_ctx_free,
    .bytes = cuda_bytes,
    .set_threads = cuda_set_threads,
    .step = jb_cuda_step,
    .seq_reset = jb_cuda_seq_reset,
    .seq_copy = jb_cuda_seq_copy,
    .state_read = jb_cuda_state_read,
    .state_write = jb_cuda_state_write,
    .logits_row = jb_cuda_logits_row,
    .sample = jb_cuda_sample,
    .query = jb_cuda_backend_query,
    .device_query = jb_cuda_device_query,
};

#else /* a build without the CUDA toolkit: plans, but no contexts */

#define NO_CUDA "this build has no CUDA backend (configure with -DJAMBA_CUDA=ON on a machine with the CUDA toolkit)"

static jamba_status cuda_create(const jamba_model *m, const jamba_context_params *p, jb_backend_ctx **out,
                                jamba_error *err) {
    (void)m, (void)p;
    *out = NULL;
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "context: %s", NO_CUDA);
}

static jamba_status cuda_query(jamba_backend_info *out, jamba_error *err) {
    (void)err;
    snprintf(out->note, sizeof out->note, "%s", NO_CUDA);
    return JAMBA_OK;
}

static jamba_status cuda_device_query(int index, jamba_device_info *out, jamba_error *err) {
    (void)out;
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "device %d: %s", index, NO_CUDA);
}

/* Only create, query and device_query are reachable without a context. */
const jb_backend_i jb_cuda_backend = {
    .name = "CUDA",
    .device = JAMBA_DEVICE_CUDA,
    .resolve = cuda_resolve,
    .plan = cuda_plan,
    .create = cuda_create,
    .query = cuda_query,
    .device_query = cuda_device_query,
};

#endif

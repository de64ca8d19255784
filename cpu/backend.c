/*
 * backend.c — the CPU backend's operations table: parameter defaults, the memory plan (from the same
 * buffer table the context allocates by), and the context operations of context.c, forward.c, state.c.
 */
#include "cpu/cpu.h"

#include "backend/model_bytes.h"
#include "base/checked.h"
#include "base/error.h"
#include "cpu/context.h"

#include <string.h>
#include <unistd.h>

static jamba_status cpu_resolve(const jamba_model *m, jamba_context_params *p, jamba_error *err) {
    (void)m;
    if (p->kv_dtype != JAMBA_DTYPE_UNKNOWN && p->kv_dtype != JAMBA_DTYPE_F32)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: the CPU path keeps its KV cache in F32 (kv_dtype %s "
                       "needs the CUDA device)", jamba_dtype_name(p->kv_dtype));
    if (p->cpu_activations == JAMBA_DTYPE_UNKNOWN)
        p->cpu_activations = JAMBA_DTYPE_F32;
    if (p->cpu_activations != JAMBA_DTYPE_F32 && p->cpu_activations != JAMBA_DTYPE_I8 &&
        p->cpu_activations != JAMBA_DTYPE_BF16)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: cpu_activations %s (F32, I8 or BF16)",
                       jamba_dtype_name(p->cpu_activations));
    if (p->n_batch == 0)
        p->n_batch = JB_CPU_DEFAULT_BATCH;
    if (p->n_logits_max == 0)
        p->n_logits_max = p->n_batch > p->n_seq_max ? p->n_batch : p->n_seq_max;
    if (p->n_threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        p->n_threads = online < 1 ? 1 : online > 64 ? 64 : (int32_t)online;
    }
    return JAMBA_OK;
}

static jamba_status cpu_plan(const jamba_model *m, const jamba_context_params *p, jamba_context_plan *out,
                             jamba_error *err) {
    memset(out, 0, sizeof *out);
    out->device = JAMBA_DEVICE_CPU;
    JB_TRY(jb_model_weight_bytes(m, JAMBA_DTYPE_F32, &out->weights, err));
    JB_TRY(jb_cpu_ctx_bytes(m, p, &out->kv_cache, &out->mamba_state, &out->workspace, err));
    if (!jb_add_u64(out->weights, out->kv_cache, &out->total) || !jb_add_u64(out->total, out->mamba_state, &out->total) ||
        !jb_add_u64(out->total, out->workspace, &out->total))
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "context plan: the sizes overflow 64 bits");
    out->n_batch = p->n_batch;
    out->n_logits_max = p->n_logits_max;
    out->fits = true;
    return JAMBA_OK;
}

static uint64_t cpu_bytes(const jb_backend_ctx *b) {
    uint64_t kv = 0, mamba = 0, work = 0;
    (void)jb_cpu_ctx_bytes(b->model, &b->params, &kv, &mamba, &work, NULL); /* checked at creation */
    return kv + mamba + work;
}

const jb_backend_i jb_cpu_backend = {
    .name = "CPU",
    .device = JAMBA_DEVICE_CPU,
    .resolve = cpu_resolve,
    .plan = cpu_plan,
    .create = jb_cpu_ctx_create,
    .free = jb_cpu_ctx_free,
    .bytes = cpu_bytes,
    .set_threads = jb_cpu_set_threads,
    .step = jb_cpu_step,
    .seq_reset = jb_cpu_seq_reset,
    .seq_copy = jb_cpu_seq_copy,
    .state_read = jb_cpu_state_read,
    .state_write = jb_cpu_state_write,
    /* logits always reach the host; the runtime samples there */
    .logits_row = NULL,
    .sample = NULL,
    .query = NULL,
    .device_query = NULL,
};

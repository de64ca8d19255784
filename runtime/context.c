/*
 * context.c — jamba_context: parameter checks, creation of the backend's state and the shared buffers,
 * input validation, and splitting a decode call into internal steps of at most n_batch rows that the
 * backend runs.
 */
#include "runtime/context.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "ckpt/config.h"
#include "base/abi.h"
#include "runtime/log.h"

#include <string.h>

static const jamba_context_params CONTEXT_DEFAULTS = {
    .n_seq_max = 1, .n_ctx = 0, .n_batch = 0, .n_threads = 0, .n_logits_max = 0, .device = JAMBA_DEVICE_CPU,
    .gpu_index = 0, .gpu_dtype = JAMBA_DTYPE_BF16, .gpu_graphs = true, .kv_dtype = JAMBA_DTYPE_UNKNOWN,
    .gpu_memory = 0, .n_gpus = 0, .n_nodes = 0, .node_rank = 0, .nccl_id_file = NULL, .nccl_id = NULL,
    .cpu_activations = JAMBA_DTYPE_F32};

void jamba_context_params_init_sized(jamba_context_params *p, size_t size) {
    if (p != NULL)
        JB_INIT_SIZED(p, size, CONTEXT_DEFAULTS);
}

/* The caller's params (params_size bytes; NULL: the defaults) in this library's layout. */
static jamba_status params_in(const jamba_context_params *params, size_t params_size, jamba_context_params *p,
                              const char *call, jamba_error *err) {
    *p = CONTEXT_DEFAULTS;
    return params ? jb_struct_in(p, sizeof *p, params, params_size, JB_MIN_CONTEXT_PARAMS, call, err) : JAMBA_OK;
}

void jb_context_capture_final(jamba_context *ctx, float *final, int64_t rows) {
    ctx->capture = (jb_capture){.final = final, .rows = final ? rows : 0, .next_row = 0};
}

/* ---- creation --------------------------------------------------------------------------------- */

/* Buffers are listed with their element counts as products of up to three factors, checked before
 * anything is allocated. */
typedef struct buffer_plan {
    void **dst;
    size_t elem;
    uint64_t dims[3];
    const char *what;
} buffer_plan;

#define D1(a) {(a), 1, 1}
#define D2(a, b) {(a), (b), 1}
#define MAX_BUFFERS 24

/* The shared buffers of a context: one table, from which allocation and frees are derived. */
static size_t buffer_table(jamba_context *ctx, buffer_plan *out) {
    const uint64_t S = (uint64_t)ctx->params.n_seq_max, cap = (uint64_t)ctx->params.n_logits_max;
    const uint64_t V = (uint64_t)ctx->model->config.vocab_size;
    const uint64_t sampler = ctx->be->sample != NULL;
    const buffer_plan table[] = {
        {(void **)&ctx->n_past, sizeof(int64_t), D1(S), "sequence lengths"},
        {(void **)&ctx->history, sizeof(jamba_token), D2(S, (uint64_t)ctx->params.n_ctx), "token history"},
        {(void **)&ctx->history_known, sizeof(bool), D1(S), "token history"},
        {(void **)&ctx->seq_input, sizeof(int64_t), D1(S), "sequence bookkeeping"},
        {(void **)&ctx->logits, sizeof(float), D2(cap, V), "the logits"},
        {(void **)&ctx->logit_first, sizeof(int64_t), D1(S), "logit bookkeeping"},
        {(void **)&ctx->logit_rows, sizeof(int64_t), D1(S), "logit bookkeeping"},
        {(void **)&ctx->segments, sizeof(jb_segment), D1(S), "step segments"},
        {(void **)&ctx->logit_src, sizeof(int64_t), D1(cap), "logit bookkeeping"},
        {(void **)&ctx->sample_inputs, sizeof(jamba_seq_input), D1(S), "sampling inputs"},
        {(void **)&ctx->sample_samplers, sizeof(jamba_sampler *), D1(S), "sampling inputs"},
        {(void **)&ctx->sample_tokens, sizeof(int32_t), D1(S), "sampling results"},
        {(void **)&ctx->abi_inputs, sizeof(jamba_seq_input), D1(S), "inputs of another header's layout"},
        {(void **)&ctx->sample_params, sizeof(jb_sample_params), D1(sampler * S), "sampling parameters"},
        {(void **)&ctx->sample_penalized, sizeof(int32_t), D2(sampler * S, JB_SAMPLE_MAX_PENALIZED), "sampling history"},
        {(void **)&ctx->sample_used, sizeof(int32_t), D1(sampler * S), "sampling results"},
        {(void **)&ctx->sample_on_device, sizeof(bool), D1(sampler * S), "sampling results"},
    };
    _Static_assert(sizeof table / sizeof table[0] <= MAX_BUFFERS, "MAX_BUFFERS");
    memcpy(out, table, sizeof table);
    return sizeof table / sizeof table[0];
}

static jamba_status allocate_all(const buffer_plan *plan, size_t n, jamba_error *err) {
    uint64_t total = 0;
    uint64_t bytes[MAX_BUFFERS];
    for (size_t i = 0; i < n; i++) {
        uint64_t b = plan[i].elem;
        for (int d = 0; d < 3; d++)
            if (!jb_mul_u64(b, plan[i].dims[d], &b))
                return jb_fail(err, JAMBA_ERR_OVERFLOW, "context: the size of %s overflows 64 bits", plan[i].what);
        if (!jb_add_u64(total, b, &total) || b > SIZE_MAX)
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "context: total size overflows");
        bytes[i] = b;
    }
    for (size_t i = 0; i < n; i++) {
        *plan[i].dst = bytes[i] ? jb_calloc(1, (size_t)bytes[i]) : NULL;
        if (*plan[i].dst == NULL && bytes[i])
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY,
                           "context: out of memory allocating %s (%llu bytes; %llu bytes for the whole context)",
                           plan[i].what, (unsigned long long)bytes[i], (unsigned long long)total);
    }
    return JAMBA_OK;
}

jamba_status jb_context_resolve_params(const jamba_model *m, const jamba_context_params *in, jamba_context_params *p,
                                       jamba_error *err) {
    *p = in ? *in : CONTEXT_DEFAULTS;
    if (p->n_seq_max < 1 || p->n_seq_max > (1 << 20))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_seq_max %d must be in [1, 1048576]", p->n_seq_max);
    if (p->n_ctx == 0)
        p->n_ctx = m->config.max_position_embeddings < JAMBA_DEFAULT_N_CTX ? m->config.max_position_embeddings
                                                                           : JAMBA_DEFAULT_N_CTX;
    if (p->n_ctx < 1 || p->n_ctx > (INT64_C(1) << 40))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_ctx %lld must be in [1, 2^40]", (long long)p->n_ctx);
    if (p->n_batch < 0 || p->n_batch > (1 << 24))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_batch %lld must be in [1, 16777216] (0: chosen)",
                       (long long)p->n_batch);
    if (p->n_threads < 0 || p->n_threads > 1024)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_threads %d must be in [0, 1024]", p->n_threads);
    if (p->n_logits_max < 0 || p->n_logits_max > (INT64_C(1) << 32))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_logits_max %lld must be in [0, 2^32]",
                       (long long)p->n_logits_max);
    if (p->n_logits_max == 0 && p->n_batch > 0)
        p->n_logits_max = p->n_batch > p->n_seq_max ? p->n_batch : p->n_seq_max;
    if (p->n_nodes < 0 || p->n_nodes > JAMBA_MAX_GPUS || p->node_rank < 0 ||
        p->node_rank >= (p->n_nodes > 1 ? p->n_nodes : 1))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: node_rank %d of n_nodes %d: n_nodes must be in [0, "
                       "%d] and node_rank in [0, n_nodes)", p->node_rank, p->n_nodes, JAMBA_MAX_GPUS);
    if (p->n_nodes > 1 && (p->device != JAMBA_DEVICE_CUDA || p->n_gpus < p->n_nodes || p->n_gpus % p->n_nodes != 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_nodes %d needs a CUDA context whose n_gpus (%d) is "
                       "a multiple of it (the same number of GPUs on every node)", p->n_nodes, p->n_gpus);
    const jb_backend_i *be = jb_backend_for(p->device);
    if (be == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: unknown device type %d", (int)p->device);
    return be->resolve(m, p, err);
}

jamba_status jamba_context_plan_memory_sized(const jamba_model *m, const jamba_context_params *params,
                                             size_t params_size, jamba_context_plan *out, size_t out_size,
                                             jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_plan_memory: NULL argument");
    jamba_context_params given, p;
    JB_TRY(params_in(params, params_size, &given, "jamba_context_plan_memory: params", err));
    JB_TRY(jb_context_resolve_params(m, &given, &p, err));
    jamba_context_plan plan;
    JB_TRY(jb_backend_for(p.device)->plan(m, &p, &plan, err));
    return jb_struct_out(out, out_size, &plan, sizeof plan, JB_MIN_CONTEXT_PLAN, "jamba_context_plan_memory: out",
                         err);
}

/* Before anything is allocated: the backend's plan, which fixes the step size; a request that does not
 * fit fails here, saying what would. */
static jamba_status plan(jamba_context *ctx, jamba_error *err) {
    jamba_context_params *p = &ctx->params;
    jamba_context_plan plan;
    JB_TRY(ctx->be->plan(ctx->model, p, &plan, err));
    if (!plan.fits)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s on %s device %d: %lld tokens x %d sequences %s",
                       ctx->model->path, ctx->be->name, p->gpu_index, (long long)p->n_ctx, p->n_seq_max, plan.advice);
    p->n_batch = plan.n_batch;
    p->n_logits_max = plan.n_logits_max;
    return JAMBA_OK;
}

jamba_status jamba_context_create_sized(const jamba_model *model, const jamba_context_params *params,
                                        size_t params_size, jamba_context **out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_create: out is NULL");
    *out = NULL;
    if (model == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_create: model is NULL");
    jamba_context_params given;
    JB_TRY(params_in(params, params_size, &given, "jamba_context_create: params", err));
    const bool on_device = model->device_synthetic && given.device == JAMBA_DEVICE_CUDA;
    if (!model->has_weights && !on_device)
        return jb_fail(err, JAMBA_ERR_NO_WEIGHTS, "%s: %s", model->path,
                       model->device_synthetic ? "a device-synthetic model runs on CUDA contexts only"
                                               : "loaded without weights (planning only); a context needs them");
    jamba_context *ctx = jb_calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "context: out of memory");
    ctx->model = model;
    jamba_status st = jb_context_resolve_params(model, &given, &ctx->params, err);
    if (st == JAMBA_OK) {
        ctx->be = jb_backend_for_context(&ctx->params);
        st = plan(ctx, err);
    }
    /* the backend first: its state (the KV cache above all) is what fails first when memory is short */
    if (st == JAMBA_OK)
        st = ctx->be->create(model, &ctx->params, &ctx->state, err);
    buffer_plan table[MAX_BUFFERS] = {{0}};
    if (st == JAMBA_OK)
        st = allocate_all(table, buffer_table(ctx, table), err);
    if (st != JAMBA_OK) {
        jamba_context_free(ctx);
        return st;
    }
    for (int32_t s = 0; s < ctx->params.n_seq_max; s++) {
        ctx->seq_input[s] = -1;
        ctx->history_known[s] = true;
    }
    jb_log(model, JAMBA_LOG_INFO, "%s context: %d sequences x %lld tokens, steps of %lld tokens, %.1f MiB of state",
           ctx->be->name, ctx->params.n_seq_max, (long long)ctx->params.n_ctx, (long long)ctx->params.n_batch,
           (double)ctx->be->bytes(ctx->state) / 1048576.0);
    *out = ctx;
    return JAMBA_OK;
}

jamba_status jamba_context_get_params_sized(const jamba_context *ctx, jamba_context_params *out, size_t out_size,
                                            jamba_error *err) {
    if (ctx == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_get_params: NULL argument");
    return jb_struct_out(out, out_size, &ctx->params, sizeof ctx->params, JB_MIN_CONTEXT_PARAMS,
                         "jamba_context_get_params: out", err);
}

void jamba_context_free(jamba_context *ctx) {
    if (ctx == NULL)
        return;
    jb_free(ctx->snapshot);
    jb_free(ctx->snapshot_len);
    if (ctx->be != NULL) {
        if (ctx->state != NULL)
            ctx->be->free(ctx->state);
        buffer_plan table[MAX_BUFFERS] = {{0}};
        const size_t n = buffer_table(ctx, table);
        for (size_t i = 0; i < n; i++)
            jb_free(*table[i].dst);
    }
    jb_free(ctx);
}

/* ---- decode ----------------------------------------------------------------------------------- */

/* Every input names a distinct sequence in [0, S). One pass: seq_input[s] holds the input that named s
 * (-1 between calls), so n_seq_max in the thousands costs nothing. */
static jamba_status check_sequences(jamba_context *ctx, const jamba_seq_input *in, int64_t n, jamba_error *err) {
    const int64_t S = ctx->params.n_seq_max;
    jamba_status st = JAMBA_OK;
    int64_t i = 0;
    for (; i < n && st == JAMBA_OK; i++) {
        int32_t seq = in[i].seq;
        if (seq < 0 || seq >= S)
            st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: input %lld: sequence %d outside [0, %lld)",
                         (long long)i, seq, (long long)S);
        else if (ctx->seq_input[seq] >= 0)
            st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: sequence %d appears in inputs %lld and %lld",
                         seq, (long long)ctx->seq_input[seq], (long long)i);
        else
            ctx->seq_input[seq] = i;
    }
    for (int64_t j = 0; j < i; j++)
        if (in[j].seq >= 0 && in[j].seq < S && ctx->seq_input[in[j].seq] == j)
            ctx->seq_input[in[j].seq] = -1;
    return st;
}

static jamba_status validate_inputs(jamba_context *ctx, const jamba_seq_input *in, int64_t n, int64_t *logit_rows,
                                    jamba_error *err) {
    const int64_t S = ctx->params.n_seq_max, V = ctx->model->config.vocab_size;
    const int64_t logit_capacity = ctx->params.n_logits_max;
    if (in == NULL || n < 1 || n > S)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: need 1 to %lld inputs, got %lld%s",
                       (long long)S, (long long)n, in == NULL ? " (NULL)" : "");
    JB_TRY(check_sequences(ctx, in, n, err));
    *logit_rows = 0;
    for (int64_t i = 0; i < n; i++) {
        const jamba_seq_input *x = &in[i];
        if (x->tokens == NULL || x->n_tokens < 1)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: input %lld (sequence %d) has no tokens",
                           (long long)i, x->seq);
        if ((int)x->logits < JAMBA_LOGITS_NONE || x->logits > JAMBA_LOGITS_ALL)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: input %lld: invalid logits mode %d",
                           (long long)i, (int)x->logits);
        for (int64_t t = 0; t < x->n_tokens; t++)
            if (x->tokens[t] < 0 || x->tokens[t] >= V)
                return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                               "jamba_decode: input %lld (sequence %d): token %lld is %d, outside the vocabulary "
                               "[0, %lld)", (long long)i, x->seq, (long long)t, x->tokens[t], (long long)V);
        if (x->n_tokens > ctx->params.n_ctx - ctx->n_past[x->seq])
            return jb_fail(err, JAMBA_ERR_CONTEXT_FULL,
                           "sequence %d holds %lld tokens; %lld more would pass the context size of %lld", x->seq,
                           (long long)ctx->n_past[x->seq], (long long)x->n_tokens, (long long)ctx->params.n_ctx);
        *logit_rows += x->logits == JAMBA_LOGITS_ALL ? x->n_tokens : x->logits == JAMBA_LOGITS_LAST ? 1 : 0;
    }
    if (*logit_rows > logit_capacity)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                       "jamba_decode: %lld logit rows requested; at most %lld per call (n_logits_max)",
                       (long long)*logit_rows, (long long)logit_capacity);
    return JAMBA_OK;
}

/* Logit rows of input i go to [logit_first[i], + logit_rows[i]) in call order. */
static void assign_logit_rows(jamba_context *ctx, const jamba_seq_input *in, int64_t n) {
    int64_t next = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t rows = in[i].logits == JAMBA_LOGITS_ALL ? in[i].n_tokens : in[i].logits == JAMBA_LOGITS_LAST;
        ctx->logit_first[i] = rows ? next : -1;
        ctx->logit_rows[i] = rows;
        next += rows;
    }
    ctx->n_last_inputs = n;
}

/* ---- cancellation ---------------------------------------------------------------------------- */

/* Floats of one sequence's Mamba state: per Mamba layer its conv window, then its SSM state. */
static int64_t mamba_floats(const jamba_config *c) { return c->n_mamba_layers * (jb_conv_floats(c) + jb_ssm_floats(c)); }

jamba_status jamba_context_set_abort_callback(jamba_context *ctx, jamba_abort_fn fn, void *user_data,
                                              jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_set_abort_callback: ctx is NULL");
    if (fn != NULL && ctx->snapshot_len == NULL) {
        uint64_t floats = 0;
        if (!jb_mul_u64((uint64_t)ctx->params.n_seq_max, (uint64_t)mamba_floats(&ctx->model->config), &floats) ||
            floats > SIZE_MAX / sizeof(float))
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "jamba_context_set_abort_callback: the snapshot size overflows");
        float *snapshot = floats ? jb_malloc((size_t)floats * sizeof(float)) : NULL;
        int64_t *lengths = jb_calloc((size_t)ctx->params.n_seq_max, sizeof *lengths);
        if ((floats && snapshot == NULL) || lengths == NULL) {
            jb_free(snapshot);
            jb_free(lengths);
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_context_set_abort_callback: out of memory for a "
                           "snapshot of %d sequences' Mamba state (%llu bytes)", ctx->params.n_seq_max,
                           (unsigned long long)(floats * sizeof(float)));
        }
        ctx->snapshot = snapshot;
        ctx->snapshot_len = lengths;
    } else if (fn == NULL) {
        jb_free(ctx->snapshot);
        jb_free(ctx->snapshot_len);
        ctx->snapshot = NULL;
        ctx->snapshot_len = NULL;
    }
    ctx->abort_fn = fn;
    ctx->abort_data = user_data;
    return JAMBA_OK;
}

/* Copy the Mamba state of every input's sequence out of (restore: back into) the backend, in the state
 * order of jb_state_kind, with its length. */
static jamba_status snapshot_io(jamba_context *ctx, const jamba_seq_input *in, int64_t n, bool restore,
                                jamba_error *err) {
    const jamba_config *c = &ctx->model->config;
    for (int64_t i = 0; i < n; i++) {
        const int32_t seq = in[i].seq;
        float *p = ctx->snapshot + (int64_t)seq * mamba_floats(c);
        for (int64_t m = 0; m < c->n_mamba_layers; m++) {
            const jb_state_kind kinds[2] = {JB_STATE_CONV, JB_STATE_SSM};
            const int64_t sizes[2] = {jb_conv_floats(c), jb_ssm_floats(c)};
            for (int k = 0; k < 2; p += sizes[k], k++)
                JB_TRY(restore ? ctx->be->state_write(ctx->state, seq, kinds[k], m, 0, sizes[k], p, err)
                               : ctx->be->state_read(ctx->state, seq, kinds[k], m, 0, sizes[k], p, err));
        }
        if (restore)
            ctx->n_past[seq] = ctx->snapshot_len[seq];
        else
            ctx->snapshot_len[seq] = ctx->n_past[seq];
    }
    return JAMBA_OK;
}

/* Whether the abort callback stops the call before its next step; then the call's sequences are put back
 * as they were before it (from the snapshot when steps already ran). */
static bool aborted(jamba_context *ctx, const jamba_seq_input *in, int64_t n, bool snapshotted, jamba_status *st,
                    jamba_error *err) {
    if (ctx->abort_fn == NULL || !ctx->abort_fn(ctx->abort_data))
        return false;
    *st = snapshotted ? snapshot_io(ctx, in, n, true, err) : JAMBA_OK;
    if (*st == JAMBA_OK)
        *st = jb_fail(err, JAMBA_ERR_ABORTED, "jamba_decode: stopped by the abort callback; the sequences are as "
                      "before the call");
    return true;
}

jamba_status jamba_context_set_threads(jamba_context *ctx, int32_t n_threads, jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_set_threads: ctx is NULL");
    jamba_context_params p = ctx->params, resolved; /* only the thread count is taken from resolving again */
    p.n_threads = n_threads;
    JB_TRY(jb_context_resolve_params(ctx->model, &p, &resolved, err));
    JB_TRY(ctx->be->set_threads(ctx->state, resolved.n_threads, err));
    ctx->params.n_threads = resolved.n_threads;
    return JAMBA_OK;
}

/* One internal step on the context's backend; then the sequences hold their new tokens. */
static jamba_status run_step(jamba_context *ctx, int64_t n_segs, int64_t rows, int64_t n_logits, int64_t logit_dst,
                             bool keep_on_device, bool poll_layers, jamba_error *err) {
    jb_capture *cap = jb_capture_active(&ctx->capture) ? &ctx->capture : NULL;
    const jb_step_io io = {.segs = ctx->segments, .n_segs = n_segs, .n_rows = rows, .logit_src = ctx->logit_src,
                           .n_logits = n_logits, .logit_dst = logit_dst,
                           .host_logits = keep_on_device ? NULL : ctx->logits, .capture = cap,
                           .abort_fn = poll_layers ? ctx->abort_fn : NULL, .abort_data = ctx->abort_data};
    JB_TRY(ctx->be->step(ctx->state, &io, err));
    if (cap)
        cap->next_row += rows;
    for (int64_t s = 0; s < n_segs; s++) {
        const jb_segment *g = &ctx->segments[s];
        memcpy(ctx->history + (int64_t)g->seq * ctx->params.n_ctx + g->pos, g->tokens, (size_t)g->n * sizeof *g->tokens);
        ctx->n_past[g->seq] = g->pos + g->n;
    }
    return JAMBA_OK;
}

jamba_status jb_decode(jamba_context *ctx, const jamba_seq_input *in, int64_t n, bool keep_on_device,
                       jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: ctx is NULL");
    int64_t total_logits;
    JB_TRY(validate_inputs(ctx, in, n, &total_logits, err));
    assign_logit_rows(ctx, in, n);
    keep_on_device = keep_on_device && ctx->be->sample != NULL;
    ctx->logits_on_host = !keep_on_device;
    /* Fill steps of up to n_batch rows, in input order; a long input spans several steps. */
    const int64_t Tb = ctx->params.n_batch;
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
        total += in[i].n_tokens;
    /* a call that can stop between its steps, or (when long) between the layers of a step */
    const bool snapshotted = ctx->abort_fn != NULL && (total > Tb || total > JB_ABORT_LAYER_ROWS);
    if (snapshotted)
        JB_TRY(snapshot_io(ctx, in, n, false, err));
    jamba_status stop = JAMBA_OK;
    int64_t rows = 0, n_segs = 0, n_logits = 0, logit_dst = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t done = 0; done < in[i].n_tokens;) {
            int64_t take = in[i].n_tokens - done < Tb - rows ? in[i].n_tokens - done : Tb - rows;
            /* n_past already counts the tokens of this input run in earlier steps */
            ctx->segments[n_segs++] = (jb_segment){.seq = in[i].seq, .pos = ctx->n_past[in[i].seq],
                                                   .n = take, .row = rows, .tokens = in[i].tokens + done};
            if (in[i].logits == JAMBA_LOGITS_ALL)
                for (int64_t t = 0; t < take; t++)
                    ctx->logit_src[n_logits++] = rows + t;
            else if (in[i].logits == JAMBA_LOGITS_LAST && done + take == in[i].n_tokens)
                ctx->logit_src[n_logits++] = rows + take - 1;
            rows += take;
            done += take;
            bool last_token_of_call = i == n - 1 && done == in[i].n_tokens;
            if (rows == Tb || last_token_of_call) {
                if (aborted(ctx, in, n, snapshotted, &stop, err))
                    return stop;
                jamba_status st = run_step(ctx, n_segs, rows, n_logits, logit_dst, keep_on_device, snapshotted, err);
                if (st == JAMBA_ERR_ABORTED) { /* stopped between layers: put the sequences back */
                    JB_TRY(snapshot_io(ctx, in, n, true, err));
                    return jb_fail(err, JAMBA_ERR_ABORTED, "jamba_decode: stopped by the abort callback; the "
                                   "sequences are as before the call");
                }
                JB_TRY(st);
                logit_dst += n_logits;
                rows = n_segs = n_logits = 0;
            }
        }
    }
    return JAMBA_OK;
}

jamba_status jb_inputs_in(jamba_context *ctx, const jamba_seq_input *in, int64_t n, size_t input_size,
                          jamba_seq_input *dst, const char *call, jamba_error *err) {
    if (ctx == NULL || in == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: NULL argument", call);
    if (n < 1 || n > ctx->params.n_seq_max)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: need 1 to %d inputs, got %lld", call,
                       ctx->params.n_seq_max, (long long)n);
    if (input_size < JB_MIN_SEQ_INPUT)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: inputs of %zu bytes, at least %zu expected", call,
                       input_size, (size_t)JB_MIN_SEQ_INPUT);
    for (int64_t i = 0; i < n; i++) {
        dst[i] = (jamba_seq_input){0};
        JB_TRY(jb_struct_in(&dst[i], sizeof dst[i], (const uint8_t *)in + (size_t)i * input_size, input_size,
                            JB_MIN_SEQ_INPUT, call, err));
    }
    return JAMBA_OK;
}

jamba_status jamba_decode_sized(jamba_context *ctx, const jamba_seq_input *in, int64_t n, size_t input_size,
                                jamba_error *err) {
    if (ctx != NULL && in != NULL && input_size == sizeof *in) /* the caller's layout is this library's */
        return jb_decode(ctx, in, n, false, err);
    JB_TRY(jb_inputs_in(ctx, in, n, input_size, ctx ? ctx->abi_inputs : NULL, "jamba_decode", err));
    return jb_decode(ctx, ctx->abi_inputs, n, false, err);
}

const float *jamba_logits(const jamba_context *ctx, int64_t index, int64_t *n_rows) {
    if (n_rows)
        *n_rows = 0;
    if (ctx == NULL || !ctx->logits_on_host || index < 0 || index >= ctx->n_last_inputs ||
        ctx->logit_first[index] < 0)
        return NULL;
    if (n_rows)
        *n_rows = ctx->logit_rows[index];
    return ctx->logits + ctx->logit_first[index] * ctx->model->config.vocab_size;
}

/* ---- embeddings ------------------------------------------------------------------------------- */

jamba_status jamba_embed(jamba_context *ctx, int32_t seq, const int32_t *tokens, int64_t n_tokens,
                         jamba_pooling pooling, float *out, jamba_error *err) {
    if (ctx == NULL || tokens == NULL || out == NULL || n_tokens < 1)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_embed: NULL argument or no tokens");
    if ((int)pooling < JAMBA_POOLING_NONE || pooling > JAMBA_POOLING_LAST)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_embed: unknown pooling %d", (int)pooling);
    const int64_t H = ctx->model->config.hidden_size;
    if ((uint64_t)n_tokens > SIZE_MAX / sizeof(float) / (uint64_t)H)
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "jamba_embed: %lld tokens overflow", (long long)n_tokens);
    float *rows = pooling == JAMBA_POOLING_NONE ? out : jb_malloc((size_t)(n_tokens * H) * sizeof *rows);
    if (rows == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_embed: out of memory for %lld x %lld hidden states",
                       (long long)n_tokens, (long long)H);
    jb_context_capture_final(ctx, rows, n_tokens);
    const jamba_seq_input in = {.seq = seq, .tokens = tokens, .n_tokens = n_tokens, .logits = JAMBA_LOGITS_NONE};
    jamba_status st = jamba_decode(ctx, &in, 1, err);
    jb_context_capture_final(ctx, NULL, 0);
    if (st == JAMBA_OK && pooling == JAMBA_POOLING_MEAN) {
        for (int64_t h = 0; h < H; h++) { /* in double, in position order */
            double sum = 0;
            for (int64_t t = 0; t < n_tokens; t++)
                sum += rows[t * H + h];
            out[h] = (float)(sum / (double)n_tokens);
        }
    } else if (st == JAMBA_OK && pooling == JAMBA_POOLING_LAST) {
        memcpy(out, rows + (n_tokens - 1) * H, (size_t)H * sizeof *out);
    }
    if (rows != out)
        jb_free(rows);
    return st;
}

/*
 * context.c — jamba_context: creation from a planned set of buffers, input validation, and splitting a
 * decode call into internal steps of at most n_batch rows.
 */
#include "context.h"

#include "../ckpt/config.h"
#include "alloc.h"
#include "checked.h"
#include "cpu_ops.h"
#include "error.h"
#include "../cuda/gpu_types.h"

#ifdef JAMBA_WITH_CUDA
#include "../cuda/backend.h"
#endif

#include <stdio.h>
#include <string.h>
#include <unistd.h>

jamba_context_params jamba_context_default_params(void) {
    return (jamba_context_params){.n_seq_max = 1, .n_ctx = 0, .n_batch = 0, .n_threads = 0, .n_logits_max = 0,
                                  .device = JAMBA_DEVICE_CPU, .gpu_index = 0, .gpu_dtype = JAMBA_DTYPE_BF16,
                                  .gpu_graphs = true, .kv_dtype = JAMBA_DTYPE_UNKNOWN, .gpu_memory = 0};
}

/* ---- state addressing ------------------------------------------------------------------------- */

float *jb_ctx_kv(const jamba_context *ctx, int32_t seq, int64_t attn_layer, int which) {
    const jamba_config *c = &ctx->model->config;
    int64_t kv = c->num_key_value_heads * c->head_dim;
    int64_t slab = ((int64_t)seq * c->n_attention_layers + attn_layer) * 2 + which;
    return ctx->kv + slab * ctx->params.n_ctx * kv;
}

float *jb_ctx_conv(const jamba_context *ctx, int32_t seq, int64_t mamba_layer) {
    const jamba_config *c = &ctx->model->config;
    return ctx->conv + ((int64_t)seq * c->n_mamba_layers + mamba_layer) * c->mamba_d_inner * (c->mamba_d_conv - 1);
}

float *jb_ctx_ssm(const jamba_context *ctx, int32_t seq, int64_t mamba_layer) {
    const jamba_config *c = &ctx->model->config;
    return ctx->ssm + ((int64_t)seq * c->n_mamba_layers + mamba_layer) * c->mamba_d_inner * c->mamba_d_state;
}

void jb_context_set_capture(jamba_context *ctx, float *hidden, float *final, int64_t rows) {
    ctx->capture = (jb_capture){.hidden = hidden, .final = final, .rows = hidden ? rows : 0, .next_row = 0};
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
#define D3(a, b, c) {(a), (b), (c)}
#define MAX_BUFFERS 64

static jamba_status allocate_all(const buffer_plan *plan, size_t n, jamba_error *err) {
    uint64_t total = 0;
    uint64_t bytes[MAX_BUFFERS];
    if (n > MAX_BUFFERS)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: too many buffers");
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

static int64_t max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

jamba_status jb_context_resolve_params(const jamba_model *m, const jamba_context_params *in, jamba_context_params *p,
                                       jamba_error *err) {
    *p = in ? *in : jamba_context_default_params();
    if (p->n_seq_max < 1 || p->n_seq_max > (1 << 20))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_seq_max %d must be in [1, 1048576]", p->n_seq_max);
    if (p->n_ctx == 0)
        p->n_ctx = m->config.max_position_embeddings < 4096 ? m->config.max_position_embeddings : 4096;
    if (p->n_ctx < 1 || p->n_ctx > (INT64_C(1) << 40))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: n_ctx %lld must be in [1, 2^40]", (long long)p->n_ctx);
    if (p->n_batch == 0 && p->device != JAMBA_DEVICE_CUDA)
        p->n_batch = JB_CPU_DEFAULT_BATCH;
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
    if (p->device != JAMBA_DEVICE_CPU && p->device != JAMBA_DEVICE_CUDA)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: unknown device type %d", (int)p->device);
    if (p->device == JAMBA_DEVICE_CPU && p->kv_dtype != JAMBA_DTYPE_UNKNOWN && p->kv_dtype != JAMBA_DTYPE_F32)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: the CPU path keeps its KV cache in F32 (kv_dtype %s "
                       "needs the CUDA device)", jamba_dtype_name(p->kv_dtype));
    if (p->device == JAMBA_DEVICE_CUDA) {
        if (p->gpu_index < 0)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: gpu_index %d must be >= 0", p->gpu_index);
        if (p->gpu_dtype != JAMBA_DTYPE_BF16 && p->gpu_dtype != JAMBA_DTYPE_F32)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: gpu_dtype %s (BF16 or F32)",
                           jamba_dtype_name(p->gpu_dtype));
        if (p->kv_dtype != JAMBA_DTYPE_UNKNOWN && p->kv_dtype != p->gpu_dtype && p->kv_dtype != JAMBA_DTYPE_F8_E4M3)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "context: kv_dtype %s (the gpu_dtype or F8_E4M3)",
                           jamba_dtype_name(p->kv_dtype));
        p->n_threads = 1; /* the host side of a CUDA context is one thread */
    }
    if (p->n_threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        p->n_threads = online < 1 ? 1 : online > 64 ? 64 : (int32_t)online;
    }
    return JAMBA_OK;
}

static jamba_status allocate_buffers(jamba_context *ctx, jamba_error *err) {
    const jamba_config *c = &ctx->model->config;
    const uint64_t S = (uint64_t)ctx->params.n_seq_max, C = (uint64_t)ctx->params.n_ctx;
    const uint64_t Tb = (uint64_t)ctx->params.n_batch, threads = (uint64_t)ctx->params.n_threads;
    const uint64_t H = (uint64_t)c->hidden_size, Di = (uint64_t)c->mamba_d_inner, N = (uint64_t)c->mamba_d_state;
    const uint64_t K = (uint64_t)c->mamba_d_conv, R = (uint64_t)c->mamba_dt_rank, I = (uint64_t)c->intermediate_size;
    const uint64_t q = (uint64_t)(c->num_attention_heads * c->head_dim);
    const uint64_t kv = (uint64_t)(c->num_key_value_heads * c->head_dim);
    const uint64_t E = (uint64_t)c->num_experts, k = (uint64_t)c->num_experts_per_tok;
    const uint64_t V = (uint64_t)c->vocab_size, L = (uint64_t)c->num_hidden_layers;
    const uint64_t A = (uint64_t)c->n_attention_layers, M = (uint64_t)c->n_mamba_layers;
    const uint64_t kmax = (uint64_t)max3(max3(c->hidden_size, c->mamba_d_inner, c->intermediate_size), q,
                                         c->mamba_dt_rank);
    const uint64_t vec = (uint64_t)max3(c->hidden_size, c->mamba_dt_rank, c->mamba_d_state);
    ctx->logit_capacity = ctx->params.n_logits_max;
    const uint64_t cap = (uint64_t)ctx->logit_capacity;
    /* a CUDA context keeps its state and workspaces on the device: its host buffers are bookkeeping,
     * the host copy of the logits and the decode_sample inputs */
    const uint64_t cpu = ctx->params.device == JAMBA_DEVICE_CPU, gpu = !cpu;
    jb_workspace *w = &ctx->ws;
    jb_ffn_workspace *f = &w->ffn;
    const buffer_plan plan[] = {
        {(void **)&ctx->layer_slot, sizeof(int64_t), D1(L), "layer index"},
        {(void **)&ctx->kv, sizeof(float), D3(cpu * (S * A * 2), C, kv), "the KV cache"},
        {(void **)&ctx->conv, sizeof(float), D3(cpu * (S * M), Di, K - 1), "the conv windows"},
        {(void **)&ctx->ssm, sizeof(float), D3(cpu * (S * M), Di, N), "the SSM states"},
        {(void **)&ctx->n_past, sizeof(int64_t), D1(S), "sequence lengths"},
        {(void **)&ctx->seq_input, sizeof(int64_t), D1(S), "sequence bookkeeping"},
        {(void **)&w->x, sizeof(float), D2(cpu * Tb, H), "the residual stream"},
        {(void **)&w->xn, sizeof(float), D2(cpu * Tb, H), "a workspace"},
        {(void **)&w->mix, sizeof(float), D2(cpu * Tb, H), "a workspace"},
        {(void **)&w->proj, sizeof(float), D2(cpu * Tb, 2 * Di), "a workspace"},
        {(void **)&w->u, sizeof(float), D2(cpu * Tb, Di), "a workspace"},
        {(void **)&w->xdbl, sizeof(float), D2(cpu * Tb, R + 2 * N), "a workspace"},
        {(void **)&w->dt_in, sizeof(float), D2(cpu * Tb, R), "a workspace"},
        {(void **)&w->delta, sizeof(float), D2(cpu * Tb, Di), "a workspace"},
        {(void **)&w->y, sizeof(float), D2(cpu * Tb, Di), "a workspace"},
        {(void **)&w->q, sizeof(float), D2(cpu * Tb, q), "a workspace"},
        {(void **)&w->k_new, sizeof(float), D2(cpu * Tb, kv), "a workspace"},
        {(void **)&w->v_new, sizeof(float), D2(cpu * Tb, kv), "a workspace"},
        {(void **)&w->att, sizeof(float), D2(cpu * Tb, q), "a workspace"},
        {(void **)&w->attn_scratch, sizeof(float), D2(cpu * threads, C), "attention scores"},
        {(void **)&w->wbuf, sizeof(float), D1(cpu * (Di * (N + K + 5) + 4 * vec)), "widened small weights"},
        {(void **)&w->final_rows, sizeof(float), D2(cpu * cap, H), "a workspace"},
        {(void **)&f->matmul_scratch, sizeof(float), D3(cpu * threads, JB_MATMUL_ROWS, kmax), "matmul scratch"},
        {(void **)&f->gate, sizeof(float), D2(cpu * Tb, I), "a workspace"},
        {(void **)&f->up, sizeof(float), D2(cpu * Tb, I), "a workspace"},
        {(void **)&f->gathered, sizeof(float), D2(cpu * Tb, H), "a workspace"},
        {(void **)&f->expert_out, sizeof(float), D2(cpu * Tb, H), "a workspace"},
        {(void **)&f->router, sizeof(float), D2(cpu * Tb, E), "a workspace"},
        {(void **)&f->experts, sizeof(int32_t), D2(cpu * Tb, k), "a workspace"},
        {(void **)&f->weights, sizeof(float), D2(cpu * Tb, k), "a workspace"},
        {(void **)&f->plan.expert_begin, sizeof(int64_t), D1(cpu * (E + 1)), "a workspace"},
        {(void **)&f->plan.slot_token, sizeof(int64_t), D2(cpu * Tb, k), "a workspace"},
        {(void **)&f->plan.slot_weight, sizeof(float), D2(cpu * Tb, k), "a workspace"},
        {(void **)&ctx->logits, sizeof(float), D2(cap, V), "the logits"},
        {(void **)&ctx->logit_first, sizeof(int64_t), D1(S), "logit bookkeeping"},
        {(void **)&ctx->logit_rows, sizeof(int64_t), D1(S), "logit bookkeeping"},
        {(void **)&ctx->segments, sizeof(jb_segment), D1(S), "step segments"},
        {(void **)&ctx->logit_src, sizeof(int64_t), D1(cap), "logit bookkeeping"},
        {(void **)&ctx->sample_inputs, sizeof(jamba_seq_input), D1(S), "sampling inputs"},
        {(void **)&ctx->sample_params, sizeof(jb_gpu_sample_params), D1(gpu * S), "sampling parameters"},
        {(void **)&ctx->sample_penalized, sizeof(int32_t), D2(gpu * S, JB_GPU_SAMPLE_MAX_PENALIZED), "sampling history"},
        {(void **)&ctx->sample_used, sizeof(int32_t), D1(gpu * S), "sampling results"},
        {(void **)&ctx->sample_on_device, sizeof(bool), D1(gpu * S), "sampling results"},
    };
    return allocate_all(plan, sizeof plan / sizeof plan[0], err);
}

/* Before anything is allocated: the plan against the device's free memory (or gpu_memory), fixing the
 * step size; a request that does not fit fails here, saying what would. */
static jamba_status plan_cuda(jamba_context *ctx, jamba_error *err) {
    jamba_context_params *p = &ctx->params;
    uint64_t free_bytes = 0;
    bool resident = false;
    JB_TRY(jb_model_gpu_probe(ctx->model, p->gpu_index, p->gpu_dtype, &free_bytes, &resident, err));
    jamba_context_plan plan;
    JB_TRY(jb_context_plan_cuda(ctx->model, p, free_bytes, resident, &plan, err));
    if (!plan.fits)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s on CUDA device %d: %lld tokens x %d sequences %s",
                       ctx->model->path, p->gpu_index, (long long)p->n_ctx, p->n_seq_max, plan.advice);
    p->n_batch = plan.n_batch;
    p->n_logits_max = plan.n_logits_max;
    return JAMBA_OK;
}

static jamba_status create_cuda(jamba_context *ctx, jamba_error *err) {
#ifdef JAMBA_WITH_CUDA
    const jamba_context_params *p = &ctx->params;
    const struct jb_cuda_weights *w = NULL;
    JB_TRY(jb_model_gpu_weights(ctx->model, p->gpu_index, p->gpu_dtype, &w, err));
    jb_cuda_ctx_params cp = {.n_seq_max = p->n_seq_max, .n_ctx = p->n_ctx, .n_batch = p->n_batch,
                             .n_logits_max = p->n_logits_max, .graphs = p->gpu_graphs, .kv_dtype = p->kv_dtype};
    return jb_cuda_ctx_create(ctx->model, w, &cp, &ctx->cuda, err);
#else
    (void)ctx;
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "context: this build has no CUDA backend (configure with "
                   "-DJAMBA_CUDA=ON and build on a machine with the CUDA toolkit)");
#endif
}

jamba_status jamba_context_create(const jamba_model *model, const jamba_context_params *params,
                                  jamba_context **out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_create: out is NULL");
    *out = NULL;
    if (model == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_create: model is NULL");
    const bool on_device = model->device_synthetic && params && params->device == JAMBA_DEVICE_CUDA;
    if (!model->has_weights && !on_device)
        return jb_fail(err, JAMBA_ERR_NO_WEIGHTS, "%s: %s", model->path,
                       model->device_synthetic ? "a device-synthetic model runs on CUDA contexts only"
                                               : "loaded without weights (planning only); a context needs them");
    jamba_context *ctx = jb_calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "context: out of memory");
    ctx->model = model;
    jamba_status st = jb_context_resolve_params(model, params, &ctx->params, err);
    if (st == JAMBA_OK && ctx->params.device == JAMBA_DEVICE_CUDA)
        st = plan_cuda(ctx, err);
    if (st == JAMBA_OK)
        st = allocate_buffers(ctx, err);
    if (st == JAMBA_OK)
        st = jb_pool_create(ctx->params.n_threads, &ctx->pool, err);
    if (st == JAMBA_OK && ctx->params.device == JAMBA_DEVICE_CUDA)
        st = create_cuda(ctx, err);
    if (st != JAMBA_OK) {
        jamba_context_free(ctx);
        return st;
    }
    const jamba_config *c = &model->config;
    int64_t n_attn = 0, n_mamba = 0;
    for (int64_t i = 0; i < c->num_hidden_layers; i++)
        ctx->layer_slot[i] = jb_layer_is_attention(c, i) ? n_attn++ : n_mamba++;
    for (int32_t s = 0; s < ctx->params.n_seq_max; s++)
        ctx->seq_input[s] = -1;
    *out = ctx;
    return JAMBA_OK;
}

void jamba_context_free(jamba_context *ctx) {
    if (ctx == NULL)
        return;
#ifdef JAMBA_WITH_CUDA
    jb_cuda_ctx_free(ctx->cuda);
#endif
    jb_pool_free(ctx->pool);
    jb_workspace *w = &ctx->ws;
    jb_ffn_workspace *f = &w->ffn;
    void *owned[] = {ctx->layer_slot, ctx->kv, ctx->conv, ctx->ssm, ctx->n_past, ctx->seq_input, w->x, w->xn, w->mix, w->proj,
                     w->u, w->xdbl, w->dt_in, w->delta, w->y, w->q, w->k_new, w->v_new, w->att, w->attn_scratch,
                     w->wbuf, w->final_rows, f->matmul_scratch, f->gate, f->up, f->gathered, f->expert_out,
                     f->router, f->experts, f->weights, f->plan.expert_begin, f->plan.slot_token,
                     f->plan.slot_weight, ctx->logits, ctx->logit_first, ctx->logit_rows, ctx->segments,
                     ctx->logit_src, ctx->sample_inputs, ctx->sample_params, ctx->sample_penalized,
                     ctx->sample_used, ctx->sample_on_device};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        jb_free(owned[i]);
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
    if (*logit_rows > ctx->logit_capacity)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                       "jamba_decode: %lld logit rows requested; at most %lld per call (n_logits_max)",
                       (long long)*logit_rows, (long long)ctx->logit_capacity);
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

/* One internal step on the context's device. */
static jamba_status run_step(jamba_context *ctx, int64_t n_segs, int64_t rows, int64_t n_logits, int64_t logit_dst,
                             bool keep_on_device, jamba_error *err) {
    if (ctx->cuda == NULL) {
        jb_forward_step(ctx, ctx->segments, n_segs, rows, n_logits, logit_dst);
        return JAMBA_OK;
    }
#ifdef JAMBA_WITH_CUDA
    jb_capture *cap = ctx->capture.hidden || ctx->capture.final ? &ctx->capture : NULL;
    JB_TRY(jb_cuda_step(ctx->cuda, ctx->segments, n_segs, rows, ctx->logit_src, n_logits, logit_dst,
                        keep_on_device ? NULL : ctx->logits, cap, err));
    for (int64_t s = 0; s < n_segs; s++)
        ctx->n_past[ctx->segments[s].seq] = ctx->segments[s].pos + ctx->segments[s].n;
    return JAMBA_OK;
#else
    (void)keep_on_device;
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "jamba_decode: this build has no CUDA backend");
#endif
}

jamba_status jb_decode(jamba_context *ctx, const jamba_seq_input *in, int64_t n, bool keep_on_device,
                       jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode: ctx is NULL");
    int64_t total_logits;
    JB_TRY(validate_inputs(ctx, in, n, &total_logits, err));
    assign_logit_rows(ctx, in, n);
    ctx->logits_on_host = !keep_on_device || ctx->cuda == NULL;
    /* Fill steps of up to n_batch rows, in input order; a long input spans several steps. */
    const int64_t Tb = ctx->params.n_batch;
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
                JB_TRY(run_step(ctx, n_segs, rows, n_logits, logit_dst, keep_on_device, err));
                logit_dst += n_logits;
                rows = n_segs = n_logits = 0;
            }
        }
    }
    return JAMBA_OK;
}

jamba_status jamba_decode(jamba_context *ctx, const jamba_seq_input *in, int64_t n, jamba_error *err) {
    return jb_decode(ctx, in, n, false, err);
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

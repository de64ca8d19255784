/*
 * internals.c — the research calls of jamba.h ("Internals (research)"): attaching a capture (hidden
 * states, router logits, layer hook) to a context, router statistics over captured logits, and reading or
 * writing one layer's Mamba state of a sequence. The forward passes do the capturing (backend/step.h).
 */
#include "base/abi.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "ckpt/config.h"
#include "moe/router.h"
#include "runtime/context.h"

#include <math.h>
#include <string.h>

/* rows x n x width floats fit in memory sizes. */
static bool buffer_fits(int64_t rows, int64_t n, int64_t width) {
    uint64_t floats = 0;
    return jb_mul_u64((uint64_t)rows, (uint64_t)n, &floats) && jb_mul_u64(floats, (uint64_t)width, &floats) &&
           floats <= SIZE_MAX / sizeof(float);
}

static jamba_status check_hidden(const jamba_capture *cap, int64_t L, jamba_error *err) {
    if (cap->hidden_index == NULL)
        return JAMBA_OK;
    if (cap->hidden == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_set_capture: hidden_index without hidden");
    if (cap->n_hidden < 1 || cap->n_hidden > L + 1)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_set_capture: n_hidden %lld outside [1, %lld]",
                       (long long)cap->n_hidden, (long long)(L + 1));
    for (int64_t i = 0; i < cap->n_hidden; i++) {
        const int64_t number = cap->hidden_index[i];
        if (number < 0 || number > L)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                           "jamba_context_set_capture: hidden_index[%lld] = %lld is outside [0, %lld] (L = %lld)",
                           (long long)i, (long long)number, (long long)L, (long long)L);
        for (int64_t j = 0; j < i; j++)
            if (cap->hidden_index[j] == number)
                return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                               "jamba_context_set_capture: hidden_index[%lld] and [%lld] are both %lld", (long long)j,
                               (long long)i, (long long)number);
    }
    return JAMBA_OK;
}

jamba_status jamba_context_set_capture_sized(jamba_context *ctx, const jamba_capture *cap, size_t cap_size,
                                             jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_set_capture: ctx is NULL");
    if (cap == NULL) {
        ctx->capture = (jb_capture){0};
        return JAMBA_OK;
    }
    jamba_capture c = {0};
    JB_TRY(jb_struct_in(&c, sizeof c, cap, cap_size, JB_MIN_CAPTURE, "jamba_capture", err));
    const jamba_config *cfg = &ctx->model->config;
    const int64_t L = cfg->num_hidden_layers, H = cfg->hidden_size;
    if (c.rows < 0)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_context_set_capture: rows %lld is negative",
                       (long long)c.rows);
    JB_TRY(check_hidden(&c, L, err));
    const int64_t n_hidden = c.hidden_index ? c.n_hidden : L + 1;
    if ((c.hidden && !buffer_fits(c.rows, n_hidden, H)) ||
        (c.router_logits && !buffer_fits(c.rows, cfg->n_moe_layers, cfg->num_experts)))
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "jamba_context_set_capture: %lld rows overflow a buffer size",
                       (long long)c.rows);
    ctx->capture = (jb_capture){.hidden = c.hidden, .hidden_index = c.hidden ? c.hidden_index : NULL,
                                .n_hidden = c.hidden ? n_hidden : 0, .router = c.router_logits, .hook = c.hook,
                                .hook_data = c.hook_data, .rows = c.rows, .next_row = 0};
    return JAMBA_OK;
}

int64_t jamba_context_captured_rows(const jamba_context *ctx) {
    return ctx && jb_capture_active(&ctx->capture) ? ctx->capture.next_row : 0;
}

/* ---- router statistics ------------------------------------------------------------------------ */

/* Scratch of one call: a row's probabilities [E], its choices and weights [k], per-expert sums [E]. */
typedef struct router_scratch {
    float *p, *w;
    int32_t *chosen;
    double *prob_sum;
    int64_t *counts;
} router_scratch;

static void scratch_free(router_scratch *s) {
    jb_free(s->p);
    jb_free(s->w);
    jb_free(s->chosen);
    jb_free(s->prob_sum);
    jb_free(s->counts);
}

jamba_status jamba_compute_router_stats_sized(const float *logits, int64_t n_rows, int64_t n_experts, int64_t top_k,
                                              int64_t *load, double *mean_prob, jamba_router_stats *out,
                                              size_t out_size, jamba_error *err) {
    if (out == NULL || (logits == NULL && n_rows > 0))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_compute_router_stats: NULL argument");
    if (n_rows < 0 || n_experts < 1 || top_k < 1 || top_k > n_experts || (uint64_t)n_experts > SIZE_MAX / 16)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT,
                       "jamba_compute_router_stats: %lld rows, %lld experts, top_k %lld (need rows >= 0, experts >= 1, "
                       "top_k in [1, experts])", (long long)n_rows, (long long)n_experts, (long long)top_k);
    const size_t E = (size_t)n_experts, k = (size_t)top_k;
    router_scratch s = {jb_malloc(E * sizeof(float)), jb_malloc(k * sizeof(float)), jb_malloc(k * sizeof(int32_t)),
                        jb_calloc(E, sizeof(double)), jb_calloc(E, sizeof(int64_t))};
    if (!s.p || !s.w || !s.chosen || !s.prob_sum || !s.counts) {
        scratch_free(&s);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "jamba_compute_router_stats: out of memory for %lld experts",
                       (long long)n_experts);
    }
    double entropy = 0, share = 0;
    for (int64_t t = 0; t < n_rows; t++) {
        const float *row = logits + t * n_experts;
        bool any_finite = false;
        for (int64_t e = 0; e < n_experts; e++)
            any_finite = any_finite || isfinite(row[e]);
        if (!any_finite) {
            scratch_free(&s);
            return jb_fail(err, JAMBA_ERR_NUMERIC, "jamba_compute_router_stats: row %lld has no finite logit",
                           (long long)t);
        }
        memcpy(s.p, row, E * sizeof(float));
        jb_moe_route(s.p, 1, n_experts, top_k, s.chosen, s.w); /* s.p becomes the probabilities */
        for (int64_t e = 0; e < n_experts; e++) {
            s.prob_sum[e] += s.p[e];
            entropy -= s.p[e] > 0 ? (double)s.p[e] * log((double)s.p[e]) : 0;
        }
        for (int64_t j = 0; j < top_k; j++) {
            share += s.w[j];
            s.counts[s.chosen[j]]++;
        }
    }
    const double rows = n_rows > 0 ? (double)n_rows : NAN;
    jamba_router_stats r = {.rows = n_rows, .n_experts = n_experts, .top_k = top_k, .mean_entropy = entropy / rows,
                            .top_k_share = share / rows};
    double balance = 0;
    for (int64_t e = 0; e < n_experts; e++) {
        balance += ((double)s.counts[e] / rows) * (s.prob_sum[e] / rows);
        if (load)
            load[e] = s.counts[e];
        if (mean_prob)
            mean_prob[e] = s.prob_sum[e] / rows;
    }
    r.balance_loss = (double)n_experts * balance;
    scratch_free(&s);
    return jb_struct_out(out, out_size, &r, sizeof r, JB_MIN_ROUTER_STATS, "jamba_router_stats", err);
}

/* ---- Mamba state -------------------------------------------------------------------------------- */

/* Layer `layer`'s index among the Mamba layers, after checking the sequence and the layer. */
static jamba_status mamba_index(const jamba_context *ctx, int32_t seq, int64_t layer, const char *fn, int64_t *out,
                                jamba_error *err) {
    if (ctx == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
    const jamba_config *c = &ctx->model->config;
    if (seq < 0 || seq >= ctx->params.n_seq_max)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: sequence %d outside [0, %d)", fn, seq,
                       ctx->params.n_seq_max);
    if (layer < 0 || layer >= c->num_hidden_layers)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: layer %lld outside [0, %lld)", fn, (long long)layer,
                       (long long)c->num_hidden_layers);
    if (jb_layer_is_attention(c, layer))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: layer %lld is an attention layer, not a Mamba layer",
                       fn, (long long)layer);
    *out = 0;
    for (int64_t l = 0; l < layer; l++)
        *out += !jb_layer_is_attention(c, l);
    return JAMBA_OK;
}

jamba_status jamba_seq_mamba_state(const jamba_context *ctx, int32_t seq, int64_t layer, float *conv, float *ssm,
                                   jamba_error *err) {
    int64_t m = 0;
    JB_TRY(mamba_index(ctx, seq, layer, "jamba_seq_mamba_state", &m, err));
    const jamba_config *c = &ctx->model->config;
    if (conv)
        JB_TRY(ctx->be->state_read(ctx->state, seq, JB_STATE_CONV, m, 0, jb_conv_floats(c), conv, err));
    if (ssm)
        JB_TRY(ctx->be->state_read(ctx->state, seq, JB_STATE_SSM, m, 0, jb_ssm_floats(c), ssm, err));
    return JAMBA_OK;
}

jamba_status jamba_seq_set_mamba_state(jamba_context *ctx, int32_t seq, int64_t layer, const float *conv,
                                       const float *ssm, jamba_error *err) {
    int64_t m = 0;
    JB_TRY(mamba_index(ctx, seq, layer, "jamba_seq_set_mamba_state", &m, err));
    const jamba_config *c = &ctx->model->config;
    if (conv)
        JB_TRY(ctx->be->state_write(ctx->state, seq, JB_STATE_CONV, m, 0, jb_conv_floats(c), conv, err));
    if (ssm)
        JB_TRY(ctx->be->state_write(ctx->state, seq, JB_STATE_SSM, m, 0, jb_ssm_floats(c), ssm, err));
    return JAMBA_OK;
}

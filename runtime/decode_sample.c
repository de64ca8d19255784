/*
 * decode_sample.c — jamba_decode_sample: decode, then choose each input's next token. A backend that
 * samples (be->sample: CUDA) keeps the logits on its device and picks the tokens there with each
 * sampler's own next draw, so the result is what jamba_sampler_sample would give; a sampler it cannot
 * serve gets its row copied to the host. Other backends leave the logits on the host, sampled here.
 */
#include "runtime/context.h"

#include "base/error.h"
#include "runtime/sampler.h"

#include <string.h>

static jamba_status sample_on_host(jamba_context *ctx, int64_t i, jamba_sampler *s, int32_t *token,
                                   jamba_error *err) {
    const int64_t V = ctx->model->config.vocab_size;
    float *row = ctx->logits + i * V;
    if (ctx->be->sample != NULL) /* the row is on the device */
        JB_TRY(ctx->be->logits_row(ctx->state, i, row, err));
    JB_TRY(jamba_sampler_sample(s, row, token, err));
    jamba_sampler_accept(s, *token);
    return JAMBA_OK;
}

static jamba_status sample_on_device(jamba_context *ctx, int64_t n, jamba_sampler *const *samplers, int32_t *tokens,
                                     jamba_error *err) {
    jb_sample_params *params = ctx->sample_params;
    int32_t *penalized = ctx->sample_penalized, *used = ctx->sample_used;
    bool *device = ctx->sample_on_device;
    for (int64_t i = 0; i < n; i++) {
        device[i] = jb_sampler_device_params(samplers[i], &params[i], penalized + i * JB_SAMPLE_MAX_PENALIZED,
                                             JB_SAMPLE_MAX_PENALIZED);
        if (!device[i]) /* a row the device computes but nobody reads: greedy costs least */
            params[i] = (jb_sample_params){.repetition_penalty = 1.0f};
    }
    JB_TRY(ctx->be->sample(ctx->state, n, params, penalized, JB_SAMPLE_MAX_PENALIZED, tokens, used, err));
    for (int64_t i = 0; i < n; i++) {
        if (!device[i]) {
            JB_TRY(sample_on_host(ctx, i, samplers[i], &tokens[i], err));
        } else if (tokens[i] < 0) {
            return jb_fail(err, JAMBA_ERR_NUMERIC, "sampler: every logit of input %lld is NaN or -inf", (long long)i);
        } else {
            if (used[i])
                jb_sampler_consume_draw(samplers[i]);
            jamba_sampler_accept(samplers[i], tokens[i]);
        }
    }
    return JAMBA_OK;
}

jamba_status jb_decode_sample(jamba_context *ctx, const jamba_seq_input *in, int64_t n,
                              jamba_sampler *const *samplers, int32_t *tokens, jamba_error *err) {
    /* inputs with a sampler get LAST logits, in call order: logit row r belongs to the r-th of them */
    int64_t rows = 0;
    for (int64_t i = 0; i < n; i++) {
        if (&ctx->sample_inputs[i] != &in[i])
            ctx->sample_inputs[i] = in[i];
        ctx->sample_inputs[i].logits = samplers[i] ? JAMBA_LOGITS_LAST : JAMBA_LOGITS_NONE;
        if (samplers[i])
            ctx->sample_samplers[rows++] = samplers[i];
    } /* tokens are written only after the decode: a caller may feed from the array it receives them in */
    JB_TRY(jb_decode(ctx, ctx->sample_inputs, n, true, err));
    ctx->logits_on_host = false; /* as documented, whichever device ran */
    int32_t *row_tokens = ctx->sample_tokens;
    if (rows > 0 && ctx->be->sample != NULL)
        JB_TRY(sample_on_device(ctx, rows, ctx->sample_samplers, row_tokens, err));
    else
        for (int64_t r = 0; r < rows; r++)
            JB_TRY(sample_on_host(ctx, r, ctx->sample_samplers[r], &row_tokens[r], err));
    for (int64_t i = 0, r = 0; i < n; i++)
        tokens[i] = samplers[i] ? row_tokens[r++] : -1;
    return JAMBA_OK;
}

jamba_status jamba_decode_sample_sized(jamba_context *ctx, const jamba_seq_input *in, int64_t n, size_t input_size,
                                       jamba_sampler *const *samplers, int32_t *tokens, jamba_error *err) {
    if (samplers == NULL || tokens == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode_sample: NULL argument");
    JB_TRY(jb_inputs_in(ctx, in, n, input_size, ctx ? ctx->sample_inputs : NULL, "jamba_decode_sample", err));
    for (int64_t i = 0; i < n; i++)
        if (samplers[i] == NULL)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_decode_sample: sampler %lld is NULL", (long long)i);
    return jb_decode_sample(ctx, ctx->sample_inputs, n, samplers, tokens, err);
}

/*
 * score_window.c — windowed scoring of long texts for `jamba score --window N --stride S [--carry-state]`
 * (the strided evaluation of transformers' perplexity guide, llama-perplexity -c style). See score.h for
 * which tokens each window predicts and what carrying the state means.
 */
#include "tools/jamba/score.h"
#include "tools/jamba/generation.h"

#include "base/error.h"

#include <math.h>
#include <stdlib.h>

double score_log_prob(const float *row, int64_t V, int32_t next) {
    double mx = row[0];
    for (int64_t i = 1; i < V; i++)
        mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        sum += exp((double)row[i] - mx);
    return (double)row[next] - mx - log(sum);
}

/* The Mamba state of every Mamba layer of sequence 0, out of (restore: into) `states`. */
static jamba_status mamba_states(jamba_context *ctx, const jamba_model *m, float *states, bool restore,
                                 jamba_error *err) {
    const jamba_config *c = jamba_model_config(m);
    const int64_t conv = c->mamba_d_inner * (c->mamba_d_conv - 1), per = conv + c->mamba_d_inner * c->mamba_d_state;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        jamba_layer_info info;
        JB_TRY(jamba_model_layer(m, l, &info, err));
        if (info.mixer != JAMBA_MIXER_MAMBA)
            continue;
        JB_TRY(restore ? jamba_seq_set_mamba_state(ctx, 0, l, states, states + conv, err)
                       : jamba_seq_mamba_state(ctx, 0, l, states, states + conv, err));
        states += per;
    }
    return JAMBA_OK;
}

/* Feed ids[from, to) to sequence 0 in steps of `batch` tokens and score the predictions of the window's
 * tokens j in [first, end) that these positions make: position p predicts token p + 1. */
static jamba_status feed_and_score(jamba_context *ctx, const jamba_model *m, const char *dir, const int32_t *ids,
                                   int64_t from, int64_t to, int64_t batch, int64_t first, int64_t end,
                                   double *logprob, double *nll_sum, int64_t *predicted, jamba_error *err) {
    const int64_t V = jamba_model_config(m)->vocab_size;
    for (int64_t at = from; at < to; at += batch) {
        const int64_t n = to - at < batch ? to - at : batch;
        jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = n, .logits = JAMBA_LOGITS_ALL};
        JB_TRY(jamba_decode(ctx, &in, 1, err));
        int64_t rows;
        const float *logits = jamba_logits(ctx, 0, &rows);
        const int64_t lo = first > at + 1 ? first : at + 1, hi = at + n + 1 < end ? at + n + 1 : end;
        for (int64_t j = lo; j < hi; j++) {
            const float *row = logits + (j - 1 - at) * V;
            if (!gen_logits_finite(row, V))
                return gen_fail_non_finite(err, dir, j - 1);
            logprob[j - 1] = score_log_prob(row, V, ids[j]);
            *nll_sum -= logprob[j - 1];
            ++*predicted;
        }
    }
    return JAMBA_OK;
}

jamba_status score_windows(jamba_context *ctx, const jamba_model *m, const char *dir, const int32_t *ids, int64_t T,
                           const score_window_opts *w, double *logprob, double *nll_sum, int64_t *predicted,
                           jamba_error *err) {
    const jamba_config *c = jamba_model_config(m);
    const int64_t per = c->mamba_d_inner * (c->mamba_d_conv - 1 + c->mamba_d_state);
    float *carried = NULL;
    if (w->carry_state && c->n_mamba_layers > 0 &&
        (carried = calloc((size_t)(c->n_mamba_layers * per), sizeof *carried)) == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for the carried Mamba state");
    for (int64_t j = 0; j + 1 < T; j++)
        logprob[j] = NAN;
    *nll_sum = 0;
    *predicted = 0;
    jamba_status st = JAMBA_OK;
    for (int64_t begin = 0, prev_end = 1; st == JAMBA_OK && begin < T; begin += w->stride) {
        const int64_t end = T - begin < w->window ? T : begin + w->window;
        const int64_t first = prev_end > begin + 1 ? prev_end : begin + 1; /* the first token predicted */
        st = jamba_seq_reset(ctx, 0, err);
        if (st == JAMBA_OK && carried && begin > 0)
            st = mamba_states(ctx, m, carried, true, err);
        /* with a carried state, stop at the next window's start to keep the state there */
        const int64_t split = carried && begin + w->stride < end ? begin + w->stride : end;
        if (st == JAMBA_OK)
            st = feed_and_score(ctx, m, dir, ids, begin, split, w->batch, first, end, logprob, nll_sum, predicted,
                                err);
        if (st == JAMBA_OK && split < end) {
            st = mamba_states(ctx, m, carried, false, err);
            if (st == JAMBA_OK)
                st = feed_and_score(ctx, m, dir, ids, split, end, w->batch, first, end, logprob, nll_sum,
                                    predicted, err);
        }
        prev_end = end;
        if (end == T)
            break;
    }
    free(carried);
    return st;
}

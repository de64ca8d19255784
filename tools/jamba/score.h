/*
 * score.h — the parts of `jamba score` beyond plain scoring: the research captures of one model
 * (score_internals.c: --router-stats, --dump-router, --dump-hidden, --dump-mamba-state, --layers) and
 * windowed scoring of long texts (score_window.c: --window, --stride, --carry-state).
 */
#ifndef JAMBA_SCORE_H
#define JAMBA_SCORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"

/* What to capture while a model is scored. */
typedef struct score_internals_opts {
    bool router_stats;
    const char *dump_router;  /* safetensors: router_logits.<layer> [T, E] per MoE layer */
    const char *dump_hidden;  /* safetensors: hidden.<i> [T, H], transformers' output_hidden_states numbering */
    const char *dump_mamba;   /* safetensors: mamba.<layer>.conv [D_i, K-1] and .ssm [D_i, N] after the text */
    const int64_t *layers;    /* --layers: hidden numbers / Mamba layers to dump; NULL: all */
    int64_t n_layers;
} score_internals_opts;

static inline bool score_internals_wanted(const score_internals_opts *o) {
    return o->router_stats || o->dump_router || o->dump_hidden || o->dump_mamba;
}

/* One MoE layer's routing over the scored text. */
typedef struct score_router_layer {
    int64_t layer;            /* decoder layer index */
    jamba_router_stats stats;
    int64_t *load;            /* [E] tokens that chose each expert among their top k */
} score_router_layer;

typedef struct score_router {
    score_router_layer *layers; /* [n] */
    int64_t n;
} score_router;

void score_router_free(score_router *r);

/* A capture of one model while it is scored (its buffers). */
typedef struct score_capture {
    float *hidden;         /* [n_hidden, T, H] */
    int64_t *hidden_index; /* [n_hidden] */
    int64_t n_hidden;
    float *router;         /* [n_moe, T, E] */
    int64_t rows;
} score_capture;

/* Check the --layers numbers against the model (hidden numbers in [0, L]; Mamba layers for the state dump);
 * then allocate the buffers and attach them to ctx for T positions. */
jamba_status score_capture_begin(score_capture *sc, const score_internals_opts *o, jamba_context *ctx,
                                 const jamba_model *m, int64_t T, jamba_error *err);
/* After the text ran: write the dumps (the Mamba state of sequence 0 now) and fill *router when asked. */
jamba_status score_capture_finish(score_capture *sc, const score_internals_opts *o, jamba_context *ctx,
                                  const jamba_model *m, score_router *router, jamba_error *err);
void score_capture_free(score_capture *sc);

/* --router-stats as text (a table per model) and as JSON (an array, one object per MoE layer). */
void score_router_print(const char *model, const score_router *r);
json_t *score_router_json(const score_router *r);

/* Windowed scoring: windows of `window` tokens starting every `stride` tokens; window w covers
 * [w S, min(w S + N, T)) and predicts the tokens from the end of the previous window (from 1 for the first)
 * to its own end, so every token is predicted at most once: a token that starts a window without overlap
 * (stride == window) has nothing before it in its window and is left out. Each window starts from an empty
 * sequence; with carry_state the Mamba layers start from the state the sequence had at the window's start
 * (carried from the previous window, which ran over that position), while attention sees only the window. */
typedef struct score_window_opts {
    int64_t window, stride;
    int64_t batch;            /* tokens per jamba_decode call (the context's n_batch) */
    bool carry_state;
} score_window_opts;

/* logprob[j - 1] = log p(ids[j] | window) for every predicted j, NAN for the others; *nll_sum and
 * *predicted over the predicted ones. ctx: one sequence of at least `window` tokens. `dir` names the model
 * in a non-finite-logits error. */
jamba_status score_windows(jamba_context *ctx, const jamba_model *m, const char *dir, const int32_t *ids, int64_t T,
                           const score_window_opts *w, double *logprob, double *nll_sum, int64_t *predicted,
                           jamba_error *err);

/* log p(next | row) in double (the one definition, shared with cmd_score.c). */
double score_log_prob(const float *row, int64_t V, int32_t next);

#endif /* JAMBA_SCORE_H */

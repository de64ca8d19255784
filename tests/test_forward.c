/*
 * test_forward.c — the CPU forward pass against transformers' JambaForCausalLM on every fixture of
 * tools/gen_fixtures.py: logits at every position, the residual stream after every layer (the hidden states
 * of jamba_context_set_capture: the stream entering layer l + 1, and through the final norm after the last
 * layer), the final norm, and a 16-step greedy continuation (prefill, then one token per step) with the
 * logits of every step. tests/test_research.c checks the other captures against transformers.
 * Every comparison is per position, relative L2 error at most 1e-5.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

typedef struct fixture_case {
    const char *model;     /* folder under tests/fixtures/forward */
    const char *reference; /* whose reference.safetensors it must reproduce */
} fixture_case;

static const fixture_case cases[] = {
    {"mini", "mini"},
    {"pure-mamba-moe", "pure-mamba-moe"},
    {"pure-attention-dense", "pure-attention-dense"},
    {"dense-hybrid-1to3", "dense-hybrid-1to3"},
    {"moe-every-layer-top1", "moe-every-layer-top1"},
    {"moe-every-layer-top3", "moe-every-layer-top3"},
    {"odd-shapes", "odd-shapes"},
    {"mini-bf16", "mini-bf16"},
    {"mini-ai21", "mini"},    /* AI21 March-2024 names, same weights */
    {"mini-stacked", "mini"}, /* stacked experts, same weights */
};

static int32_t *as_i32(const int64_t *ids, int64_t n) {
    int32_t *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++)
        out[i] = (int32_t)ids[i];
    return out;
}

static void feed(jamba_context *ctx, int32_t seq, const int32_t *tokens, int64_t n, jamba_logits_mode mode) {
    jamba_seq_input in = {.seq = seq, .tokens = tokens, .n_tokens = n, .logits = mode};
    jamba_error err = {0};
    cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
}

/* Parameters are indices into `cases` (plain integers survive Criterion's process boundary). */
static int case_index[sizeof cases / sizeof cases[0]];

ParameterizedTestParameters(forward, matches_reference) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        case_index[i] = (int)i;
    return cr_make_param_array(int, case_index, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(int *index, forward, matches_reference) {
    const fixture_case *fc = &cases[*index];
    jamba_model *m = ref_load_model(fc->model);
    ref_file ref;
    ref_open(&ref, fc->reference);
    const jamba_config *c = jamba_model_config(m);
    int64_t shape[8];
    const int64_t *ids64 = ref_i64(&ref, "input_ids", shape);
    const int64_t T = shape[0], H = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers;
    int32_t *ids = as_i32(ids64, T);
    const float *want_logits = ref_f32(&ref, "logits", NULL);
    const float *want_hidden = ref_f32(&ref, "hidden_states", shape);
    cr_assert_eq(shape[0], L);
    const float *want_final = ref_f32(&ref, "final_norm", NULL);

    /* one forward over the prompt from an empty state; hidden [L + 1, T, H], number l + 1 after layer l */
    jamba_context *ctx = ref_context(m, 1, 0, 64, 2);
    float *hidden = calloc((size_t)((L + 1) * T * H), sizeof *hidden);
    const float *final = hidden + L * T * H;
    const jamba_capture cap = {.rows = T, .hidden = hidden};
    cr_assert_eq(jamba_context_set_capture(ctx, &cap, NULL), JAMBA_OK);
    feed(ctx, 0, ids, T, JAMBA_LOGITS_ALL);
    int64_t rows;
    const float *logits = jamba_logits(ctx, 0, &rows);
    cr_assert_eq(rows, T);
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        double e = rel_l2(logits + t * V, want_logits + t * V, V);
        worst = e > worst ? e : worst;
        cr_expect_leq(e, REF_TOL, "%s: logits at position %lld: relative error %.3g", fc->model, (long long)t, e);
        cr_expect_leq(rel_l2(final + t * H, want_final + t * H, H), REF_TOL, "%s: final norm at %lld", fc->model,
                      (long long)t);
        for (int64_t l = 0; l + 1 < L; l++) { /* the last layer's raw output is checked through the final norm */
            double h = rel_l2(hidden + ((l + 1) * T + t) * H, want_hidden + (l * T + t) * H, H);
            cr_expect_leq(h, REF_TOL, "%s: hidden state after layer %lld at position %lld: %.3g", fc->model,
                          (long long)l, (long long)t, h);
        }
    }
    cr_log_info("%s: worst logits relative error %.3g", fc->model, worst);
    cr_assert_eq(jamba_context_captured_rows(ctx), T);
    cr_assert_eq(jamba_context_set_capture(ctx, NULL, NULL), JAMBA_OK);

    /* greedy: prefill from empty, then one token per step */
    const int64_t *want_tokens = ref_i64(&ref, "greedy_tokens", shape);
    const int64_t steps = shape[0];
    const float *want_steps = ref_f32(&ref, "step_logits", NULL);
    cr_assert_eq(jamba_seq_reset(ctx, 0, NULL), JAMBA_OK);
    feed(ctx, 0, ids, T, JAMBA_LOGITS_LAST);
    for (int64_t s = 0; s < steps; s++) {
        const float *step = jamba_logits(ctx, 0, &rows);
        cr_assert_eq(rows, 1);
        double e = rel_l2(step, want_steps + s * V, V);
        cr_expect_leq(e, REF_TOL, "%s: greedy step %lld logits: %.3g", fc->model, (long long)s, e);
        int32_t tok = (int32_t)tu_argmax(step, V);
        cr_assert_eq(tok, want_tokens[s], "%s: greedy step %lld chose %d, reference %lld", fc->model, (long long)s,
                     tok, (long long)want_tokens[s]);
        feed(ctx, 0, &tok, 1, JAMBA_LOGITS_LAST);
    }
    cr_assert_eq(jamba_seq_length(ctx, 0), T + steps);
    jamba_context_free(ctx);
    free(hidden);
    free(ids);
    ref_close(&ref);
    jamba_model_free(m);
    JB_CHECK_LEAKS();
}

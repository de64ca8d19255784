/*
 * test_research.c — the research calls of jamba.h ("Internals (research)") on the CPU:
 *   - hidden states, router logits, router statistics and Mamba states against transformers'
 *     output_hidden_states / output_router_logits / aux_loss / cache on every fixture with internals
 *     (tools/gen_fixtures.py --internals), relative L2 per row at most REF_TOL as in test_forward.c;
 *   - a chosen subset of hidden states, captures across several steps, the row limit;
 *   - the layer hook: patching in a layer's own output changes nothing (bit for bit), a changed output
 *     changes the logits, and the forward continues from the patched rows;
 *   - router statistics on hand-computed cases and bad arguments; Mamba state get/set.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

static const char *const fixtures[] = {"mini", "pure-mamba-moe", "pure-attention-dense", "dense-hybrid-1to3",
                                       "moe-every-layer-top1", "moe-every-layer-top3", "odd-shapes", "mini-bf16"};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

static jamba_token *prompt(const ref_file *ref, int64_t *T) {
    int64_t shape[8];
    const int64_t *ids = ref_i64(ref, "input_ids", shape);
    jamba_token *out = malloc((size_t)shape[0] * sizeof *out);
    for (int64_t i = 0; i < shape[0]; i++)
        out[i] = (jamba_token)ids[i];
    *T = shape[0];
    return out;
}

static void feed(jamba_context *ctx, const jamba_token *ids, int64_t n, jamba_logits_mode mode) {
    jamba_seq_input in = {.seq = 0, .tokens = ids, .n_tokens = n, .logits = mode};
    jamba_error err = {0};
    cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
}

static void attach(jamba_context *ctx, const jamba_capture *cap) {
    jamba_error err = {0};
    cr_assert_eq(jamba_context_set_capture(ctx, cap, &err), JAMBA_OK, "%s", err.message);
}

/* Every row of got [rows, width] within REF_TOL of want. */
static const char *current_fixture = "mini";

static void expect_rows(const char *what, const float *got, const float *want, int64_t rows, int64_t width) {
    for (int64_t t = 0; t < rows; t++) {
        double e = rel_l2(got + t * width, want + t * width, width);
        cr_expect_leq(e, REF_TOL, "%s: %s row %lld: relative error %.3g", current_fixture, what, (long long)t, e);
    }
}

static int fixture_index[N_FIXTURES];

ParameterizedTestParameters(research, internals_match_transformers) {
    for (size_t i = 0; i < N_FIXTURES; i++)
        fixture_index[i] = (int)i;
    return cr_make_param_array(int, fixture_index, N_FIXTURES);
}

/* Hidden states, router logits, aux loss and Mamba state after one prefill, against transformers. */
ParameterizedTest(int *index, research, internals_match_transformers) {
    const char *name = current_fixture = fixtures[*index];
    jamba_model *m = ref_load_model(name);
    ref_file ref, in;
    ref_open(&ref, name);
    ref_open_file(&in, name, "internals.safetensors");
    const jamba_config *c = jamba_model_config(m);
    const int64_t H = c->hidden_size, L = c->num_hidden_layers, E = c->num_experts, M = c->n_moe_layers;
    int64_t T;
    jamba_token *ids = prompt(&ref, &T);
    float *hidden = calloc((size_t)((L + 1) * T * H), sizeof *hidden);
    float *router = calloc((size_t)(M * T * E + 1), sizeof *router);
    jamba_context *ctx = ref_context(m, 1, 0, 64, 2);
    attach(ctx, &(jamba_capture){.rows = T, .hidden = hidden, .router_logits = M ? router : NULL});
    feed(ctx, ids, T, JAMBA_LOGITS_NONE);
    char what[96];
    for (int64_t i = 0; i <= L; i++) {
        snprintf(what, sizeof what, "hidden.%lld", (long long)i);
        expect_rows(what, hidden + i * T * H, ref_f32(&in, what, NULL), T, H);
    }
    /* router logits per MoE layer, and transformers' aux loss from the statistics of all of them together */
    int64_t *load = calloc((size_t)E, sizeof *load), *load_sum = calloc((size_t)E, sizeof *load_sum);
    double *prob = calloc((size_t)E, sizeof *prob), *prob_sum = calloc((size_t)E, sizeof *prob_sum);
    for (int64_t l = 0, k = 0; l < L; l++) {
        jamba_layer_info info;
        cr_assert_eq(jamba_model_layer(m, l, &info, NULL), JAMBA_OK);
        if (info.ffn != JAMBA_FFN_MOE)
            continue;
        snprintf(what, sizeof what, "router_logits.%lld", (long long)l);
        expect_rows(what, router + k * T * E, ref_f32(&in, what, NULL), T, E);
        jamba_router_stats s;
        cr_assert_eq(jamba_compute_router_stats(router + k * T * E, T, E, c->num_experts_per_tok, load, prob, &s, NULL),
                     JAMBA_OK);
        cr_expect_eq(s.rows, T);
        for (int64_t e = 0; e < E; e++)
            load_sum[e] += load[e], prob_sum[e] += prob[e];
        k++;
    }
    if (M > 0) {
        double aux = 0; /* E Σ_e (load_e / (M T)) (mean probability over the M T rows) */
        for (int64_t e = 0; e < E; e++)
            aux += ((double)load_sum[e] / (double)(M * T)) * (prob_sum[e] / (double)M);
        aux *= (double)E;
        const float want = ref_f32(&in, "aux_loss", NULL)[0];
        cr_expect_leq(fabs(aux - want), 1e-5 * fabs(want), "%s: aux loss %.9g, transformers %.9g", name, aux, want);
    }
    /* Mamba state: transformers' conv window holds K inputs, ours the last K-1 */
    const int64_t Di = c->mamba_d_inner, K = c->mamba_d_conv, N = c->mamba_d_state;
    float *conv = malloc((size_t)(Di * (K - 1)) * sizeof *conv), *ssm = malloc((size_t)(Di * N) * sizeof *ssm);
    float *want_conv = malloc((size_t)(Di * (K - 1)) * sizeof *want_conv);
    for (int64_t l = 0; l < L; l++) {
        jamba_layer_info info;
        cr_assert_eq(jamba_model_layer(m, l, &info, NULL), JAMBA_OK);
        if (info.mixer != JAMBA_MIXER_MAMBA)
            continue;
        jamba_error err = {0};
        cr_assert_eq(jamba_seq_mamba_state(ctx, 0, l, conv, ssm, &err), JAMBA_OK, "%s", err.message);
        snprintf(what, sizeof what, "mamba.%lld.conv", (long long)l);
        const float *hf_conv = ref_f32(&in, what, NULL);
        for (int64_t d = 0; d < Di; d++)
            memcpy(want_conv + d * (K - 1), hf_conv + d * K + 1, (size_t)(K - 1) * sizeof *want_conv);
        expect_rows(what, conv, want_conv, 1, Di * (K - 1)); /* a state as one vector, as a position's row */
        snprintf(what, sizeof what, "mamba.%lld.ssm", (long long)l);
        expect_rows(what, ssm, ref_f32(&in, what, NULL), 1, Di * N);
    }
    jamba_context_free(ctx);
    free(conv), free(ssm), free(want_conv), free(load), free(load_sum), free(prob), free(prob_sum);
    free(hidden), free(router), free(ids);
    ref_close(&in);
    ref_close(&ref);
    jamba_model_free(m);
    JB_CHECK_LEAKS();
}

/* ---- subsets, steps, limits -------------------------------------------------------------------- */

typedef struct mini_run {
    jamba_model *m;
    ref_file ref;
    jamba_token *ids;
    int64_t T, H, L, E, M, V;
} mini_run;

static void mini_open(mini_run *r) {
    r->m = ref_load_model("mini");
    ref_open(&r->ref, "mini");
    r->ids = prompt(&r->ref, &r->T);
    const jamba_config *c = jamba_model_config(r->m);
    r->H = c->hidden_size, r->L = c->num_hidden_layers, r->E = c->num_experts, r->M = c->n_moe_layers;
    r->V = c->vocab_size;
}

static void mini_close(mini_run *r) {
    free(r->ids);
    ref_close(&r->ref);
    jamba_model_free(r->m);
}

/* Hidden states [L + 1, T, H] and router logits [M, T, E] of the prompt, run in steps of n_batch rows. */
static void capture_all(const mini_run *r, int64_t n_batch, float *hidden, float *router) {
    jamba_context *ctx = ref_context(r->m, 1, 0, n_batch, 2);
    attach(ctx, &(jamba_capture){.rows = r->T, .hidden = hidden, .router_logits = router});
    feed(ctx, r->ids, r->T, JAMBA_LOGITS_NONE);
    cr_assert_eq(jamba_context_captured_rows(ctx), r->T);
    jamba_context_free(ctx);
}

JB_TEST(research, steps_and_subsets) {
    mini_run r;
    mini_open(&r);
    const int64_t T = r.T, H = r.H, L = r.L;
    float *whole = calloc((size_t)((L + 1) * T * H), sizeof *whole), *router = calloc((size_t)(r.M * T * r.E), 4);
    float *stepped = calloc((size_t)((L + 1) * T * H), sizeof *stepped), *router2 = calloc((size_t)(r.M * T * r.E), 4);
    capture_all(&r, 64, whole, router);
    capture_all(&r, 5, stepped, router2); /* 24 rows in steps of 5: every row in its place */
    cr_expect_eq(memcmp(whole, stepped, (size_t)((L + 1) * T * H) * 4), 0);
    cr_expect_eq(memcmp(router, router2, (size_t)(r.M * T * r.E) * 4), 0);

    /* three chosen hidden states, in any order, and only the first 7 rows */
    const int64_t pick[3] = {L, 0, 5}, rows = 7;
    float *some = calloc((size_t)(3 * rows * H), sizeof *some);
    jamba_context *ctx = ref_context(r.m, 1, 0, 5, 2);
    attach(ctx, &(jamba_capture){.rows = rows, .hidden = some, .hidden_index = pick, .n_hidden = 3});
    feed(ctx, r.ids, T, JAMBA_LOGITS_NONE);
    cr_expect_eq(jamba_context_captured_rows(ctx), T);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(memcmp(some + i * rows * H, whole + pick[i] * T * H, (size_t)(rows * H) * 4), 0, "slot %d", i);

    /* bad captures are refused and leave nothing attached */
    const int64_t twice[2] = {3, 3}, beyond[1] = {L + 1};
    jamba_error err = {0};
    cr_expect_eq(jamba_context_set_capture(ctx, &(jamba_capture){.rows = 1, .hidden = some, .hidden_index = twice,
                                                                 .n_hidden = 2}, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(err.message, "both 3"), "%s", err.message);
    cr_expect_eq(jamba_context_set_capture(ctx, &(jamba_capture){.rows = 1, .hidden = some, .hidden_index = beyond,
                                                                 .n_hidden = 1}, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_context_set_capture(ctx, &(jamba_capture){.rows = -1, .hidden = some}, &err),
                 JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_context_set_capture(ctx, &(jamba_capture){.rows = 1, .hidden_index = pick, .n_hidden = 1},
                                           &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_context_set_capture(ctx, NULL, NULL), JAMBA_OK);
    cr_expect_eq(jamba_context_captured_rows(ctx), 0);
    jamba_context_free(ctx);
    free(whole), free(stepped), free(router), free(router2), free(some);
    mini_close(&r);
    JB_CHECK_LEAKS();
}

/* ---- the layer hook --------------------------------------------------------------------------- */

typedef struct patch {
    int64_t layer;       /* the layer whose output is patched */
    const float *source; /* [rows, H]: the rows put in, or NULL: scale what is there */
    float scale;
    int64_t H, calls, rows_seen;
    float *seen;         /* [rows, H]: a copy of what the layer produced (before patching), or NULL */
} patch;

static bool patch_hook(void *user, int64_t layer, int64_t first_row, float *rows, int64_t n_rows, int64_t H) {
    patch *p = user;
    p->calls++;
    cr_assert_eq(H, p->H);
    if (layer != p->layer)
        return false;
    if (p->seen)
        memcpy(p->seen + first_row * H, rows, (size_t)(n_rows * H) * sizeof *rows);
    p->rows_seen += n_rows;
    if (p->source)
        memcpy(rows, p->source + first_row * H, (size_t)(n_rows * H) * sizeof *rows);
    else
        for (int64_t i = 0; i < n_rows * H; i++)
            rows[i] *= p->scale;
    return true;
}

/* Logits [T, V] of the prompt, with the hook (NULL: none) and capturing hidden [L + 1, T, H] when given. */
static float *run_logits(const mini_run *r, patch *p, float *hidden) {
    jamba_context *ctx = ref_context(r->m, 1, 0, 5, 2);
    if (p || hidden)
        attach(ctx, &(jamba_capture){.rows = r->T, .hidden = hidden, .hook = p ? patch_hook : NULL, .hook_data = p});
    float *out = malloc((size_t)(r->T * r->V) * sizeof *out);
    for (int64_t at = 0; at < r->T; at += 8) { /* three calls: rows keep counting across them */
        feed(ctx, r->ids + at, 8, JAMBA_LOGITS_ALL);
        int64_t n;
        const float *lg = jamba_logits(ctx, 0, &n);
        cr_assert_eq(n, 8);
        memcpy(out + at * r->V, lg, (size_t)(8 * r->V) * sizeof *out);
    }
    jamba_context_free(ctx);
    return out;
}

JB_TEST(research, patching_own_output_changes_nothing) {
    mini_run r;
    mini_open(&r);
    cr_assert_eq(r.T % 8, 0);
    const int64_t T = r.T, H = r.H, L = r.L, layer = 6;
    float *clean_hidden = calloc((size_t)((L + 1) * T * H), sizeof *clean_hidden);
    float *clean = run_logits(&r, NULL, clean_hidden);
    /* layer 6's own output (the input of layer 7), put back in a fresh run */
    patch same = {.layer = layer, .source = clean_hidden + (layer + 1) * T * H, .H = H};
    float *patched = run_logits(&r, &same, NULL);
    cr_expect_eq(same.calls, L * 6, "the hook runs after every layer of every step (3 calls of 5 + 3 rows)");
    cr_expect_eq(same.rows_seen, T);
    cr_expect_eq(memcmp(clean, patched, (size_t)(T * r.V) * sizeof *clean), 0, "patching in its own output changed "
                 "the logits");
    free(patched);

    /* and a changed output changes them, the hidden states after it showing the patch */
    float *seen = calloc((size_t)(T * H), sizeof *seen), *hidden = calloc((size_t)((L + 1) * T * H), sizeof *hidden);
    patch scaled = {.layer = layer, .scale = 1.5f, .H = H, .seen = seen};
    float *changed = run_logits(&r, &scaled, hidden);
    cr_expect_eq(memcmp(seen, clean_hidden + (layer + 1) * T * H, (size_t)(T * H) * sizeof *seen), 0,
                 "the hook sees the layer's output");
    for (int64_t i = 0; i < T * H; i++)
        cr_assert_eq(hidden[(layer + 1) * T * H + i], 1.5f * seen[i], "the capture holds the patched stream");
    cr_expect_eq(memcmp(hidden, clean_hidden, (size_t)((layer + 1) * T * H) * sizeof *hidden), 0,
                 "the stream before the patch is unchanged");
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        double e = rel_l2(changed + t * r.V, clean + t * r.V, r.V);
        worst = e > worst ? e : worst;
    }
    cr_expect_gt(worst, 1e-3, "scaling layer %lld's output by 1.5 moved the logits by only %.3g", (long long)layer,
                 worst);
    free(changed), free(seen), free(hidden), free(clean), free(clean_hidden);
    mini_close(&r);
    JB_CHECK_LEAKS();
}

/* The raw output of the last layer is not one of transformers' hidden states; the hook sees it, and the
 * fixture's hidden_states holds it. */
JB_TEST(research, hook_sees_the_last_layer) {
    mini_run r;
    mini_open(&r);
    float *seen = calloc((size_t)(r.T * r.H), sizeof *seen);
    patch p = {.layer = r.L - 1, .scale = 1.0f, .H = r.H, .seen = seen};
    free(run_logits(&r, &p, NULL));
    int64_t shape[8];
    const float *want = ref_f32(&r.ref, "hidden_states", shape);
    expect_rows("after the last layer", seen, want + (r.L - 1) * r.T * r.H, r.T, r.H);
    free(seen);
    mini_close(&r);
    JB_CHECK_LEAKS();
}

/* ---- router statistics ------------------------------------------------------------------------ */

JB_TEST(research, router_stats_by_hand) {
    /* row 0: probabilities 1/2, 1/4, 1/4; row 1: uniform (ties to the lower index); top-2 */
    const float l4 = logf(0.25f), l2 = logf(0.5f);
    const float logits[6] = {l2, l4, l4, 0, 0, 0};
    int64_t load[3];
    double prob[3];
    jamba_router_stats s;
    cr_assert_eq(jamba_compute_router_stats(logits, 2, 3, 2, load, prob, &s, NULL), JAMBA_OK);
    cr_expect_eq(s.rows, 2);
    cr_expect_eq(load[0], 2);
    cr_expect_eq(load[1], 2);
    cr_expect_eq(load[2], 0);
    cr_expect_float_eq(prob[0], (0.5 + 1.0 / 3) / 2, 1e-7);
    cr_expect_float_eq(prob[2], (0.25 + 1.0 / 3) / 2, 1e-7);
    const double h0 = -(0.5 * log(0.5) + 0.5 * log(0.25)), h1 = log(3.0);
    cr_expect_float_eq(s.mean_entropy, (h0 + h1) / 2, 1e-7);
    cr_expect_float_eq(s.top_k_share, (0.75 + 2.0 / 3) / 2, 1e-7);
    /* E Σ f_e P_e, f = load / rows */
    cr_expect_float_eq(s.balance_loss, 3 * (1.0 * prob[0] + 1.0 * prob[1]), 1e-7);

    /* perfectly balanced: k */
    const float flat[4] = {0, 0, 0, 0};
    cr_assert_eq(jamba_compute_router_stats(flat, 1, 4, 4, NULL, NULL, &s, NULL), JAMBA_OK);
    cr_expect_float_eq(s.balance_loss, 4.0, 1e-9);
    cr_expect_float_eq(s.top_k_share, 1.0, 1e-6);

    jamba_error err = {0};
    cr_expect_eq(jamba_compute_router_stats(logits, 2, 3, 4, NULL, NULL, &s, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_compute_router_stats(NULL, 2, 3, 1, NULL, NULL, &s, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_compute_router_stats(logits, 2, 3, 1, NULL, NULL, NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    cr_expect_eq(jamba_compute_router_stats(bad, 1, 3, 1, NULL, NULL, &s, &err), JAMBA_ERR_NUMERIC);
    cr_expect(strstr(err.message, "row 0"), "%s", err.message);
    JB_CHECK_LEAKS();
}

/* ---- Mamba state ------------------------------------------------------------------------------ */

JB_TEST(research, mamba_state_get_set) {
    mini_run r;
    mini_open(&r);
    const jamba_config *c = jamba_model_config(r.m);
    const int64_t Di = c->mamba_d_inner, K = c->mamba_d_conv, N = c->mamba_d_state;
    jamba_context *ctx = ref_context(r.m, 2, 0, 64, 2);
    feed(ctx, r.ids, r.T, JAMBA_LOGITS_NONE);
    float *conv = malloc((size_t)(Di * (K - 1)) * 4), *ssm = malloc((size_t)(Di * N) * 4);
    float *conv2 = malloc((size_t)(Di * (K - 1)) * 4), *ssm2 = malloc((size_t)(Di * N) * 4);
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_mamba_state(ctx, 0, 0, conv, ssm, &err), JAMBA_OK, "%s", err.message);
    /* sequence 1 gets layer 0's state; the others stay zero */
    cr_assert_eq(jamba_seq_set_mamba_state(ctx, 1, 0, conv, ssm, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_mamba_state(ctx, 1, 0, conv2, ssm2, &err), JAMBA_OK);
    cr_expect_eq(memcmp(conv, conv2, (size_t)(Di * (K - 1)) * 4), 0);
    cr_expect_eq(memcmp(ssm, ssm2, (size_t)(Di * N) * 4), 0);
    cr_expect_eq(jamba_seq_length(ctx, 1), 0, "setting a Mamba state does not change the length");
    cr_assert_eq(jamba_seq_mamba_state(ctx, 1, 1, NULL, ssm2, &err), JAMBA_OK);
    for (int64_t i = 0; i < Di * N; i++)
        cr_assert_eq(ssm2[i], 0.0f);
    /* layer 4 is mini's first attention layer */
    cr_expect_eq(jamba_seq_mamba_state(ctx, 0, 4, conv, ssm, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(err.message, "attention"), "%s", err.message);
    cr_expect_eq(jamba_seq_mamba_state(ctx, 2, 0, conv, ssm, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_seq_mamba_state(ctx, 0, r.L, conv, ssm, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_context_free(ctx);
    free(conv), free(ssm), free(conv2), free(ssm2);
    mini_close(&r);
    JB_CHECK_LEAKS();
}

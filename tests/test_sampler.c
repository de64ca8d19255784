/*
 * test_sampler.c — sampling: greedy, reproducibility from a seed, the distribution at temperature 1,
 * top-k / top-p / min-p cut-offs, repetition and presence penalties, NaN and infinity safety, parameters.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/support/testutil.h"

static jamba_sampler *make(jamba_sampler_params p, int64_t vocab) {
    jamba_sampler *s = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_sampler_create(&p, vocab, &s, &err), JAMBA_OK, "%s", err.message);
    return s;
}

static int32_t draw(jamba_sampler *s, const float *logits) {
    int32_t tok = -1;
    jamba_error err = {0};
    cr_assert_eq(jamba_sampler_sample(s, logits, &tok, &err), JAMBA_OK, "%s", err.message);
    return tok;
}

static jamba_sampler_params plain(float temperature) {
    jamba_sampler_params p = jamba_sampler_default_params();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

JB_TEST(sampler, greedy_takes_the_argmax_lowest_id_on_ties) {
    const float logits[5] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
    jamba_sampler *s = make(plain(0), 5);
    cr_assert_eq(draw(s, logits), 1);
    jamba_sampler_free(s);
}

JB_TEST(sampler, same_seed_same_tokens_other_seed_other_tokens) {
    float logits[50];
    for (int i = 0; i < 50; i++)
        logits[i] = sinf((float)i) * 2.0f;
    jamba_sampler_params p = plain(1.0f);
    p.seed = 42;
    jamba_sampler *a = make(p, 50), *b = make(p, 50);
    p.seed = 43;
    jamba_sampler *c = make(p, 50);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = draw(a, logits), y = draw(b, logits), z = draw(c, logits);
        cr_assert_eq(x, y);
        differ += x != z;
    }
    cr_assert_gt(differ, 50);
    jamba_sampler_free(a);
    jamba_sampler_free(b);
    jamba_sampler_free(c);
}

JB_TEST(sampler, frequencies_follow_the_softmax) {
    const float logits[4] = {0.0f, 1.0f, 2.0f, -1.0f};
    jamba_sampler *s = make(plain(1.0f), 4);
    int counts[4] = {0};
    const int n = 40000;
    for (int i = 0; i < n; i++)
        counts[draw(s, logits)]++;
    double z = exp(0) + exp(1) + exp(2) + exp(-1);
    for (int k = 0; k < 4; k++) {
        double want = exp(logits[k]) / z, got = (double)counts[k] / n;
        cr_assert(fabs(got - want) < 0.01, "token %d: %.4f vs %.4f", k, got, want);
    }
    /* a low temperature sharpens towards the best token */
    jamba_sampler *cold = make(plain(0.1f), 4);
    int best = 0;
    for (int i = 0; i < 1000; i++)
        best += draw(cold, logits) == 2;
    cr_assert_gt(best, 990);
    jamba_sampler_free(s);
    jamba_sampler_free(cold);
}

JB_TEST(sampler, top_k_top_p_min_p_cut_the_tail) {
    const float logits[6] = {5.0f, 4.0f, 3.0f, 0.0f, -1.0f, -2.0f};
    jamba_sampler_params p = plain(1.0f);
    p.top_k = 2;
    jamba_sampler *k2 = make(p, 6);
    p = plain(1.0f);
    p.top_p = 0.5f; /* token 0 alone has ~0.66 of the mass */
    jamba_sampler *tp = make(p, 6);
    p = plain(1.0f);
    p.min_p = 0.3f; /* keeps tokens with p >= 0.3 * p(best): 0 and 1 (e^-1 = 0.37) */
    jamba_sampler *mp = make(p, 6);
    int seen_k[6] = {0}, seen_p[6] = {0}, seen_m[6] = {0};
    for (int i = 0; i < 2000; i++) {
        seen_k[draw(k2, logits)]++;
        seen_p[draw(tp, logits)]++;
        seen_m[draw(mp, logits)]++;
    }
    cr_assert(seen_k[0] > 0 && seen_k[1] > 0);
    for (int t = 2; t < 6; t++)
        cr_assert_eq(seen_k[t], 0, "top-k kept token %d", t);
    cr_assert_eq(seen_p[0], 2000, "top-p 0.5 keeps only the first token");
    cr_assert(seen_m[0] > 0 && seen_m[1] > 0 && seen_m[2] == 0, "min-p: %d %d %d", seen_m[0], seen_m[1], seen_m[2]);
    jamba_sampler_free(k2);
    jamba_sampler_free(tp);
    jamba_sampler_free(mp);
}

JB_TEST(sampler, penalties_discourage_the_history) {
    const float logits[3] = {2.0f, 1.9f, -5.0f};
    jamba_sampler_params p = plain(0);
    p.repetition_penalty = 1.5f;
    jamba_sampler *s = make(p, 3);
    cr_assert_eq(draw(s, logits), 0);
    jamba_sampler_accept(s, 0); /* 2.0 / 1.5 = 1.33 < 1.9 */
    cr_assert_eq(draw(s, logits), 1);
    jamba_sampler_free(s);
    p = plain(0);
    p.presence_penalty = 0.5f;
    s = make(p, 3);
    jamba_sampler_accept(s, 0);
    jamba_sampler_accept(s, 0); /* counted once: 2.0 - 0.5 = 1.5 < 1.9 */
    cr_assert_eq(draw(s, logits), 1);
    jamba_sampler_accept(s, 1); /* 1.9 - 0.5 = 1.4 < 1.5 */
    cr_assert_eq(draw(s, logits), 0);
    jamba_sampler_accept(s, 99); /* out of range: ignored */
    jamba_sampler_free(s);
    /* the history window forgets old tokens */
    p = plain(0);
    p.repetition_penalty = 10.0f;
    p.penalty_last_n = 2;
    s = make(p, 3);
    jamba_sampler_accept(s, 0);
    jamba_sampler_accept(s, 2);
    jamba_sampler_accept(s, 2);
    cr_assert_eq(draw(s, logits), 0, "token 0 left the window");
    jamba_sampler_free(s);
}

JB_TEST(sampler, nan_and_infinity) {
    const float some_nan[4] = {NAN, 1.0f, NAN, 0.5f};
    const float all_nan[3] = {NAN, NAN, NAN};
    const float all_neg_inf[2] = {-INFINITY, -INFINITY};
    const float pos_inf[3] = {0.0f, INFINITY, 1.0f};
    jamba_sampler *g = make(plain(0), 4), *r = make(plain(1.0f), 4);
    cr_assert_eq(draw(g, some_nan), 1);
    for (int i = 0; i < 100; i++) {
        int32_t tok = draw(r, some_nan);
        cr_assert(tok == 1 || tok == 3, "NaN token %d chosen", tok);
    }
    int32_t tok;
    jamba_error err = {0};
    jamba_sampler *g3 = make(plain(0), 3), *r3 = make(plain(1.0f), 3), *r2 = make(plain(1.0f), 2);
    cr_assert_eq(jamba_sampler_sample(g3, all_nan, &tok, &err), JAMBA_ERR_NUMERIC);
    cr_assert_eq(jamba_sampler_sample(r2, all_neg_inf, &tok, &err), JAMBA_ERR_NUMERIC);
    cr_assert_eq(draw(g3, pos_inf), 1);
    cr_assert_eq(draw(r3, pos_inf), 1); /* +inf wins outright when sampling too */
    jamba_sampler_free(g);
    jamba_sampler_free(r);
    jamba_sampler_free(g3);
    jamba_sampler_free(r3);
    jamba_sampler_free(r2);
}

JB_TEST(sampler, invalid_parameters) {
    jamba_sampler *s = NULL;
    jamba_error err = {0};
    jamba_sampler_params bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = jamba_sampler_default_params();
    bad[0].temperature = -1;
    bad[1].temperature = NAN;
    bad[2].top_p = 0;
    bad[3].min_p = 1.0f;
    bad[4].repetition_penalty = 0;
    bad[5].top_k = -2;
    for (int i = 0; i < 6; i++)
        cr_expect_eq(jamba_sampler_create(&bad[i], 10, &s, &err), JAMBA_ERR_INVALID_ARGUMENT, "case %d", i);
    cr_assert_null(s);
    cr_assert_eq(jamba_sampler_create(NULL, 0, &s, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_sampler_create(NULL, 10, &s, &err), JAMBA_OK);
    cr_assert_eq(jamba_sampler_sample(s, NULL, NULL, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_sampler_free(s);
    jamba_sampler_free(NULL);
}

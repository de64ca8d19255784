/*
 * test_decode_sample.c — jamba_decode_sample on the CPU equals jamba_decode + jamba_sampler_sample +
 * jamba_sampler_accept for every kind of sampler and several sequences; the device sampler's view of a
 * sampler (runtime/sampler.h) peeks the next draw without consuming it; device selection fails clearly
 * without a GPU.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "runtime/sampler.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"

static jamba_sampler *make(jamba_sampler_params p, int64_t vocab) {
    jamba_sampler *s = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_sampler_create(&p, vocab, &s, &err), JAMBA_OK, "%s", err.message);
    return s;
}

static jamba_sampler_params kind(int i) {
    jamba_sampler_params p = jamba_sampler_default_params();
    p.seed = 1000 + (uint64_t)i;
    switch (i % 4) {
    case 0: p.temperature = 0; break;                                     /* greedy */
    case 1: p.top_k = 5; p.temperature = 1.5f; break;                       /* device-eligible */
    case 2: p.top_k = 0; p.top_p = 0.9f; break;                             /* host fallback on a GPU */
    default: p.repetition_penalty = 1.3f; p.presence_penalty = 0.5f; break; /* penalties */
    }
    return p;
}

JB_TEST(decode_sample, equals_decode_then_sample_for_every_sampler_kind) {
    jamba_model *m = ref_load_model("mini");
    const int64_t V = jamba_model_config(m)->vocab_size;
    enum { S = 4, STEPS = 12 };
    jamba_context *a = ref_context(m, S, 64, 16, 1), *b = ref_context(m, S, 64, 16, 1);
    jamba_sampler *sa[S], *sb[S];
    int32_t next[S];
    for (int i = 0; i < S; i++) {
        sa[i] = make(kind(i), V);
        sb[i] = make(kind(i), V);
        next[i] = (int32_t)(3 + 7 * i);
    }
    jamba_error err = {0};
    for (int step = 0; step < STEPS; step++) {
        jamba_seq_input in[S];
        int32_t got[S];
        for (int i = 0; i < S; i++)
            in[i] = (jamba_seq_input){.seq = i, .tokens = &next[i], .n_tokens = 1, .logits = JAMBA_LOGITS_NONE};
        cr_assert_eq(jamba_decode_sample(a, in, S, sa, got, &err), JAMBA_OK, "%s", err.message);
        cr_assert_null(jamba_logits(a, 0, NULL), "logits are not kept after decode_sample");
        for (int i = 0; i < S; i++)
            in[i].logits = JAMBA_LOGITS_LAST;
        cr_assert_eq(jamba_decode(b, in, S, &err), JAMBA_OK, "%s", err.message);
        for (int i = 0; i < S; i++) {
            int32_t want;
            cr_assert_eq(jamba_sampler_sample(sb[i], jamba_logits(b, i, NULL), &want, &err), JAMBA_OK);
            jamba_sampler_accept(sb[i], want);
            cr_assert_eq(got[i], want, "step %d sequence %d", step, i);
            next[i] = got[i];
        }
    }
    cr_assert_eq(jamba_seq_length(a, 2), STEPS);
    for (int i = 0; i < S; i++) {
        jamba_sampler_free(sa[i]);
        jamba_sampler_free(sb[i]);
    }
    jamba_context_free(a);
    jamba_context_free(b);
    jamba_model_free(m);
}

/* The tokens may be received in the array the inputs are read from (a decode loop's natural shape). */
JB_TEST(decode_sample, inputs_and_outputs_may_share_an_array) {
    jamba_model *m = ref_load_model("mini");
    const int64_t V = jamba_model_config(m)->vocab_size;
    jamba_context *a = ref_context(m, 1, 64, 16, 1), *b = ref_context(m, 1, 64, 16, 1);
    jamba_sampler *sa = make(kind(0), V), *sb = make(kind(0), V);
    int32_t shared = 5, separate_in = 5, separate_out = 0;
    jamba_error err = {0};
    for (int step = 0; step < 6; step++) {
        const jamba_seq_input in_a = {.seq = 0, .tokens = &shared, .n_tokens = 1};
        cr_assert_eq(jamba_decode_sample(a, &in_a, 1, &sa, &shared, &err), JAMBA_OK, "step %d: %s", step, err.message);
        const jamba_seq_input in_b = {.seq = 0, .tokens = &separate_in, .n_tokens = 1};
        cr_assert_eq(jamba_decode_sample(b, &in_b, 1, &sb, &separate_out, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(shared, separate_out, "step %d", step);
        separate_in = separate_out;
    }
    jamba_sampler_free(sa);
    jamba_sampler_free(sb);
    jamba_context_free(a);
    jamba_context_free(b);
    jamba_model_free(m);
}

JB_TEST(decode_sample, invalid_arguments) {
    jamba_model *m = ref_load_model("mini");
    jamba_context *ctx = ref_context(m, 2, 32, 8, 1);
    jamba_sampler *s = make(kind(0), jamba_model_config(m)->vocab_size);
    int32_t tok = 1, out[2];
    jamba_seq_input in = {.seq = 0, .tokens = &tok, .n_tokens = 1};
    jamba_sampler *none[1] = {NULL};
    jamba_error err = {0};
    cr_assert_eq(jamba_decode_sample(ctx, &in, 1, none, out, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "sampler 0 is NULL") != NULL, "%s", err.message);
    cr_assert_eq(jamba_decode_sample(ctx, &in, 3, &s, out, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_decode_sample(NULL, &in, 1, &s, out, &err), JAMBA_ERR_INVALID_ARGUMENT);
    tok = 100000;
    cr_assert_eq(jamba_decode_sample(ctx, &in, 1, &s, out, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_seq_length(ctx, 0), 0);
    jamba_sampler_free(s);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

JB_TEST(decode_sample, device_view_peeks_the_draw_without_consuming_it) {
    jamba_sampler_params p = kind(1);
    jamba_sampler *a = make(p, 50), *b = make(p, 50);
    jb_sample_params g1, g2;
    int32_t pen[16];
    cr_assert(jb_sampler_device_params(a, &g1, pen, 16));
    cr_assert(jb_sampler_device_params(a, &g2, pen, 16));
    cr_assert_eq(g1.uniform, g2.uniform, "peeking twice sees the same draw");
    cr_assert(g1.uniform >= 0 && g1.uniform < 1);
    cr_assert_eq(g1.top_k, 5);
    /* consuming the draw leaves a exactly where sampling once leaves b */
    float logits[50];
    for (int i = 0; i < 50; i++)
        logits[i] = (float)((i * 37) % 11);
    jamba_error err = {0};
    int32_t t;
    cr_assert_eq(jamba_sampler_sample(b, logits, &t, &err), JAMBA_OK);
    jb_sampler_consume_draw(a);
    for (int i = 0; i < 50; i++) {
        int32_t x, y;
        cr_assert_eq(jamba_sampler_sample(a, logits, &x, &err), JAMBA_OK);
        cr_assert_eq(jamba_sampler_sample(b, logits, &y, &err), JAMBA_OK);
        cr_assert_eq(x, y, "draw %d", i);
    }
    /* eligibility: all-vocabulary top-k needs the host; penalised ids are distinct and bounded */
    jamba_sampler *c = make(kind(2), 50), *d = make(kind(3), 50);
    cr_assert_not(jb_sampler_device_params(c, &g1, pen, 16));
    for (int i = 0; i < 40; i++)
        jamba_sampler_accept(d, i % 20);
    cr_assert_not(jb_sampler_device_params(d, &g1, pen, 16), "20 distinct ids do not fit 16");
    int32_t big[32];
    cr_assert(jb_sampler_device_params(d, &g1, big, 32));
    cr_assert_eq(g1.n_penalized, 20);
    for (int i = 0; i < 20; i++)
        for (int j = i + 1; j < 20; j++)
            cr_assert_neq(big[i], big[j]);
    jamba_sampler_free(a);
    jamba_sampler_free(b);
    jamba_sampler_free(c);
    jamba_sampler_free(d);
}

JB_TEST(decode_sample, cuda_contexts_fail_clearly_without_a_gpu) {
    jamba_backend_info info;
    cr_assert_eq(jamba_backend_query(&info, NULL), JAMBA_OK);
    if (info.device_count > 0)
        cr_skip_test("a GPU is present: tests/gpu covers CUDA contexts");
    jamba_model *m = ref_load_model("mini");
    jamba_context_params p = jamba_context_default_params();
    p.device = JAMBA_DEVICE_CUDA;
    jamba_context *ctx = (jamba_context *)1;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_ERR_NO_DEVICE, "%s", err.message);
    cr_assert_null(ctx);
    cr_assert(strlen(err.message) > 10);
    p.gpu_dtype = JAMBA_DTYPE_I8;
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "gpu_dtype") != NULL, "%s", err.message);
    p.gpu_dtype = JAMBA_DTYPE_BF16;
    p.device = (jamba_device_type)7;
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_free(m);
}

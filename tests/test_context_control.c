/*
 * test_context_control.c — controls a serving stack needs on a live context: embeddings, the abort callback (a
 * cancelled call leaves its sequences as before it, and continuing gives the same results as never
 * cancelling) and changing the thread count between calls (results do not depend on it).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

#define N_TOK 24

static int64_t vocab; /* of the model under test, set by tokens() */

static jamba_context *context(const jamba_model *m, int32_t threads, int64_t n_batch) {
    jamba_context_params p = jamba_context_default_params();
    p.n_ctx = 128;
    p.n_seq_max = 2;
    p.n_batch = n_batch;
    p.n_threads = threads;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    return ctx;
}

static void tokens(const jamba_model *m, int32_t *out, int64_t n) {
    const int64_t V = vocab = jamba_model_config(m)->vocab_size;
    for (int64_t i = 0; i < n; i++)
        out[i] = (int32_t)((i * 7 + 3) % V);
}

/* Feed tok to seq with the logits of the last token copied to `last` (V floats). */
static jamba_status feed(jamba_context *ctx, int32_t seq, const int32_t *tok, int64_t n, float *last,
                         jamba_error *err) {
    jamba_seq_input in = {.seq = seq, .tokens = tok, .n_tokens = n, .logits = JAMBA_LOGITS_LAST};
    jamba_status st = jamba_decode(ctx, &in, 1, err);
    if (st == JAMBA_OK && last) {
        int64_t rows = 0;
        const float *l = jamba_logits(ctx, 0, &rows);
        cr_assert_eq(rows, 1);
        memcpy(last, l, (size_t)vocab * sizeof *last);
    }
    return st;
}

typedef struct countdown {
    int polls_left; /* abort when it reaches 0 */
    int polls;
} countdown;

static bool abort_after(void *arg) {
    countdown *c = arg;
    c->polls++;
    return c->polls_left-- <= 0;
}

/* The mini fixture model, N_TOK tokens, and two logit rows to compare: what a reference context gives
 * (want) and what the context under test gives (got). */
typedef struct bench {
    jamba_model *m;
    int64_t V;
    int32_t tok[N_TOK];
    float *want, *got;
} bench;

static bench open_bench(void) {
    bench b = {.m = ref_load_model("mini")};
    b.V = jamba_model_config(b.m)->vocab_size;
    tokens(b.m, b.tok, N_TOK);
    b.want = malloc((size_t)b.V * sizeof *b.want);
    b.got = malloc((size_t)b.V * sizeof *b.got);
    return b;
}

static void close_bench(bench *b) {
    free(b->want);
    free(b->got);
    jamba_model_free(b->m);
}

static bool same_logits(const bench *b) { return memcmp(b->want, b->got, (size_t)b->V * sizeof *b->got) == 0; }

JB_TEST(control, an_aborted_prefill_leaves_the_sequence_as_before_and_continues_identically) {
    bench b = open_bench();
    jamba_error err = {0};
    /* the reference: a prefix of 5 tokens, then the rest, never cancelled */
    jamba_context *ref = context(b.m, 1, 4);
    cr_assert_eq(feed(ref, 0, b.tok, 5, NULL, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ref, 0, b.tok + 5, N_TOK - 5, b.want, &err), JAMBA_OK, "%s", err.message);

    jamba_context *ctx = context(b.m, 1, 4);
    cr_assert_eq(feed(ctx, 0, b.tok, 5, NULL, &err), JAMBA_OK, "%s", err.message);
    for (int after = 0; after < 4; after++) { /* before the first step, and after 1, 2, 3 of 5 steps */
        countdown c = {.polls_left = after};
        cr_assert_eq(jamba_context_set_abort_callback(ctx, abort_after, &c, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(feed(ctx, 0, b.tok + 5, N_TOK - 5, NULL, &err), JAMBA_ERR_ABORTED);
        cr_assert(strstr(err.message, "as before the call") != NULL, "%s", err.message);
        cr_assert_eq(c.polls, after + 1);
        cr_assert_eq(jamba_seq_length(ctx, 0), 5, "the sequence keeps its length");
    }
    cr_assert_eq(jamba_context_set_abort_callback(ctx, NULL, NULL, &err), JAMBA_OK);
    cr_assert_eq(feed(ctx, 0, b.tok + 5, N_TOK - 5, b.got, &err), JAMBA_OK, "%s", err.message);
    cr_assert(same_logits(&b), "continuing after cancelled calls is bit-identical");
    jamba_context_free(ctx);
    jamba_context_free(ref);
    close_bench(&b);
}

/* A call of one step (more than 64 tokens, under n_batch) is polled between layers: stopped after any
 * layer, the sequence is as before, and continuing gives what an uncancelled call gives. */
JB_TEST(control, a_long_single_step_call_stops_between_layers) {
    enum { LONG = 100 };
    jamba_model *m = ref_load_model("mini");
    const int64_t V = jamba_model_config(m)->vocab_size, L = jamba_model_config(m)->num_hidden_layers;
    int32_t tok[LONG];
    tokens(m, tok, LONG);
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    jamba_error err = {0};
    jamba_context *ref = context(m, 1, 512), *ctx = context(m, 1, 512);
    cr_assert_eq(feed(ref, 0, tok, 3, NULL, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ref, 0, tok + 3, LONG - 3, want, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ctx, 0, tok, 3, NULL, &err), JAMBA_OK, "%s", err.message);
    for (int after = 1; after < L; after++) { /* after layer 0, 1, ... L-2 of the one step */
        countdown c = {.polls_left = after};
        cr_assert_eq(jamba_context_set_abort_callback(ctx, abort_after, &c, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(feed(ctx, 0, tok + 3, LONG - 3, NULL, &err), JAMBA_ERR_ABORTED);
        cr_assert_eq(c.polls, after + 1);
        cr_assert_eq(jamba_seq_length(ctx, 0), 3);
    }
    cr_assert_eq(jamba_context_set_abort_callback(ctx, NULL, NULL, &err), JAMBA_OK);
    cr_assert_eq(feed(ctx, 0, tok + 3, LONG - 3, got, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(memcmp(want, got, (size_t)V * sizeof *got), 0, "continuing after calls stopped mid-step");
    free(want);
    free(got);
    jamba_context_free(ctx);
    jamba_context_free(ref);
    jamba_model_free(m);
}

JB_TEST(control, an_abort_callback_that_never_fires_changes_nothing) {
    bench b = open_bench();
    jamba_error err = {0};
    jamba_context *ref = context(b.m, 1, 4), *ctx = context(b.m, 1, 4);
    countdown c = {.polls_left = 1000};
    cr_assert_eq(jamba_context_set_abort_callback(ctx, abort_after, &c, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ref, 0, b.tok, N_TOK, b.want, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ctx, 0, b.tok, N_TOK, b.got, &err), JAMBA_OK, "%s", err.message);
    const int64_t L = jamba_model_config(b.m)->num_hidden_layers;
    cr_assert_eq(c.polls, 6 * L, "polled before each of the 6 steps of 4 tokens and between their layers");
    cr_assert(same_logits(&b));
    cr_assert_eq(jamba_context_set_abort_callback(NULL, abort_after, &c, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_context_free(ctx);
    jamba_context_free(ref);
    close_bench(&b);
}

JB_TEST(control, the_thread_count_changes_between_calls_without_changing_results) {
    bench b = open_bench();
    jamba_error err = {0};
    jamba_context *ref = context(b.m, 2, 8), *ctx = context(b.m, 1, 8);
    cr_assert_eq(feed(ref, 0, b.tok, N_TOK, b.want, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ctx, 0, b.tok, 8, NULL, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_context_set_threads(ctx, 3, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ctx, 0, b.tok + 8, 8, NULL, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_context_set_threads(ctx, 2000, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_context_set_threads(ctx, 0, &err), JAMBA_OK, "%s", err.message); /* the online CPUs */
    cr_assert_eq(feed(ctx, 0, b.tok + 16, N_TOK - 16, b.got, &err), JAMBA_OK, "%s", err.message);
    cr_assert(same_logits(&b), "results do not depend on the thread count");
    cr_assert_eq(jamba_context_set_threads(NULL, 1, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_context_free(ctx);
    jamba_context_free(ref);
    close_bench(&b);
}

JB_TEST(control, embeddings_equal_transformers_final_hidden_states_in_chunks_and_pooled) {
    jamba_model *m = ref_load_model("mini");
    ref_file ref;
    ref_open(&ref, "mini");
    int64_t shape[8];
    const int64_t *ids64 = ref_i64(&ref, "input_ids", shape);
    const int64_t T = shape[0], H = jamba_model_config(m)->hidden_size;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int64_t t = 0; t < T; t++)
        ids[t] = (int32_t)ids64[t];
    const float *want = ref_f32(&ref, "final_norm", NULL);
    float *rows = malloc((size_t)(T * H) * sizeof *rows), *mean = malloc((size_t)H * sizeof *mean);
    float *last = malloc((size_t)H * sizeof *last);
    jamba_error err = {0};
    jamba_context *ctx = context(m, 1, 5); /* steps of 5: the rows of later steps land after earlier ones */
    cr_assert_eq(jamba_embed(ctx, 0, ids, T, JAMBA_POOLING_NONE, rows, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 0), T);
    for (int64_t t = 0; t < T; t++)
        cr_expect_leq(rel_l2(rows + t * H, want + t * H, H), REF_TOL, "position %lld", (long long)t);
    cr_assert_eq(jamba_seq_reset(ctx, 0, &err), JAMBA_OK);
    cr_assert_eq(jamba_embed(ctx, 0, ids, T, JAMBA_POOLING_MEAN, mean, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_reset(ctx, 0, &err), JAMBA_OK);
    cr_assert_eq(jamba_embed(ctx, 0, ids, T, JAMBA_POOLING_LAST, last, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(memcmp(last, rows + (T - 1) * H, (size_t)H * sizeof *last), 0);
    for (int64_t h = 0; h < H; h++) {
        double sum = 0;
        for (int64_t t = 0; t < T; t++)
            sum += rows[t * H + h];
        cr_assert_eq(mean[h], (float)(sum / (double)T));
    }
    cr_assert_eq(jamba_embed(ctx, 0, ids, T, (jamba_pooling)7, last, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_context_free(ctx);
    free(ids);
    free(rows);
    free(mean);
    free(last);
    ref_close(&ref);
    jamba_model_free(m);
}

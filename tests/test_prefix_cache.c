/*
 * test_prefix_cache.c — the prefix-state cache and rollback on the CPU: a sequence restored from a cached
 * prefix, or rolled back, continues bit-identically to one fed the same tokens from empty (also when the
 * prefill is split at other positions); the longest matching prefix of the same model wins; entries are
 * evicted least recently used under the byte budget.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/testutil.h"

#define N_PROMPT 40
#define DEMO JB_SOURCE_DIR "/models/demo"

static int64_t V; /* vocabulary of the model under test */

static jamba_model *load(const char *dir) {
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    V = jamba_model_config(m)->vocab_size;
    return m;
}

static jamba_model *fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "forward/%s/model", name);
    char *dir = tu_fixture(rel);
    jamba_model *m = load(dir);
    free(dir);
    return m;
}

static jamba_context *context(const jamba_model *m, int32_t n_seq, int64_t n_batch) {
    jamba_context_params p = jamba_context_default_params();
    p.n_ctx = 96;
    p.n_seq_max = n_seq;
    p.n_batch = n_batch;
    p.n_threads = 2;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    return ctx;
}

/* A prompt; `salt` changes its tokens after position 20. */
static void prompt(jamba_token *out, int64_t n, int salt) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (jamba_token)((i * 13 + 5 + (i > 20 ? salt * 7 : 0)) % V);
}

/* Feed tokens to seq; copy the last position's logits to `last` (V floats) when given. */
static void feed(jamba_context *ctx, int32_t seq, const jamba_token *t, int64_t n, float *last) {
    jamba_error err = {0};
    const jamba_seq_input in = {seq, t, n, last ? JAMBA_LOGITS_LAST : JAMBA_LOGITS_NONE};
    cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
    if (last)
        memcpy(last, jamba_logits(ctx, 0, NULL), (size_t)V * sizeof *last);
}

static jamba_prefix_cache *cache_of(uint64_t bytes) {
    jamba_prefix_cache *c = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_prefix_cache_create(bytes, &c, &err), JAMBA_OK, "%s", err.message);
    return c;
}

static jamba_prefix_cache_stats stats(const jamba_prefix_cache *c) {
    jamba_prefix_cache_stats s;
    cr_assert_eq(jamba_prefix_cache_get_stats(c, &s, NULL), JAMBA_OK);
    return s;
}

/* Cold: feed the whole prompt in steps of n_batch. Warm: restore the first `cut` tokens from a snapshot taken
 * in another context (steps of 7) and feed the rest. The last logits must be bit-identical. */
static void check_restore_is_exact(jamba_model *m, int64_t cut, int64_t n_batch) {
    jamba_token p[N_PROMPT];
    prompt(p, N_PROMPT, 0);
    float *cold = malloc((size_t)V * sizeof *cold), *warm = malloc((size_t)V * sizeof *warm);
    jamba_context *a = context(m, 1, n_batch), *b = context(m, 2, 7);
    feed(a, 0, p, N_PROMPT, cold);

    jamba_prefix_cache *c = cache_of(64u << 20);
    jamba_error err = {0};
    feed(b, 0, p, cut, NULL);
    cr_assert_eq(jamba_prefix_cache_store(c, b, 0, &err), JAMBA_OK, "%s", err.message);
    int64_t restored = -1;
    cr_assert_eq(jamba_prefix_cache_restore(c, b, 1, p, N_PROMPT - 1, &restored, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(restored, cut);
    cr_assert_eq(jamba_seq_length(b, 1), cut);
    feed(b, 1, p + cut, N_PROMPT - cut, warm);
    cr_assert_eq(memcmp(cold, warm, (size_t)V * sizeof *cold), 0, "cut %lld, n_batch %lld: logits differ",
                 (long long)cut, (long long)n_batch);
    cr_assert_eq(stats(c).hits, 1);
    cr_assert_eq(stats(c).tokens_restored, cut);
    jamba_prefix_cache_free(c);
    jamba_context_free(a);
    jamba_context_free(b);
    free(cold);
    free(warm);
}

JB_TEST(prefix_cache, restore_is_bit_identical_on_the_fixtures_and_the_demo) {
    const char *names[] = {"mini", "pure-mamba-moe", "pure-attention-dense", "dense-hybrid-1to3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        jamba_model *m = fixture(names[i]);
        check_restore_is_exact(m, 17, 512);
        check_restore_is_exact(m, 32, 5);
        jamba_model_free(m);
    }
    jamba_model *demo = load(DEMO);
    check_restore_is_exact(demo, 25, 512);
    jamba_model_free(demo);
}

JB_TEST(prefix_cache, the_longest_matching_prefix_of_the_same_model_wins) {
    jamba_model *m = fixture("mini"), *other = fixture("dense-hybrid-1to3");
    V = jamba_model_config(m)->vocab_size < jamba_model_config(other)->vocab_size ? jamba_model_config(m)->vocab_size
                                                                                  : jamba_model_config(other)->vocab_size;
    jamba_token p[N_PROMPT], q[N_PROMPT];
    prompt(p, N_PROMPT, 0);
    prompt(q, N_PROMPT, 1); /* equal to p up to position 20 */
    jamba_context *ctx = context(m, 2, 512), *octx = context(other, 1, 512);
    jamba_prefix_cache *c = cache_of(64u << 20);
    jamba_error err = {0};
    const int64_t lengths[] = {8, 30, 16};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(jamba_seq_reset(ctx, 0, &err), JAMBA_OK);
        feed(ctx, 0, p, lengths[i], NULL);
        cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK, "%s", err.message);
    }
    feed(octx, 0, p, 35, NULL); /* longer, but of another model */
    cr_assert_eq(jamba_prefix_cache_store(c, octx, 0, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(stats(c).entries, 4);

    int64_t restored;
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 1, p, N_PROMPT - 1, &restored, &err), JAMBA_OK);
    cr_assert_eq(restored, 30, "the longest of p's prefixes");
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 1, q, N_PROMPT - 1, &restored, &err), JAMBA_OK);
    cr_assert_eq(restored, 16, "q differs from p after 20 tokens");
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 1, p, 12, &restored, &err), JAMBA_OK);
    cr_assert_eq(restored, 8, "max_len bounds the match");
    jamba_token other_start[4] = {(jamba_token)(V - 1), 0, 0, 0};
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 1, other_start, 4, &restored, &err), JAMBA_OK);
    cr_assert_eq(restored, 0);
    cr_assert_eq(jamba_seq_length(ctx, 1), 0, "a miss leaves the sequence empty");

    /* storing the same tokens again refreshes the entry instead of adding one */
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK);
    cr_assert_eq(stats(c).entries, 4);
    jamba_prefix_cache_free(c);
    jamba_context_free(ctx);
    jamba_context_free(octx);
    jamba_model_free(m);
    jamba_model_free(other);
}

JB_TEST(prefix_cache, least_recently_used_entries_are_evicted_under_the_budget) {
    jamba_model *m = fixture("mini");
    jamba_context *ctx = context(m, 1, 512);
    jamba_token p[N_PROMPT];
    prompt(p, N_PROMPT, 0);
    jamba_error err = {0};
    size_t one = 0; /* the bytes of a 10-token snapshot, about what each entry costs */
    feed(ctx, 0, p, 10, NULL);
    cr_assert_eq(jamba_seq_state_size(ctx, 0, &one, &err), JAMBA_OK);
    jamba_prefix_cache *c = cache_of((uint64_t)one * 5 / 2 + 4096); /* two 10-token entries fit, not three */
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK);
    feed(ctx, 0, p + 10, 1, NULL);
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK); /* 11 tokens */
    int64_t restored;
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 0, p, 10, &restored, &err), JAMBA_OK); /* uses the 10 */
    cr_assert_eq(restored, 10);
    feed(ctx, 0, p + 10, 2, NULL);
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK); /* 12: evicts the 11, least recent */
    jamba_prefix_cache_stats s = stats(c);
    cr_assert_eq(s.evictions, 1);
    cr_assert_eq(s.entries, 2);
    cr_assert_leq(s.bytes, s.max_bytes);
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 0, p, 11, &restored, &err), JAMBA_OK);
    cr_assert_eq(restored, 10, "the 11-token entry was evicted");
    cr_assert_eq(jamba_prefix_cache_restore(c, ctx, 0, p, 12, &restored, &err), JAMBA_OK);
    cr_assert_eq(restored, 12);
    jamba_prefix_cache_free(c);

    c = cache_of((uint64_t)one / 2); /* smaller than one snapshot: nothing is kept, nothing fails */
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK);
    cr_assert_eq(stats(c).entries, 0);
    cr_assert_eq(stats(c).bytes, 0);
    jamba_prefix_cache_free(c);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

/* Roll back 31 tokens to `keep` and feed the next token: the logits equal a fresh sequence's. */
static void check_rollback(jamba_context *ctx, jamba_prefix_cache *c, const jamba_token *p, int64_t keep) {
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_reset(ctx, 1, &err), JAMBA_OK);
    feed(ctx, 1, p, keep + 1, want);
    cr_assert_eq(jamba_seq_reset(ctx, 0, &err), JAMBA_OK);
    feed(ctx, 0, p, 31, NULL);
    cr_assert_eq(jamba_seq_rollback(ctx, 0, keep, c, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 0), keep);
    feed(ctx, 0, p + keep, 1, got);
    cr_assert_eq(memcmp(want, got, (size_t)V * sizeof *got), 0, "rollback to %lld", (long long)keep);
    free(want);
    free(got);
}

JB_TEST(rollback, is_exact_with_and_without_a_cache) {
    jamba_model *m = fixture("mini");
    jamba_context *ctx = context(m, 2, 8);
    jamba_token p[N_PROMPT];
    prompt(p, N_PROMPT, 0);
    check_rollback(ctx, NULL, p, 17);
    check_rollback(ctx, NULL, p, 0);
    jamba_prefix_cache *c = cache_of(64u << 20);
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_reset(ctx, 0, &err), JAMBA_OK);
    feed(ctx, 0, p, 12, NULL);
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 0, &err), JAMBA_OK);
    check_rollback(ctx, c, p, 20);
    cr_assert_eq(stats(c).tokens_restored, 12, "restored from the 12-token snapshot, 8 fed again (%lld)",
                 (long long)stats(c).tokens_restored);

    jamba_token held[N_PROMPT];
    int64_t n = 0;
    cr_assert_eq(jamba_seq_tokens(ctx, 0, held, N_PROMPT, &n, &err), JAMBA_OK);
    cr_assert_eq(n, 21);
    cr_assert_eq(memcmp(held, p, 21 * sizeof *p), 0);
    cr_assert_eq(jamba_seq_tokens(ctx, 0, held, 3, &n, &err), JAMBA_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(jamba_seq_rollback(ctx, 0, 22, c, &err), JAMBA_ERR_INVALID_ARGUMENT, "past the length");

    /* a sequence set from a state buffer has no known tokens */
    size_t size = 0, len = 0;
    cr_assert_eq(jamba_seq_state_size(ctx, 0, &size, &err), JAMBA_OK);
    void *buf = malloc(size);
    cr_assert_eq(jamba_seq_state_get(ctx, 0, buf, size, &len, &err), JAMBA_OK);
    cr_assert_eq(jamba_seq_state_set(ctx, 1, buf, len, &err), JAMBA_OK);
    cr_assert_eq(jamba_seq_rollback(ctx, 1, 3, c, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert(strstr(err.message, "unknown") != NULL, "%s", err.message);
    cr_assert_eq(jamba_prefix_cache_store(c, ctx, 1, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert_eq(jamba_seq_fork(ctx, 0, 1, &err), JAMBA_OK); /* a fork copies the tokens */
    cr_assert_eq(jamba_seq_rollback(ctx, 1, 3, c, &err), JAMBA_OK, "%s", err.message);
    free(buf);
    jamba_prefix_cache_free(c);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

/*
 * test_sequences.c — state across calls: chunked prefill equals one-shot prefill, batched sequences
 * equal running each alone (and the reference's left-padded batch), mixed prefill/decode steps,
 * reset/fork/save/restore continuing identically, the context limit, and input validation.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

typedef struct setup {
    jamba_model *m;
    ref_file ref;
    int32_t *ids; /* the mini prompt */
    int64_t T, V;
} setup;

static setup open_mini(void) {
    setup s = {.m = ref_load_model("mini")};
    ref_open(&s.ref, "mini");
    int64_t shape[8];
    const int64_t *ids = ref_i64(&s.ref, "input_ids", shape);
    s.T = shape[0];
    s.V = jamba_model_config(s.m)->vocab_size;
    s.ids = malloc((size_t)s.T * sizeof *s.ids);
    for (int64_t i = 0; i < s.T; i++)
        s.ids[i] = (int32_t)ids[i];
    return s;
}

static void close_setup(setup *s) {
    free(s->ids);
    ref_close(&s->ref);
    jamba_model_free(s->m);
}

static jamba_status feed(jamba_context *ctx, int32_t seq, const int32_t *tok, int64_t n, jamba_logits_mode mode,
                         jamba_error *err) {
    jamba_seq_input in = {.seq = seq, .tokens = tok, .n_tokens = n, .logits = mode};
    return jamba_decode(ctx, &in, 1, err);
}

/* Logits of every prompt position, fed in chunks of `chunk` tokens (0 = whole), copied out. */
static float *prompt_logits(setup *s, jamba_context *ctx, int64_t chunk) {
    float *out = malloc((size_t)(s->T * s->V) * sizeof *out);
    int64_t step = chunk ? chunk : s->T;
    for (int64_t at = 0; at < s->T; at += step) {
        int64_t n = s->T - at < step ? s->T - at : step;
        jamba_error err = {0};
        cr_assert_eq(feed(ctx, 0, s->ids + at, n, JAMBA_LOGITS_ALL, &err), JAMBA_OK, "%s", err.message);
        int64_t rows;
        const float *l = jamba_logits(ctx, 0, &rows);
        cr_assert_eq(rows, n);
        memcpy(out + at * s->V, l, (size_t)(n * s->V) * sizeof *out);
    }
    return out;
}

static void expect_close_rows(const float *a, const float *b, int64_t rows, int64_t V, const char *what) {
    for (int64_t t = 0; t < rows; t++) {
        double e = rel_l2(a + t * V, b + t * V, V);
        cr_expect_leq(e, REF_TOL, "%s: row %lld relative error %.3g", what, (long long)t, e);
    }
}

JB_TEST(sequences, chunked_prefill_equals_one_shot) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 1, 256, 64, 2);
    float *whole = prompt_logits(&s, ctx, 0);
    expect_close_rows(whole, ref_f32(&s.ref, "logits", NULL), s.T, s.V, "one-shot vs reference");
    static const int64_t chunks[] = {1, 3, 7};
    for (size_t c = 0; c < 3; c++) {
        cr_assert_eq(jamba_seq_reset(ctx, 0, NULL), JAMBA_OK);
        float *pieces = prompt_logits(&s, ctx, chunks[c]);
        char what[64];
        snprintf(what, sizeof what, "chunks of %lld", (long long)chunks[c]);
        expect_close_rows(pieces, whole, s.T, s.V, what);
        free(pieces);
    }
    jamba_context_free(ctx);
    /* one call, split internally into steps of n_batch = 5 rows */
    ctx = ref_context(s.m, 1, 256, 5, 1);
    float *stepped = prompt_logits(&s, ctx, 0);
    expect_close_rows(stepped, whole, s.T, s.V, "n_batch 5");
    free(stepped);
    jamba_context_free(ctx);
    free(whole);
    close_setup(&s);
}

JB_TEST(sequences, token_by_token_equals_one_shot) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 1, 256, 64, 2);
    float *whole = prompt_logits(&s, ctx, 0);
    cr_assert_eq(jamba_seq_reset(ctx, 0, NULL), JAMBA_OK);
    for (int64_t t = 0; t < s.T; t++) {
        cr_assert_eq(feed(ctx, 0, s.ids + t, 1, JAMBA_LOGITS_LAST, NULL), JAMBA_OK);
        expect_close_rows(jamba_logits(ctx, 0, NULL), whole + t * s.V, 1, s.V, "decode step");
    }
    jamba_context_free(ctx);
    free(whole);
    close_setup(&s);
}

JB_TEST(sequences, batch_matches_reference_left_padded_batch) {
    setup s = open_mini();
    int64_t shape[8];
    const int64_t *ids = ref_i64(&s.ref, "batch_input_ids", shape);
    const int64_t *mask = ref_i64(&s.ref, "batch_attention_mask", NULL);
    const float *want = ref_f32(&s.ref, "batch_logits", NULL);
    const int64_t Tb = shape[1];
    /* the runtime runs the two prompts unpadded, as two sequences of one call */
    int32_t tok[2][64];
    int64_t n[2] = {0, 0}, first[2] = {-1, -1};
    for (int b = 0; b < 2; b++)
        for (int64_t t = 0; t < Tb; t++)
            if (mask[b * Tb + t]) {
                if (first[b] < 0)
                    first[b] = t;
                tok[b][n[b]++] = (int32_t)ids[b * Tb + t];
            }
    cr_assert(n[0] > n[1] && n[1] > 0, "the fixture pads the second prompt");
    jamba_context *ctx = ref_context(s.m, 2, 256, 64, 2);
    jamba_seq_input in[2] = {{0, tok[0], n[0], JAMBA_LOGITS_ALL}, {1, tok[1], n[1], JAMBA_LOGITS_ALL}};
    jamba_error err = {0};
    cr_assert_eq(jamba_decode(ctx, in, 2, &err), JAMBA_OK, "%s", err.message);
    for (int b = 0; b < 2; b++) {
        int64_t rows;
        const float *got = jamba_logits(ctx, b, &rows);
        cr_assert_eq(rows, n[b]);
        expect_close_rows(got, want + (b * Tb + first[b]) * s.V, n[b], s.V, b ? "padded prompt" : "full prompt");
    }
    jamba_context_free(ctx);
    close_setup(&s);
}

JB_TEST(sequences, mixed_prefill_and_decode_step_equals_alone) {
    setup s = open_mini();
    /* alone: sequence A = whole prompt; sequence B = first 5 tokens then the 6th */
    jamba_context *alone = ref_context(s.m, 1, 256, 64, 2);
    float *a_all = prompt_logits(&s, alone, 0);
    cr_assert_eq(jamba_seq_reset(alone, 0, NULL), JAMBA_OK);
    cr_assert_eq(feed(alone, 0, s.ids + 3, 5, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    cr_assert_eq(feed(alone, 0, s.ids + 8, 1, JAMBA_LOGITS_LAST, NULL), JAMBA_OK);
    float b_next[256];
    memcpy(b_next, jamba_logits(alone, 0, NULL), (size_t)s.V * sizeof(float));
    jamba_context_free(alone);

    /* together, with a small n_batch so the long input spans steps shared with the other sequence */
    jamba_context *ctx = ref_context(s.m, 3, 256, 8, 2);
    cr_assert_eq(feed(ctx, 2, s.ids + 3, 5, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    jamba_seq_input in[2] = {{0, s.ids, s.T, JAMBA_LOGITS_ALL}, {2, s.ids + 8, 1, JAMBA_LOGITS_LAST}};
    jamba_error err = {0};
    cr_assert_eq(jamba_decode(ctx, in, 2, &err), JAMBA_OK, "%s", err.message);
    int64_t rows;
    expect_close_rows(jamba_logits(ctx, 0, &rows), a_all, s.T, s.V, "prefilling sequence");
    cr_assert_eq(rows, s.T);
    expect_close_rows(jamba_logits(ctx, 1, &rows), b_next, 1, s.V, "decoding sequence");
    cr_assert_eq(jamba_seq_length(ctx, 0), s.T);
    cr_assert_eq(jamba_seq_length(ctx, 1), 0);
    cr_assert_eq(jamba_seq_length(ctx, 2), 6);
    cr_assert_null(jamba_logits(ctx, 2, &rows));
    cr_assert_eq(rows, 0);
    jamba_context_free(ctx);
    free(a_all);
    close_setup(&s);
}

/* Continue `seq` with the last 8 prompt tokens one at a time; return the 8 logit rows. */
static float *continue_seq(setup *s, jamba_context *ctx, int32_t seq) {
    float *out = malloc((size_t)(8 * s->V) * sizeof *out);
    for (int64_t i = 0; i < 8; i++) {
        cr_assert_eq(feed(ctx, seq, s->ids + s->T - 8 + i, 1, JAMBA_LOGITS_LAST, NULL), JAMBA_OK);
        memcpy(out + i * s->V, jamba_logits(ctx, 0, NULL), (size_t)s->V * sizeof *out);
    }
    return out;
}

JB_TEST(sequences, fork_save_restore_continue_bit_identically) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 3, 256, 64, 2);
    cr_assert_eq(feed(ctx, 0, s.ids, s.T - 8, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "seq0.state");
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_save(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_fork(ctx, 0, 1, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 1), s.T - 8);
    float *original = continue_seq(&s, ctx, 0);
    float *forked = continue_seq(&s, ctx, 1);
    cr_assert_eq(memcmp(original, forked, (size_t)(8 * s.V) * sizeof(float)), 0, "fork diverged");
    /* restore into a sequence that holds other state, and into a fresh context */
    cr_assert_eq(feed(ctx, 2, s.ids, 3, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    cr_assert_eq(jamba_seq_restore(ctx, 2, path, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 2), s.T - 8);
    float *restored = continue_seq(&s, ctx, 2);
    cr_assert_eq(memcmp(original, restored, (size_t)(8 * s.V) * sizeof(float)), 0, "restore diverged");
    jamba_context *other = ref_context(s.m, 1, 64, 16, 1);
    cr_assert_eq(jamba_seq_restore(other, 0, path, &err), JAMBA_OK, "%s", err.message);
    float *elsewhere = continue_seq(&s, other, 0);
    expect_close_rows(elsewhere, original, 8, s.V, "restored in another context");
    /* and the whole continuation still equals one-shot prefill */
    const float *want = ref_f32(&s.ref, "logits", NULL);
    expect_close_rows(original, want + (s.T - 8) * s.V, 8, s.V, "continuation vs reference");
    cr_assert_eq(jamba_seq_reset(ctx, 1, NULL), JAMBA_OK);
    cr_assert_eq(jamba_seq_length(ctx, 1), 0);
    jamba_context_free(other);
    jamba_context_free(ctx);
    tu_rmtree(dir);
    free(original);
    free(forked);
    free(restored);
    free(elsewhere);
    free(path);
    free(dir);
    close_setup(&s);
}

JB_TEST(sequences, bad_state_files_leave_the_sequence_unchanged) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 2, 32, 16, 1);
    cr_assert_eq(feed(ctx, 0, s.ids, 10, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "s.state");
    cr_assert_eq(jamba_seq_save(ctx, 0, path, NULL), JAMBA_OK);
    cr_assert_eq(feed(ctx, 1, s.ids, 4, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    size_t n;
    uint8_t *good = tu_read_file(path, &n);
    char *bad = tu_path(dir, "bad.state");
    struct {
        size_t len;
        size_t flip; /* byte to corrupt, or n for none */
        jamba_status want;
        const char *needle;
    } cases[] = {
        {n - 1, n, JAMBA_ERR_BAD_STATE_FILE, "truncated"},
        {20, n, JAMBA_ERR_BAD_STATE_FILE, "too short"},
        {n, 0, JAMBA_ERR_BAD_STATE_FILE, "bad magic"},
        {n, 8, JAMBA_ERR_BAD_STATE_FILE, "version"},
        {n, 16, JAMBA_ERR_BAD_STATE_FILE, "different model"},
        {n, 100, JAMBA_ERR_BAD_STATE_FILE, "checksum"},
        {n, n - 3, JAMBA_ERR_BAD_STATE_FILE, "checksum"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, good, n);
        if (cases[c].flip < n)
            copy[cases[c].flip] ^= 0x40;
        tu_write_file(bad, copy, cases[c].len);
        jamba_error err = {0};
        cr_expect_eq(jamba_seq_restore(ctx, 1, bad, &err), cases[c].want, "case %zu: %s", c, err.message);
        cr_expect(strstr(err.message, cases[c].needle) != NULL, "case %zu: '%s' should contain '%s'", c, err.message,
                  cases[c].needle);
        cr_expect_eq(jamba_seq_length(ctx, 1), 4, "case %zu changed the sequence", c);
        free(copy);
    }
    /* a state from another model */
    jamba_model *odd = ref_load_model("odd-shapes");
    jamba_context *octx = ref_context(odd, 1, 32, 16, 1);
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_restore(octx, 0, path, &err), JAMBA_ERR_BAD_STATE_FILE);
    cr_assert(strstr(err.message, "different model") != NULL, "%s", err.message);
    /* a state longer than the context */
    jamba_context *small = ref_context(s.m, 1, 8, 8, 1);
    cr_assert_eq(jamba_seq_restore(small, 0, path, &err), JAMBA_ERR_CONTEXT_FULL);
    cr_assert_eq(jamba_seq_restore(ctx, 0, "/no/such/file", &err), JAMBA_ERR_IO);
    cr_assert_eq(jamba_seq_save(ctx, 0, "/no/such/dir/x.state", &err), JAMBA_ERR_IO);
    /* saving onto a folder fails at the rename; saving over a file replaces it; no temporary file stays */
    char *folder = tu_path(dir, "a-folder");
    cr_assert_eq(mkdir(folder, 0755), 0);
    cr_assert_eq(jamba_seq_save(ctx, 0, folder, &err), JAMBA_ERR_IO);
    cr_assert(strstr(err.message, "rename") != NULL, "%s", err.message);
    cr_assert_eq(jamba_seq_save(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    DIR *listing = opendir(dir);
    for (struct dirent *e; (e = readdir(listing)) != NULL;)
        cr_expect(strstr(e->d_name, ".tmp.") == NULL, "temporary file %s left behind", e->d_name);
    closedir(listing);
    free(folder);
    jamba_context_free(small);
    jamba_context_free(octx);
    jamba_model_free(odd);
    jamba_context_free(ctx);
    tu_rmtree(dir);
    free(good);
    free(bad);
    free(path);
    free(dir);
    close_setup(&s);
}

/* A state file names its model by config and weights, not by folder: a copied folder accepts it, a copy
 * with one weight byte changed in any tensor refuses it. */
JB_TEST(sequences, states_follow_the_weights_not_the_folder) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 1, 32, 16, 1);
    cr_assert_eq(feed(ctx, 0, s.ids, 6, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "s.state");
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_save(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    char *src = tu_fixture("forward/mini/model");
    char *copy = tu_clone_model(src);
    char *file = tu_path(copy, "model.safetensors");
    for (int edit = 0; edit < 2; edit++) {
        tu_st_list l;
        tu_st_list_read(file, &l);
        if (edit) /* the first byte of a tensor in the middle of the file */
            ((uint8_t *)l.items[l.n / 2].data)[0] ^= 0x01;
        tu_st_list_write(&l, file);
        tu_st_list_free(&l);
        jamba_model *m = NULL;
        cr_assert_eq(jamba_model_load(copy, NULL, &m, &err), JAMBA_OK, "%s", err.message);
        jamba_context *other = ref_context(m, 1, 32, 16, 1);
        jamba_status st = jamba_seq_restore(other, 0, path, &err);
        if (edit) {
            cr_expect_eq(st, JAMBA_ERR_BAD_STATE_FILE);
            cr_expect(strstr(err.message, "different model") != NULL, "%s", err.message);
        } else {
            cr_expect_eq(st, JAMBA_OK, "%s", err.message);
            cr_expect_eq(jamba_seq_length(other, 0), 6);
        }
        jamba_context_free(other);
        jamba_model_free(m);
    }
    tu_rmtree(copy);
    tu_rmtree(dir);
    free(file);
    free(copy);
    free(src);
    free(path);
    free(dir);
    jamba_context_free(ctx);
    close_setup(&s);
}

JB_TEST(sequences, context_limit_is_an_error_not_a_wrap) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 1, 10, 4, 1);
    jamba_error err = {0};
    cr_assert_eq(feed(ctx, 0, s.ids, 11, JAMBA_LOGITS_LAST, &err), JAMBA_ERR_CONTEXT_FULL);
    cr_assert(strstr(err.message, "context size of 10") != NULL, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 0), 0, "a rejected call changes nothing");
    cr_assert_eq(feed(ctx, 0, s.ids, 10, JAMBA_LOGITS_LAST, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(feed(ctx, 0, s.ids, 1, JAMBA_LOGITS_LAST, &err), JAMBA_ERR_CONTEXT_FULL);
    cr_assert_eq(jamba_seq_length(ctx, 0), 10);
    jamba_context_free(ctx);
    close_setup(&s);
}

JB_TEST(sequences, invalid_inputs_change_nothing) {
    setup s = open_mini();
    jamba_context_params p = jamba_context_default_params();
    p.n_seq_max = 2;
    p.n_ctx = 64;
    p.n_batch = 4;
    p.n_threads = 1;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(s.m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    int32_t bad_tok[2] = {5, 128};
    struct {
        jamba_seq_input in[2];
        int64_t n;
        const char *needle;
    } cases[] = {
        {{{2, s.ids, 1, JAMBA_LOGITS_LAST}}, 1, "sequence 2 outside"},
        {{{-1, s.ids, 1, JAMBA_LOGITS_LAST}}, 1, "outside"},
        {{{0, s.ids, 1, JAMBA_LOGITS_LAST}, {0, s.ids, 1, JAMBA_LOGITS_LAST}}, 2, "appears in inputs 0 and 1"},
        {{{1, s.ids, 1, JAMBA_LOGITS_LAST}, {2, s.ids, 1, JAMBA_LOGITS_LAST}}, 2, "input 1: sequence 2 outside"},
        {{{0, s.ids, 0, JAMBA_LOGITS_LAST}}, 1, "no tokens"},
        {{{0, NULL, 3, JAMBA_LOGITS_LAST}}, 1, "no tokens"},
        {{{0, bad_tok, 2, JAMBA_LOGITS_LAST}}, 1, "token 1 is 128, outside the vocabulary"},
        {{{0, s.ids, 1, (jamba_logits_mode)7}}, 1, "invalid logits mode"},
        {{{0, s.ids, 5, JAMBA_LOGITS_ALL}}, 1, "5 logit rows requested; at most 4"},
        {{{0, s.ids, 1, JAMBA_LOGITS_LAST}}, 3, "need 1 to 2 inputs"},
        {{{0, s.ids, 1, JAMBA_LOGITS_LAST}}, 0, "need 1 to 2 inputs"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memset(&err, 0, sizeof err);
        cr_expect_eq(jamba_decode(ctx, cases[c].in, cases[c].n, &err), JAMBA_ERR_INVALID_ARGUMENT, "case %zu", c);
        cr_expect(strstr(err.message, cases[c].needle) != NULL, "case %zu: '%s' should contain '%s'", c, err.message,
                  cases[c].needle);
        cr_expect_eq(jamba_seq_length(ctx, 0), 0);
    }
    cr_assert_eq(jamba_decode(NULL, cases[0].in, 1, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_seq_length(ctx, 5), -1);
    cr_assert_eq(jamba_seq_fork(ctx, 0, 9, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_eq(jamba_seq_reset(ctx, -1, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert_null(jamba_logits(ctx, 0, NULL));
    /* the rejected calls left no bookkeeping behind: both sequences in one call work */
    jamba_seq_input both[2] = {{1, s.ids, 1, JAMBA_LOGITS_LAST}, {0, s.ids, 1, JAMBA_LOGITS_LAST}};
    cr_assert_eq(jamba_decode(ctx, both, 2, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_decode(ctx, both, 2, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 0), 2);
    jamba_context_free(ctx);
    jamba_context_free(NULL);
    close_setup(&s);
}

JB_TEST(sequences, context_parameters_are_checked) {
    setup s = open_mini();
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    jamba_context_params p = jamba_context_default_params();
    p.n_seq_max = 0;
    cr_assert_eq(jamba_context_create(s.m, &p, &ctx, &err), JAMBA_ERR_INVALID_ARGUMENT);
    p = jamba_context_default_params();
    p.n_batch = -3;
    cr_assert_eq(jamba_context_create(s.m, &p, &ctx, &err), JAMBA_ERR_INVALID_ARGUMENT);
    p = jamba_context_default_params();
    p.n_ctx = INT64_C(1) << 40;
    p.n_seq_max = 1 << 20;
    cr_assert_eq(jamba_context_create(s.m, &p, &ctx, &err), JAMBA_ERR_OVERFLOW, "%s", err.message);
    cr_assert(strstr(err.message, "the KV cache") != NULL, "%s", err.message);
    p.n_ctx = INT64_C(1) << 36; /* 512 TiB of KV cache */
    p.n_seq_max = 64;
    cr_assert_eq(jamba_context_create(s.m, &p, &ctx, &err), JAMBA_ERR_OUT_OF_MEMORY, "%s", err.message);
    cr_assert(strstr(err.message, "the KV cache") != NULL, "%s", err.message);
    cr_assert_null(ctx);
    /* a planning-only model has no weights to run */
    jamba_model_params mp = jamba_model_default_params();
    mp.weights = JAMBA_WEIGHTS_NONE;
    char *dir = tu_fixture("forward/mini/model");
    jamba_model *plan = NULL;
    cr_assert_eq(jamba_model_load(dir, &mp, &plan, NULL), JAMBA_OK);
    cr_assert_eq(jamba_context_create(plan, NULL, &ctx, &err), JAMBA_ERR_NO_WEIGHTS);
    /* defaults: one sequence, min(max_position_embeddings, 4096) tokens */
    cr_assert_eq(jamba_context_create(s.m, NULL, &ctx, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 0), 0);
    cr_assert_eq(jamba_seq_length(ctx, 1), -1);
    jamba_context_free(ctx);
    jamba_model_free(plan);
    free(dir);
    close_setup(&s);
}

JB_TEST(sequences, thread_counts_agree) {
    setup s = open_mini();
    jamba_context *one = ref_context(s.m, 1, 64, 64, 1);
    float *a = prompt_logits(&s, one, 0);
    for (int threads = 2; threads <= 5; threads += 3) {
        jamba_context *many = ref_context(s.m, 1, 64, 64, threads);
        float *b = prompt_logits(&s, many, 0);
        cr_assert_eq(memcmp(a, b, (size_t)(s.T * s.V) * sizeof(float)), 0, "%d threads differ from 1", threads);
        free(b);
        jamba_context_free(many);
    }
    free(a);
    jamba_context_free(one);
    close_setup(&s);
}

/* The fingerprint covers every weight byte: a copy of the model differing in one byte in the middle of its
 * largest tensor (far from the ends a sampling fingerprint would read) refuses the state. */
JB_TEST(sequences, states_refuse_a_model_whose_middle_weights_differ) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 1, 32, 16, 1);
    cr_assert_eq(feed(ctx, 0, s.ids, 6, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "s.state");
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_save(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    char *src = tu_fixture("forward/mini/model");
    char *copy = tu_clone_model(src);
    char *file = tu_path(copy, "model.safetensors");
    tu_st_list l;
    tu_st_list_read(file, &l);
    int64_t big = 0;
    size_t big_bytes = 0;
    for (int64_t i = 0; i < l.n; i++) {
        size_t bytes = jamba_dtype_size(l.items[i].dtype);
        for (int d = 0; d < l.items[i].rank; d++)
            bytes *= (size_t)l.items[i].shape[d];
        if (bytes > big_bytes)
            big = i, big_bytes = bytes;
    }
    cr_assert_gt(big_bytes, 1024, "the largest tensor has %zu bytes", big_bytes);
    ((uint8_t *)l.items[big].data)[big_bytes / 2] ^= 0x01;
    tu_st_list_write(&l, file);
    tu_st_list_free(&l);
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(copy, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    jamba_context *other = ref_context(m, 1, 32, 16, 1);
    cr_expect_eq(jamba_seq_restore(other, 0, path, &err), JAMBA_ERR_BAD_STATE_FILE);
    cr_expect(strstr(err.message, "different model") != NULL, "%s", err.message);
    cr_expect_eq(jamba_seq_length(other, 0), 0);
    /* and the unchanged model still takes it, twice (the fingerprint is computed once and kept) */
    for (int i = 0; i < 2; i++)
        cr_expect_eq(jamba_seq_restore(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    jamba_context_free(other);
    jamba_model_free(m);
    tu_rmtree(copy);
    tu_rmtree(dir);
    free(file);
    free(copy);
    free(src);
    free(path);
    free(dir);
    jamba_context_free(ctx);
    close_setup(&s);
}

/* The 24 reserved header bytes (40..63) must be zero, and files of the previous format (version 1) are
 * refused with the version message. */
JB_TEST(sequences, state_header_reserved_bytes_and_old_versions_are_refused) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 2, 32, 16, 1);
    cr_assert_eq(feed(ctx, 0, s.ids, 5, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "s.state"), *bad = tu_path(dir, "bad.state");
    jamba_error err = {0};
    cr_assert_eq(jamba_seq_save(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    size_t n;
    uint8_t *good = tu_read_file(path, &n);
    cr_assert_gt(n, 64);
    cr_assert_eq(good[8] | good[9] << 8 | good[10] << 16 | (uint32_t)good[11] << 24, 2u, "state format version 2");
    static const size_t reserved[] = {40, 51, 63};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, good, n);
        copy[reserved[i]] = 0x01;
        tu_write_file(bad, copy, n);
        cr_expect_eq(jamba_seq_restore(ctx, 1, bad, &err), JAMBA_ERR_BAD_STATE_FILE, "byte %zu", reserved[i]);
        cr_expect(strstr(err.message, "reserved") != NULL, "byte %zu: %s", reserved[i], err.message);
        cr_expect_eq(jamba_seq_length(ctx, 1), 0);
        free(copy);
    }
    uint8_t *old = malloc(n);
    memcpy(old, good, n);
    old[8] = 1, old[9] = old[10] = old[11] = 0;
    tu_write_file(bad, old, n);
    cr_expect_eq(jamba_seq_restore(ctx, 1, bad, &err), JAMBA_ERR_BAD_STATE_FILE);
    cr_expect(strstr(err.message, "version 1") != NULL, "%s", err.message);
    cr_expect_eq(jamba_seq_restore(ctx, 1, path, &err), JAMBA_OK, "%s", err.message);
    cr_expect_eq(jamba_seq_length(ctx, 1), 5);
    free(old);
    free(good);
    jamba_context_free(ctx);
    tu_rmtree(dir);
    free(bad);
    free(path);
    free(dir);
    close_setup(&s);
}

JB_TEST(sequences, states_in_caller_memory_equal_state_files_and_restore_identically) {
    setup s = open_mini();
    jamba_context *ctx = ref_context(s.m, 3, 256, 64, 2);
    cr_assert_eq(feed(ctx, 0, s.ids, s.T - 8, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    jamba_error err = {0};
    size_t size = 0, len = 0;
    cr_assert_eq(jamba_seq_state_size(ctx, 0, &size, &err), JAMBA_OK, "%s", err.message);
    uint8_t *buf = malloc(size);
    cr_assert_eq(jamba_seq_state_get(ctx, 0, buf, size - 1, &len, &err), JAMBA_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len, size, "the size needed");
    cr_assert_eq(jamba_seq_state_get(ctx, 0, buf, size, &len, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(len, size);
    /* the same bytes as a state file */
    char *dir = tu_tmpdir(), *path = tu_path(dir, "seq0.state");
    cr_assert_eq(jamba_seq_save(ctx, 0, path, &err), JAMBA_OK, "%s", err.message);
    size_t file_len = 0;
    uint8_t *file = tu_read_file(path, &file_len);
    cr_assert_eq(file_len, size);
    size_t first = 0;
    while (first < size && file[first] == buf[first])
        first++;
    cr_assert_eq(first, size, "first difference at byte %zu of %zu", first, size);
    /* a corrupt buffer changes nothing; the real one continues exactly like the original */
    cr_assert_eq(feed(ctx, 1, s.ids, 3, JAMBA_LOGITS_NONE, NULL), JAMBA_OK);
    buf[size / 2] ^= 1;
    cr_assert_eq(jamba_seq_state_set(ctx, 1, buf, size, &err), JAMBA_ERR_BAD_STATE_FILE);
    cr_assert_eq(jamba_seq_length(ctx, 1), 3);
    cr_assert_eq(jamba_seq_state_set(ctx, 1, buf, size - 8, &err), JAMBA_ERR_BAD_STATE_FILE, "a truncated buffer");
    buf[size / 2] ^= 1;
    cr_assert_eq(jamba_seq_state_set(ctx, 1, buf, size, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(ctx, 1), s.T - 8);
    float *original = continue_seq(&s, ctx, 0);
    float *restored = continue_seq(&s, ctx, 1);
    cr_assert_eq(memcmp(original, restored, (size_t)(8 * s.V) * sizeof(float)), 0, "restore from memory diverged");
    cr_assert_eq(jamba_seq_state_set(ctx, 1, NULL, 0, &err), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_context_free(ctx);
    tu_rmtree(dir);
    free(file);
    free(path);
    free(dir);
    free(buf);
    free(original);
    free(restored);
    close_setup(&s);
}

/*
 * test_reliability.c — inputs an adversary controls must fail cleanly and quickly, never hang, blow up or
 * give a wrong answer with success:
 *   - a shard index naming 100,000 distinct shards is read in linear time
 *   - a FIFO (or folder) where a model file, tokenizer file or state file should be is refused by name,
 *     without blocking in open()
 *   - BPE with long merge chains is fast and equals a naive reference; normalizer and pre-tokenizer
 *     chains that grow the text stay within jamba_tokenizer_max_ids, and absurd ones are refused at load
 *   - a regex-engine error (the match limit) during tokenization is an error naming the pattern
 * Every test that could hang arms an alarm, so a regression fails (killed by SIGALRM) instead of stalling
 * the suite.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/checkpoint.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"

/* A hang becomes a failure: SIGALRM's default action ends the test process, which Criterion reports. */
#define HANG_GUARD_SECONDS 20

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void make_fifo(const char *dir, const char *name) {
    char *p = tu_path(dir, name);
    cr_assert_eq(mkfifo(p, 0600), 0, "mkfifo %s", p);
    free(p);
}

static void copy_fixture(const char *rel, const char *dir, const char *name) {
    char *src = tu_fixture(rel);
    size_t n;
    uint8_t *bytes = tu_read_file(src, &n);
    char *dst = tu_path(dir, name);
    tu_write_file(dst, bytes, n);
    free(dst);
    free(bytes);
    free(src);
}

static void expect_refused_by_name(jamba_status st, const jamba_error *err, const char *name, const char *kind) {
    cr_expect_neq(st, JAMBA_OK, "%s was accepted", name);
    cr_expect(strstr(err->message, name) != NULL, "'%s' should name %s", err->message, name);
    cr_expect(strstr(err->message, "not a regular file") != NULL, "'%s' should say it is not a regular file",
              err->message);
    cr_expect(strstr(err->message, kind) != NULL, "'%s' should say it is %s", err->message, kind);
}

/* ---- 1. the shard index ----------------------------------------------------------------------- */

JB_TEST(reliability, shard_index_with_100k_shards_is_linear) {
    alarm(HANG_GUARD_SECONDS);
    enum { N = 100000 };
    size_t cap = (size_t)N * 64 + 64, len = 0;
    char *json = malloc(cap);
    len += (size_t)snprintf(json + len, cap - len, "{\"weight_map\": {");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"t%d\": \"s%06d.safetensors\"", i ? ", " : "", i, i);
    len += (size_t)snprintf(json + len, cap - len, "}}");
    char *dir = tu_tmpdir();
    char *index = tu_path(dir, "model.safetensors.index.json");
    tu_write_file(index, json, len);
    double t0 = now_s();
    jb_checkpoint c;
    bool found = false;
    jamba_error err = {0};
    jamba_status st = jb_checkpoint_open(dir, &found, &c, &err);
    double took = now_s() - t0;
    cr_expect(found);
    cr_expect_eq(st, JAMBA_ERR_IO, "%s", err.message);
    cr_expect(strstr(err.message, "s000000.safetensors") != NULL, "the first missing shard is named: %s",
              err.message);
    cr_expect_lt(took, 5.0, "100,000 shard names took %.1f s", took);
    tu_rmtree(dir);
    free(index);
    free(dir);
    free(json);
}

/* ---- 2. FIFOs and folders where files belong ------------------------------------------------- */

JB_TEST(reliability, fifo_config_is_refused_by_name) {
    alarm(HANG_GUARD_SECONDS);
    char *dir = tu_tmpdir();
    make_fifo(dir, "config.json");
    jamba_model *m = NULL;
    jamba_error err = {0};
    expect_refused_by_name(jamba_model_load(dir, NULL, &m, &err), &err, "config.json", "a FIFO");
    cr_expect_null(m);
    tu_rmtree(dir);
    free(dir);
}

JB_TEST(reliability, fifo_weights_and_index_are_refused_by_name) {
    alarm(HANG_GUARD_SECONDS);
    char *dir = tu_tmpdir();
    copy_fixture("forward/mini/model/config.json", dir, "config.json");
    make_fifo(dir, "model.safetensors");
    jamba_model *m = NULL;
    jamba_error err = {0};
    expect_refused_by_name(jamba_model_load(dir, NULL, &m, &err), &err, "model.safetensors", "a FIFO");
    /* a sharded model: the index itself, then a shard */
    char *single = tu_path(dir, "model.safetensors");
    cr_assert_eq(unlink(single), 0);
    make_fifo(dir, "model.safetensors.index.json");
    expect_refused_by_name(jamba_model_load(dir, NULL, &m, &err), &err, "model.safetensors.index.json", "a FIFO");
    char *index = tu_path(dir, "model.safetensors.index.json");
    cr_assert_eq(unlink(index), 0);
    tu_write_text(index, "{\"weight_map\": {\"model.embed_tokens.weight\": \"part-1.safetensors\"}}");
    make_fifo(dir, "part-1.safetensors");
    expect_refused_by_name(jamba_model_load(dir, NULL, &m, &err), &err, "part-1.safetensors", "a FIFO");
    /* a folder where a shard belongs */
    char *part = tu_path(dir, "part-1.safetensors");
    cr_assert_eq(unlink(part), 0);
    cr_assert_eq(mkdir(part, 0700), 0);
    expect_refused_by_name(jamba_model_load(dir, NULL, &m, &err), &err, "part-1.safetensors", "a folder");
    cr_expect_null(m);
    tu_rmtree(dir);
    free(part);
    free(index);
    free(single);
    free(dir);
}

JB_TEST(reliability, symlinked_model_files_still_load) {
    /* the Hugging Face cache links every file of a snapshot folder to a blob */
    alarm(HANG_GUARD_SECONDS);
    char *blobs = tu_tmpdir(), *snap = tu_tmpdir();
    char *src = tu_fixture("forward/mini/model");
    tu_copy_dir(src, blobs);
    static const char *const names[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *target = tu_path(blobs, names[i]), *link = tu_path(snap, names[i]);
        cr_assert_eq(symlink(target, link), 0);
        free(target);
        free(link);
    }
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_expect_eq(jamba_model_load(snap, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(m);
    tu_rmtree(snap);
    tu_rmtree(blobs);
    free(src);
    free(snap);
    free(blobs);
}

JB_TEST(reliability, fifo_tokenizer_files_are_refused_by_name) {
    alarm(HANG_GUARD_SECONDS);
    char *dir = tu_tmpdir();
    make_fifo(dir, "tokenizer.json");
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    /* in a folder (not silently passed over for another file) and named directly */
    expect_refused_by_name(jamba_tokenizer_load(dir, &t, &err), &err, "tokenizer.json", "a FIFO");
    char *path = tu_path(dir, "tokenizer.json");
    expect_refused_by_name(jamba_tokenizer_load(path, &t, &err), &err, "tokenizer.json", "a FIFO");
    /* a side config */
    cr_assert_eq(unlink(path), 0);
    copy_fixture("tokenizers/bytelevel-gpt2/tokenizer.json", dir, "tokenizer.json");
    make_fifo(dir, "tokenizer_config.json");
    expect_refused_by_name(jamba_tokenizer_load(dir, &t, &err), &err, "tokenizer_config.json", "a FIFO");
    cr_expect_null(t);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

JB_TEST(reliability, fifo_state_file_is_refused_by_name) {
    alarm(HANG_GUARD_SECONDS);
    jamba_model *m = ref_load_model("mini");
    jamba_context *ctx = ref_context(m, 1, 32, 16, 1);
    char *dir = tu_tmpdir();
    make_fifo(dir, "s.state");
    char *path = tu_path(dir, "s.state");
    jamba_error err = {0};
    expect_refused_by_name(jamba_seq_restore(ctx, 0, path, &err), &err, "s.state", "a FIFO");
    cr_expect_eq(jamba_seq_length(ctx, 0), 0);
    jamba_context_free(ctx);
    jamba_model_free(m);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* ---- 3. BPE work and the ids bound ------------------------------------------------------------ */

/* A tokenizer.json of `model` with the given normalizer and pre-tokenizer (stolen references; NULL = null). */
static char *write_tokenizer(const char *dir, json_t *model, json_t *norm, json_t *pre) {
    json_t *root = json_pack("{s:o,s:o,s:o,s:n,s:n,s:[]}", "model", model, "normalizer", norm ? norm : json_null(),
                             "pre_tokenizer", pre ? pre : json_null(), "decoder", "post_processor", "added_tokens");
    cr_assert_not_null(root);
    char *path = tu_path(dir, "tokenizer.json");
    cr_assert_eq(json_dump_file(root, path, JSON_COMPACT), 0);
    json_decref(root);
    return path;
}

/* The merge chains a+a -> aa, aa+a -> aaa, ... (CHAIN_A of them) and b+a -> ba, ba+a -> baa, ... (CHAIN_B),
 * ranked in that order; "a" is id 0, "b" id 1, then one new token per merge. */
enum { CHAIN_A = 96, CHAIN_B = 24, N_MERGES = CHAIN_A + CHAIN_B };

typedef struct chain {
    char *text[2 + N_MERGES];
    int32_t left[N_MERGES], right[N_MERGES], result[N_MERGES];
} chain;

static void chain_init(chain *c) {
    c->text[0] = strdup("a");
    c->text[1] = strdup("b");
    for (int r = 0; r < N_MERGES; r++) {
        int32_t left = r == 0 ? 0 : r == CHAIN_A ? 1 : 2 + r - 1; /* a, b, or the previous result */
        size_t n = strlen(c->text[left]);
        char *s = malloc(n + 2);
        memcpy(s, c->text[left], n);
        s[n] = 'a', s[n + 1] = '\0';
        c->text[2 + r] = s;
        c->left[r] = left, c->right[r] = 0, c->result[r] = 2 + r;
    }
}

static void chain_free(chain *c) {
    for (int i = 0; i < 2 + N_MERGES; i++)
        free(c->text[i]);
}

static json_t *chain_model(const chain *c) {
    json_t *vocab = json_object(), *merges = json_array();
    for (int i = 0; i < 2 + N_MERGES; i++)
        json_object_set_new(vocab, c->text[i], json_integer(i));
    for (int r = 0; r < N_MERGES; r++)
        json_array_append_new(merges, json_pack("[s,s]", c->text[c->left[r]], c->text[c->right[r]]));
    return json_pack("{s:s,s:o,s:o}", "type", "BPE", "vocab", vocab, "merges", merges);
}

/* HF BPE the slow, obvious way: repeatedly merge the lowest-ranked adjacent pair, leftmost first. */
static int64_t naive_bpe(const chain *c, const char *s, int64_t n, int32_t *out) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        out[k++] = s[i] == 'a' ? 0 : 1;
    for (;;) {
        int best = -1;
        int64_t at = -1;
        for (int64_t i = 0; i + 1 < k; i++)
            for (int r = 0; r < N_MERGES; r++)
                if (c->left[r] == out[i] && c->right[r] == out[i + 1] && (best < 0 || r < best))
                    best = r, at = i;
        if (best < 0)
            return k;
        out[at] = c->result[best];
        memmove(out + at + 1, out + at + 2, (size_t)(k - at - 2) * sizeof *out);
        k--;
    }
}

static size_t peak_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss;
}

JB_TEST(reliability, long_merge_chains_are_fast_and_match_a_naive_reference) {
    alarm(HANG_GUARD_SECONDS);
    chain c;
    chain_init(&c);
    char *dir = tu_tmpdir();
    char *path = write_tokenizer(dir, chain_model(&c), NULL, NULL);
    jamba_tokenizer *t = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load(path, &t, &err), JAMBA_OK, "%s", err.message);
    /* short inputs: every run of a's and b's against the reference */
    srand(7);
    int32_t want[256], got[256 * 8];
    char text[256];
    for (int trial = 0; trial < 400; trial++) {
        int64_t n = 1 + trial % 120;
        for (int64_t i = 0; i < n; i++)
            text[i] = trial % 3 == 0 || rand() % 5 ? 'a' : 'b';
        int64_t nw = naive_bpe(&c, text, n, want), ng = 0;
        cr_assert_eq(jamba_tokenize(t, text, (size_t)n, 0, got, (int64_t)(sizeof got / sizeof *got), &ng, &err),
                     JAMBA_OK, "%s", err.message);
        cr_assert_eq(ng, nw, "trial %d (%.*s): %lld ids, reference %lld", trial, (int)n, text, (long long)ng,
                     (long long)nw);
        cr_assert_eq(memcmp(got, want, (size_t)nw * sizeof *want), 0, "trial %d (%.*s) differs", trial, (int)n,
                     text);
    }
    /* one long word: time and memory stay proportional to it */
    size_t before = peak_rss_kib();
    const int64_t len = 400000;
    char *big = malloc((size_t)len);
    for (int64_t i = 0; i < len; i++)
        big[i] = i % 1000 == 999 ? 'b' : 'a';
    int64_t cap = jamba_tokenizer_max_ids(t, (size_t)len), n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    double t0 = now_s();
    cr_assert_eq(jamba_tokenize(t, big, (size_t)len, 0, ids, cap, &n, &err), JAMBA_OK, "%s", err.message);
    double took = now_s() - t0;
    cr_expect_lt(took, 5.0, "a %lld-byte word took %.1f s", (long long)len, took);
#if !defined(__SANITIZE_ADDRESS__)
    size_t grew = peak_rss_kib() - before;
    cr_expect_lt(grew, (size_t)256 * 1024, "a %lld-byte word grew the peak memory by %zu KiB", (long long)len, grew);
#else
    (void)before;
#endif
    free(ids);
    free(big);
    jamba_tokenizer_free(t);
    tu_rmtree(dir);
    free(path);
    free(dir);
    chain_free(&c);
}

/* A byte-fallback vocabulary without merges: every byte of every word becomes one id, the most ids a text
 * can give, so the ids count shows how far the normalizer and pre-tokenizer grew the text. */
static json_t *byte_model(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        json_object_set_new(vocab, piece, json_integer(b));
    }
    return json_pack("{s:s,s:o,s:[],s:b}", "type", "BPE", "vocab", vocab, "merges", "byte_fallback", 1);
}

static json_t *repeat(const char *seq_type, const char *list_key, json_t *step, int k) {
    json_t *list = json_array();
    for (int i = 0; i < k; i++)
        json_array_append(list, step);
    json_decref(step);
    return json_pack("{s:s,s:o}", "type", seq_type, list_key, list);
}

static json_t *bytelevels(int k) {
    return repeat("Sequence", "pretokenizers",
                  json_pack("{s:s,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1, "use_regex", 1), k);
}
static json_t *metaspaces(int k) {
    return repeat("Sequence", "pretokenizers",
                  json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement", "\xE2\x96\x81", "prepend_scheme",
                            "always", "split", 1),
                  k);
}
static json_t *empty_regex_replaces(int k) {
    return repeat("Sequence", "normalizers",
                  json_pack("{s:s,s:{s:s},s:s}", "type", "Replace", "pattern", "Regex", "", "content", "xy"), k);
}

JB_TEST(reliability, growing_pipelines_stay_within_max_ids) {
    alarm(HANG_GUARD_SECONDS);
    static const char *const inputs[] = {
        "\xC3\xA9 \xC3\xA9 \xC3\xA9 \xC3\xA9 \xC3\xA9 \xC3\xA9", "a a a a a a a a a ", "                  ",
        "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0\xef\xee", "x", "",
    };
    for (int config = 0; config < 8; config++) {
        json_t *norm = NULL, *pre = NULL;
        if (config < 4)
            pre = bytelevels(1 + config);
        else if (config < 6)
            pre = metaspaces(config - 3);
        else
            norm = empty_regex_replaces(config - 5);
        char *dir = tu_tmpdir();
        char *path = write_tokenizer(dir, byte_model(), norm, pre);
        jamba_tokenizer *t = NULL;
        jamba_error err = {0};
        cr_assert_eq(jamba_tokenizer_load(path, &t, &err), JAMBA_OK, "config %d: %s", config, err.message);
        for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
            size_t len = strlen(inputs[i]);
            int64_t cap = jamba_tokenizer_max_ids(t, len), n = -1;
            int32_t *ids = malloc((size_t)cap * sizeof *ids);
            jamba_status st = jamba_tokenize(t, inputs[i], len, JAMBA_TOKENIZE_ADD_SPECIAL, ids, cap, &n, &err);
            cr_expect_eq(st, JAMBA_OK, "config %d, input %zu: %s", config, i, err.message);
            cr_expect_leq(n, cap, "config %d, input %zu: %lld ids, max_ids %lld", config, i, (long long)n,
                          (long long)cap);
            free(ids);
        }
        jamba_tokenizer_free(t);
        tu_rmtree(dir);
        free(path);
        free(dir);
    }
}

JB_TEST(reliability, pipelines_that_grow_text_without_bound_are_refused) {
    alarm(HANG_GUARD_SECONDS);
    /* 16 ByteLevel steps double an 18-byte text 16 times (the probe's 12.7 s and 384 MB) */
    json_t *cases[] = {bytelevels(16), metaspaces(6), empty_regex_replaces(8)};
    for (int c = 0; c < 3; c++) {
        char *dir = tu_tmpdir();
        char *path = c < 2 ? write_tokenizer(dir, byte_model(), NULL, cases[c])
                           : write_tokenizer(dir, byte_model(), cases[c], NULL);
        jamba_tokenizer *t = NULL;
        jamba_error err = {0};
        double t0 = now_s();
        jamba_status st = jamba_tokenizer_load(path, &t, &err);
        if (st == JAMBA_OK) { /* what the refusal prevents */
            int64_t cap = jamba_tokenizer_max_ids(t, 18), n = 0;
            int32_t *ids = malloc((size_t)cap * sizeof *ids);
            st = jamba_tokenize(t, "\xC3\xA9 \xC3\xA9 \xC3\xA9 \xC3\xA9 \xC3\xA9 \xC3\xA9", 18, 0, ids, cap, &n, &err);
            free(ids);
            jamba_tokenizer_free(t);
            cr_expect_fail("case %d loaded; tokenizing 18 bytes gave status %d, %lld ids in %.1f s", c, st,
                           (long long)n, now_s() - t0);
        } else {
            cr_expect_eq(st, JAMBA_ERR_UNSUPPORTED, "case %d: %s", c, err.message);
            cr_expect(strstr(err.message, path) != NULL && strstr(err.message, "grow") != NULL,
                      "case %d: '%s' should name the file and the growth", c, err.message);
        }
        tu_rmtree(dir);
        free(path);
        free(dir);
    }
}

/* ---- 4. regex-engine errors ------------------------------------------------------------------- */

JB_TEST(reliability, regex_engine_errors_fail_naming_the_pattern) {
    alarm(HANG_GUARD_SECONDS);
    /* nested quantifiers: exponential backtracking on a run of a's that fails to match at its end, which
     * PCRE2 stops at its match limit */
    static const char pattern[] = "(a+)+b";
    char text[64];
    memset(text, 'a', 40);
    memcpy(text + 40, "c b", 4);
    for (int where = 0; where < 2; where++) {
        json_t *rule = json_pack("{s:s,s:{s:s},s:s}", "type", where ? "Replace" : "Split", "pattern", "Regex", pattern,
                                 where ? "content" : "behavior", where ? "x" : "Isolated");
        char *dir = tu_tmpdir();
        char *path = where ? write_tokenizer(dir, byte_model(), rule, NULL) : write_tokenizer(dir, byte_model(), NULL, rule);
        jamba_tokenizer *t = NULL;
        jamba_error err = {0};
        cr_assert_eq(jamba_tokenizer_load(path, &t, &err), JAMBA_OK, "%s", err.message);
        int32_t ids[512];
        int64_t n = 0;
        /* a short text still matches normally */
        cr_expect_eq(jamba_tokenize(t, "aab", 3, 0, ids, 512, &n, &err), JAMBA_OK, "%s", err.message);
        cr_expect_eq(n, where ? 1 : 3, "'aab' gave %lld ids", (long long)n);
        jamba_status st = jamba_tokenize(t, text, strlen(text), 0, ids, 512, &n, &err);
        cr_expect_neq(st, JAMBA_OK, "%s: a match-limit failure was taken for 'no more matches'",
                      where ? "normalizer" : "pre_tokenizer");
        cr_expect(strstr(err.message, pattern) != NULL && strstr(err.message, path) != NULL,
                  "'%s' should name the pattern and the file", err.message);
        cr_expect(strstr(err.message, "limit") != NULL, "'%s' should give PCRE2's reason", err.message);
        jamba_tokenizer_free(t);
        tu_rmtree(dir);
        free(path);
        free(dir);
    }
}

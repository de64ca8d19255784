/*
 * quantize_util.c — see quantize_util.h.
 */
#include "tests/support/quantize_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/reference.h"
#include "tests/support/testutil.h"

jamba_model *qu_load_with(const char *dir, jamba_weight_format experts, jamba_weight_format mlp) {
    return qu_load_formats(dir, (qu_formats){experts, mlp, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED});
}

jamba_model *qu_load_formats(const char *dir, qu_formats f) {
    jamba_model_params p = jamba_model_default_params();
    p.experts = f.experts;
    p.mlp = f.mlp;
    p.mixers = f.mixers;
    p.lm_head = f.lm_head;
    p.n_threads = 2;
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, &p, &m, &err), JAMBA_OK, "%s: %s", dir, err.message);
    return m;
}

jamba_model *qu_load_plain(const char *dir) { return qu_load_with(dir, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED); }

float *qu_all_logits(const jamba_model *m, const int32_t *tokens, int64_t T) {
    return qu_all_logits_as(m, tokens, T, JAMBA_DTYPE_F32);
}

float *qu_all_logits_as(const jamba_model *m, const int32_t *tokens, int64_t T, jamba_dtype activations) {
    jamba_context_params p = jamba_context_default_params();
    p.cpu_activations = activations;
    p.n_ctx = T + 1;
    p.n_batch = 128;
    p.n_threads = 2;
    p.n_logits_max = T;
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    jamba_seq_input in = {.seq = 0, .tokens = tokens, .n_tokens = T, .logits = JAMBA_LOGITS_ALL};
    cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
    int64_t rows = 0;
    const float *l = jamba_logits(ctx, 0, &rows);
    cr_assert_eq(rows, T);
    const int64_t V = jamba_model_config(m)->vocab_size;
    float *out = malloc((size_t)(T * V) * sizeof *out);
    cr_assert_not_null(out);
    memcpy(out, l, (size_t)(T * V) * sizeof *out);
    jamba_context_free(ctx);
    return out;
}

float *qu_expect_split_invariant(const jamba_model *m, jamba_dtype activations) {
    const int64_t T = QU_SPLIT_TOKENS, V = jamba_model_config(m)->vocab_size;
    int32_t ids[QU_SPLIT_TOKENS];
    for (int64_t i = 0; i < T; i++)
        ids[i] = (int32_t)(1 + (i * 97) % (V - 1));
    float *first = NULL, *logits = malloc((size_t)(T * V) * sizeof(float));
    jamba_error err = {0};
    for (int run = 0; run < 4; run++) {
        const int threads = run < 3 ? run + 1 : 2, chunk = run < 3 ? (int)T : 5;
        jamba_context_params p = jamba_context_default_params();
        p.n_ctx = 64, p.n_batch = chunk, p.n_threads = threads, p.cpu_activations = activations;
        jamba_context *ctx = NULL;
        cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
        for (int64_t at = 0; at < T; at += chunk) {
            const int64_t len = T - at < chunk ? T - at : chunk;
            jamba_seq_input in = {.seq = 0, .tokens = ids + at, .n_tokens = len, .logits = JAMBA_LOGITS_ALL};
            cr_assert_eq(jamba_decode(ctx, &in, 1, &err), JAMBA_OK, "%s", err.message);
            int64_t rows;
            memcpy(logits + at * V, jamba_logits(ctx, 0, &rows), (size_t)(len * V) * sizeof(float));
        }
        jamba_context_free(ctx);
        if (first == NULL) {
            first = logits;
            logits = malloc((size_t)(T * V) * sizeof(float));
        } else {
            char what[96];
            snprintf(what, sizeof what, "%d threads, chunks of %d", threads, chunk);
            qu_expect_identical(first, logits, T * V, what);
        }
    }
    free(logits);
    return first;
}

void qu_expect_identical(const float *a, const float *b, int64_t n, const char *what) {
    cr_assert_eq(memcmp(a, b, (size_t)n * sizeof *a), 0, "%s: logits differ (relative L2 %.3g)", what,
                 rel_l2(a, b, n));
}

const int32_t qu_probe[QU_N_PROBE] = {1, 76, 349, 1127, 13, 10, 263, 500, 88, 1711, 42, 17, 901, 2000, 5, 630};

void qu_small_probe(int32_t *ids, int64_t V) {
    for (int64_t t = 0; t < QU_N_PROBE; t++)
        ids[t] = qu_probe[t] % (int32_t)V;
}

char *qu_read_text(const char *path) {
    size_t n;
    uint8_t *b = tu_read_file(path, &n);
    b[n] = '\0'; /* tu_read_file leaves room for one more byte */
    return (char *)b;
}

void *tl_keep(tensor_list *l, void *p) {
    cr_assert_not_null(p);
    if (l->n_own == l->cap_own) {
        l->cap_own = l->cap_own ? 2 * l->cap_own : 64;
        l->own = realloc(l->own, (size_t)l->cap_own * sizeof *l->own);
        cr_assert_not_null(l->own);
    }
    l->own[l->n_own++] = p;
    return p;
}

void tl_add(tensor_list *l, const char *name, jamba_dtype dtype, int rank, const int64_t *shape, const void *data) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
        cr_assert_not_null(l->v);
    }
    jb_st_out_tensor t = {.name = tl_keep(l, strdup(name)), .dtype = dtype, .rank = rank, .data = data};
    memcpy(t.shape, shape, (size_t)rank * sizeof *shape);
    l->v[l->n++] = t;
}

int64_t tl_find(const tensor_list *l, const char *name) {
    for (int64_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return i;
    return -1;
}

void tl_remove(tensor_list *l, const char *name) {
    int64_t i = tl_find(l, name);
    cr_assert_geq(i, 0, "no tensor %s", name);
    memmove(&l->v[i], &l->v[i + 1], (size_t)(l->n - i - 1) * sizeof *l->v);
    l->n--;
}

void tl_free(tensor_list *l) {
    for (int64_t i = 0; i < l->n_own; i++)
        free(l->own[i]);
    free(l->own);
    free(l->v);
    memset(l, 0, sizeof *l);
}

char *qu_fixture_tensors(const char *name, tensor_list *l) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s/model.safetensors", name);
    char *path = tu_fixture(rel);
    tu_st_list s;
    tu_st_list_read(path, &s);
    tl_keep(l, s.image); /* the data stays in the file image */
    for (int64_t i = 0; i < s.n; i++) {
        tl_add(l, s.items[i].name, s.items[i].dtype, s.items[i].rank, s.items[i].shape, s.items[i].data);
        free((char *)s.items[i].name);
    }
    free(s.items);
    free(path);
    snprintf(rel, sizeof rel, "models/%s/config.json", name);
    path = tu_fixture(rel);
    char *cfg = qu_read_text(path);
    free(path);
    return cfg;
}

/* A model folder: config.json (text) and the list as model.safetensors. */
static void write_folder(const char *dir, const char *config, const tensor_list *l) {
    char *cfg = tu_path(dir, "config.json"), *st = tu_path(dir, "model.safetensors");
    tu_write_text(cfg, config);
    jamba_error err = {0};
    cr_assert_eq(jb_st_write(st, l->v, l->n, NULL, &err), JAMBA_OK, "%s", err.message);
    free(cfg);
    free(st);
}

char *qu_folder_of(const char *config, const tensor_list *l) {
    char *dir = tu_tmpdir();
    write_folder(dir, config, l);
    return dir;
}

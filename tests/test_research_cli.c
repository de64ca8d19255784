/*
 * test_research_cli.c — `jamba score`'s research options: --dump-router, --dump-hidden (--layers),
 * --dump-mamba-state and --router-stats give the library's captures (themselves checked against
 * transformers in test_research.c) under transformers' names; windowed scoring (--window, --stride,
 * --carry-state) predicts each token once and equals plain scoring when one window holds the text;
 * bits per byte is null for token ids; the usage errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/safetensors.h"
#include "tests/support/testutil.h"

#define MINI JB_FIXTURES_DIR "/forward/mini/model"
#define DEMO JB_SOURCE_DIR "/models/demo"
#define IDS "5,9,33,17,2,88,41,7,9,100,3,64"

static const jamba_token ids[] = {5, 9, 33, 17, 2, 88, 41, 7, 9, 100, 3, 64};
#define T ((int64_t)(sizeof ids / sizeof ids[0]))

static char *run_ok(const char *const argv[]) {
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, &out, &err);
    cr_assert_eq(rc, 0, "%s exited %d: %s", argv[1], rc, err);
    free(err);
    return out;
}

/* The library's capture of the mini fixture on ids: hidden [L + 1, T, H], router [M, T, E]. */
static jamba_model *library_capture(float **hidden, float **router) {
    jamba_model *m = NULL;
    cr_assert_eq(jamba_model_load(MINI, NULL, &m, NULL), JAMBA_OK);
    const jamba_config *c = jamba_model_config(m);
    *hidden = calloc((size_t)((c->num_hidden_layers + 1) * T * c->hidden_size), sizeof **hidden);
    *router = calloc((size_t)(c->n_moe_layers * T * c->num_experts), sizeof **router);
    jamba_context *ctx = NULL;
    cr_assert_eq(jamba_context_create(m, NULL, &ctx, NULL), JAMBA_OK);
    const jamba_capture cap = {.rows = T, .hidden = *hidden, .router_logits = *router};
    cr_assert_eq(jamba_context_set_capture(ctx, &cap, NULL), JAMBA_OK);
    const jamba_seq_input in = {.seq = 0, .tokens = ids, .n_tokens = T, .logits = JAMBA_LOGITS_NONE};
    cr_assert_eq(jamba_decode(ctx, &in, 1, NULL), JAMBA_OK);
    jamba_context_free(ctx);
    return m;
}

static const jb_st_tensor *find(const jb_st_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

/* The file holds exactly `n` tensors, and `name` is F32 [rows, cols] equal to want. */
static void expect_tensor(const jb_st_file *f, const char *name, int64_t rows, int64_t cols, const float *want) {
    const jb_st_tensor *t = find(f, name);
    cr_assert(t, "%s missing", name);
    cr_expect_eq(t->dtype, JAMBA_DTYPE_F32);
    cr_expect_eq(t->rank, 2);
    cr_expect(t->shape[0] == rows && t->shape[1] == cols, "%s: [%lld, %lld]", name, (long long)t->shape[0],
              (long long)t->shape[1]);
    if (want)
        cr_expect_eq(memcmp(jb_st_tensor_data(f, t), want, (size_t)(rows * cols) * sizeof(float)), 0, "%s differs",
                     name);
}

JB_TEST(research_cli, dumps_hold_the_library_captures) {
    float *hidden, *router;
    jamba_model *m = library_capture(&hidden, &router);
    const jamba_config *c = jamba_model_config(m);
    const int64_t L = c->num_hidden_layers, H = c->hidden_size, E = c->num_experts;
    char *dir = tu_tmpdir(), *rp = tu_path(dir, "router.safetensors"), *hp = tu_path(dir, "hidden.safetensors");
    char *mp = tu_path(dir, "mamba.safetensors"), *sp = tu_path(dir, "some.safetensors");
    free(run_ok((const char *[]){JB_CLI_PATH, "score", "--model", MINI, "--tokens", IDS, "--threads", "2",
                                 "--dump-router", rp, "--dump-hidden", hp, "--dump-mamba-state", mp, NULL}));
    jb_st_file f;
    cr_assert_eq(jb_st_open(rp, rp, &f, NULL), JAMBA_OK);
    cr_expect_eq(f.n_tensors, c->n_moe_layers);
    char name[64];
    for (int64_t l = 1, k = 0; l < L; l += 2, k++) { /* mini: MoE at odd layers */
        snprintf(name, sizeof name, "router_logits.%lld", (long long)l);
        expect_tensor(&f, name, T, E, router + k * T * E);
    }
    jb_st_close(&f);
    cr_assert_eq(jb_st_open(hp, hp, &f, NULL), JAMBA_OK);
    cr_expect_eq(f.n_tensors, L + 1);
    for (int64_t i = 0; i <= L; i++) {
        snprintf(name, sizeof name, "hidden.%lld", (long long)i);
        expect_tensor(&f, name, T, H, hidden + i * T * H);
    }
    jb_st_close(&f);
    /* the Mamba state after the text: layer 0's equals the library's after the same tokens */
    const int64_t Di = c->mamba_d_inner, K = c->mamba_d_conv, N = c->mamba_d_state;
    cr_assert_eq(jb_st_open(mp, mp, &f, NULL), JAMBA_OK);
    cr_expect_eq(f.n_tensors, 2 * c->n_mamba_layers);
    expect_tensor(&f, "mamba.0.conv", Di, K - 1, NULL);
    expect_tensor(&f, "mamba.0.ssm", Di, N, NULL);
    cr_expect_null(find(&f, "mamba.4.conv"), "layer 4 is attention");
    jb_st_close(&f);

    /* --layers: only those hidden numbers, only those Mamba layers */
    free(run_ok((const char *[]){JB_CLI_PATH, "score", "--model", MINI, "--tokens", IDS, "--dump-hidden", sp,
                                 "--layers", "16,0,5", NULL}));
    cr_assert_eq(jb_st_open(sp, sp, &f, NULL), JAMBA_OK);
    cr_expect_eq(f.n_tensors, 3);
    expect_tensor(&f, "hidden.0", T, H, hidden);
    expect_tensor(&f, "hidden.5", T, H, hidden + 5 * T * H);
    expect_tensor(&f, "hidden.16", T, H, hidden + 16 * T * H);
    jb_st_close(&f);
    free(run_ok((const char *[]){JB_CLI_PATH, "score", "--model", MINI, "--tokens", IDS, "--dump-mamba-state", sp,
                                 "--layers", "3", NULL}));
    cr_assert_eq(jb_st_open(sp, sp, &f, NULL), JAMBA_OK);
    cr_expect_eq(f.n_tensors, 2);
    expect_tensor(&f, "mamba.3.ssm", Di, N, NULL);
    jb_st_close(&f);

    tu_rmtree(dir);
    free(dir), free(rp), free(hp), free(mp), free(sp), free(hidden), free(router);
    jamba_model_free(m);
}

JB_TEST(research_cli, router_stats) {
    float *hidden, *router;
    jamba_model *m = library_capture(&hidden, &router);
    const jamba_config *c = jamba_model_config(m);
    char *out = run_ok((const char *[]){JB_CLI_PATH, "score", "--model", MINI, "--tokens", IDS, "--router-stats",
                                        "--json", NULL});
    /* layer 1's figures are the library's over the captured logits */
    jamba_router_stats s;
    int64_t load[16];
    cr_assert_eq(jamba_compute_router_stats(router, T, c->num_experts, c->num_experts_per_tok, load, NULL, &s, NULL),
                 JAMBA_OK);
    const char *layer1 = strstr(out, "\"layer\": 1,");
    cr_assert(layer1, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "\"mean_entropy\": %.4f", s.mean_entropy);
    const char *entropy = strstr(layer1, "\"mean_entropy\": ");
    cr_assert(entropy);
    cr_expect_float_eq(strtod(entropy + 16, NULL), s.mean_entropy, 1e-9, "%s", want);
    cr_expect(strstr(out, "\"balance_loss\""));
    cr_expect(strstr(out, "\"bits_per_byte\": null"), "token ids have no bytes: %s", out);
    free(out);
    out = run_ok((const char *[]){JB_CLI_PATH, "score", "--model", MINI, "--tokens", IDS, "--router-stats", NULL});
    cr_expect(strstr(out, "router statistics"), "%s", out);
    cr_expect(strstr(out, "top-k share"), "%s", out);
    free(out);
    free(hidden), free(router);
    jamba_model_free(m);
}

/* "mean_nll" and "predicted" of a --json run. */
static void score_json(const char *const argv[], double *nll, long *predicted, double *bpb) {
    char *out = run_ok(argv);
    const char *p = strstr(out, "\"mean_nll\": "), *q = strstr(out, "\"predicted\": ");
    const char *b = strstr(out, "\"bits_per_byte\": ");
    cr_assert(p && q && b, "%s", out);
    *nll = strtod(p + 12, NULL);
    *predicted = strtol(q + 13, NULL, 10);
    *bpb = strtod(b + 17, NULL);
    free(out);
}

JB_TEST(research_cli, windows) {
    char *dir = tu_tmpdir(), *text = tu_path(dir, "t.txt");
    size_t n = 0;
    char *path = tu_fixture("../data/tinyshakespeare.txt");
    uint8_t *all = tu_read_file(path, &n);
    tu_write_file(text, all, 2500);
    double whole, w1, w2, w3, w4, b0, b1, b2, b3, b4;
    long p0, p1, p2, p3, p4;
    score_json((const char *[]){JB_CLI_PATH, "score", "-m", DEMO, "--file", text, "--json", NULL}, &whole, &p0, &b0);
    /* one window holding the whole text: the plain score */
    score_json((const char *[]){JB_CLI_PATH, "score", "-m", DEMO, "--file", text, "--json", "--window", "100000",
                                NULL}, &w1, &p1, &b1);
    cr_expect_eq(w1, whole);
    cr_expect_eq(p1, p0);
    /* overlapping windows predict every token once; without overlap the token opening a window is skipped */
    score_json((const char *[]){JB_CLI_PATH, "score", "-m", DEMO, "--file", text, "--json", "--window", "128",
                                "--stride", "64", NULL}, &w2, &p2, &b2);
    cr_expect_eq(p2, p0);
    score_json((const char *[]){JB_CLI_PATH, "score", "-m", DEMO, "--file", text, "--json", "--window", "128",
                                "--stride", "128", NULL}, &w3, &p3, &b3);
    cr_expect_eq(p3, p0 - (p0 / 128), "%ld predicted of %ld", p3, p0);
    score_json((const char *[]){JB_CLI_PATH, "score", "-m", DEMO, "--file", text, "--json", "--window", "128",
                                "--stride", "64", "--carry-state", NULL}, &w4, &p4, &b4);
    cr_expect_eq(p4, p0);
    cr_expect_neq(w4, w2, "carrying the Mamba state changes the windows' scores");
    cr_expect(isfinite(b2) && isfinite(b3) && isfinite(b4) && b0 > 0);
    cr_log_info("mean NLL: whole %.6f, window 128/64 %.6f, 128/128 %.6f, 128/64 carried %.6f", whole, w2, w3, w4);
    tu_rmtree(dir);
    free(dir), free(text), free(path), free(all);
}

JB_TEST(research_cli, usage_errors) {
    const char *const cases[][12] = {
        {JB_CLI_PATH, "score", "-m", MINI, "-m", MINI, "--tokens", IDS, "--dump-hidden", "/tmp/x", NULL},
        {JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--window", "4", "--router-stats", NULL},
        {JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--stride", "4", NULL},
        {JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--window", "4", "--stride", "5", NULL},
        {JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--layers", "1", NULL},
        {JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--dump-hidden", "/tmp/x", "--layers", "a", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL, *err = NULL;
        cr_expect_eq(tu_run(cases[i], &out, &err), 2, "case %zu: %s", i, err);
        free(out), free(err);
    }
    /* a hidden number beyond L, a Mamba dump of an attention layer: the model fails, named */
    char *out = NULL, *err = NULL;
    cr_expect_eq(tu_run((const char *[]){JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--dump-hidden", "/tmp/x",
                                          "--layers", "17", NULL}, &out, &err), 1);
    cr_expect(strstr(err, "numbered 0 .. 16"), "%s", err);
    free(out), free(err);
    cr_expect_eq(tu_run((const char *[]){JB_CLI_PATH, "score", "-m", MINI, "--tokens", IDS, "--dump-mamba-state",
                                          "/tmp/x", "--layers", "4", NULL}, &out, &err), 1);
    cr_expect(strstr(err, "not a Mamba layer"), "%s", err);
    free(out), free(err);
}

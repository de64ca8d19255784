/*
 * test_quantize.c — weight-only quantized formats: jb_quantize_int8 on known values; the accuracy of
 * load-time int8 experts / dense MLPs on the demo model and the forward fixtures (top-1 agreement and
 * perplexity against the stored weights); int8 checkpoints in every scale form binding to exactly what
 * they mean, and quantized checkpoints that are wrong in every way bind.c and finite.c check, each named;
 * jamba_model_save round trips (bitwise-identical logits, I8 tensors with F32 "_scale" companions, no
 * requantization on reload); FP8 E4M3 checkpoints against the float model of their exactly dequantized
 * values; and `jamba quantize` end to end.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/checkpoint.h"
#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "ckpt/st_write.h"
#include "ckpt/weights.h"
#include "runtime/model.h"
#include "ckpt/quantize.h"
#include "runtime/synthetic.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"

#define DEMO JB_SOURCE_DIR "/models/demo"
#define MISMATCH JAMBA_ERR_WEIGHT_MISMATCH

/* ---- helpers ------------------------------------------------------------------------------------ */

static jamba_model *load_with(const char *dir, jamba_weight_format experts, jamba_weight_format mlp) {
    jamba_model_params p = jamba_model_default_params();
    p.experts = experts;
    p.mlp = mlp;
    p.n_threads = 2;
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, &p, &m, &err), JAMBA_OK, "%s: %s", dir, err.message);
    return m;
}

static jamba_model *load_plain(const char *dir) { return load_with(dir, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED); }

/* Logits [T, V] of `tokens` fed as one sequence from an empty state (chunked prefill); caller frees. */
static float *all_logits(const jamba_model *m, const int32_t *tokens, int64_t T) {
    jamba_context_params p = jamba_context_default_params();
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

/* A near-tie: the top two logits closer than this fraction of the row's range. */
#define TIE 1e-3

/* Sum of -log p(tokens[t+1] | ..t) over the T-1 predicted positions. */
static double total_nll(const float *logits, const int32_t *tokens, int64_t T, int64_t V) {
    double sum = 0;
    for (int64_t t = 0; t + 1 < T; t++) {
        const float *l = logits + t * V;
        double mx = l[tu_argmax(l, V)], z = 0;
        for (int64_t v = 0; v < V; v++)
            z += exp((double)l[v] - mx);
        sum += mx + log(z) - (double)l[tokens[t + 1]];
    }
    return sum;
}

typedef struct agreement {
    int64_t same, positions; /* top-1 equal / compared */
    int64_t near_ties;       /* top-1 differs, but the stored model's own margin between the two is < TIE */
    double nll_ref, nll_q;   /* summed next-token NLL */
    int64_t predicted;       /* positions with a next token */
} agreement;

static void compare(agreement *a, const float *ref, const float *q, const int32_t *tokens, int64_t T, int64_t V) {
    for (int64_t t = 0; t < T; t++) {
        const float *r = ref + t * V;
        const int64_t best = tu_argmax(r, V), other = tu_argmax(q + t * V, V);
        float lo = r[0];
        for (int64_t v = 1; v < V; v++)
            lo = fminf(lo, r[v]);
        a->same += best == other;
        a->near_ties += best != other && r[best] - r[other] < TIE * (r[best] - lo);
    }
    a->positions += T;
    a->nll_ref += total_nll(ref, tokens, T, V);
    a->nll_q += total_nll(q, tokens, T, V);
    a->predicted += T - 1;
}

static double agree_frac(const agreement *a) { return (double)a->same / (double)a->positions; }
/* Agreement when flips at near-ties (where the stored model itself has no clear top-1) count as agreeing. */
static double agree_frac_ties(const agreement *a) {
    return (double)(a->same + a->near_ties) / (double)a->positions;
}
static double ppl_ratio(const agreement *a) { return exp((a->nll_q - a->nll_ref) / (double)a->predicted); }

/* Every bit of two logit arrays equal. */
static void expect_identical(const float *a, const float *b, int64_t n, const char *what) {
    cr_assert_eq(memcmp(a, b, (size_t)n * sizeof *a), 0, "%s: logits differ (relative L2 %.3g)", what,
                 rel_l2(a, b, n));
}

static int64_t elements(int rank, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= shape[d];
    return n;
}

/* ---- an editable list of tensors to write as a safetensors file ---------------------------------- */

typedef struct tensor_list {
    jb_st_out_tensor *v;
    int64_t n, cap;
    void **own; /* names and data this list allocated */
    int64_t n_own, cap_own;
} tensor_list;

static void *tl_keep(tensor_list *l, void *p) {
    cr_assert_not_null(p);
    if (l->n_own == l->cap_own) {
        l->cap_own = l->cap_own ? 2 * l->cap_own : 64;
        l->own = realloc(l->own, (size_t)l->cap_own * sizeof *l->own);
        cr_assert_not_null(l->own);
    }
    l->own[l->n_own++] = p;
    return p;
}

/* Append (the name is copied; data must outlive the list, or be tl_keep'd). */
static void tl_add(tensor_list *l, const char *name, jamba_dtype dtype, int rank, const int64_t *shape,
                   const void *data) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
        cr_assert_not_null(l->v);
    }
    jb_st_out_tensor t = {.name = tl_keep(l, strdup(name)), .dtype = dtype, .rank = rank, .data = data};
    memcpy(t.shape, shape, (size_t)rank * sizeof *shape);
    l->v[l->n++] = t;
}

static int64_t tl_find(const tensor_list *l, const char *name) {
    for (int64_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return i;
    return -1;
}

static void tl_remove(tensor_list *l, const char *name) {
    int64_t i = tl_find(l, name);
    cr_assert_geq(i, 0, "no tensor %s", name);
    memmove(&l->v[i], &l->v[i + 1], (size_t)(l->n - i - 1) * sizeof *l->v);
    l->n--;
}

static void tl_free(tensor_list *l) {
    for (int64_t i = 0; i < l->n_own; i++)
        free(l->own[i]);
    free(l->own);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A model folder: config.json (text) and the list as model.safetensors. */
static void write_folder(const char *dir, const char *config, const tensor_list *l) {
    char *cfg = tu_path(dir, "config.json"), *st = tu_path(dir, "model.safetensors");
    tu_write_text(cfg, config);
    jamba_error err = {0};
    cr_assert_eq(jb_st_write(st, l->v, l->n, &err), JAMBA_OK, "%s", err.message);
    free(cfg);
    free(st);
}

static char *read_text(const char *path) {
    size_t n;
    uint8_t *b = tu_read_file(path, &n);
    b[n] = '\0'; /* tu_read_file leaves room for one more byte */
    return (char *)b;
}

/* A short fixed token sequence for bit-exactness checks (ids below the demo's vocabulary of 2048; taken
 * modulo smaller vocabularies by small_probe). */
static const int32_t probe[] = {1, 76, 349, 1127, 13, 10, 263, 500, 88, 1711, 42, 17, 901, 2000, 5, 630};
#define N_PROBE ((int64_t)(sizeof probe / sizeof probe[0]))

/* ---- 1. jb_quantize_int8 on known values -------------------------------------------------------- */

static jb_weight matrix(const void *data, jamba_dtype dtype, int64_t N, int64_t K, const float *scale) {
    return (jb_weight){data, dtype, 2, {N, K, 0}, scale};
}

JB_TEST(quantize_int8, known_rows_round_half_to_even) {
    enum { N = 6, K = 6 };
    const float tiny = ldexpf(189, -149); /* subnormal: amax / 127 rounds down to 2^-149, so 189 clamps */
    const float w[N * K] = {
        127, 2.5f, 3.5f, -2.5f, 0.5f, -1.5f,      /* amax 127: scale exactly 1, ties to even */
        -63.5f, 63.5f, 1.25f, 1.75f, -0.25f, 10,  /* amax 63.5: scale exactly 0.5 */
        0, 0, 0, 0, 0, 0,                         /* zero row: scale 0, all 0 */
        1, -1, 0, 1, -1, 0,                       /* amax 1: scale 1/127 (inexact); ±amax is ±127 */
        -3e38f, 3e38f, 0, 0, 0, 0,                /* huge values stay finite: ±127 */
        tiny, -tiny, ldexpf(1, -149), 0, 0, 0,    /* 189 -> 127, -189 -> -127, 1 -> 1 */
    };
    const int8_t want[N * K] = {
        127, 2, 4, -2, 0, -2,
        -127, 127, 2, 4, 0, 20,
        0, 0, 0, 0, 0, 0,
        127, -127, 0, 127, -127, 0,
        -127, 127, 0, 0, 0, 0,
        127, -127, 1, 0, 0, 0,
    };
    const float want_scale[N] = {1.0f, 0.5f, 0.0f, 1.0f / 127.0f, 3e38f / 127.0f, ldexpf(1, -149)};
    int8_t q[N * K];
    float scale[N];
    memset(q, 0x55, sizeof q);
    jb_weight m = matrix(w, JAMBA_DTYPE_F32, N, K, NULL);
    jamba_error err = {0};
    cr_assert_eq(jb_quantize_int8(&m, q, scale, "unit", &err), JAMBA_OK, "%s", err.message);
    for (int n = 0; n < N; n++) {
        cr_expect_eq(scale[n], want_scale[n], "row %d: scale %.9g, expected %.9g", n, scale[n], want_scale[n]);
        for (int k = 0; k < K; k++)
            cr_expect_eq(q[n * K + k], want[n * K + k], "row %d col %d: %d, expected %d", n, k, q[n * K + k],
                         want[n * K + k]);
    }
}

JB_TEST(quantize_int8, stored_dtypes_and_their_scales) {
    /* BF16 source: 127 and the halves are exact in bf16 */
    uint16_t b[4];
    const float bv[4] = {-127, 4.5f, 5.5f, -0.5f};
    for (int i = 0; i < 4; i++)
        b[i] = jb_f32_to_bf16(bv[i]);
    int8_t q[4];
    float s[1];
    jb_weight m = matrix(b, JAMBA_DTYPE_BF16, 1, 4, NULL);
    cr_assert_eq(jb_quantize_int8(&m, q, s, "bf16", NULL), JAMBA_OK);
    cr_expect_eq(s[0], 1.0f);
    cr_expect(q[0] == -127 && q[1] == 4 && q[2] == 6 && q[3] == 0, "%d %d %d %d", q[0], q[1], q[2], q[3]);

    /* F8_E4M3 with a row scale of 127/128: the values are the codes' values times the scale, exactly */
    const uint8_t f8[4] = {0x70 /* 128 */, 0x42 /* 2.5 */, 0xC4 /* -3 */, 0x30 /* 0.5 */};
    const float row_scale[1] = {127.0f / 128.0f};
    m = matrix(f8, JAMBA_DTYPE_F8_E4M3, 1, 4, row_scale);
    cr_assert_eq(jb_quantize_int8(&m, q, s, "f8", NULL), JAMBA_OK);
    cr_expect_eq(s[0], 1.0f);                          /* max |128 x 127/128| / 127 */
    cr_expect(q[0] == 127 && q[1] == 2 && q[2] == -3 && q[3] == 0, "%d %d %d %d", q[0], q[1], q[2], q[3]);

    /* I8 with per-row scales: 2 rows, the second scaled by 0.25 */
    const int8_t i8[6] = {-100, 50, 127, 127, -127, 2};
    const float i8_scale[2] = {1.0f, 0.25f};
    int8_t q2[6];
    float s2[2];
    m = matrix(i8, JAMBA_DTYPE_I8, 2, 3, i8_scale);
    cr_assert_eq(jb_quantize_int8(&m, q2, s2, "i8", NULL), JAMBA_OK);
    cr_expect_eq(s2[0], 1.0f);
    cr_expect_eq(s2[1], 0.25f);
    const int8_t want2[6] = {-100, 50, 127, 127, -127, 2};
    cr_expect_eq(memcmp(q2, want2, sizeof q2), 0);
}

JB_TEST(quantize_int8, non_finite_rows_are_numeric_errors_naming_the_tensor) {
    const float bad[3][4] = {{1, 2, 3, 4}, {0.5f, NAN, 1, 1}, {1, 1, 1, 1}};
    int8_t q[12];
    float s[3];
    jb_weight m = matrix(bad, JAMBA_DTYPE_F32, 3, 4, NULL);
    jamba_error err = {0};
    cr_assert_eq(jb_quantize_int8(&m, q, s, "model.layers.7.feed_forward.experts.3.up_proj.weight", &err),
                 JAMBA_ERR_NUMERIC);
    cr_expect(strstr(err.message, "model.layers.7.feed_forward.experts.3.up_proj.weight") != NULL, "%s", err.message);
    cr_expect(strstr(err.message, "row 1") != NULL, "%s", err.message);

    const float inf[2][2] = {{1, 2}, {-INFINITY, 0}};
    m = matrix(inf, JAMBA_DTYPE_F32, 2, 2, NULL);
    err = (jamba_error){0};
    cr_assert_eq(jb_quantize_int8(&m, q, s, "inf matrix", &err), JAMBA_ERR_NUMERIC);
    cr_expect(strstr(err.message, "inf matrix") != NULL && strstr(err.message, "row 1") != NULL, "%s", err.message);

    /* a NaN code in FP8 (S.1111.111), and a NaN scale */
    const uint8_t f8[2] = {0x38, 0xFF};
    const float one[1] = {1.0f}, nan_scale[1] = {NAN};
    m = matrix(f8, JAMBA_DTYPE_F8_E4M3, 1, 2, one);
    cr_expect_eq(jb_quantize_int8(&m, q, s, "f8 nan", NULL), JAMBA_ERR_NUMERIC);
    const uint8_t f8ok[2] = {0x38, 0x30};
    m = matrix(f8ok, JAMBA_DTYPE_F8_E4M3, 1, 2, nan_scale);
    cr_expect_eq(jb_quantize_int8(&m, q, s, "nan scale", NULL), JAMBA_ERR_NUMERIC);
}

JB_TEST(quantize_int8, e4m3_decoding) {
    cr_expect_eq(jb_e4m3_to_f32(0x00), 0.0f);
    cr_expect(signbit(jb_e4m3_to_f32(0x80)) && jb_e4m3_to_f32(0x80) == 0.0f);
    cr_expect_eq(jb_e4m3_to_f32(0x01), ldexpf(1, -9)); /* smallest subnormal */
    cr_expect_eq(jb_e4m3_to_f32(0x07), 7 * ldexpf(1, -9));
    cr_expect_eq(jb_e4m3_to_f32(0x08), ldexpf(1, -6)); /* smallest normal */
    cr_expect_eq(jb_e4m3_to_f32(0x38), 1.0f);
    cr_expect_eq(jb_e4m3_to_f32(0xB8), -1.0f);
    cr_expect_eq(jb_e4m3_to_f32(0x7E), 448.0f);
    cr_expect_eq(jb_e4m3_to_f32(0xFE), -448.0f);
    cr_expect(isnan(jb_e4m3_to_f32(0x7F)) && isnan(jb_e4m3_to_f32(0xFF)));
    cr_expect_eq(jb_e4m3_to_f32(0x78), 256.0f); /* exponent 15 with mantissa < 7 is a number (E4M3FN) */
}

/* ---- 2. accuracy of int8 experts / MLPs against the stored weights ------------------------------- */

/* Held-out Tiny Shakespeare (public domain; the text right after the demo model's training split). */
static const char heldout[] =
    "BAPTISTA:\n"
    "Not in my house, Lucentio; for, you know,\n"
    "Pitchers have ears, and I have many servants:\n"
    "Besides, old Gremio is hearkening still;\n"
    "And happily we might be interrupted.\n"
    "\n"
    "TRANIO:\n"
    "Then at my lodging, an it like you:\n"
    "There doth my father lie; and there, this night,\n"
    "We'll pass the business privately and well.\n"
    "Send for your daughter by your servant here:\n"
    "My boy shall fetch the scrivener presently.\n"
    "The worst is this, that, at so slender warning,\n"
    "You are like to have a thin and slender pittance.\n"
    "\n"
    "BAPTISTA:\n"
    "It likes me well. Biondello, hie you home,\n"
    "And bid Bianca make her ready straight;\n"
    "And, if you will, tell what hath happened,\n"
    "Lucentio's father is arrived in Padua,\n"
    "And how she's like to be Lucentio's wife.\n"
    "\n"
    "BIONDELLO:\n"
    "I pray the gods she may with all my heart!\n"
    "\n"
    "TRANIO:\n"
    "Dally not with the gods, but get thee gone.\n"
    "Signior Baptista, shall I lead the way?\n"
    "Welcome! one mess is like to be your cheer:\n"
    "Come, sir; we will better it in Pisa.\n"
    "\n"
    "BAPTISTA:\n"
    "I follow you.\n"
    "\n"
    "BIONDELLO:\n"
    "Cambio!\n"
    "\n"
    "LUCENTIO:\n"
    "What sayest thou, Biondello?\n"
    "\n"
    "BIONDELLO:\n"
    "You saw my master wink and laugh upon you?\n"
    "\n"
    "LUCENTIO:\n"
    "Biondello, what of that?\n"
    "\n"
    "BIONDELLO:\n"
    "Faith, nothing; but has left me here behind, to\n"
    "expound the meaning or moral of his signs and tokens.\n"
    "\n"
    "LUCENTIO:\n"
    "I pray thee, moralize them.\n"
    "\n"
    "BIONDELLO:\n"
    "Then thus. Baptista is safe, talking with the\n"
    "deceiving father of a deceitful son.\n"
    "\n"
    "LUCENTIO:\n"
    "And what of him?\n"
    "\n"
    "BIONDELLO:\n"
    "His daughter is to be brought by you to the supper.\n"
    "\n"
    "LUCENTIO:\n"
    "And then?\n"
    "\n"
    "BIONDELLO:\n"
    ;

typedef struct variant {
    const char *name;
    jamba_weight_format experts, mlp;
} variant;

static const variant variants[] = {
    {"experts int8", JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED},
    {"experts + mlp int8", JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8},
};
#define N_VARIANTS 2

#define MIN_AGREEMENT 0.99
#define MAX_PPL_CHANGE 0.01

/* The matrices of `v` are int8 (with scales) in m; everything else keeps the stored dtype of `ref`. */
static void expect_quantized_as(const jamba_model *m, const jamba_model *ref, const variant *v) {
    const jamba_config *c = jamba_model_config(m);
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const jb_layer_weights *a = &m->weights.layers[l], *b = &ref->weights.layers[l];
        jamba_layer_info li;
        cr_assert_eq(jamba_model_layer(m, l, &li, NULL), JAMBA_OK);
        const jb_mlp_weights *x = li.ffn == JAMBA_FFN_MOE ? &a->experts[0] : &a->mlp;
        const jb_mlp_weights *y = li.ffn == JAMBA_FFN_MOE ? &b->experts[0] : &b->mlp;
        bool q = li.ffn == JAMBA_FFN_MOE ? v->experts == JAMBA_FORMAT_INT8 : v->mlp == JAMBA_FORMAT_INT8;
        jamba_dtype want = q ? JAMBA_DTYPE_I8 : y->down_proj.dtype;
        cr_assert_eq(x->gate_proj.dtype, want, "%s: layer %lld gate_proj is %s", v->name, (long long)l,
                     jamba_dtype_name(x->gate_proj.dtype));
        cr_assert_eq(x->down_proj.dtype, want, "%s: layer %lld down_proj", v->name, (long long)l);
        cr_assert_eq(x->gate_proj.scale != NULL, q);
        const jb_weight *mix = li.mixer == JAMBA_MIXER_ATTENTION ? &a->attn.q_proj : &a->mamba.in_proj;
        const jb_weight *mix0 = li.mixer == JAMBA_MIXER_ATTENTION ? &b->attn.q_proj : &b->mamba.in_proj;
        cr_assert_eq(mix->dtype, mix0->dtype, "mixers are never requantized");
    }
}

static void accumulate(agreement *to, const agreement *a) {
    to->same += a->same;
    to->near_ties += a->near_ties;
    to->positions += a->positions;
    to->nll_ref += a->nll_ref;
    to->nll_q += a->nll_q;
    to->predicted += a->predicted;
}

/* Score `tokens` with the stored weights and each variant; accumulate into acc[variant]. */
static void score_variants(const char *dir, const char *label, const int32_t *tokens, int64_t T,
                           agreement acc[N_VARIANTS]) {
    jamba_model *ref = load_plain(dir);
    const int64_t V = jamba_model_config(ref)->vocab_size;
    float *want = all_logits(ref, tokens, T);
    for (int v = 0; v < N_VARIANTS; v++) {
        jamba_model *m = load_with(dir, variants[v].experts, variants[v].mlp);
        expect_quantized_as(m, ref, &variants[v]);
        float *got = all_logits(m, tokens, T);
        agreement one = {0};
        compare(&one, want, got, tokens, T, V);
        accumulate(&acc[v], &one);
        cr_log_info("%-22s %-18s top-1 agreement %lld/%lld = %.4f (near-tie flips %lld), perplexity %.4f -> "
                    "%.4f (ratio %.6f), logits relative L2 %.3g", label, variants[v].name, (long long)one.same,
                    (long long)one.positions, agree_frac(&one), (long long)one.near_ties,
                    exp(one.nll_ref / (double)one.predicted), exp(one.nll_q / (double)one.predicted),
                    ppl_ratio(&one), rel_l2(got, want, T * V));
        free(got);
        jamba_model_free(m);
    }
    free(want);
    jamba_model_free(ref);
}

/* Top-1 agreement at least MIN_AGREEMENT and perplexity within MAX_PPL_CHANGE. With `ties_agree`, flips
 * at near-ties count as agreement: a randomly initialised fixture has positions whose top two logits
 * differ by 1e-5, where any perturbation decides, and 40 positions leave no room for one flip. */
static void expect_accurate(const agreement acc[N_VARIANTS], const char *what, bool ties_agree) {
    for (int v = 0; v < N_VARIANTS; v++) {
        const agreement *a = &acc[v];
        const double agree = ties_agree ? agree_frac_ties(a) : agree_frac(a);
        cr_log_info("%s, %s: top-1 agreement %.4f over %lld positions (%lld flips at near-ties), perplexity "
                    "ratio %.6f", what, variants[v].name, agree_frac(a), (long long)a->positions,
                    (long long)a->near_ties, ppl_ratio(a));
        cr_expect_geq(agree, MIN_AGREEMENT, "%s, %s: top-1 agreement %.4f (%lld of %lld flips at near-ties)", what,
                      variants[v].name, agree, (long long)a->near_ties, (long long)(a->positions - a->same));
        cr_expect_leq(fabs(ppl_ratio(a) - 1), MAX_PPL_CHANGE, "%s, %s: perplexity ratio %.6f", what,
                      variants[v].name, ppl_ratio(a));
    }
}

JB_TEST(accuracy, demo_int8_matches_stored_weights) {
    jamba_tokenizer *tok = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_tokenizer_load(DEMO, &tok, &err), JAMBA_OK, "%s", err.message);
    int32_t *ids = malloc(4096 * sizeof *ids);
    int64_t T = 0;
    cr_assert_eq(jamba_tokenize(tok, heldout, strlen(heldout), JAMBA_TOKENIZE_ADD_SPECIAL, ids, 4096, &T, &err),
                 JAMBA_OK, "%s", err.message);
    cr_assert(T > 300 && T <= 700, "%lld tokens", (long long)T);
#if defined(__SANITIZE_ADDRESS__)
    T = 128; /* unoptimised sanitizer builds run the model ~40x slower: score a prefix */
#endif
    agreement acc[N_VARIANTS] = {{0}};
    score_variants(DEMO, "models/demo", ids, T, acc);
    expect_accurate(acc, "models/demo", false);
    free(ids);
    jamba_tokenizer_free(tok);
}

/* The forward fixtures, each on its reference prompt followed by its greedy continuation. */
static const char *const fixtures[] = {
    "mini", "mini-bf16", "mini-stacked", "mini-ai21", "pure-mamba-moe", "moe-every-layer-top1",
    "moe-every-layer-top3", "odd-shapes", "dense-hybrid-1to3", "pure-attention-dense",
};

JB_TEST(accuracy, forward_fixtures_int8_match_stored_weights) {
    agreement all[N_VARIANTS] = {{0}};
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        const char *name = fixtures[f];
        ref_file ref;
        ref_open(&ref, strcmp(name, "mini-stacked") == 0 || strcmp(name, "mini-ai21") == 0 ? "mini" : name);
        int64_t shape[8];
        const int64_t *prompt = ref_i64(&ref, "input_ids", shape);
        const int64_t P = shape[0];
        const int64_t *greedy = ref_i64(&ref, "greedy_tokens", shape);
        const int64_t T = P + shape[0];
        int32_t *ids = malloc((size_t)T * sizeof *ids);
        for (int64_t t = 0; t < T; t++)
            ids[t] = (int32_t)(t < P ? prompt[t] : greedy[t - P]);
        char rel[128];
        snprintf(rel, sizeof rel, "forward/%s/model", name);
        char *dir = tu_fixture(rel);
        agreement acc[N_VARIANTS] = {{0}};
        score_variants(dir, name, ids, T, acc);
        for (int v = 0; v < N_VARIANTS; v++)
            accumulate(&all[v], &acc[v]);
        expect_accurate(acc, name, true);
        free(dir);
        free(ids);
        ref_close(&ref);
    }
    expect_accurate(all, "all forward fixtures", false);
}

/* ---- 3. quantized checkpoints: what binds, and what is refused by name ---------------------------- */

/* The tensors of tests/fixtures/models/<name> (F32) in `l`; returns config.json's text (caller frees). */
static char *fixture_tensors(const char *name, tensor_list *l) {
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
    char *cfg = read_text(path);
    free(path);
    return cfg;
}

/* Rows (every dimension but the last) and columns of tensor i. */
static void rows_cols(const tensor_list *l, int64_t i, int64_t *rows, int64_t *cols) {
    const jb_st_out_tensor *t = &l->v[i];
    *cols = t->shape[t->rank - 1];
    *rows = elements(t->rank, t->shape) / *cols;
}

/* Store F32 tensor `name` as I8 with power-of-two row scales s_r (2^-8, 2^-9, 2^-10 in turn; 2^-9 for
 * every row when `uniform`), q = round(w / s_r) clamped to ±127. When `ref` is given, the same tensor in
 * it becomes the F32 values q x s_r (exactly what the I8 tensor means). Returns the row scales. */
static float *to_i8(tensor_list *l, const char *name, bool uniform, tensor_list *ref) {
    int64_t i = tl_find(l, name), rows, cols;
    cr_assert_geq(i, 0, "no tensor %s", name);
    cr_assert_eq(l->v[i].dtype, JAMBA_DTYPE_F32, "%s", name);
    rows_cols(l, i, &rows, &cols);
    const float *w = l->v[i].data;
    int8_t *q = tl_keep(l, malloc((size_t)(rows * cols)));
    float *s = tl_keep(l, malloc((size_t)rows * sizeof *s));
    float *deq = ref ? tl_keep(ref, malloc((size_t)(rows * cols) * sizeof *deq)) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        s[r] = ldexpf(1, uniform ? -9 : -8 - (int)(r % 3));
        for (int64_t k = 0; k < cols; k++) {
            float v = nearbyintf(w[r * cols + k] / s[r]);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[r * cols + k] = (int8_t)v;
            if (deq)
                deq[r * cols + k] = v * s[r];
        }
    }
    l->v[i].dtype = JAMBA_DTYPE_I8;
    l->v[i].data = q;
    if (ref) {
        int64_t j = tl_find(ref, name);
        cr_assert_geq(j, 0);
        ref->v[j].data = deq;
    }
    return s;
}

typedef enum scale_form {
    SCALE_ROWS,      /* [rows] F32 */
    SCALE_ROWS_1,    /* [rows, 1] F32 */
    SCALE_ROWS_BF16, /* [rows] BF16 */
    SCALE_ROWS_F16,  /* [rows] F16 */
    SCALE_SCALAR,    /* [] F32: one for the whole matrix */
    SCALE_ONE,       /* [1] F32 */
    N_SCALE_FORMS
} scale_form;

static const char *const form_names[N_SCALE_FORMS] = {"[rows] F32", "[rows, 1] F32", "[rows] BF16", "[rows] F16",
                                                      "[] F32", "[1] F32"};

/* A power of two (or zero) as F16 bits. */
static uint16_t pow2_to_f16(float v) {
    if (v == 0)
        return 0;
    int e;
    frexpf(v, &e); /* v = 0.5 x 2^e */
    return (uint16_t)((e - 1 + 15) << 10);
}

/* Add "<name>_scale" holding `s` (rows values) in the given form. */
static void add_scale(tensor_list *l, const char *name, const float *s, int64_t rows, scale_form form) {
    char sname[256];
    snprintf(sname, sizeof sname, "%s_scale", name);
    switch (form) {
    case SCALE_ROWS:
        tl_add(l, sname, JAMBA_DTYPE_F32, 1, (int64_t[]){rows}, s);
        break;
    case SCALE_ROWS_1:
        tl_add(l, sname, JAMBA_DTYPE_F32, 2, (int64_t[]){rows, 1}, s);
        break;
    case SCALE_ROWS_BF16:
    case SCALE_ROWS_F16: {
        uint16_t *h = tl_keep(l, malloc((size_t)rows * sizeof *h));
        for (int64_t r = 0; r < rows; r++)
            h[r] = form == SCALE_ROWS_BF16 ? jb_f32_to_bf16(s[r]) : pow2_to_f16(s[r]);
        tl_add(l, sname, form == SCALE_ROWS_BF16 ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F16, 1, (int64_t[]){rows}, h);
        break;
    }
    case SCALE_SCALAR:
        tl_add(l, sname, JAMBA_DTYPE_F32, 0, (int64_t[]){0}, s);
        break;
    default:
        tl_add(l, sname, JAMBA_DTYPE_F32, 1, (int64_t[]){1}, s);
        break;
    }
}

/* Quantize `name` to I8 (ref: its float meaning) and add its scales in `form`. */
static void quantize_tensor(tensor_list *l, const char *name, scale_form form, tensor_list *ref) {
    int64_t rows, cols;
    rows_cols(l, tl_find(l, name), &rows, &cols);
    const float *s = to_i8(l, name, form == SCALE_SCALAR || form == SCALE_ONE, ref);
    add_scale(l, name, s, rows, form);
}

/* Write `l` with `config` to a new temporary folder (caller removes and frees). */
static char *folder_of(const char *config, const tensor_list *l) {
    char *dir = tu_tmpdir();
    write_folder(dir, config, l);
    return dir;
}

static void expect_load_failure(const char *config, const tensor_list *l, const jamba_model_params *p,
                                jamba_status want, const char *needles[]) {
    char *dir = folder_of(config, l);
    jamba_model *m = NULL;
    jamba_error err = {0};
    jamba_status st = jamba_model_load(dir, p, &m, &err);
    cr_expect_eq(st, want, "status %d: %s", st, err.message);
    cr_expect_null(m);
    for (int i = 0; needles[i]; i++)
        cr_expect(strstr(err.message, needles[i]) != NULL, "'%s' should contain '%s'", err.message, needles[i]);
    jamba_model_free(m);
    tu_rmtree(dir);
    free(dir);
}

#define UP2 "model.layers.1.feed_forward.experts.2.up_proj.weight"
#define Q2 "model.layers.2.self_attn.q_proj.weight"

/* Probe ids for a small vocabulary. */
static void small_probe(int32_t *ids, int64_t V) {
    for (int64_t t = 0; t < N_PROBE; t++)
        ids[t] = probe[t] % (int32_t)V;
}

static float *folder_logits(const char *config, const tensor_list *l, jamba_weight_format experts,
                            jamba_weight_format mlp, int64_t *V) {
    char *dir = folder_of(config, l);
    jamba_model *m = load_with(dir, experts, mlp);
    *V = jamba_model_config(m)->vocab_size;
    int32_t ids[N_PROBE];
    small_probe(ids, *V);
    float *out = all_logits(m, ids, N_PROBE);
    jamba_model_free(m);
    tu_rmtree(dir);
    free(dir);
    return out;
}

JB_TEST(quantized_checkpoint, scale_forms_bind_to_what_they_mean) {
    /* int8 matrices of every kind (attention, Mamba, dense MLP, all experts of a layer), each form of
     * scales: the logits equal, bit for bit, those of the float model of the values q x scale */
    static const char *const names[] = {
        Q2, "model.layers.0.mamba.x_proj.weight", "model.layers.0.mamba.in_proj.weight",
        "model.layers.0.feed_forward.gate_proj.weight", "model.layers.2.feed_forward.down_proj.weight"};
    for (int form = 0; form < N_SCALE_FORMS; form++) {
        tensor_list q = {0}, ref = {0};
        char *cfg = fixture_tensors("tiny-hf", &q);
        free(fixture_tensors("tiny-hf", &ref));
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            quantize_tensor(&q, names[i], (scale_form)form, &ref);
        for (int e = 0; e < 4; e++)
            for (int p = 0; p < 3; p++) {
                static const char *const projs[] = {"gate_proj", "up_proj", "down_proj"};
                char name[128];
                snprintf(name, sizeof name, "model.layers.3.feed_forward.experts.%d.%s.weight", e, projs[p]);
                quantize_tensor(&q, name, (scale_form)form, &ref);
            }
        int64_t V;
        float *want = folder_logits(cfg, &ref, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
        float *got = folder_logits(cfg, &q, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
        expect_identical(got, want, N_PROBE * V, form_names[form]);
        free(got);
        free(want);
        free(cfg);
        tl_free(&q);
        tl_free(&ref);
    }
}

/* Stacked experts [E, 2I, H] / [E, H, I] stored I8 with [E, 2I] / [E, H] scales (and one scale for all). */
JB_TEST(quantized_checkpoint, stacked_experts_with_scales_per_expert_row) {
    static const char *const stacked[] = {"model.layers.1.feed_forward.experts.gate_up_proj",
                                          "model.layers.1.feed_forward.experts.down_proj",
                                          "model.layers.3.feed_forward.experts.gate_up_proj",
                                          "model.layers.3.feed_forward.experts.down_proj"};
    for (int uniform = 0; uniform < 2; uniform++) {
        tensor_list q = {0}, ref = {0};
        char *cfg = fixture_tensors("tiny-stacked", &q);
        free(fixture_tensors("tiny-stacked", &ref));
        for (int i = 0; i < 4; i++) {
            const jb_st_out_tensor *t = &q.v[tl_find(&q, stacked[i])];
            const int64_t E = t->shape[0], R = t->shape[1];
            const float *s = to_i8(&q, stacked[i], uniform, &ref);
            char sname[128];
            snprintf(sname, sizeof sname, "%s_scale", stacked[i]);
            if (uniform)
                tl_add(&q, sname, JAMBA_DTYPE_F32, 0, (int64_t[]){0}, s);
            else
                tl_add(&q, sname, JAMBA_DTYPE_F32, 2, (int64_t[]){E, R}, s);
        }
        int64_t V;
        float *want = folder_logits(cfg, &ref, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
        float *got = folder_logits(cfg, &q, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
        expect_identical(got, want, N_PROBE * V, uniform ? "stacked, one scale" : "stacked, [E, rows] scales");
        free(got);
        /* already int8: experts = int8 keeps them, so the logits stay the same */
        got = folder_logits(cfg, &q, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED, &V);
        expect_identical(got, want, N_PROBE * V, "stacked int8 loaded with experts int8");
        free(got);
        free(want);

        /* the scales of one expert, or a flat [E x rows], do not say which rows they belong to */
        if (!uniform) {
            char sname[128];
            snprintf(sname, sizeof sname, "%s_scale", stacked[0]);
            jb_st_out_tensor *st = &q.v[tl_find(&q, sname)];
            st->rank = 1;
            st->shape[0] = 48; /* the rows of one expert */
            expect_load_failure(cfg, &q, NULL, MISMATCH,
                                (const char *[]){sname, "[48]", "one per row", stacked[0], "(192)", NULL});
            st->shape[0] = 192; /* E x rows, flat */
            expect_load_failure(cfg, &q, NULL, MISMATCH, (const char *[]){sname, "[192]", NULL});
        }
        free(cfg);
        tl_free(&q);
        tl_free(&ref);
    }
}

/* Every expert matrix of layer 1 as F8 with row scales (all of them, so their dtypes agree); the codes are
 * masked to |value| < 2, so none is NaN. */
static void layer1_experts_f8(tensor_list *l) {
    for (int e = 0; e < 4; e++)
        for (int p = 0; p < 3; p++) {
            static const char *const projs[] = {"gate_proj", "up_proj", "down_proj"};
            char name[128];
            snprintf(name, sizeof name, "model.layers.1.feed_forward.experts.%d.%s.weight", e, projs[p]);
            quantize_tensor(l, name, SCALE_ROWS, NULL);
            jb_st_out_tensor *t = &l->v[tl_find(l, name)];
            t->dtype = JAMBA_DTYPE_F8_E4M3;
            uint8_t *codes = (uint8_t *)t->data;
            for (int64_t k = 0; k < t->shape[0] * t->shape[1]; k++)
                codes[k] &= 0x3f;
        }
}

JB_TEST(bad_checkpoint, int8_matrix_without_scales) {
    tensor_list l = {0};
    char *cfg = fixture_tensors("tiny-hf", &l);
    to_i8(&l, Q2, false, NULL);
    expect_load_failure(cfg, &l, NULL, MISMATCH,
                        (const char *[]){"\"" Q2 "\" is I8", "\"" Q2 "_scale\" are missing", NULL});
    tl_free(&l);
    free(cfg);
    /* F8 experts with one expert's scales missing */
    l = (tensor_list){0};
    cfg = fixture_tensors("tiny-hf", &l);
    layer1_experts_f8(&l);
    tl_remove(&l, UP2 "_scale");
    expect_load_failure(cfg, &l, NULL, MISMATCH, (const char *[]){UP2, "F8_E4M3", UP2 "_scale", NULL});
    tl_free(&l);
    free(cfg);
}

JB_TEST(bad_checkpoint, scales_of_the_wrong_shape_or_dtype) {
    struct {
        jamba_dtype dtype;
        int rank;
        int64_t shape[2];
        const char *needle;
    } cases[] = {
        {JAMBA_DTYPE_F32, 1, {15, 0}, "are F32 [15]"},      /* one row short (q_proj has 16 rows) */
        {JAMBA_DTYPE_F32, 1, {17, 0}, "are F32 [17]"},      /* one too many */
        {JAMBA_DTYPE_F32, 2, {1, 16}, "are F32 [1, 16]"},   /* a row vector, not one per row */
        {JAMBA_DTYPE_F32, 2, {16, 2}, "are F32 [16, 2]"},   /* per-group scales: not this format */
        {JAMBA_DTYPE_I32, 1, {16, 0}, "are I32 [16]"},      /* integer scales */
        {JAMBA_DTYPE_F8_E4M3, 1, {16, 0}, "are F8_E4M3 [16]"},
    };
    static const float data[32] = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tensor_list l = {0};
        char *cfg = fixture_tensors("tiny-hf", &l);
        to_i8(&l, Q2, false, NULL);
        tl_add(&l, Q2 "_scale", cases[c].dtype, cases[c].rank, cases[c].shape, data);
        expect_load_failure(cfg, &l, NULL, MISMATCH,
                            (const char *[]){"\"" Q2 "_scale\"", cases[c].needle, "\"" Q2 "\" (16)", NULL});
        tl_free(&l);
        free(cfg);
    }
}

JB_TEST(bad_checkpoint, only_linear_matrices_may_be_quantized) {
    /* norms, conv, embedding, lm_head, router, A_log, biases stay float: I8 or F8 there is refused by name */
    static const char *const names[] = {
        "model.layers.0.input_layernorm.weight", "model.layers.0.mamba.conv1d.weight", "model.embed_tokens.weight",
        "lm_head.weight", "model.layers.1.feed_forward.router.weight", "model.layers.0.mamba.A_log",
        "model.layers.0.mamba.dt_proj.bias", "model.final_layernorm.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        for (int f8 = 0; f8 < 2; f8++) {
            tensor_list l = {0};
            char *cfg = fixture_tensors("tiny-hf", &l);
            quantize_tensor(&l, names[i], SCALE_ROWS, NULL);
            if (f8)
                l.v[tl_find(&l, names[i])].dtype = JAMBA_DTYPE_F8_E4M3;
            expect_load_failure(cfg, &l, NULL, JAMBA_ERR_UNSUPPORTED,
                                (const char *[]){names[i], f8 ? "dtype F8_E4M3" : "dtype I8",
                                                 "only linear-layer matrices may be quantized", NULL});
            tl_free(&l);
            free(cfg);
        }
    /* a linear matrix in a quantized dtype this version does not take */
    static const jamba_dtype other[] = {JAMBA_DTYPE_F8_E5M2, JAMBA_DTYPE_U8};
    for (int d = 0; d < 2; d++) {
        tensor_list l = {0};
        char *cfg = fixture_tensors("tiny-hf", &l);
        quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
        l.v[tl_find(&l, Q2)].dtype = other[d];
        expect_load_failure(cfg, &l, NULL, JAMBA_ERR_UNSUPPORTED,
                            (const char *[]){Q2, jamba_dtype_name(other[d]), "I8 or F8_E4M3", NULL});
        tl_free(&l);
        free(cfg);
    }
    /* scales beside a float matrix are not used: an unexpected tensor, named */
    tensor_list l = {0};
    char *cfg = fixture_tensors("tiny-hf", &l);
    static const float s[16] = {1};
    tl_add(&l, Q2 "_scale", JAMBA_DTYPE_F32, 1, (int64_t[]){16}, s);
    expect_load_failure(cfg, &l, NULL, MISMATCH, (const char *[]){"1 unexpected (" Q2 "_scale)", NULL});
    tl_free(&l);
    free(cfg);
}

JB_TEST(bad_checkpoint, nan_in_fp8_values_or_scales) {
    /* q_proj as F8 (bytes of an int8 matrix: small codes, no NaN), then a NaN code at element 5 */
    for (int where = 0; where < 3; where++) {
        tensor_list l = {0};
        char *cfg = fixture_tensors("tiny-hf", &l);
        quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
        int64_t i = tl_find(&l, Q2);
        l.v[i].dtype = JAMBA_DTYPE_F8_E4M3;
        uint8_t *codes = (uint8_t *)l.v[i].data;
        for (int k = 0; k < 256; k++)
            codes[k] &= 0x3f; /* |value| < 2: no NaN anywhere */
        float *scale = (float *)l.v[tl_find(&l, Q2 "_scale")].data;
        const char *bad;
        if (where == 0) {
            codes[5] = 0x7f;
            bad = "\"" Q2 "\" has a NaN at element 5";
        } else if (where == 1) {
            codes[6] = 0xff; /* negative NaN */
            bad = "\"" Q2 "\" has a NaN at element 6";
        } else {
            scale[3] = NAN;
            bad = "\"" Q2 "_scale\" has a NaN or Inf at element 3";
        }
        /* check_finite finds it, naming the tensor */
        jamba_model_params p = jamba_model_default_params();
        p.check_finite = true;
        expect_load_failure(cfg, &l, &p, MISMATCH, (const char *[]){bad, NULL});
        tl_free(&l);
        free(cfg);
    }
    /* requantizing an F8 expert with a NaN fails whatever check_finite says, naming layer, expert and matrix */
    tensor_list l = {0};
    char *cfg = fixture_tensors("tiny-hf", &l);
    layer1_experts_f8(&l);
    ((uint8_t *)l.v[tl_find(&l, UP2)].data)[16 * 3 + 1] = 0x7f; /* row 3 */
    jamba_model_params p = jamba_model_default_params();
    p.experts = JAMBA_FORMAT_INT8;
    expect_load_failure(cfg, &l, &p, JAMBA_ERR_NUMERIC, (const char *[]){"layer 1 expert 2 up_proj", "row 3", NULL});
    p.experts = JAMBA_FORMAT_STORED;
    p.check_finite = true;
    expect_load_failure(cfg, &l, &p, MISMATCH, (const char *[]){UP2, "NaN at element 49", NULL});
    tl_free(&l);
    free(cfg);
}

JB_TEST(quantized_checkpoint, input_scales_are_accepted_and_ignored) {
    tensor_list l = {0};
    char *cfg = fixture_tensors("tiny-hf", &l);
    quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
    int64_t V;
    float *want = folder_logits(cfg, &l, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
    static const float big[16] = {1e30f, 1e30f, 1e30f};
    tl_add(&l, "model.layers.2.self_attn.q_proj.input_scale", JAMBA_DTYPE_F32, 0, (int64_t[]){0}, big);
    tl_add(&l, "model.layers.2.self_attn.k_proj.input_scale", JAMBA_DTYPE_F32, 1, (int64_t[]){1}, big);
    tl_add(&l, "model.layers.1.feed_forward.experts.2.up_proj.input_scale", JAMBA_DTYPE_F32, 1, (int64_t[]){16}, big);
    char *dir = folder_of(cfg, &l);
    jamba_model *m = load_plain(dir);
    bool noted = false;
    for (int64_t i = 0; i < jamba_model_n_warnings(m); i++)
        noted |= strstr(jamba_model_warning(m, i), "3 activation scales (input_scale) ignored") != NULL;
    cr_expect(noted, "a note counts the ignored input scales");
    int32_t ids[N_PROBE];
    small_probe(ids, V);
    float *got = all_logits(m, ids, N_PROBE);
    expect_identical(got, want, N_PROBE * V, "with input_scale tensors");
    free(got);
    jamba_model_free(m);
    /* with check_finite they are scanned too (they are part of the checkpoint's inventory) */
    jamba_model_params p = jamba_model_default_params();
    p.check_finite = true;
    static const float nan1[1] = {NAN};
    tl_add(&l, "model.layers.0.mamba.in_proj.input_scale", JAMBA_DTYPE_F32, 0, (int64_t[]){0}, nan1);
    tu_rmtree(dir);
    free(dir);
    expect_load_failure(cfg, &l, &p, MISMATCH,
                        (const char *[]){"model.layers.0.mamba.in_proj.input_scale", "NaN or Inf", NULL});
    free(want);
    tl_free(&l);
    free(cfg);
}

/* ---- 4. jamba_model_save round trips ------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The saved folder's checkpoint: expert matrices I8 [rows, cols] with "<name>_scale" F32 [rows], the
 * bytes of q's int8 copies; every other tensor as `src` stores it. Returns the number of I8 matrices. */
static int64_t expect_saved_int8_experts(const char *dir, const jamba_model *src, const jamba_model *q) {
    jb_checkpoint ck = {0};
    bool found = false;
    jamba_error err = {0};
    cr_assert_eq(jb_checkpoint_open(dir, &found, &ck, &err), JAMBA_OK, "%s", err.message);
    cr_assert(found);
    int64_t n_i8 = 0, n_scales = 0;
    for (int64_t i = 0; i < ck.n_entries; i++) {
        const jb_ckpt_entry *e = &ck.entries[i];
        const jb_st_tensor *t = e->tensor;
        if (ends_with(e->name, "_scale")) {
            n_scales++;
            continue;
        }
        if (strstr(e->name, ".feed_forward.experts.") != NULL) {
            cr_assert_eq(t->dtype, JAMBA_DTYPE_I8, "%s is %s", e->name, jamba_dtype_name(t->dtype));
            cr_assert_eq(t->rank, 2, "%s", e->name);
            char sname[256];
            snprintf(sname, sizeof sname, "%s_scale", e->name);
            const jb_ckpt_entry *s = jb_checkpoint_find(&ck, sname);
            cr_assert_not_null(s, "%s has no %s", e->name, sname);
            cr_assert_eq(s->tensor->dtype, JAMBA_DTYPE_F32, "%s", sname);
            cr_assert_eq(s->tensor->rank, 1, "%s", sname);
            cr_assert_eq(s->tensor->shape[0], t->shape[0], "%s", sname);
            /* the values and scales are the loaded model's int8 copy, byte for byte */
            long long layer, expert;
            char proj[16];
            cr_assert_eq(sscanf(e->name, "model.layers.%lld.feed_forward.experts.%lld.%15[a-z]_proj", &layer,
                                &expert, proj), 3, "%s", e->name);
            const jb_mlp_weights *x = &q->weights.layers[layer].experts[expert];
            const jb_weight *w = proj[0] == 'g' ? &x->gate_proj : proj[0] == 'u' ? &x->up_proj : &x->down_proj;
            cr_assert_eq(w->dtype, JAMBA_DTYPE_I8);
            cr_assert_eq(memcmp(jb_st_tensor_data(&ck.shards[e->shard], t), w->data, t->n_bytes), 0, "%s", e->name);
            cr_assert_eq(memcmp(jb_st_tensor_data(&ck.shards[s->shard], s->tensor), w->scale, s->tensor->n_bytes), 0,
                         "%s", sname);
            n_i8++;
        } else {
            const jb_ckpt_entry *o = jb_checkpoint_find(&src->ckpt, e->name);
            cr_assert_not_null(o, "%s is not in the source", e->name);
            cr_assert_eq(t->dtype, o->tensor->dtype, "%s changed dtype", e->name);
            cr_assert_eq(t->n_bytes, o->tensor->n_bytes, "%s", e->name);
            cr_assert_eq(memcmp(jb_st_tensor_data(&ck.shards[e->shard], t),
                                jb_st_tensor_data(&src->ckpt.shards[o->shard], o->tensor), t->n_bytes), 0,
                         "%s: bytes differ from the source", e->name);
        }
    }
    cr_assert_eq(n_scales, n_i8, "one scale tensor per int8 matrix");
    jb_checkpoint_close(&ck);
    return n_i8;
}

/* Each expert matrix of `m` points straight into its own checkpoint (bound, not requantized). */
static void expect_experts_mapped(const jamba_model *m) {
    const jamba_config *c = jamba_model_config(m);
    int64_t checked = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        if (!jb_layer_is_moe(c, l))
            continue;
        for (int64_t e = 0; e < c->num_experts; e++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.%lld.down_proj.weight", (long long)l,
                     (long long)e);
            const jb_ckpt_entry *ce = jb_checkpoint_find(&m->ckpt, name);
            cr_assert_not_null(ce, "%s", name);
            const jb_weight *w = &m->weights.layers[l].experts[e].down_proj;
            cr_assert_eq(w->dtype, JAMBA_DTYPE_I8, "%s", name);
            cr_assert_eq(w->data, jb_st_tensor_data(&m->ckpt.shards[ce->shard], ce->tensor),
                         "%s: not the stored tensor (requantized?)", name);
            checked++;
        }
    }
    cr_assert_gt(checked, 0);
}

JB_TEST(save, int8_demo_round_trips_bit_exactly) {
    jamba_model *q = load_with(DEMO, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    float *want = all_logits(q, probe, N_PROBE);
    const int64_t V = jamba_model_config(q)->vocab_size;
    char *tmp = tu_tmpdir();
    char *out = tu_path(tmp, "demo-int8"); /* created by the save */
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(q, out, &err), JAMBA_OK, "%s", err.message);

    /* 4 MoE layers x 4 experts x 3 matrices, I8 with F32 row scales; the rest as stored */
    jamba_model *src = load_plain(DEMO);
    cr_assert_eq(expect_saved_int8_experts(out, src, q), 48);
    jamba_model_free(src);
    char *cfg_path = tu_path(out, "config.json");
    json_t *cfg = json_load_file(cfg_path, 0, NULL);
    cr_assert_not_null(cfg);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(cfg, "quantization_config"), "quant_method")),
                     "jamba_int8");
    json_decref(cfg);
    free(cfg_path);
    char *tok_path = tu_path(out, "tokenizer.json");
    free(tu_read_file(tok_path, &(size_t){0})); /* the tokenizer came along */
    free(tok_path);

    /* loaded as stored, and with experts = int8 again (kept, not requantized): the same logits, bitwise */
    for (int pass = 0; pass < 2; pass++) {
        jamba_model *back = pass ? load_with(out, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED) : load_plain(out);
        expect_experts_mapped(back);
        float *got = all_logits(back, probe, N_PROBE);
        expect_identical(got, want, N_PROBE * V, pass ? "reloaded with experts int8" : "reloaded as stored");
        free(got);
        /* and the weights are byte-identical to the on-load int8 copy */
        const jb_weight *a = &back->weights.layers[1].experts[2].gate_proj;
        const jb_weight *b = &q->weights.layers[1].experts[2].gate_proj;
        cr_assert_eq(memcmp(a->data, b->data, (size_t)(a->shape[0] * a->shape[1])), 0);
        cr_assert_eq(memcmp(a->scale, b->scale, (size_t)a->shape[0] * sizeof(float)), 0);
        jamba_model_free(back);
    }
    free(want);
    jamba_model_free(q);
    tu_rmtree(tmp);
    free(out);
    free(tmp);
}

JB_TEST(save, int8_mlp_and_experts_round_trip) {
    jamba_model *q = load_with(DEMO, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    float *want = all_logits(q, probe, N_PROBE);
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(q, tmp, &err), JAMBA_OK, "%s", err.message); /* an existing empty folder */
    jamba_model *back = load_with(tmp, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    cr_assert_eq(back->weights.layers[0].mlp.up_proj.dtype, JAMBA_DTYPE_I8);
    cr_assert_not_null(jb_checkpoint_find(&back->ckpt, "model.layers.0.feed_forward.up_proj.weight_scale"));
    float *got = all_logits(back, probe, N_PROBE);
    expect_identical(got, want, N_PROBE * jamba_model_config(q)->vocab_size, "experts + mlp int8 reloaded");
    free(got);
    jamba_model_free(back);
    free(want);
    jamba_model_free(q);
    tu_rmtree(tmp);
    free(tmp);
}

/* Save `dir` loaded with `experts` / `mlp`, reload as stored: the same logits, bit for bit. */
static void expect_round_trip(const char *dir, jamba_weight_format experts, jamba_weight_format mlp) {
    jamba_model *m = load_with(dir, experts, mlp);
    const int64_t V = jamba_model_config(m)->vocab_size;
    int32_t ids[N_PROBE];
    small_probe(ids, V);
    float *want = all_logits(m, ids, N_PROBE);
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(m, tmp, &err), JAMBA_OK, "%s: %s", dir, err.message);
    jamba_model *back = load_plain(tmp);
    float *got = all_logits(back, ids, N_PROBE);
    expect_identical(got, want, N_PROBE * V, dir);
    const bool requantized = experts == JAMBA_FORMAT_INT8 || mlp == JAMBA_FORMAT_INT8;
    char *cfg_path = tu_path(tmp, "config.json");
    json_t *cfg = json_load_file(cfg_path, 0, NULL);
    cr_assert_not_null(cfg);
    cr_expect_eq(json_object_get(cfg, "quantization_config") != NULL, requantized, "%s", dir);
    json_decref(cfg);
    free(cfg_path);
    free(got);
    free(want);
    jamba_model_free(back);
    jamba_model_free(m);
    tu_rmtree(tmp);
    free(tmp);
}

JB_TEST(save, naming_schemes_layouts_and_tying_round_trip) {
    static const char *const dirs[] = {"forward/mini-ai21/model", "forward/mini-stacked/model",
                                       "forward/mini-bf16/model", "forward/odd-shapes/model",
                                       "models/tiny-tied",        "models/tiny-hf-sharded"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *dir = tu_fixture(dirs[i]);
        expect_round_trip(dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
        expect_round_trip(dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
        expect_round_trip(dir, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED);
        free(dir);
    }
    /* mamba_inner_layernorms = false, with the dt/B/C norms stored and without them */
    for (int stored = 0; stored < 2; stored++) {
        tensor_list l = {0};
        char *text = fixture_tensors("tiny-hf", &l);
        json_t *cfg = json_loads(text, 0, NULL);
        cr_assert_not_null(cfg);
        json_object_set_new(cfg, "mamba_inner_layernorms", json_false());
        char *edited = json_dumps(cfg, 0);
        for (int layer = 0; !stored && layer < 4; layer++) {
            if (layer == 2)
                continue; /* attention */
            static const char *const norms[] = {"dt_layernorm", "b_layernorm", "c_layernorm"};
            for (int k = 0; k < 3; k++) {
                char name[96];
                snprintf(name, sizeof name, "model.layers.%d.mamba.%s.weight", layer, norms[k]);
                tl_remove(&l, name);
            }
        }
        char *dir = folder_of(edited, &l);
        expect_round_trip(dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
        tu_rmtree(dir);
        free(dir);
        free(edited);
        json_decref(cfg);
        free(text);
        tl_free(&l);
    }
}

JB_TEST(save, refuses_its_own_folder_and_models_without_weights) {
    jamba_model *m = load_plain(DEMO);
    jamba_error err = {0};
    cr_expect_eq(jamba_model_save(m, DEMO, &err), JAMBA_ERR_INVALID_ARGUMENT, "%s", err.message);
    cr_expect(strstr(err.message, "own folder") != NULL, "%s", err.message);
    cr_expect_eq(jamba_model_save(NULL, "/tmp", NULL), JAMBA_ERR_INVALID_ARGUMENT);
    cr_expect_eq(jamba_model_save(m, "", NULL), JAMBA_ERR_INVALID_ARGUMENT);
    jamba_model_free(m);

    /* the model's own folder however it is spelled: refused, and the checkpoint is left alone */
    char *copy = tu_clone_model(DEMO);
    char *file = tu_path(copy, "model.safetensors");
    size_t before_len, after_len;
    uint8_t *before = tu_read_file(file, &before_len);
    m = load_with(copy, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    char *parent = tu_tmpdir();
    char *link = tu_path(parent, "link");
    cr_assert_eq(symlink(copy, link), 0);
    char slash[1024], dot[1024];
    snprintf(slash, sizeof slash, "%s/", copy);
    snprintf(dot, sizeof dot, "%s/.", copy);
    const char *const spellings[] = {copy, slash, dot, link};
    for (int i = 0; i < 4; i++) {
        err = (jamba_error){0};
        cr_expect_eq(jamba_model_save(m, spellings[i], &err), JAMBA_ERR_INVALID_ARGUMENT, "%s: %s", spellings[i],
                     err.message);
        cr_expect(strstr(err.message, "own folder") != NULL, "%s", err.message);
    }
    jamba_model_free(m);
    uint8_t *after = tu_read_file(file, &after_len);
    cr_assert(before_len == after_len && memcmp(before, after, before_len) == 0, "the source checkpoint changed");
    free(before);
    free(after);
    tu_rmtree(parent);
    tu_rmtree(copy);
    free(link);
    free(parent);
    free(file);
    free(copy);

    jamba_model_params p = jamba_model_default_params();
    p.weights = JAMBA_WEIGHTS_NONE;
    cr_assert_eq(jamba_model_load(DEMO, &p, &m, &err), JAMBA_OK, "%s", err.message);
    char *tmp = tu_tmpdir();
    cr_expect_eq(jamba_model_save(m, tmp, &err), JAMBA_ERR_NO_WEIGHTS, "%s", err.message);
    jamba_model_free(m);
    tu_rmtree(tmp);
    free(tmp);
}

/* ---- 5. FP8 E4M3 checkpoints ---------------------------------------------------------------------- */

/* The e4m3 value of each of the 127 non-negative finite codes 0x00..0x7e, ascending. */
static float e4m3_values[127];

static void e4m3_table(void) {
    for (int c = 0; c < 127; c++)
        e4m3_values[c] = jb_e4m3_to_f32((uint8_t)c);
}

/* Round to the nearest E4M3FN value, ties to the even code (even mantissa), saturating at ±448; NaN to
 * the NaN code. */
static uint8_t e4m3_encode(float x) {
    if (isnan(x))
        return 0x7f;
    const uint8_t sign = signbit(x) ? 0x80 : 0;
    const double a = fabs((double)x);
    int best = 0;
    for (int c = 1; c < 127; c++) {
        double d = fabs((double)e4m3_values[c] - a), db = fabs((double)e4m3_values[best] - a);
        if (d < db || (d == db && (c & 1) == 0))
            best = c;
    }
    return (uint8_t)(sign | best);
}

JB_TEST(fp8, test_encoder_round_trips_every_code) {
    e4m3_table();
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f)
            continue;
        cr_assert_eq(e4m3_encode(jb_e4m3_to_f32((uint8_t)c)), c, "code 0x%02x", c);
    }
    /* halfway between two codes: to the even one; beyond the largest: saturate */
    cr_assert_eq(e4m3_encode(1.0625f), 0x38);  /* between 1 (0x38) and 1.125 (0x39) */
    cr_assert_eq(e4m3_encode(1.1875f), 0x3a);  /* between 1.125 (0x39) and 1.25 (0x3a) */
    cr_assert_eq(e4m3_encode(-1.0625f), 0xb8);
    cr_assert_eq(e4m3_encode(ldexpf(1, -10)), 0x00); /* half the smallest subnormal: to zero (even) */
    cr_assert_eq(e4m3_encode(3 * ldexpf(1, -10)), 0x02); /* between 0x01 and 0x02 */
    cr_assert_eq(e4m3_encode(1000.0f), 0x7e);
    cr_assert_eq(e4m3_encode(-1000.0f), 0xfe);
}

typedef struct fp8_lists {
    tensor_list fp8; /* linear matrices F8_E4M3 + "<name>_scale" F32 [rows]; the rest as stored */
    tensor_list deq; /* the same model in F32: the F8 matrices' exact values code x scale */
} fp8_lists;

static bool to_fp8(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    fp8_lists *j = arg;
    if (w->data == NULL)
        return true;
    cr_assert_eq(w->dtype, JAMBA_DTYPE_F32, "%s", name);
    tl_add(&j->deq, name, w->dtype, rank, shape, w->data);
    if (!linear) {
        tl_add(&j->fp8, name, w->dtype, rank, shape, w->data);
        return true;
    }
    cr_assert_eq(rank, 2, "%s", name);
    const int64_t N = shape[0], K = shape[1];
    const float *v = w->data;
    uint8_t *q = tl_keep(&j->fp8, malloc((size_t)(N * K)));
    float *scale = tl_keep(&j->fp8, malloc((size_t)N * sizeof *scale));
    float *deq = tl_keep(&j->deq, malloc((size_t)(N * K) * sizeof *deq));
    for (int64_t n = 0; n < N; n++) {
        float amax = 0;
        for (int64_t k = 0; k < K; k++)
            amax = fmaxf(amax, fabsf(v[n * K + k]));
        scale[n] = amax > 0 ? amax / 448.0f : 1.0f;
        for (int64_t k = 0; k < K; k++) {
            q[n * K + k] = e4m3_encode(v[n * K + k] / scale[n]);
            deq[n * K + k] = jb_e4m3_to_f32(q[n * K + k]) * scale[n];
        }
    }
    j->deq.v[j->deq.n - 1].data = deq;
    tl_add(&j->fp8, name, JAMBA_DTYPE_F8_E4M3, 2, shape, q);
    char sname[256];
    snprintf(sname, sizeof sname, "%s_scale", name);
    tl_add(&j->fp8, sname, JAMBA_DTYPE_F32, 1, (int64_t[]){N}, scale);
    return true;
}

/* A float synthetic model of the config of forward fixture "mini" (attention, Mamba, dense and 16-expert
 * MoE layers), as FP8 and as its dequantized float twin. Returns the config text. */
static char *fp8_model(fp8_lists *out, jamba_model **src) {
    e4m3_table();
    char *path = tu_fixture("forward/mini/model/config.json");
    char *cfg = read_text(path);
    free(path);
    jamba_error err = {0};
    cr_assert_eq(jb_synthetic_model(cfg, 7, JAMBA_DTYPE_F32, 2, src, &err), JAMBA_OK, "%s", err.message);
    jb_weights w = (*src)->weights;
    cr_assert_eq(jb_weights_visit(&(*src)->config, &w, to_fp8, out, &err), JAMBA_OK, "%s", err.message);
    return cfg;
}

/* Per-position relative L2 of two [T, V] logit arrays: the worst. */
static double worst_rel_l2(const float *a, const float *b, int64_t T, int64_t V) {
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        double e = rel_l2(a + t * V, b + t * V, V);
        worst = e > worst ? e : worst;
    }
    return worst;
}

JB_TEST(fp8, e4m3_checkpoint_equals_its_dequantized_float_model) {
    fp8_lists l;
    memset(&l, 0, sizeof l);
    jamba_model *src = NULL;
    char *cfg = fp8_model(&l, &src);
    char *fp8_dir = folder_of(cfg, &l.fp8), *deq_dir = folder_of(cfg, &l.deq);
    jamba_model *f = load_plain(fp8_dir), *d = load_plain(deq_dir);
    cr_assert_eq(f->weights.layers[1].experts[5].up_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(f->weights.layers[4].attn.o_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(f->weights.layers[0].mamba.x_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(f->weights.layers[0].mamba.A_log.dtype, JAMBA_DTYPE_F32);
    const int64_t V = jamba_model_config(f)->vocab_size;
    int32_t ids[N_PROBE];
    small_probe(ids, V);
    float *want = all_logits(d, ids, N_PROBE), *got = all_logits(f, ids, N_PROBE);
    double worst = worst_rel_l2(got, want, N_PROBE, V);
    cr_log_info("FP8 E4M3 vs its dequantized float model: worst per-position logits relative L2 %.3g", worst);
    cr_expect_leq(worst, REF_TOL, "FP8 logits relative L2 %.3g", worst);
    /* and FP8 changed something: the float source model differs */
    float *orig = all_logits(src, ids, N_PROBE);
    double drift = worst_rel_l2(orig, want, N_PROBE, V);
    cr_log_info("FP8 E4M3 vs the unquantized source: worst per-position logits relative L2 %.3g", drift);
    cr_expect_gt(drift, 0);
    free(orig);

    /* F8 sources requantized to int8 (experts and dense MLPs): exactly what the float twin gives */
    jamba_model *fq = load_with(fp8_dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    jamba_model *dq = load_with(deq_dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    cr_assert_eq(fq->weights.layers[1].experts[5].up_proj.dtype, JAMBA_DTYPE_I8);
    cr_assert_eq(fq->weights.layers[0].mlp.down_proj.dtype, JAMBA_DTYPE_I8);
    cr_assert_eq(fq->weights.layers[4].attn.o_proj.dtype, JAMBA_DTYPE_F8_E4M3, "mixers stay as stored");
    const jb_weight *a = &fq->weights.layers[3].experts[9].down_proj, *b = &dq->weights.layers[3].experts[9].down_proj;
    cr_assert_eq(memcmp(a->data, b->data, (size_t)(a->shape[0] * a->shape[1])), 0, "int8 values");
    cr_assert_eq(memcmp(a->scale, b->scale, (size_t)a->shape[0] * sizeof(float)), 0, "int8 scales");
    float *gq = all_logits(fq, ids, N_PROBE);
    float *dq_logits = all_logits(dq, ids, N_PROBE);
    double wq = worst_rel_l2(gq, dq_logits, N_PROBE, V);
    cr_expect_leq(wq, REF_TOL, "int8 from F8 vs int8 from its float twin: %.3g", wq);
    double vs_fp8 = worst_rel_l2(gq, got, N_PROBE, V);
    cr_log_info("F8 requantized to int8 vs F8: worst per-position logits relative L2 %.3g", vs_fp8);
    cr_expect_leq(vs_fp8, 0.05);

    /* saved after requantization: F8 mixers with their scales, int8 experts and MLPs; loads back the same */
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(fq, tmp, &err), JAMBA_OK, "%s", err.message);
    jamba_model *back = load_plain(tmp);
    cr_assert_eq(back->weights.layers[4].attn.o_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(back->weights.layers[1].experts[5].up_proj.dtype, JAMBA_DTYPE_I8);
    float *gb = all_logits(back, ids, N_PROBE);
    expect_identical(gb, gq, N_PROBE * V, "FP8 + int8 saved and reloaded");
    free(gb);
    jamba_model_free(back);
    tu_rmtree(tmp);
    free(tmp);

    free(gq);
    free(dq_logits);
    jamba_model_free(fq);
    jamba_model_free(dq);
    free(want);
    free(got);
    jamba_model_free(f);
    jamba_model_free(d);
    jamba_model_free(src);
    tu_rmtree(fp8_dir);
    tu_rmtree(deq_dir);
    free(fp8_dir);
    free(deq_dir);
    free(cfg);
    tl_free(&l.fp8);
    tl_free(&l.deq);
}

/* The per-expert F8 tensors of the MoE layers restacked: gate_up [E, 2I, H] with [E, 2I] scales, down
 * [E, H, I] with [E, H]; the same weights. */
JB_TEST(fp8, stacked_e4m3_experts_equal_per_expert_ones) {
    fp8_lists l;
    memset(&l, 0, sizeof l);
    jamba_model *src = NULL;
    char *cfg = fp8_model(&l, &src);
    const jamba_config *c = jamba_model_config(src);
    const int64_t E = c->num_experts, H = c->hidden_size, I = c->intermediate_size;
    tensor_list st = l.fp8; /* shares the tensors; only its array is new */
    st.v = malloc((size_t)st.cap * sizeof *st.v);
    memcpy(st.v, l.fp8.v, (size_t)st.n * sizeof *st.v);
    st.own = NULL, st.n_own = st.cap_own = 0;
    for (int64_t layer = 0; layer < c->num_hidden_layers; layer++) {
        if (!jb_layer_is_moe(c, layer))
            continue;
        uint8_t *gu = tl_keep(&st, malloc((size_t)(E * 2 * I * H))), *dn = tl_keep(&st, malloc((size_t)(E * H * I)));
        float *gus = tl_keep(&st, malloc((size_t)(E * 2 * I) * sizeof(float)));
        float *dns = tl_keep(&st, malloc((size_t)(E * H) * sizeof(float)));
        for (int64_t e = 0; e < E; e++) {
            static const char *const projs[] = {"gate_proj", "up_proj", "down_proj"};
            for (int p = 0; p < 3; p++) {
                char name[160], sname[176];
                snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.%lld.%s.weight", (long long)layer,
                         (long long)e, projs[p]);
                snprintf(sname, sizeof sname, "%s_scale", name);
                const jb_st_out_tensor *t = &st.v[tl_find(&st, name)], *s = &st.v[tl_find(&st, sname)];
                if (p < 2) {
                    memcpy(gu + (e * 2 + p) * I * H, t->data, (size_t)(I * H));
                    memcpy(gus + (e * 2 + p) * I, s->data, (size_t)I * sizeof(float));
                } else {
                    memcpy(dn + e * H * I, t->data, (size_t)(H * I));
                    memcpy(dns + e * H, s->data, (size_t)H * sizeof(float));
                }
                tl_remove(&st, name);
                tl_remove(&st, sname);
            }
        }
        char name[128];
        snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.gate_up_proj", (long long)layer);
        tl_add(&st, name, JAMBA_DTYPE_F8_E4M3, 3, (int64_t[]){E, 2 * I, H}, gu);
        snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.gate_up_proj_scale", (long long)layer);
        tl_add(&st, name, JAMBA_DTYPE_F32, 2, (int64_t[]){E, 2 * I}, gus);
        snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.down_proj", (long long)layer);
        tl_add(&st, name, JAMBA_DTYPE_F8_E4M3, 3, (int64_t[]){E, H, I}, dn);
        snprintf(name, sizeof name, "model.layers.%lld.feed_forward.experts.down_proj_scale", (long long)layer);
        tl_add(&st, name, JAMBA_DTYPE_F32, 2, (int64_t[]){E, H}, dns);
    }
    int64_t V;
    float *want = folder_logits(cfg, &l.fp8, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
    float *got = folder_logits(cfg, &st, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
    expect_identical(got, want, N_PROBE * V, "stacked F8 experts");
    free(got);
    free(want);
    want = folder_logits(cfg, &l.fp8, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED, &V);
    got = folder_logits(cfg, &st, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED, &V);
    expect_identical(got, want, N_PROBE * V, "stacked F8 experts requantized to int8");
    free(got);
    /* saved from the stacked layout (per-expert names, each with its rows' scales): the same again */
    char *dir = folder_of(cfg, &st), *saved = tu_tmpdir();
    jamba_model *m = load_with(dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(m, saved, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(m);
    m = load_plain(saved);
    cr_assert_not_null(jb_checkpoint_find(&m->ckpt, "model.layers.3.feed_forward.experts.15.up_proj.weight_scale"));
    int32_t ids[N_PROBE];
    small_probe(ids, V);
    got = all_logits(m, ids, N_PROBE);
    expect_identical(got, want, N_PROBE * V, "stacked F8 experts requantized, saved and reloaded");
    jamba_model_free(m);
    tu_rmtree(dir);
    tu_rmtree(saved);
    free(dir);
    free(saved);
    free(got);
    free(want);
    tl_free(&st);
    jamba_model_free(src);
    free(cfg);
    tl_free(&l.fp8);
    tl_free(&l.deq);
}

/* ---- 6. `jamba quantize` ------------------------------------------------------------------------- */

JB_TEST(cli, quantize_then_inspect_shows_int8) {
    char *tmp = tu_tmpdir();
    char *out_dir = tu_path(tmp, "q");
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "quantize", "--model", DEMO, "--out", out_dir, "--threads", "2",
                                     NULL},
                    &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(strstr(out, "wrote") != NULL, "%s", out);
    free(out);
    free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "--model", out_dir, "--tensors", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(strstr(out, "I8                     2,949,120 bytes") != NULL, "the experts' bytes as I8:\n%s", out);
    cr_expect(strstr(out, "in 48 tensors") != NULL, "%s", out);
    const char *line = strstr(out, "model.layers.1.feed_forward.experts.0.gate_proj.weight ");
    cr_assert_not_null(line, "%s", out);
    const char *i8 = strstr(line, " I8 "), *eol = strchr(line, '\n');
    cr_expect(i8 != NULL && eol != NULL && i8 < eol, "the matrix is listed as I8: %.*s", (int)(eol - line), line);
    cr_expect(strstr(out, "model.layers.1.feed_forward.experts.0.gate_proj.weight_scale ") != NULL, "%s", out);
    free(out);
    free(err);
    /* the folder loads and generates like --experts int8 on the original */
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", out_dir, "--prompt", "ROMEO:", "--temperature",
                                 "0", "--max-tokens", "16", "--threads", "2", NULL},
                &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    char *out2, *err2;
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model", DEMO, "--experts", "int8", "--prompt", "ROMEO:",
                                 "--temperature", "0", "--max-tokens", "16", "--threads", "2", NULL},
                &out2, &err2);
    cr_assert_eq(rc, 0, "%s", err2);
    cr_expect_str_eq(out, out2);
    free(out);
    free(err);
    free(out2);
    free(err2);
    tu_rmtree(tmp);
    free(out_dir);
    free(tmp);
}

/* An int8 folder loaded as stored and loaded with experts = int8 is one model: the memory figure counts
 * the held bytes, and a sequence state saved on one restores on the other (the fingerprint agrees). */
JB_TEST(save, int8_folder_is_one_model_however_loaded) {
    jamba_model *q = load_with(DEMO, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED), *plain = load_plain(DEMO);
    jamba_memory_estimate mq, mp;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_memory(q, NULL, &mq, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_model_memory(plain, NULL, &mp, &err), JAMBA_OK, "%s", err.message);
    cr_assert_lt(mq.weight_bytes, mp.weight_bytes, "int8 experts hold fewer bytes (%llu vs %llu)",
                 (unsigned long long)mq.weight_bytes, (unsigned long long)mp.weight_bytes);
    char *tmp = tu_tmpdir();
    char *out = tu_path(tmp, "demo-int8");
    cr_assert_eq(jamba_model_save(q, out, &err), JAMBA_OK, "%s", err.message);
    jamba_model *a = load_plain(out), *b = load_with(out, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    jamba_memory_estimate ma;
    cr_assert_eq(jamba_model_memory(a, NULL, &ma, &err), JAMBA_OK);
    cr_assert_eq(ma.weight_bytes, mq.weight_bytes, "saved %llu, held %llu", (unsigned long long)ma.weight_bytes,
                 (unsigned long long)mq.weight_bytes);
    jamba_context *ca = NULL, *cb = NULL;
    cr_assert_eq(jamba_context_create(a, NULL, &ca, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_context_create(b, NULL, &cb, &err), JAMBA_OK, "%s", err.message);
    jamba_seq_input in = {.seq = 0, .tokens = probe, .n_tokens = N_PROBE, .logits = JAMBA_LOGITS_NONE};
    cr_assert_eq(jamba_decode(ca, &in, 1, &err), JAMBA_OK, "%s", err.message);
    char *state = tu_path(tmp, "state.bin");
    cr_assert_eq(jamba_seq_save(ca, 0, state, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_restore(cb, 0, state, &err), JAMBA_OK, "%s", err.message);
    cr_assert_eq(jamba_seq_length(cb, 0), N_PROBE);
    jamba_context_free(ca);
    jamba_context_free(cb);
    jamba_model_free(a);
    jamba_model_free(b);
    jamba_model_free(q);
    jamba_model_free(plain);
    tu_rmtree(tmp);
    free(state);
    free(out);
    free(tmp);
}

/*
 * test_quantize_formats.c — quantized checkpoints: int8 checkpoints in every scale form binding to exactly
 * what they mean, quantized checkpoints that are wrong in every way bind.c and finite.c check, each named;
 * and FP8 E4M3 checkpoints against the float model of their exactly dequantized values.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/checkpoint.h"
#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "ckpt/weights.h"
#include "runtime/model.h"
#include "runtime/synthetic.h"
#include "tests/support/quantize_util.h"
#include "tests/support/reference.h"
#include "tests/support/testutil.h"

#define MISMATCH JAMBA_ERR_WEIGHT_MISMATCH

static int64_t elements(int rank, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= shape[d];
    return n;
}

/* ---- quantized checkpoints: what binds, and what is refused by name ------------------------------- */

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

static void expect_load_failure(const char *config, const tensor_list *l, const jamba_model_params *p,
                                jamba_status want, const char *needles[]) {
    char *dir = qu_folder_of(config, l);
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

static float *folder_logits(const char *config, const tensor_list *l, jamba_weight_format experts,
                            jamba_weight_format mlp, int64_t *V) {
    char *dir = qu_folder_of(config, l);
    jamba_model *m = qu_load_with(dir, experts, mlp);
    *V = jamba_model_config(m)->vocab_size;
    int32_t ids[QU_N_PROBE];
    qu_small_probe(ids, *V);
    float *out = qu_all_logits(m, ids, QU_N_PROBE);
    jamba_model_free(m);
    tu_rmtree(dir);
    free(dir);
    return out;
}

JB_TEST(quantized_checkpoint, scale_forms_bind_to_what_they_mean) {
    /* int8 matrices of every kind (attention, Mamba, dense MLP, all experts of a layer, the LM head), each
     * form of scales: the logits equal, bit for bit, those of the float model of the values q x scale */
    static const char *const names[] = {
        Q2, "model.layers.0.mamba.x_proj.weight", "model.layers.0.mamba.in_proj.weight",
        "model.layers.0.feed_forward.gate_proj.weight", "model.layers.2.feed_forward.down_proj.weight",
        "lm_head.weight"};
    for (int form = 0; form < N_SCALE_FORMS; form++) {
        tensor_list q = {0}, ref = {0};
        char *cfg = qu_fixture_tensors("tiny-hf", &q);
        free(qu_fixture_tensors("tiny-hf", &ref));
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
        qu_expect_identical(got, want, QU_N_PROBE * V, form_names[form]);
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
        char *cfg = qu_fixture_tensors("tiny-stacked", &q);
        free(qu_fixture_tensors("tiny-stacked", &ref));
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
        qu_expect_identical(got, want, QU_N_PROBE * V, uniform ? "stacked, one scale" : "stacked, [E, rows] scales");
        free(got);
        /* already int8: experts = int8 keeps them, so the logits stay the same */
        got = folder_logits(cfg, &q, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED, &V);
        qu_expect_identical(got, want, QU_N_PROBE * V, "stacked int8 loaded with experts int8");
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
    char *cfg = qu_fixture_tensors("tiny-hf", &l);
    to_i8(&l, Q2, false, NULL);
    expect_load_failure(cfg, &l, NULL, MISMATCH,
                        (const char *[]){"\"" Q2 "\" is I8", "\"" Q2 "_scale\" are missing", NULL});
    tl_free(&l);
    free(cfg);
    /* F8 experts with one expert's scales missing */
    l = (tensor_list){0};
    cfg = qu_fixture_tensors("tiny-hf", &l);
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
        char *cfg = qu_fixture_tensors("tiny-hf", &l);
        to_i8(&l, Q2, false, NULL);
        tl_add(&l, Q2 "_scale", cases[c].dtype, cases[c].rank, cases[c].shape, data);
        expect_load_failure(cfg, &l, NULL, MISMATCH,
                            (const char *[]){"\"" Q2 "_scale\"", cases[c].needle, "\"" Q2 "\" (16)", NULL});
        tl_free(&l);
        free(cfg);
    }
}

JB_TEST(bad_checkpoint, only_linear_matrices_may_be_quantized) {
    /* norms, conv, the (untied) embedding, router, A_log, biases stay float: I8 or F8 there is refused by name
     * (lm_head is a linear layer: tests/test_quantize_weights.c loads it quantized) */
    static const char *const names[] = {
        "model.layers.0.input_layernorm.weight", "model.layers.0.mamba.conv1d.weight", "model.embed_tokens.weight",
        "model.layers.1.feed_forward.router.weight", "model.layers.0.mamba.A_log",
        "model.layers.0.mamba.dt_proj.bias", "model.final_layernorm.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        for (int f8 = 0; f8 < 2; f8++) {
            tensor_list l = {0};
            char *cfg = qu_fixture_tensors("tiny-hf", &l);
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
        char *cfg = qu_fixture_tensors("tiny-hf", &l);
        quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
        l.v[tl_find(&l, Q2)].dtype = other[d];
        expect_load_failure(cfg, &l, NULL, JAMBA_ERR_UNSUPPORTED,
                            (const char *[]){Q2, jamba_dtype_name(other[d]), "I8 or F8_E4M3", NULL});
        tl_free(&l);
        free(cfg);
    }
    /* scales beside a float matrix are not used: an unexpected tensor, named */
    tensor_list l = {0};
    char *cfg = qu_fixture_tensors("tiny-hf", &l);
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
        char *cfg = qu_fixture_tensors("tiny-hf", &l);
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
            scale[3] = NAN; /* refused while binding, check_finite or not */
            bad = "scales \"" Q2 "_scale\": row 3 has scale nan";
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
    char *cfg = qu_fixture_tensors("tiny-hf", &l);
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
    char *cfg = qu_fixture_tensors("tiny-hf", &l);
    quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
    int64_t V;
    float *want = folder_logits(cfg, &l, JAMBA_FORMAT_STORED, JAMBA_FORMAT_STORED, &V);
    static const float big[16] = {1e30f, 1e30f, 1e30f};
    tl_add(&l, "model.layers.2.self_attn.q_proj.input_scale", JAMBA_DTYPE_F32, 0, (int64_t[]){0}, big);
    tl_add(&l, "model.layers.2.self_attn.k_proj.input_scale", JAMBA_DTYPE_F32, 1, (int64_t[]){1}, big);
    tl_add(&l, "model.layers.1.feed_forward.experts.2.up_proj.input_scale", JAMBA_DTYPE_F32, 1, (int64_t[]){16}, big);
    char *dir = qu_folder_of(cfg, &l);
    jamba_model *m = qu_load_plain(dir);
    bool noted = false;
    for (int64_t i = 0; i < jamba_model_n_warnings(m); i++)
        noted |= strstr(jamba_model_warning(m, i), "3 activation scales (input_scale) ignored") != NULL;
    cr_expect(noted, "a note counts the ignored input scales");
    int32_t ids[QU_N_PROBE];
    qu_small_probe(ids, V);
    float *got = qu_all_logits(m, ids, QU_N_PROBE);
    qu_expect_identical(got, want, QU_N_PROBE * V, "with input_scale tensors");
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

/* ---- FP8 E4M3 checkpoints ------------------------------------------------------------------------- */

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
    char *cfg = qu_read_text(path);
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
    char *fp8_dir = qu_folder_of(cfg, &l.fp8), *deq_dir = qu_folder_of(cfg, &l.deq);
    jamba_model *f = qu_load_plain(fp8_dir), *d = qu_load_plain(deq_dir);
    cr_assert_eq(f->weights.layers[1].experts[5].up_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(f->weights.layers[4].attn.o_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(f->weights.layers[0].mamba.x_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(f->weights.layers[0].mamba.A_log.dtype, JAMBA_DTYPE_F32);
    const int64_t V = jamba_model_config(f)->vocab_size;
    int32_t ids[QU_N_PROBE];
    qu_small_probe(ids, V);
    float *want = qu_all_logits(d, ids, QU_N_PROBE), *got = qu_all_logits(f, ids, QU_N_PROBE);
    double worst = worst_rel_l2(got, want, QU_N_PROBE, V);
    cr_log_info("FP8 E4M3 vs its dequantized float model: worst per-position logits relative L2 %.3g", worst);
    cr_expect_leq(worst, REF_TOL, "FP8 logits relative L2 %.3g", worst);
    /* and FP8 changed something: the float source model differs */
    float *orig = qu_all_logits(src, ids, QU_N_PROBE);
    double drift = worst_rel_l2(orig, want, QU_N_PROBE, V);
    cr_log_info("FP8 E4M3 vs the unquantized source: worst per-position logits relative L2 %.3g", drift);
    cr_expect_gt(drift, 0);
    free(orig);

    /* F8 sources requantized to int8 (experts and dense MLPs): exactly what the float twin gives */
    jamba_model *fq = qu_load_with(fp8_dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    jamba_model *dq = qu_load_with(deq_dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_INT8);
    cr_assert_eq(fq->weights.layers[1].experts[5].up_proj.dtype, JAMBA_DTYPE_I8);
    cr_assert_eq(fq->weights.layers[0].mlp.down_proj.dtype, JAMBA_DTYPE_I8);
    cr_assert_eq(fq->weights.layers[4].attn.o_proj.dtype, JAMBA_DTYPE_F8_E4M3, "mixers stay as stored");
    const jb_weight *a = &fq->weights.layers[3].experts[9].down_proj, *b = &dq->weights.layers[3].experts[9].down_proj;
    cr_assert_eq(memcmp(a->data, b->data, (size_t)(a->shape[0] * a->shape[1])), 0, "int8 values");
    cr_assert_eq(memcmp(a->scale, b->scale, (size_t)a->shape[0] * sizeof(float)), 0, "int8 scales");
    float *gq = qu_all_logits(fq, ids, QU_N_PROBE);
    float *dq_logits = qu_all_logits(dq, ids, QU_N_PROBE);
    double wq = worst_rel_l2(gq, dq_logits, QU_N_PROBE, V);
    cr_expect_leq(wq, REF_TOL, "int8 from F8 vs int8 from its float twin: %.3g", wq);
    double vs_fp8 = worst_rel_l2(gq, got, QU_N_PROBE, V);
    cr_log_info("F8 requantized to int8 vs F8: worst per-position logits relative L2 %.3g", vs_fp8);
    cr_expect_leq(vs_fp8, 0.05);

    /* saved after requantization: F8 mixers with their scales, int8 experts and MLPs; loads back the same */
    char *tmp = tu_tmpdir();
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(fq, tmp, &err), JAMBA_OK, "%s", err.message);
    jamba_model *back = qu_load_plain(tmp);
    cr_assert_eq(back->weights.layers[4].attn.o_proj.dtype, JAMBA_DTYPE_F8_E4M3);
    cr_assert_eq(back->weights.layers[1].experts[5].up_proj.dtype, JAMBA_DTYPE_I8);
    float *gb = qu_all_logits(back, ids, QU_N_PROBE);
    qu_expect_identical(gb, gq, QU_N_PROBE * V, "FP8 + int8 saved and reloaded");
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
    qu_expect_identical(got, want, QU_N_PROBE * V, "stacked F8 experts");
    free(got);
    free(want);
    want = folder_logits(cfg, &l.fp8, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED, &V);
    got = folder_logits(cfg, &st, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED, &V);
    qu_expect_identical(got, want, QU_N_PROBE * V, "stacked F8 experts requantized to int8");
    free(got);
    /* saved from the stacked layout (per-expert names, each with its rows' scales): the same again */
    char *dir = qu_folder_of(cfg, &st), *saved = tu_tmpdir();
    jamba_model *m = qu_load_with(dir, JAMBA_FORMAT_INT8, JAMBA_FORMAT_STORED);
    jamba_error err = {0};
    cr_assert_eq(jamba_model_save(m, saved, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(m);
    m = qu_load_plain(saved);
    cr_assert_not_null(jb_checkpoint_find(&m->ckpt, "model.layers.3.feed_forward.experts.15.up_proj.weight_scale"));
    int32_t ids[QU_N_PROBE];
    qu_small_probe(ids, V);
    got = qu_all_logits(m, ids, QU_N_PROBE);
    qu_expect_identical(got, want, QU_N_PROBE * V, "stacked F8 experts requantized, saved and reloaded");
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

JB_TEST(bad_checkpoint, row_scales_must_be_finite_positive_and_sane) {
    const float bad_values[] = {-0.5f, 1e38f, INFINITY, 0.0f};
    const char *shown[] = {"row 2 has scale -0.5", "row 2 has scale 1e+38", "row 2 has scale inf", "row 2 has scale 0"};
    for (int v = 0; v < 4; v++) {
        tensor_list l = {0};
        char *cfg = qu_fixture_tensors("tiny-hf", &l);
        quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
        ((float *)l.v[tl_find(&l, Q2 "_scale")].data)[2] = bad_values[v];
        expect_load_failure(cfg, &l, NULL, MISMATCH, (const char *[]){Q2 "_scale", shown[v], NULL});
        tl_free(&l);
        free(cfg);
    }
    /* a zero scale on a row of zeros is exact (jb_quantize_int8 writes it so) and loads */
    tensor_list l = {0};
    char *cfg = qu_fixture_tensors("tiny-hf", &l);
    quantize_tensor(&l, Q2, SCALE_ROWS, NULL);
    int64_t rows, cols;
    rows_cols(&l, tl_find(&l, Q2), &rows, &cols);
    memset((int8_t *)l.v[tl_find(&l, Q2)].data + 2 * cols, 0, (size_t)cols);
    ((float *)l.v[tl_find(&l, Q2 "_scale")].data)[2] = 0.0f;
    char *dir = qu_folder_of(cfg, &l);
    jamba_model *m = NULL;
    jamba_error err = {0};
    cr_assert_eq(jamba_model_load(dir, NULL, &m, &err), JAMBA_OK, "%s", err.message);
    jamba_model_free(m);
    tu_rmtree(dir);
    free(dir);
    tl_free(&l);
    free(cfg);
}

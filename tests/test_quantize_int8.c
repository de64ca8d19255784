/*
 * test_quantize_int8.c — jb_quantize_int8 on known values: per-row scales, round half to even, clamping,
 * every stored dtype (F32, BF16, F8_E4M3 and I8 with their scales), non-finite rows named, and E4M3 decoding.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ckpt/dtype.h"
#include "ckpt/quantize.h"
#include "tests/support/testutil.h"

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

/*
 * test_cpu_lowp.c — low-precision activations (jamba_context_params.cpu_activations): int8 weights times
 * int8 activations (I8), and bf16 weights times bf16 activations (BF16):
 *   jb_cpu_quantize_rows  the documented scale, rounding (half to even), offset and padding; rows of zeros
 *                         and rows holding NaN or ±Inf
 *   gemm_q8               every kernel set this CPU runs, bit-exact against the integer formula of
 *                         cpu/kernels.h on odd shapes (K past any step, every tile remainder, one and several
 *                         rows), with and without a bias, however the columns are split
 *   jb_cpu_matmul_ex      through pools of 1-3 threads: the kernel's bits; without the buffer, for float
 *                         weights, or for rows the buffer cannot hold: jb_cpu_matmul's
 *   contexts              the parameter's checks; the demo's logits with --weights int8 and I8 activations
 *                         bit-identical across thread counts and chunkings, and the CLI option
 *   jb_cpu_round_rows_bf16  rounding to nearest even, NaN, padding
 *   gemm_b16              every kernel set, bit-exact against a scalar emulation of kernels.h's order
 *                         (vdpbf16ps's) on odd shapes, however the columns are split; the demo's logits with
 *                         BF16 activations bit-identical across thread counts and chunkings
 * (Their accuracy against fp32 activations is in test_quantize_accuracy.c.)
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu_features.h"
#include "ckpt/dtype.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"
#include "tests/support/kernel_sets.h"
#include "tests/support/quantize_util.h"
#include "tests/support/testutil.h"

static uint32_t rng = 12345;

static uint32_t next(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* Uniform in [-1, 1). */
static float signed_unit(void) { return (float)(next() % 2000001) / 1000000.0f - 1.0f; }

/* ---- quantizing activation rows --------------------------------------------------------------------- */

JB_TEST(q8, quantize_rows_scale_rounding_offset_and_padding) {
    const float X[2][5] = {{0.5f, -1.0f, 0.25f, 0.0f, 1.5f / 127.0f}, {0, 0, 0, 0, 0}};
    uint8_t q[2][64];
    float sx[2];
    memset(q, 0xaa, sizeof q);
    jb_cpu_quantize_rows(&X[0][0], 2, 5, &q[0][0], 64, sx, 0);
    cr_assert_eq(sx[0], 1.0f / 127.0f);
    /* 0.5 · 127 = 63.5 -> 64 (even), -127, 31.75 -> 32, 0, 1.5 -> 2 (even) */
    const int8_t want[5] = {64, -127, 32, 0, 2};
    for (int k = 0; k < 5; k++)
        cr_assert_eq((int8_t)q[0][k], want[k], "element %d: %d", k, (int8_t)q[0][k]);
    for (int k = 5; k < 64; k++)
        cr_assert_eq(q[0][k], 0, "padding %d", k);
    cr_assert_eq(sx[1], 0.0f, "a row of zeros has scale 0");
    for (int k = 0; k < 64; k++)
        cr_assert_eq(q[1][k], 0);
    jb_cpu_quantize_rows(&X[0][0], 1, 5, &q[0][0], 64, sx, 128); /* VNNI's unsigned bytes */
    for (int k = 0; k < 5; k++)
        cr_assert_eq(q[0][k], (uint8_t)(want[k] + 128));
    cr_assert_eq(q[0][63], 128);
}

JB_TEST(q8, quantize_rows_too_small_to_scale_are_zeros) {
    const float tiny[3] = {1e-38f, -2e-38f, 0.0f}; /* 127 / max overflows */
    uint8_t q[64];
    float sx;
    jb_cpu_quantize_rows(tiny, 1, 3, q, 64, &sx, 128);
    cr_assert_eq(sx, 0.0f);
    for (int k = 0; k < 64; k++)
        cr_assert_eq(q[k], 128, "element %d: %d", k, q[k]);
}

JB_TEST(q8, quantize_rows_non_finite_rows_get_nan_scales) {
    const float bad[3][3] = {{1.0f, NAN, 2.0f}, {-INFINITY, 1.0f, 0.0f}, {1.0f, 2.0f, -4.0f}};
    uint8_t q[3][64];
    float sx[3];
    jb_cpu_quantize_rows(&bad[0][0], 3, 3, &q[0][0], 64, sx, 0);
    cr_assert(isnan(sx[0]) && isnan(sx[1]), "%g %g", sx[0], sx[1]);
    cr_assert_eq(sx[2], 4.0f / 127.0f, "the next row is unaffected");
    cr_assert_eq((int8_t)q[2][2], -127);
}

/* ---- the kernels ------------------------------------------------------------------------------------ */

/* A product's inputs: X [T, K], W [N, K] int8 with row scales, bias [N]. */
typedef struct product {
    int64_t T, K, N;
    float *X, *scale, *bias;
    int8_t *W;
} product;

static product random_product(int64_t T, int64_t K, int64_t N) {
    product p = {T, K, N, malloc((size_t)(T * K) * sizeof(float)), malloc((size_t)N * sizeof(float)),
                 malloc((size_t)N * sizeof(float)), malloc((size_t)(N * K))};
    for (int64_t i = 0; i < T * K; i++)
        p.X[i] = signed_unit() * (i % 7 == 0 ? 8.0f : 1.0f);
    for (int64_t i = 0; i < N * K; i++)
        p.W[i] = (int8_t)((int)(next() % 255) - 127);
    for (int64_t n = 0; n < N; n++)
        p.scale[n] = 0.001f + 0.01f * (signed_unit() + 1.0f), p.bias[n] = signed_unit();
    return p;
}

static void free_product(product *p) { free(p->X), free(p->scale), free(p->bias), free(p->W); }

/* y[t, n] by kernels.h's formula from the stored bytes (signed, or unsigned xq + offset): the exact integer
 * sum, then two fp32 products. */
static void reference(const product *p, const uint8_t *Xq, int64_t ldq, int offset, const float *sx,
                      const float *bias, float *Y) {
    for (int64_t t = 0; t < p->T; t++)
        for (int64_t n = 0; n < p->N; n++) {
            int64_t sum = 0;
            for (int64_t k = 0; k < p->K; k++)
                sum += (int64_t)(offset ? (int)Xq[t * ldq + k] - offset : (int8_t)Xq[t * ldq + k]) * p->W[n * p->K + k];
            const float y = ((float)sum * sx[t]) * p->scale[n];
            Y[t * p->N + n] = bias ? y + bias[n] : y;
        }
}

JB_TEST(q8, gemm_q8_exact_every_set_and_odd_shape) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    const int64_t Ks[] = {1, 13, 64, 100, 257}, Ns[] = {1, 2, 5, 9, 33};
    for (size_t a = 0; a < sizeof Ts / sizeof Ts[0]; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++)
            for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++) {
                product p = random_product(Ts[a], Ks[b], Ns[c]);
                const int64_t ldq = jb_cpu_lowp_row_bytes(p.K, 1), T = p.T, N = p.N;
                uint8_t *Xq = malloc((size_t)(T * ldq));
                float *sx = malloc((size_t)T * sizeof(float)), *want = malloc((size_t)(T * N) * sizeof(float));
                float *got = malloc((size_t)(T * N) * sizeof(float));
                for (int s = 0; s < n_sets; s++)
                    for (int with_bias = 0; with_bias < 2; with_bias++) {
                        const float *bias = with_bias ? p.bias : NULL;
                        jb_cpu_quantize_rows(p.X, T, p.K, Xq, ldq, sx, sets[s]->q8_offset);
                        reference(&p, Xq, ldq, sets[s]->q8_offset, sx, bias, want);
                        memset(got, 0xff, (size_t)(T * N) * sizeof(float));
                        const jb_gemm_lowp_args g = {Xq, sx, T, p.K, ldq, N, p.W, p.scale, bias, got};
                        const int64_t cut = N / 3; /* two column ranges, as threads take them */
                        sets[s]->gemm_q8(&g, 0, cut);
                        sets[s]->gemm_q8(&g, cut, N);
                        for (int64_t i = 0; i < T * N; i++)
                            cr_assert_eq(memcmp(&got[i], &want[i], sizeof(float)), 0,
                                         "%s: T %lld K %lld N %lld bias %d: [%lld] %.9g, not %.9g",
                                         jb_cpu_kernels_name(sets[s]->set), (long long)T, (long long)p.K,
                                         (long long)N, with_bias, (long long)i, got[i], want[i]);
                    }
                free(Xq), free(sx), free(want), free(got);
                free_product(&p);
            }
}

/* Every set gives the same bits (the sums are exact and the rest is scalar), and they are near the float
 * product: within the quantization's error. */
JB_TEST(q8, gemm_q8_sets_agree_and_approximate_the_float_product) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    product p = random_product(6, 1000, 40);
    const int64_t ldq = jb_cpu_lowp_row_bytes(p.K, 1), T = p.T, N = p.N;
    uint8_t *Xq = malloc((size_t)(T * ldq));
    float sx[6], first[6 * 40], got[6 * 40];
    for (int s = 0; s < n_sets; s++) {
        jb_cpu_quantize_rows(p.X, T, p.K, Xq, ldq, sx, sets[s]->q8_offset);
        const jb_gemm_lowp_args g = {Xq, sx, T, p.K, ldq, N, p.W, p.scale, NULL, s ? got : first};
        sets[s]->gemm_q8(&g, 0, N);
        if (s)
            cr_assert_eq(memcmp(got, first, sizeof got), 0, "%s", jb_cpu_kernels_name(sets[s]->set));
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double exact = 0, mag = 0;
            for (int64_t k = 0; k < p.K; k++) {
                const double v = (double)p.X[t * p.K + k] * p.W[n * p.K + k] * p.scale[n];
                exact += v, mag += fabs(v);
            }
            cr_assert_leq(fabs(first[t * N + n] - exact), 0.01 * mag, "[%lld, %lld]: %g vs %g", (long long)t,
                          (long long)n, first[t * N + n], exact);
        }
    free(Xq);
    free_product(&p);
}

/* ---- through the pool ------------------------------------------------------------------------------- */

JB_TEST(q8, matmul_ex_same_bits_every_thread_count_and_falls_back) {
    product p = random_product(9, 300, 37);
    const int64_t T = p.T, N = p.N, ldq = jb_cpu_lowp_row_bytes(p.K, 1);
    jb_weight w = {p.W, JAMBA_DTYPE_I8, 2, {N, p.K, 0}, p.scale};
    uint8_t *rows = malloc((size_t)(T * ldq));
    float sx[9], Y[9 * 37], Z[9 * 37], F[9 * 37];
    const jb_cpu_kernel_table *kt = jb_cpu_kernels_active();
    uint8_t *Xq = malloc((size_t)(T * ldq));
    float want_sx[9];
    jb_cpu_quantize_rows(p.X, T, p.K, Xq, ldq, want_sx, kt->q8_offset);
    const jb_gemm_lowp_args g = {Xq, want_sx, T, p.K, ldq, N, p.W, p.scale, p.bias, Z};
    kt->gemm_q8(&g, 0, N);
    for (int threads = 1; threads <= 3; threads++) {
        jb_pool *pool = NULL;
        cr_assert_eq(jb_pool_create(threads, &pool, NULL), JAMBA_OK);
        const jb_cpu_exec ex = {pool, JAMBA_DTYPE_I8, rows, sx, T, ldq};
        jb_cpu_matmul_ex(&ex, Y, p.X, T, &w, p.bias);
        cr_assert_eq(memcmp(Y, Z, sizeof Y), 0, "%d threads", threads);
        /* no buffer, or one too small for the rows: the fp32-activation product */
        jb_cpu_matmul(pool, F, p.X, T, &w, p.bias);
        const jb_cpu_exec none = {.pool = pool}, small = {pool, JAMBA_DTYPE_I8, rows, sx, T - 1, ldq};
        jb_cpu_matmul_ex(&none, Y, p.X, T, &w, p.bias);
        cr_assert_eq(memcmp(Y, F, sizeof Y), 0);
        jb_cpu_matmul_ex(&small, Y, p.X, T, &w, p.bias);
        cr_assert_eq(memcmp(Y, F, sizeof Y), 0);
        jb_pool_free(pool);
    }
    free(rows), free(Xq);
    free_product(&p);
}

/* ---- contexts --------------------------------------------------------------------------------------- */

JB_TEST(q8, context_checks_the_parameter) {
    jamba_model *m = qu_load_formats(QU_DEMO, QU_ALL_INT8);
    jamba_context_params p = jamba_context_default_params();
    cr_assert_eq(p.cpu_activations, JAMBA_DTYPE_F32, "the default");
    jamba_context *ctx = NULL;
    jamba_error err = {0};
    p.cpu_activations = JAMBA_DTYPE_F16;
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "cpu_activations F16 (F32, I8 or BF16)") != NULL, "%s", err.message);
    cr_assert_null(ctx);
    p.cpu_activations = JAMBA_DTYPE_I8;
    p.device = JAMBA_DEVICE_CUDA;
    jamba_context_plan plan;
    cr_assert_eq(jamba_context_plan_memory(m, &p, &plan, &err), JAMBA_ERR_UNSUPPORTED);
    cr_assert(strstr(err.message, "cpu_activations I8 is a CPU option") != NULL, "%s", err.message);
    p.device = JAMBA_DEVICE_CPU;
    cr_assert_eq(jamba_context_create(m, &p, &ctx, &err), JAMBA_OK, "%s", err.message);
    jamba_context_free(ctx);
    jamba_model_free(m);
}

/* The demo with every projection int8 and I8 activations, every operation split between threads: logits
 * identical for 1, 2 and 3 threads and for chunks of 5 tokens, and not those of F32 activations. */
JB_TEST(q8, model_logits_same_bits_across_threads_and_chunks) {
    setenv("JAMBA_CPU_MIN_PARALLEL_WORK", "0", 1);
    jamba_model *m = qu_load_formats(QU_DEMO, QU_ALL_INT8);
    float *i8 = qu_expect_split_invariant(m, JAMBA_DTYPE_I8);
    float *f32 = qu_expect_split_invariant(m, JAMBA_DTYPE_F32);
    cr_assert_neq(memcmp(f32, i8, (size_t)(QU_SPLIT_TOKENS * jamba_model_config(m)->vocab_size) * sizeof(float)), 0,
                  "I8 activations were used");
    free(f32), free(i8);
    jamba_model_free(m);
}

JB_TEST(q8, cli_activations_option) {
    char *out = NULL, *errs = NULL;
    const char *const bad[] = {JB_CLI_PATH, "generate", "--model", QU_DEMO, "-n", "2", "--activations", "int4", NULL};
    cr_assert_neq(tu_run(bad, &out, &errs), 0);
    cr_assert(strstr(errs, "--activations int4: expected int8, bf16 or f32") != NULL, "%s", errs);
    free(out), free(errs);
    const char *const gpu[] = {JB_CLI_PATH, "generate", "--model", QU_DEMO, "-n", "2", "--device", "cuda",
                               "--activations", "int8", NULL};
    cr_assert_neq(tu_run(gpu, &out, &errs), 0);
    cr_assert(strstr(errs, "--activations int8 is a CPU option") != NULL, "%s", errs);
    free(out), free(errs);
    const char *const ok[] = {JB_CLI_PATH, "generate", "--model", QU_DEMO, "-n", "8", "--temperature", "0",
                              "--weights", "int8", "--activations", "int8", "--prompt", "ROMEO:", NULL};
    cr_assert_eq(tu_run(ok, &out, &errs), 0, "%s", errs);
    cr_assert(strncmp(out, "ROMEO:", 6) == 0 && strlen(out) > 7, "%s", out);
    free(out), free(errs);
}

/* ---- bf16 activations ------------------------------------------------------------------------------- */

JB_TEST(b16, round_rows_to_nearest_even_nan_and_padding) {
    const float X[4] = {1.0f, 1.0f + 0x1p-8f, 1.0f + 0x1p-7f + 0x1p-8f, NAN};
    uint16_t b[32];
    memset(b, 0xaa, sizeof b);
    jb_cpu_round_rows_bf16(X, 1, 4, b, 32);
    cr_assert_eq(b[0], 0x3f80);
    cr_assert_eq(b[1], 0x3f80, "a tie rounds to the even value: %#x", b[1]);
    cr_assert_eq(b[2], 0x3f82, "a tie rounds to the even value: %#x", b[2]);
    cr_assert((b[3] & 0x7f80) == 0x7f80 && (b[3] & 0x7f) != 0, "NaN stays NaN: %#x", b[3]);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(b[k], jb_f32_to_bf16(X[k]), "as jb_f32_to_bf16");
    for (int k = 4; k < 32; k++)
        cr_assert_eq(b[k], 0, "padding %d", k);
}

static float bf16_value(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* kernels.h's gemm_b16 order for a set of width vw: lane l adds the odd then the even value of its pair. */
static float emulate_b16(const uint16_t *x, const uint16_t *w, int64_t K, int vw, const float *bias) {
    float lane[16] = {0};
    for (int64_t k0 = 0; k0 < K; k0 += 2 * vw)
        for (int l = 0; l < vw; l++) {
            const int64_t e = k0 + 2 * l, o = e + 1;
            const float xo = o < K ? bf16_value(x[o]) : 0.0f, wo = o < K ? bf16_value(w[o]) : 0.0f;
            const float xe = e < K ? bf16_value(x[e]) : 0.0f, we = e < K ? bf16_value(w[e]) : 0.0f;
            lane[l] = fmaf(xe, we, fmaf(xo, wo, lane[l])); /* exact products: fused = rounded sum */
        }
    for (int h = vw / 2; h >= 1; h /= 2)
        for (int i = 0; i < h; i++)
            lane[i] = lane[i] + lane[i + h];
    return bias ? lane[0] + *bias : lane[0];
}

JB_TEST(b16, gemm_b16_exact_every_set_and_odd_shape) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    const int64_t Ks[] = {1, 13, 32, 100, 257}, Ns[] = {1, 2, 5, 9, 33};
    for (size_t a = 0; a < sizeof Ts / sizeof Ts[0]; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof Ks[0]; b++)
            for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++) {
                const int64_t T = Ts[a], K = Ks[b], N = Ns[c], ldb = jb_cpu_lowp_row_bytes(K, 2) / 2;
                float *X = malloc((size_t)(T * K) * sizeof(float)), *bias = malloc((size_t)N * sizeof(float));
                uint16_t *Xb = malloc((size_t)(T * ldb) * 2), *W = malloc((size_t)(N * K) * 2);
                float *want = malloc((size_t)(T * N) * sizeof(float)), *got = malloc((size_t)(T * N) * sizeof(float));
                for (int64_t i = 0; i < T * K; i++)
                    X[i] = 2.0f * signed_unit();
                for (int64_t i = 0; i < N * K; i++)
                    W[i] = jb_f32_to_bf16(2.0f * signed_unit());
                for (int64_t n = 0; n < N; n++)
                    bias[n] = signed_unit();
                jb_cpu_round_rows_bf16(X, T, K, Xb, ldb);
                for (int s = 0; s < n_sets; s++)
                    for (int with_bias = 0; with_bias < 2; with_bias++) {
                        const float *bi = with_bias ? bias : NULL;
                        for (int64_t t = 0; t < T; t++)
                            for (int64_t n = 0; n < N; n++)
                                want[t * N + n] = emulate_b16(Xb + t * ldb, W + n * K, K, sets[s]->vector_width,
                                                              bi ? bi + n : NULL);
                        memset(got, 0xff, (size_t)(T * N) * sizeof(float));
                        const jb_gemm_lowp_args g = {Xb, NULL, T, K, ldb, N, W, NULL, bi, got};
                        const int64_t cut = N / 3;
                        sets[s]->gemm_b16(&g, 0, cut);
                        sets[s]->gemm_b16(&g, cut, N);
                        for (int64_t i = 0; i < T * N; i++)
                            cr_assert_eq(memcmp(&got[i], &want[i], sizeof(float)), 0,
                                         "%s: T %lld K %lld N %lld bias %d: [%lld] %.9g, not %.9g",
                                         jb_cpu_kernels_name(sets[s]->set), (long long)T, (long long)K,
                                         (long long)N, with_bias, (long long)i, got[i], want[i]);
                    }
                free(X), free(bias), free(Xb), free(W), free(want), free(got);
            }
}

/* The demo (bf16 weights) with BF16 activations, every operation split: the same bits for 1-3 threads and
 * chunks of 5, close to and not equal to fp32 activations. */
JB_TEST(b16, model_logits_same_bits_across_threads_and_chunks) {
    setenv("JAMBA_CPU_MIN_PARALLEL_WORK", "0", 1);
    jamba_model *m = qu_load_plain(QU_DEMO);
    float *b16 = qu_expect_split_invariant(m, JAMBA_DTYPE_BF16);
    float *f32 = qu_expect_split_invariant(m, JAMBA_DTYPE_F32);
    const int64_t n = QU_SPLIT_TOKENS * jamba_model_config(m)->vocab_size;
    cr_assert_neq(memcmp(f32, b16, (size_t)n * sizeof(float)), 0, "BF16 activations were used");
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < n; i++)
        diff += ((double)b16[i] - f32[i]) * ((double)b16[i] - f32[i]), norm += (double)f32[i] * f32[i];
    cr_assert_leq(sqrt(diff / norm), 0.02, "relative L2 %.3g", sqrt(diff / norm));
    free(f32), free(b16);
    jamba_model_free(m);
}

/* ---- long rows and large weights: bit for bit on every set ---------------------------------------------- */

/* bf16 weights [N, K] of random values. */
static uint16_t *random_bf16(int64_t N, int64_t K) {
    uint16_t *w = malloc((size_t)(N * K) * 2);
    for (int64_t i = 0; i < N * K; i++)
        w[i] = jb_f32_to_bf16(signed_unit());
    return w;
}

/* Every set's int8 product of p, and its bf16 product of p's rows with Wb [N, K], against the exact reference
 * and the bf16 emulation, bit for bit. */
static void expect_every_set_exact(const product *p, const uint16_t *Wb) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t T = p->T, K = p->K, N = p->N;
    const int64_t ldq = jb_cpu_lowp_row_bytes(K, 1), ldb = jb_cpu_lowp_row_bytes(K, 2) / 2;
    uint8_t *Xq = malloc((size_t)(T * ldq));
    uint16_t *Xb = malloc((size_t)(T * ldb) * 2);
    float *sx = malloc((size_t)T * sizeof(float)), *want = malloc((size_t)(T * N) * sizeof(float));
    float *got = malloc((size_t)(T * N) * sizeof(float));
    const size_t bytes = (size_t)(T * N) * sizeof(float);
    jb_cpu_round_rows_bf16(p->X, T, K, Xb, ldb);
    for (int s = 0; s < n_sets; s++) {
        jb_cpu_quantize_rows(p->X, T, K, Xq, ldq, sx, sets[s]->q8_offset);
        reference(p, Xq, ldq, sets[s]->q8_offset, sx, p->bias, want);
        const jb_gemm_lowp_args q = {Xq, sx, T, K, ldq, N, p->W, p->scale, p->bias, got};
        sets[s]->gemm_q8(&q, 0, N);
        cr_assert_eq(memcmp(got, want, bytes), 0, "%s: int8, T %lld K %lld N %lld", jb_cpu_kernels_name(sets[s]->set),
                     (long long)T, (long long)K, (long long)N);
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++)
                want[t * N + n] = emulate_b16(Xb + t * ldb, Wb + n * K, K, sets[s]->vector_width, NULL);
        const jb_gemm_lowp_args b = {Xb, NULL, T, K, ldb, N, Wb, NULL, NULL, got};
        sets[s]->gemm_b16(&b, 0, N);
        cr_assert_eq(memcmp(got, want, bytes), 0, "%s: bf16, T %lld K %lld N %lld", jb_cpu_kernels_name(sets[s]->set),
                     (long long)T, (long long)K, (long long)N);
    }
    free(Xq), free(Xb), free(sx), free(want), free(got);
}

/* Several row chunks per product (each a fresh start of the int8 tiles' weight sums). */
JB_TEST(lowp, long_rows_over_several_chunks_every_set) {
    product p = random_product(27, 20000, 9); /* chunks of 12 (int8) and 4 (bf16) rows, and their leftovers */
    uint16_t *Wb = random_bf16(p.N, p.K);
    expect_every_set_exact(&p, Wb);
    free(Wb);
    free_product(&p);
}

/* Weights of a mebibyte and more, the size from which products of up to 8 rows read two streams (AVX-512) and
 * those of 2+ rows fetch ahead: the same sums (the walk and fetching ahead only move memory). */
JB_TEST(lowp, weights_over_a_mebibyte_every_set) {
    const int64_t Ts[] = {2, 5, 8};
    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
        product p = random_product(Ts[c], 1024, 1024); /* int8: exactly 1 MiB; bf16: 2 MiB */
        uint16_t *Wb = random_bf16(p.N, p.K);
        expect_every_set_exact(&p, Wb);
        free(Wb);
        free_product(&p);
    }
}

/* ---- fused jobs ------------------------------------------------------------------------------------ */

/* jb_cpu_matmul_parts (three gated parts of different row counts, then plain ones) = separate products and the
 * kernels' silu_mul, bit for bit: with fp32, int8 and bf16 activations, and with a buffer too small for all
 * parts' rows (the later parts then multiply fp32 activations, as jb_cpu_matmul_ex does without a buffer). */
JB_TEST(lowp, parts_equal_separate_products) {
    enum { P = 3, K = 70, I = 21, ROWS = 2 + 5 + 1 };
    const int64_t Ts[P] = {2, 5, 1};
    const jamba_dtype kinds[][2] = {{JAMBA_DTYPE_I8, JAMBA_DTYPE_F32}, {JAMBA_DTYPE_I8, JAMBA_DTYPE_I8},
                                    {JAMBA_DTYPE_BF16, JAMBA_DTYPE_BF16}, {JAMBA_DTYPE_I8, JAMBA_DTYPE_I8}};
    jb_pool *pool = NULL;
    cr_assert_eq(jb_pool_create(2, &pool, NULL), JAMBA_OK);
    const int64_t row_bytes = jb_cpu_lowp_row_bytes(K, 2);
    uint8_t *rows = malloc((size_t)(ROWS * row_bytes));
    float scales[ROWS];
    for (size_t v = 0; v < sizeof kinds / sizeof kinds[0]; v++) {
        const jamba_dtype wt = kinds[v][0];
        const int64_t rows_max = v == 3 ? 4 : ROWS; /* the last variant: only the first part fits */
        const jb_cpu_exec ex = {pool, kinds[v][1], rows, scales, rows_max, row_bytes};
        product pg[P], pu[P];
        uint16_t *bg[P], *bu[P];
        jb_weight wg[P], wu[P];
        float *G[P], *U[P], *G2[P], *U2[P];
        jb_cpu_part parts[P];
        for (int i = 0; i < P; i++) {
            pg[i] = random_product(Ts[i], K, I), pu[i] = random_product(Ts[i], K, I);
            bg[i] = malloc((size_t)(I * K) * 2), bu[i] = malloc((size_t)(I * K) * 2);
            for (int64_t e = 0; e < I * K; e++)
                bg[i][e] = jb_f32_to_bf16(signed_unit()), bu[i][e] = jb_f32_to_bf16(signed_unit());
            const bool b16 = wt == JAMBA_DTYPE_BF16;
            wg[i] = (jb_weight){b16 ? (void *)bg[i] : (void *)pg[i].W, wt, 2, {I, K, 0}, b16 ? NULL : pg[i].scale};
            wu[i] = (jb_weight){b16 ? (void *)bu[i] : (void *)pu[i].W, wt, 2, {I, K, 0}, b16 ? NULL : pu[i].scale};
            G[i] = malloc((size_t)(Ts[i] * I) * sizeof(float)), U[i] = malloc((size_t)(Ts[i] * I) * sizeof(float));
            G2[i] = malloc((size_t)(Ts[i] * I) * sizeof(float)), U2[i] = malloc((size_t)(Ts[i] * I) * sizeof(float));
            parts[i] = (jb_cpu_part){pg[i].X, Ts[i], &wg[i], &wu[i], G[i], U[i]};
        }
        jb_cpu_matmul_parts(&ex, parts, P);
        for (int i = 0; i < P; i++) {
            const bool fits = v != 3 || i == 0;
            const jb_cpu_exec one = fits ? (jb_cpu_exec){pool, kinds[v][1], rows, scales, ROWS, row_bytes}
                                         : (jb_cpu_exec){.pool = pool};
            jb_cpu_matmul_ex(&one, G2[i], pg[i].X, Ts[i], &wg[i], NULL);
            jb_cpu_matmul_ex(&one, U2[i], pg[i].X, Ts[i], &wu[i], NULL);
            jb_cpu_kernels_active()->silu_mul(G2[i], U2[i], Ts[i] * I);
            cr_assert_eq(memcmp(U[i], U2[i], (size_t)(Ts[i] * I) * sizeof(float)), 0, "variant %zu part %d: up", v, i);
            cr_assert_eq(memcmp(G[i], G2[i], (size_t)(Ts[i] * I) * sizeof(float)), 0, "variant %zu part %d: gated", v, i);
        }
        for (int i = 0; i < P; i++) {
            free_product(&pg[i]), free_product(&pu[i]);
            free(bg[i]), free(bu[i]), free(G[i]), free(U[i]), free(G2[i]), free(U2[i]);
        }
    }
    free(rows);
    jb_pool_free(pool);
}

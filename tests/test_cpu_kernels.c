/*
 * test_cpu_kernels.c — every CPU kernel set this machine can run (cpu/kernels.h) against plain loops on odd
 * shapes (K not a multiple of any vector width, odd N and T, every weight dtype):
 *   gemm       bit-exact against a scalar emulation of the documented order (VW lanes, zero padding,
 *              pairwise lane sum; fused multiply-add in the SIMD sets), and within 1e-6 of Σ|x·w| of a
 *              double-precision loop; identical however columns and rows are split (threads, steps)
 *   SiLU, softplus, -exp   portable: exactly libm's; SIMD: within 4 ulp of it (their vector exp and log)
 *   conv, scan portable: exactly the plain loops; SIMD: within 2e-6 relative (the exp above, carried state);
 *              token by token (the few-token walks) bit-identical to all tokens at once
 *   attention  within 1e-5 relative of the plain loop, identical across thread counts
 *   the pool   thousands of jobs back to back and after its workers fell asleep, every item once
 * and the selection itself: JAMBA_CPU_KERNELS=portable forces the portable set, and a model's logits are
 * bit-identical across thread counts and chunkings on the selected set with every operation split
 * (JAMBA_CPU_MIN_PARALLEL_WORK=0).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu_features.h"
#include "ckpt/dtype.h"
#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"
#include "tests/support/kernel_sets.h"
#include "tests/support/quantize_util.h"
#include "tests/support/testutil.h"

/* ---- helpers ------------------------------------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Uniform in [lo, hi). */
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() & 0xffffff) / 16777216.0f; }

/* Distance in representable floats (0 for equal values, also +0 and -0; NaN only matches NaN). */
static int64_t ulps(float a, float b) {
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    const int64_t oa = ia < 0 ? (int64_t)INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

static bool close_rel(float got, float want, double rel) {
    return fabs((double)got - want) <= rel * fmax(1.0, fabs(want));
}

/* ---- gemm --------------------------------------------------------------------------------------------- */

static const jamba_dtype DTYPES[] = {JAMBA_DTYPE_F32, JAMBA_DTYPE_F16, JAMBA_DTYPE_BF16, JAMBA_DTYPE_I8,
                                     JAMBA_DTYPE_F8_E4M3};

/* A random [N, K] matrix stored in dtype (rows of finite values; I8 and F8 with positive row scales), and
 * the fp32 values the kernels multiply: the stored values (a quantized row's sum is then times its scale). */
typedef struct matrix {
    jamba_dtype dtype;
    uint8_t *data; /* allocated one byte extra and used from an odd address */
    uint8_t *store;
    float *scale;  /* [N] or NULL */
    float *value;  /* [N, K] */
} matrix;

static uint16_t random_f16(void) {
    const uint32_t sign = next_u32() & 1, exp = next_u32() % 8 == 0 ? 0 : 10 + next_u32() % 8, mant = next_u32() & 0x3ff;
    return (uint16_t)(sign << 15 | exp << 10 | mant); /* subnormals too, |v| < 8 */
}

static matrix random_matrix(jamba_dtype dt, int64_t N, int64_t K) {
    const size_t es = jamba_dtype_size(dt);
    matrix m = {dt, malloc((size_t)(N * K) * es + 1), NULL, NULL, malloc((size_t)(N * K) * sizeof(float))};
    m.store = m.data + 1;
    if (dt == JAMBA_DTYPE_I8 || dt == JAMBA_DTYPE_F8_E4M3) {
        m.scale = malloc((size_t)N * sizeof(float));
        for (int64_t n = 0; n < N; n++)
            m.scale[n] = uniform(0.001f, 0.05f);
    }
    for (int64_t i = 0; i < N * K; i++) {
        uint8_t *p = m.store + (size_t)i * es;
        if (dt == JAMBA_DTYPE_F32) {
            const float v = uniform(-1, 1);
            memcpy(p, &v, 4);
        } else if (dt == JAMBA_DTYPE_BF16 || dt == JAMBA_DTYPE_F16) {
            const uint16_t h = dt == JAMBA_DTYPE_BF16 ? jb_f32_to_bf16(uniform(-2, 2)) : random_f16();
            memcpy(p, &h, 2);
        } else if (dt == JAMBA_DTYPE_I8) {
            *p = (uint8_t)(int8_t)((int)(next_u32() % 255) - 127);
        } else {
            do
                *p = (uint8_t)next_u32();
            while ((*p & 0x7f) == 0x7f); /* no NaN */
        }
        jb_to_f32(&m.value[i], p, dt, 1);
    }
    return m;
}

static void free_matrix(matrix *m) {
    free(m->data);
    free(m->scale);
    free(m->value);
}

/* Kept out of line so that no compiler contracts them into a fused multiply-add. */
__attribute__((noinline)) static float mul(float a, float b) { return a * b; }
__attribute__((noinline)) static float add(float a, float b) { return a + b; }

/* One output element in the order kernels.h documents for a set of width vw. */
static float emulate(const float *x, const float *w, int64_t K, int vw, bool fused, const float *scale,
                     const float *bias) {
    float lane[16] = {0};
    for (int64_t k0 = 0; k0 < K; k0 += vw)
        for (int l = 0; l < vw; l++) {
            const float xv = k0 + l < K ? x[k0 + l] : 0.0f, wv = k0 + l < K ? w[k0 + l] : 0.0f;
            lane[l] = fused ? fmaf(xv, wv, lane[l]) : add(mul(xv, wv), lane[l]);
        }
    for (int h = vw / 2; h >= 1; h /= 2)
        for (int i = 0; i < h; i++)
            lane[i] = lane[i] + lane[i + h];
    const float y = scale ? lane[0] * *scale : lane[0];
    return bias ? y + *bias : y;
}

static jb_gemm_args gemm_args(const matrix *m, const float *X, int64_t T, int64_t K, int64_t N, const float *bias,
                              float *Y) {
    return (jb_gemm_args){X, T, K, N, m->store, m->dtype, m->scale, bias, Y};
}

JB_TEST(kernels, gemm_exact_order_every_set_dtype_and_odd_shape) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    /* T: whole tiles and every count of rows left over (narrow tiles, some with columns past N); the last
     * shape's 203 weight rows span two or three panels of the row-tiles-first walk (gemm_dtype) for the 1- and
     * 2-byte dtypes (the 1-byte ones only on the portable set), with rows left over on every set (11 = 2 x 4
     * + 3 = 3 x 3 + 2 = 5 x 2 + 1) */
    static const int64_t shapes[][3] = {{1, 1, 1},    {1, 19, 13},  {2, 33, 5},  {7, 100, 11}, {13, 47, 9},
                                        {1, 129, 37}, {3, 70, 18},  {5, 40, 21}, {6, 35, 13},  {11, 1000, 203}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t T = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        float *X = malloc((size_t)(T * K) * sizeof(float)), *Y = malloc((size_t)(T * N) * sizeof(float));
        float *bias = malloc((size_t)N * sizeof(float));
        for (int64_t i = 0; i < T * K; i++)
            X[i] = uniform(-2, 2);
        for (int64_t n = 0; n < N; n++)
            bias[n] = uniform(-1, 1);
        for (size_t d = 0; d < sizeof DTYPES / sizeof DTYPES[0]; d++) {
            matrix m = random_matrix(DTYPES[d], N, K);
            for (int s = 0; s < n_sets; s++)
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    const float *b = with_bias ? bias : NULL;
                    jb_gemm_args a = gemm_args(&m, X, T, K, N, b, Y);
                    sets[s]->gemm(&a, 0, N);
                    for (int64_t t = 0; t < T; t++)
                        for (int64_t n = 0; n < N; n++) {
                            const float want = emulate(X + t * K, m.value + n * K, K, sets[s]->vector_width,
                                                       sets[s]->set != JB_CPU_KERNELS_PORTABLE,
                                                       m.scale ? &m.scale[n] : NULL, b ? &b[n] : NULL);
                            const double row_scale = m.scale ? m.scale[n] : 1.0;
                            double ref = b ? b[n] : 0, mag = b ? fabs(b[n]) : 0;
                            for (int64_t k = 0; k < K; k++) {
                                ref += (double)X[t * K + k] * m.value[n * K + k] * row_scale;
                                mag += fabs((double)X[t * K + k] * m.value[n * K + k] * row_scale);
                            }
                            const float got = Y[t * N + n];
                            cr_assert_eq(memcmp(&got, &want, 4), 0, "%s %s T%lld K%lld N%lld [%lld,%lld]: %.9g, order says %.9g",
                                         jb_cpu_kernels_name(sets[s]->set), jamba_dtype_name(DTYPES[d]), (long long)T,
                                         (long long)K, (long long)N, (long long)t, (long long)n, got, want);
                            cr_assert_leq(fabs(got - ref), 1e-6 * mag + 1e-30, "%s %s: %.9g vs %.9g",
                                          jb_cpu_kernels_name(sets[s]->set), jamba_dtype_name(DTYPES[d]), got, ref);
                        }
                }
            free_matrix(&m);
        }
        free(X), free(Y), free(bias);
    }
}

/* Columns in any ranges (threads) and rows in any chunks (steps) give the same bits. */
JB_TEST(kernels, gemm_same_bits_however_split) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t T = 23, K = 77, N = 29;
    float *X = malloc((size_t)(T * K) * sizeof(float)), *Y = malloc((size_t)(T * N) * sizeof(float));
    float *Z = malloc((size_t)(T * N) * sizeof(float));
    for (int64_t i = 0; i < T * K; i++)
        X[i] = uniform(-2, 2);
    for (size_t d = 0; d < sizeof DTYPES / sizeof DTYPES[0]; d++) {
        matrix m = random_matrix(DTYPES[d], N, K);
        for (int s = 0; s < n_sets; s++) {
            jb_gemm_args whole = gemm_args(&m, X, T, K, N, NULL, Y);
            sets[s]->gemm(&whole, 0, N);
            for (int64_t cut = 1; cut < N; cut += 3) /* columns in two ranges, rows one at a time or in threes */
                for (int64_t rows = 1; rows <= 3; rows += 2) {
                    memset(Z, 0xff, (size_t)(T * N) * sizeof(float));
                    for (int64_t t = 0; t < T; t += rows) {
                        const int64_t n_rows = T - t < rows ? T - t : rows;
                        jb_gemm_args part = gemm_args(&m, X + t * K, n_rows, K, N, NULL, Z + t * N);
                        sets[s]->gemm(&part, 0, cut);
                        sets[s]->gemm(&part, cut, N);
                    }
                    cr_assert_eq(memcmp(Y, Z, (size_t)(T * N) * sizeof(float)), 0, "%s %s cut %lld rows %lld",
                                 jb_cpu_kernels_name(sets[s]->set), jamba_dtype_name(DTYPES[d]), (long long)cut,
                                 (long long)rows);
                }
        }
        free_matrix(&m);
    }
    free(X), free(Y), free(Z);
}

/* Every operation split between all threads, however small (read once per process: each test runs in its
 * own process). */
static void split_everything(void) { setenv("JAMBA_CPU_MIN_PARALLEL_WORK", "0", 1); }

/* jb_cpu_matmul through pools of 1, 2 and 5 threads. */
JB_TEST(kernels, matmul_same_bits_for_every_thread_count) {
    split_everything();
    const int64_t T = 9, K = 61, N = 53;
    float *X = malloc((size_t)(T * K) * sizeof(float)), *Y[3];
    for (int64_t i = 0; i < T * K; i++)
        X[i] = uniform(-2, 2);
    matrix m = random_matrix(JAMBA_DTYPE_BF16, N, K);
    jb_weight w = {m.store, m.dtype, 2, {N, K, 0}, NULL};
    const int threads[3] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
        jb_pool *pool = NULL;
        cr_assert_eq(jb_pool_create(threads[i], &pool, NULL), JAMBA_OK);
        Y[i] = malloc((size_t)(T * N) * sizeof(float));
        jb_cpu_matmul(pool, Y[i], X, 1, &w, NULL); /* a decode row, then the rest as one step */
        jb_cpu_matmul(pool, Y[i] + N, X + K, T - 1, &w, NULL);
        jb_pool_free(pool);
    }
    for (int i = 1; i < 3; i++)
        cr_assert_eq(memcmp(Y[0], Y[i], (size_t)(T * N) * sizeof(float)), 0, "%d threads", threads[i]);
    for (int i = 0; i < 3; i++)
        free(Y[i]);
    free(X);
    free_matrix(&m);
}

/* ---- elementwise ------------------------------------------------------------------------------------- */

/* Values across every range the functions treat differently, plus the special ones; *n their count. */
static float *sweep(int64_t *n) {
    static const float special[] = {0.0f, -0.0f, 20.0f, 20.000002f, 19.999998f, -20.0f, 88.7f, 89.5f, -87.4f,
                                    -103.9f, -104.5f, 1e-8f, -1e-8f, 1e-30f, INFINITY, -INFINITY, NAN};
    const int64_t n_special = sizeof special / sizeof special[0], n_rand = 20001;
    float *v = malloc((size_t)(n_special + n_rand) * sizeof(float));
    memcpy(v, special, sizeof special);
    for (int64_t i = 0; i < n_rand; i++) /* odd count: the last vector is partial */
        v[n_special + i] = i % 4 == 0 ? uniform(-120, 120) : i % 4 == 1 ? uniform(-30, 30) : uniform(-3, 3);
    *n = n_special + n_rand;
    return v;
}

JB_TEST(kernels, silu_softplus_and_exp_within_4_ulp_of_libm) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    int64_t n;
    float *x = sweep(&n), *y = malloc((size_t)n * sizeof(float)), *ones = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        ones[i] = 1.0f;
    for (int s = 0; s < n_sets; s++) {
        const int64_t limit = sets[s]->set == JB_CPU_KERNELS_PORTABLE ? 0 : 4;
        int64_t worst[3] = {0, 0, 0};
        memcpy(y, x, (size_t)n * sizeof(float));
        sets[s]->silu_mul(y, ones, n);
        for (int64_t i = 0; i < n; i++) {
            const int64_t u = ulps(y[i], jb_silu(x[i]));
            worst[0] = u > worst[0] ? u : worst[0];
            cr_assert_leq(u, limit, "%s silu(%.9g) = %.9g, libm %.9g", jb_cpu_kernels_name(sets[s]->set), x[i], y[i],
                          jb_silu(x[i]));
        }
        memcpy(y, x, (size_t)n * sizeof(float));
        sets[s]->softplus(y, n);
        for (int64_t i = 0; i < n; i++) {
            const int64_t u = ulps(y[i], jb_softplus(x[i]));
            worst[1] = u > worst[1] ? u : worst[1];
            cr_assert_leq(u, limit, "%s softplus(%.9g) = %.9g, libm %.9g", jb_cpu_kernels_name(sets[s]->set), x[i],
                          y[i], jb_softplus(x[i]));
        }
        sets[s]->neg_exp(y, x, n);
        for (int64_t i = 0; i < n; i++) {
            const int64_t u = ulps(y[i], -expf(x[i]));
            worst[2] = u > worst[2] ? u : worst[2];
            cr_assert_leq(u, limit, "%s -exp(%.9g) = %.9g, libm %.9g", jb_cpu_kernels_name(sets[s]->set), x[i], y[i],
                          -expf(x[i]));
        }
        cr_log_info("%s: silu within %lld ulp, softplus %lld, exp %lld", jb_cpu_kernels_name(sets[s]->set),
                    (long long)worst[0], (long long)worst[1], (long long)worst[2]);
    }
    free(x), free(y), free(ones);
}

/* ---- Mamba -------------------------------------------------------------------------------------------- */

/* The plain loops (the order cpu/mamba.h documents). */
static void plain_conv(const jb_conv_args *a) {
    const int64_t K = a->d_conv, Di = a->d_inner;
    for (int64_t c = 0; c < Di; c++) {
        const float *w = a->w + c * K;
        float *win = a->window + c * (K - 1);
        for (int64_t t = 0; t < a->n; t++) {
            float cur = a->x[t * a->ldx + c], acc = 0.0f;
            for (int64_t j = 0; j < K - 1; j++)
                acc = add(acc, mul(w[j], win[j]));
            acc = add(acc, mul(w[K - 1], cur));
            if (a->b)
                acc = add(acc, a->b[c]);
            a->out[t * Di + c] = jb_silu(acc);
            if (K > 1) {
                memmove(win, win + 1, (size_t)(K - 2) * sizeof *win);
                win[K - 2] = cur;
            }
        }
    }
}

static void plain_scan(const jb_scan_args *a) {
    const int64_t N = a->d_state, Di = a->d_inner;
    for (int64_t c = 0; c < Di; c++) {
        float *h = a->state + c * N;
        for (int64_t t = 0; t < a->n; t++) {
            const float dt = a->delta[t * Di + c], u = a->u[t * Di + c];
            const float *B = a->B + t * a->ldbc, *C = a->C + t * a->ldbc;
            float y = 0.0f;
            for (int64_t s = 0; s < N; s++) {
                h[s] = add(mul(expf(mul(a->A[c * N + s], dt)), h[s]), mul(mul(dt, B[s]), u));
                y = add(y, mul(h[s], C[s]));
            }
            y = add(y, mul(u, a->D[c]));
            a->y[t * Di + c] = mul(y, jb_silu(a->z[t * a->ldz + c]));
        }
    }
}

static float *random_floats(int64_t n, float lo, float hi) {
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        v[i] = uniform(lo, hi);
    return v;
}

static void expect_close(const float *got, const float *want, int64_t n, double rel, const char *set, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        if (rel == 0)
            cr_assert_eq(memcmp(&got[i], &want[i], 4), 0, "%s %s [%lld]: %.9g vs %.9g", set, what, (long long)i, got[i],
                         want[i]);
        else
            cr_assert(close_rel(got[i], want[i], rel), "%s %s [%lld]: %.9g vs %.9g", set, what, (long long)i, got[i],
                      want[i]);
    }
}

JB_TEST(kernels, conv_matches_plain_loop_on_odd_shapes) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t Di = 37, ldx = 41;
    for (int64_t case_ = 0; case_ < 8; case_++) { /* 1 and 7 tokens (decode and prefill walks), K 1, 3, 4, 5 */
        const int64_t n = case_ < 4 ? 1 : 7, K = (int64_t[]){1, 3, 4, 5}[case_ % 4];
        float *x = random_floats(n * ldx, -3, 3), *w = random_floats(Di * K, -1, 1), *b = random_floats(Di, -1, 1);
        float *win0 = random_floats(Di * (K - 1) + 1, -3, 3);
        float *want = malloc((size_t)(n * Di) * sizeof(float)), *got = malloc((size_t)(n * Di) * sizeof(float));
        float *want_win = malloc((size_t)(Di * (K - 1) + 1) * sizeof(float));
        float *got_win = malloc((size_t)(Di * (K - 1) + 1) * sizeof(float));
        memcpy(want_win, win0, (size_t)(Di * (K - 1)) * sizeof(float));
        jb_conv_args a = {.n = n, .d_inner = Di, .d_conv = K, .x = x, .ldx = ldx, .w = w, .b = b, .window = want_win,
                          .out = want};
        plain_conv(&a);
        for (int s = 0; s < n_sets; s++) {
            const double rel = sets[s]->set == JB_CPU_KERNELS_PORTABLE ? 0 : 2e-6;
            memcpy(got_win, win0, (size_t)(Di * (K - 1)) * sizeof(float));
            a.window = got_win, a.out = got;
            sets[s]->conv(&a, 0, 20); /* two channel ranges, the first not a multiple of any width */
            sets[s]->conv(&a, 20, Di);
            expect_close(got, want, n * Di, rel, jb_cpu_kernels_name(sets[s]->set), "conv out");
            expect_close(got_win, want_win, Di * (K - 1), 0, jb_cpu_kernels_name(sets[s]->set), "conv window");
        }
        free(x), free(w), free(b), free(win0), free(want), free(got), free(want_win), free(got_win);
    }
}

JB_TEST(kernels, scan_matches_plain_loop_on_odd_shapes) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t Di = 37, ldbc = 2 * 17 + 3, ldz = 45;
    for (int64_t case_ = 0; case_ < 9; case_++) { /* 1, 3 and 9 tokens (decode and prefill walks), N 5, 16, 17 */
        const int64_t n = case_ / 3 == 0 ? 1 : case_ / 3 == 1 ? 3 : 9, N = (int64_t[]){5, 16, 17}[case_ % 3];
        float *u = random_floats(n * Di, -2, 2), *delta = random_floats(n * Di, 0.001f, 0.5f);
        float *bc = random_floats(n * ldbc, -1, 1), *A = random_floats(Di * N, -8, -0.5f), *D = random_floats(Di, -1, 1);
        float *z = random_floats(n * ldz, -3, 3), *state0 = random_floats(Di * N, -1, 1);
        float *want = malloc((size_t)(n * Di) * sizeof(float)), *got = malloc((size_t)(n * Di) * sizeof(float));
        float *want_h = malloc((size_t)(Di * N) * sizeof(float)), *got_h = malloc((size_t)(Di * N) * sizeof(float));
        memcpy(want_h, state0, (size_t)(Di * N) * sizeof(float));
        jb_scan_args a = {.n = n, .d_inner = Di, .d_state = N, .u = u, .delta = delta, .B = bc, .C = bc + N,
                          .ldbc = ldbc, .A = A, .D = D, .z = z, .ldz = ldz, .state = want_h, .y = want};
        plain_scan(&a);
        for (int s = 0; s < n_sets; s++) {
            const double rel = sets[s]->set == JB_CPU_KERNELS_PORTABLE ? 0 : 2e-6;
            memcpy(got_h, state0, (size_t)(Di * N) * sizeof(float));
            a.state = got_h, a.y = got;
            sets[s]->scan(&a, 0, 3);
            sets[s]->scan(&a, 3, Di);
            expect_close(got, want, n * Di, rel, jb_cpu_kernels_name(sets[s]->set), "scan y");
            expect_close(got_h, want_h, Di * N, rel, jb_cpu_kernels_name(sets[s]->set), "scan state");
        }
        free(u), free(delta), free(bc), free(A), free(D), free(z), free(state0);
        free(want), free(got), free(want_h), free(got_h);
    }
}

/* Token by token (one-token segments) and all at once (the transposed walk): the same bits, window included;
 * K 3 and 5 take the few-token walk for one token, K 4 its own constant-tap walk. */
JB_TEST(kernels, conv_same_bits_token_by_token) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    for (int64_t K = 3; K <= 5; K++) {
        const int64_t n = 9, Di = 35, ldx = 2 * Di;
        float *x = random_floats(n * ldx, -3, 3), *w = random_floats(Di * K, -1, 1), *b = random_floats(Di, -1, 1);
        float *win0 = random_floats(Di * (K - 1), -3, 3);
        float *y1 = malloc((size_t)(n * Di) * sizeof(float)), *y2 = malloc((size_t)(n * Di) * sizeof(float));
        const size_t win_bytes = (size_t)(Di * (K - 1)) * sizeof(float);
        float *win1 = malloc(win_bytes), *win2 = malloc(win_bytes);
        for (int s = 0; s < n_sets; s++) {
            memcpy(win1, win0, win_bytes);
            memcpy(win2, win0, win_bytes);
            jb_conv_args all = {.n = n, .d_inner = Di, .d_conv = K, .x = x, .ldx = ldx, .w = w, .b = b,
                                .window = win1, .out = y1};
            sets[s]->conv(&all, 0, Di);
            for (int64_t t = 0; t < n; t++) {
                jb_conv_args one = all;
                one.n = 1, one.x = x + t * ldx, one.window = win2, one.out = y2 + t * Di;
                sets[s]->conv(&one, 0, Di);
            }
            expect_close(y2, y1, n * Di, 0, jb_cpu_kernels_name(sets[s]->set), "conv out, token by token");
            expect_close(win2, win1, Di * (K - 1), 0, jb_cpu_kernels_name(sets[s]->set), "conv window, token by token");
        }
        free(x), free(w), free(b), free(win0), free(y1), free(y2), free(win1), free(win2);
    }
}

/* Token by token (one-token segments: the few-token walk, with d_state 16 on AVX-512 its transposed sums) and all
 * at once (the transposed walk): the same bits, state included. */
JB_TEST(kernels, scan_same_bits_token_by_token) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t Ns[] = {5, 16, 17};
    for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++) {
        const int64_t n = 11, Di = 35, N = Ns[c], ldbc = 2 * N, ldz = Di;
        float *u = random_floats(n * Di, -2, 2), *delta = random_floats(n * Di, 0.001f, 0.5f);
        float *bc = random_floats(n * ldbc, -1, 1), *A = random_floats(Di * N, -8, -0.5f);
        float *D = random_floats(Di, -1, 1), *z = random_floats(n * ldz, -3, 3), *state0 = random_floats(Di * N, -1, 1);
        float *y1 = malloc((size_t)(n * Di) * sizeof(float)), *y2 = malloc((size_t)(n * Di) * sizeof(float));
        float *h1 = malloc((size_t)(Di * N) * sizeof(float)), *h2 = malloc((size_t)(Di * N) * sizeof(float));
        for (int s = 0; s < n_sets; s++) {
            memcpy(h1, state0, (size_t)(Di * N) * sizeof(float));
            memcpy(h2, state0, (size_t)(Di * N) * sizeof(float));
            jb_scan_args all = {.n = n, .d_inner = Di, .d_state = N, .u = u, .delta = delta, .B = bc, .C = bc + N,
                                .ldbc = ldbc, .A = A, .D = D, .z = z, .ldz = ldz, .state = h1, .y = y1};
            sets[s]->scan(&all, 0, Di);
            for (int64_t t = 0; t < n; t++) {
                jb_scan_args one = all;
                one.n = 1, one.u = u + t * Di, one.delta = delta + t * Di, one.B = bc + t * ldbc;
                one.C = bc + t * ldbc + N, one.z = z + t * ldz, one.state = h2, one.y = y2 + t * Di;
                sets[s]->scan(&one, 0, Di);
            }
            expect_close(y2, y1, n * Di, 0, jb_cpu_kernels_name(sets[s]->set), "scan y, token by token");
            expect_close(h2, h1, Di * N, 0, jb_cpu_kernels_name(sets[s]->set), "scan state, token by token");
        }
        free(u), free(delta), free(bc), free(A), free(D), free(z), free(state0), free(y1), free(y2), free(h1), free(h2);
    }
}

/* ---- attention ---------------------------------------------------------------------------------------- */

static void plain_attention(const jb_attn_args *a) {
    const int64_t dh = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const int64_t q_ld = a->n_heads * dh, kv_ld = a->n_kv_heads * dh;
    float *score = malloc((size_t)(a->pos + a->n) * sizeof(float));
    for (int64_t row = 0; row < a->n; row++)
        for (int64_t head = 0; head < a->n_heads; head++) {
            const int64_t n_keys = a->pos + row + 1, kvh = head / group;
            for (int64_t j = 0; j < n_keys; j++) {
                double s = 0;
                for (int64_t d = 0; d < dh; d++)
                    s += (double)a->q[row * q_ld + head * dh + d] * a->k[j * kv_ld + kvh * dh + d];
                score[j] = (float)s / sqrtf((float)dh);
            }
            jb_softmax(score, n_keys);
            for (int64_t d = 0; d < dh; d++) {
                double o = 0;
                for (int64_t j = 0; j < n_keys; j++)
                    o += (double)score[j] * a->v[j * kv_ld + kvh * dh + d];
                a->out[row * q_ld + head * dh + d] = (float)o;
            }
        }
    free(score);
}

/* Attention of n rows at pos over nh query heads sharing nkv KV heads of dimension dh: every set against the
 * plain loop, each head alone and in every group size the set can take (bit-identical to alone), and the
 * threaded call at 1, 3 and 5 threads (bit-identical). */
static void attention_case(int64_t n, int64_t pos, int64_t nh, int64_t nkv, int64_t dh) {
    const jb_cpu_kernel_table *sets[JB_CPU_KERNELS_COUNT];
    const int n_sets = ks_available_sets(sets);
    const int64_t ctx = pos + n, rows = jb_cpu_attn_score_rows(nh, nkv), group = nh / nkv, m = n * nh * dh;
    float *q = random_floats(m, -1, 1), *k = random_floats(ctx * nkv * dh, -1, 1);
    float *v = random_floats(ctx * nkv * dh, -1, 1), *want = malloc((size_t)m * sizeof(float));
    float *got = malloc((size_t)m * sizeof(float)), *alone = malloc((size_t)m * sizeof(float));
    float *scratch = malloc((size_t)(5 * rows * ctx) * sizeof(float));
    jb_attn_args a = {.n = n, .pos = pos, .n_heads = nh, .n_kv_heads = nkv, .head_dim = dh, .q = q, .k = k, .v = v,
                      .out = want, .scratch = scratch, .scratch_stride = rows * ctx};
    plain_attention(&a);
    for (int s = 0; s < n_sets; s++) {
        cr_assert(sets[s]->attend_heads >= 1 && sets[s]->attend_heads <= JB_CPU_ATTN_HEADS_MAX);
        a.out = alone;
        for (int64_t row = 0; row < n; row++)
            for (int64_t head = 0; head < nh; head++)
                sets[s]->attend(&a, row, head, 1, scratch);
        expect_close(alone, want, m, 1e-5, jb_cpu_kernels_name(sets[s]->set), "attention");
        a.out = got;
        for (int size = 2; size <= sets[s]->attend_heads && size <= group; size++) {
            memset(got, 0, (size_t)m * sizeof(float));
            for (int64_t row = 0; row < n; row++)
                for (int64_t kvh = 0; kvh < nkv; kvh++)
                    for (int64_t h = 0; h < group; h += size)
                        sets[s]->attend(&a, row, kvh * group + h, (int)(group - h < size ? group - h : size), scratch);
            cr_assert_eq(memcmp(alone, got, (size_t)m * sizeof(float)), 0, "%s: heads in groups of %d differ from alone",
                         jb_cpu_kernels_name(sets[s]->set), size);
        }
    }
    float *one = malloc((size_t)m * sizeof(float));
    for (int threads = 1; threads <= 5; threads += 2) {
        jb_pool *pool = NULL;
        cr_assert_eq(jb_pool_create(threads, &pool, NULL), JAMBA_OK);
        a.out = threads == 1 ? one : got;
        jb_cpu_attention(pool, &a, 1);
        jb_pool_free(pool);
        if (threads > 1)
            cr_assert_eq(memcmp(one, got, (size_t)m * sizeof(float)), 0, "%d threads", threads);
    }
    /* the threaded call runs the active set, grouped: equal to that set's heads alone */
    a.out = alone;
    const jb_cpu_kernel_table *active = jb_cpu_kernels_active();
    for (int64_t row = 0; row < n; row++)
        for (int64_t head = 0; head < nh; head++)
            active->attend(&a, row, head, 1, scratch);
    cr_assert_eq(memcmp(one, alone, (size_t)m * sizeof(float)), 0, "threaded grouped attention differs from alone");
    free(q), free(k), free(v), free(want), free(got), free(alone), free(scratch), free(one);
}

JB_TEST(kernels, attention_matches_plain_loop_and_thread_counts) {
    split_everything();
    attention_case(6, 5, 3, 1, 19);   /* three heads on one KV head, odd d_h */
    attention_case(5, 7, 8, 2, 40);   /* four per KV head */
    attention_case(3, 2, 10, 2, 16);  /* five per KV head: split in groups */
    attention_case(4, 9, 16, 2, 33);  /* eight per KV head */
    attention_case(2, 3, 4, 4, 70);   /* no sharing */
}

/* ---- the pool ------------------------------------------------------------------------------------------- */

static void count_items(void *arg, int64_t b, int64_t e, int thread) {
    (void)thread;
    int *hits = arg;
    for (int64_t i = b; i < e; i++)
        __atomic_fetch_add(&hits[i], 1, __ATOMIC_RELAXED);
}

/* Thousands of jobs back to back (workers spinning) and after pauses longer than the spin (workers asleep):
 * every item exactly once, nothing lost or hung. */
JB_TEST(pool, back_to_back_and_after_sleeping) {
    enum { N = 300 };
    for (int threads = 2; threads <= 3; threads++) {
        jb_pool *pool = NULL;
        cr_assert_eq(jb_pool_create(threads, &pool, NULL), JAMBA_OK);
        for (int job = 0; job < 3000; job++) {
            int hits[N] = {0};
            const int64_t n = 1 + next_u32() % N, grain = 1 + next_u32() % 40;
            jb_pool_run(pool, n, grain, count_items, hits);
            for (int64_t i = 0; i < N; i++)
                cr_assert_eq(hits[i], i < n ? 1 : 0, "job %d n %lld grain %lld item %lld", job, (long long)n,
                             (long long)grain, (long long)i);
            if (job % 500 == 499)
                nanosleep(&(struct timespec){0, 2000000}, NULL);
        }
        jb_pool_free(pool);
    }
}

/* ---- selection ------------------------------------------------------------------------------------------ */

JB_TEST(kernels, environment_forces_the_portable_set) {
    setenv("JAMBA_CPU_KERNELS", "portable", 1); /* each test runs in its own process: nothing selected yet */
    cr_assert_eq(jb_cpu_kernels_selected(), JB_CPU_KERNELS_PORTABLE);
    cr_assert_eq(jb_cpu_kernels_active(), &jb_cpu_kernels_portable);
    cr_assert(strncmp(jb_cpu_kernels_describe(), "portable", 8) == 0, "%s", jb_cpu_kernels_describe());
    /* jb_cpu_matmul runs on it: the same bits as the portable gemm */
    enum { T = 3, K = 21, N = 6 };
    float *X = random_floats(T * K, -1, 1), Y[T * N], Z[T * N];
    matrix m = random_matrix(JAMBA_DTYPE_BF16, N, K);
    jb_weight w = {m.store, m.dtype, 2, {N, K, 0}, NULL};
    jb_pool *pool = NULL;
    cr_assert_eq(jb_pool_create(2, &pool, NULL), JAMBA_OK);
    jb_cpu_matmul(pool, Y, X, T, &w, NULL);
    jb_gemm_args a = gemm_args(&m, X, T, K, N, NULL, Z);
    jb_cpu_kernels_portable.gemm(&a, 0, N);
    cr_assert_eq(memcmp(Y, Z, sizeof Y), 0);
    jb_pool_free(pool);
    free(X);
    free_matrix(&m);
}

JB_TEST(kernels, best_set_is_selected_by_default) {
    unsetenv("JAMBA_CPU_KERNELS");
    jb_cpu_kernels best = JB_CPU_KERNELS_PORTABLE;
    for (int k = 0; k < JB_CPU_KERNELS_COUNT; k++)
        if (jb_cpu_kernels_supported((jb_cpu_kernels)k))
            best = (jb_cpu_kernels)k;
    cr_assert_eq(jb_cpu_kernels_selected(), best);
    cr_assert_not_null(jb_cpu_kernels_active());
    cr_assert_str_eq(jb_cpu_kernels_describe(), jb_cpu_kernels_name(best));
}

/* The demo model (BF16 weights) on the selected set, every operation split: logits of a prompt identical for
 * 1, 2 and 3 threads, one step or chunks of 5 tokens. */
JB_TEST(kernels, model_logits_same_bits_across_threads_and_chunks) {
    split_everything();
    jamba_model *m = qu_load_plain(QU_DEMO);
    free(qu_expect_split_invariant(m, JAMBA_DTYPE_F32));
    jamba_model_free(m);
}

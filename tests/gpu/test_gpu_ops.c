/*
 * test_gpu_ops.c — the row-wise, convolution, product and sampling CUDA ops (cuda/ops.h), the fused decode
 * products among them (fused.cu), against their CPU twins on fresh random inputs, over shapes with odd
 * sizes and tails and several sequences at different positions. The attention, scan and MoE ops have their
 * own files (test_gpu_attention.c, test_gpu_scan.c, test_gpu_moe.c). Device outputs are poisoned (NaN) before each run, so anything left unwritten fails.
 * Tolerances (normalised MSE): 1e-7 in fp32 mode, 5e-4 where bf16 values are produced.
 */
#include "tests/gpu/gpu_ops.h"

#include "ckpt/dtype.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"
#include "cuda/moe.h"
#include "runtime/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- row-wise ------------------------------------------------------------------------------------------ */

static void test_embed(void) {
    gt_rng r = {1};
    for (int di = 0; di < 2; di++) {
        const jamba_dtype dt = gt_dts[di];
        const int64_t V = 97, H = 45, T = 13;
        float *table = gt_random(&r, V * H, -2, 2, dt);
        int32_t tokens[13];
        for (int i = 0; i < T; i++)
            tokens[i] = (int32_t)(gt_next(&r) % V);
        tokens[3] = 0, tokens[4] = (int32_t)V - 1;
        void *d_table = gt_dev_from(dt, table, V * H), *d_tok = gt_dev_bytes(tokens, sizeof tokens);
        float *d_x = gt_dev_poisoned((size_t)(T * H) * 4), *got = malloc((size_t)(T * H) * 4),
              *want = malloc((size_t)(T * H) * 4);
        GT_CUDA(jb_cuda_embed(dt, d_x, d_table, d_tok, T, H, 0));
        gt_sync("embed");
        gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * H);
        for (int64_t t = 0; t < T; t++)
            memcpy(want + t * H, table + tokens[t] * H, (size_t)H * 4);
        gt_expect_close(gt_dname(dt), got, want, T * H, 0);
        free(table), free(got), free(want);
        gt_dev_free(d_table), gt_dev_free(d_tok), gt_dev_free(d_x);
    }
}

static void test_add_rmsnorm(void) {
    gt_rng r = {2};
    static const int64_t Hs[] = {1, 7, 64, 333, 4096};
    for (int di = 0; di < 2; di++)
        for (size_t hi = 0; hi < sizeof Hs / sizeof Hs[0]; hi++) {
            const jamba_dtype dt = gt_dts[di];
            const int64_t H = Hs[hi], T = 5;
            float *x = gt_random(&r, T * H, -3, 3, JAMBA_DTYPE_F32), *add = gt_random(&r, T * H, -1, 1, JAMBA_DTYPE_F32);
            float *w = gt_random(&r, H, 0.5f, 1.5f, JAMBA_DTYPE_F32);
            float *d_x = gt_dev_bytes(x, (size_t)(T * H) * 4), *d_add = gt_dev_bytes(add, (size_t)(T * H) * 4);
            float *d_w = gt_dev_bytes(w, (size_t)H * 4);
            void *d_out = gt_dev_poisoned((size_t)(T * H) * gt_esize(dt));
            GT_CUDA(jb_cuda_add_rmsnorm(dt, d_x, d_add, d_w, d_out, T, H, 1e-6f, 0));
            gt_sync("add_rmsnorm");
            for (int64_t i = 0; i < T * H; i++)
                x[i] += add[i];
            float *want = malloc((size_t)(T * H) * 4), *got = malloc((size_t)(T * H) * 4);
            jb_cpu_rmsnorm(want, x, T, H, H, w, 1e-6);
            gt_to_host(dt, got, d_out, T * H);
            char what[64];
            snprintf(what, sizeof what, "%s H=%lld norm", gt_dname(dt), (long long)H);
            gt_expect_close(what, got, want, T * H, gt_tol(dt));
            gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * H);
            snprintf(what, sizeof what, "%s H=%lld residual", gt_dname(dt), (long long)H);
            gt_expect_close(what, got, x, T * H, 0);
            free(x), free(add), free(w), free(want), free(got);
            gt_dev_free(d_x), gt_dev_free(d_add), gt_dev_free(d_w), gt_dev_free(d_out);
        }
}

static void test_ssm_params(void) {
    gt_rng r = {3};
    static const int64_t shapes[][2] = {{1, 1}, {3, 5}, {16, 16}, {256, 16}, {33, 64}};
    for (int di = 0; di < 2; di++)
        for (size_t si = 0; si < 5; si++)
            for (int norms = 0; norms < 2; norms++) {
                const jamba_dtype dt = gt_dts[di];
                const int64_t R = shapes[si][0], N = shapes[si][1], T = 7, xd = R + 2 * N;
                float *x = gt_random(&r, T * xd, -2, 2, JAMBA_DTYPE_F32);
                float *wdt = gt_random(&r, R, 0.5f, 1.5f, JAMBA_DTYPE_F32), *wb = gt_random(&r, N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                float *wc = gt_random(&r, N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                float *d_x = gt_dev_bytes(x, (size_t)(T * xd) * 4);
                float *d_wdt = gt_dev_bytes(wdt, (size_t)R * 4), *d_wb = gt_dev_bytes(wb, (size_t)N * 4);
                float *d_wc = gt_dev_bytes(wc, (size_t)N * 4);
                void *d_dt = gt_dev_poisoned((size_t)(T * R) * gt_esize(dt));
                GT_CUDA(jb_cuda_ssm_params(dt, d_x, T, R, N, norms ? d_wdt : NULL, d_wb, d_wc, 1e-6f, d_dt, 0));
                gt_sync("ssm_params");
                if (norms) {
                    jb_cpu_rmsnorm(x, x, T, R, xd, wdt, 1e-6);
                    jb_cpu_rmsnorm(x + R, x + R, T, N, xd, wb, 1e-6);
                    jb_cpu_rmsnorm(x + R + N, x + R + N, T, N, xd, wc, 1e-6);
                }
                float *got = malloc((size_t)(T * xd) * 4), *want_dt = malloc((size_t)(T * R) * 4);
                for (int64_t t = 0; t < T; t++)
                    memcpy(want_dt + t * R, x + t * xd, (size_t)R * 4);
                gt_to_host(dt, got, d_dt, T * R);
                gt_expect_close("dt", got, want_dt, T * R, gt_tol(dt));
                gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * xd);
                for (int64_t t = 0; t < T; t++) /* only B and C are rewritten in place */
                    memcpy(got + t * xd, x + t * xd, (size_t)R * 4);
                gt_expect_close("B and C", got, x, T * xd, GT_TOL_F32);
                free(x), free(wdt), free(wb), free(wc), free(got), free(want_dt);
                gt_dev_free(d_x), gt_dev_free(d_wdt), gt_dev_free(d_wb), gt_dev_free(d_wc), gt_dev_free(d_dt);
            }
}

static void test_swiglu_bias_gather(void) {
    gt_rng r = {4};
    for (int di = 0; di < 2; di++) {
        const jamba_dtype dt = gt_dts[di];
        const int64_t T = 9, I = 37, ld = 2 * I + 3;
        float *gu = gt_random(&r, T * ld, -4, 4, dt);
        void *d_gu = gt_dev_from(dt, gu, T * ld), *d_out = gt_dev_poisoned((size_t)(T * I) * gt_esize(dt));
        GT_CUDA(jb_cuda_swiglu(dt, d_gu, ld, d_out, T, I, 0));
        gt_sync("swiglu");
        float *want = malloc((size_t)(T * I) * 4), *got = malloc((size_t)(T * ld) * 4);
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < I; i++)
                want[t * I + i] = jb_silu(gu[t * ld + i]) * gu[t * ld + I + i];
        gt_to_host(dt, got, d_out, T * I);
        gt_expect_close("swiglu", got, want, T * I, gt_tol(dt));
        /* bias on a strided matrix: only the first N columns of each row change */
        float *bias = gt_random(&r, 2 * I, -1, 1, JAMBA_DTYPE_F32);
        float *d_bias = gt_dev_bytes(bias, (size_t)(2 * I) * 4);
        GT_CUDA(jb_cuda_add_bias(dt, d_gu, ld, d_bias, T, 2 * I, 0));
        gt_sync("add_bias");
        float *want2 = malloc((size_t)(T * ld) * 4);
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < ld; c++)
                want2[t * ld + c] = gu[t * ld + c] + (c < 2 * I ? bias[c] : 0.0f);
        gt_to_host(dt, got, d_gu, T * ld);
        gt_expect_close("add_bias", got, want2, T * ld, gt_tol(dt));
        free(gu), free(want), free(got), free(bias), free(want2);
        gt_dev_free(d_gu), gt_dev_free(d_out), gt_dev_free(d_bias);
    }
    /* row gathers */
    const int64_t H = 29, n = 4;
    float *src = gt_random(&r, 10 * H, -1, 1, JAMBA_DTYPE_F32);
    int64_t rows[4] = {9, 0, 3, 3};
    float *d_src = gt_dev_bytes(src, 10 * H * 4), *d_dst = gt_dev_poisoned(n * H * 4);
    int64_t *d_rows = gt_dev_bytes(rows, sizeof rows);
    GT_CUDA(jb_cuda_gather_rows(d_dst, d_src, d_rows, n, H, 0));
    gt_sync("gather_rows");
    float got[4 * 29], want[4 * 29];
    for (int i = 0; i < n; i++)
        memcpy(want + i * H, src + rows[i] * H, H * 4);
    gt_to_host(JAMBA_DTYPE_F32, got, d_dst, n * H);
    gt_expect_close("gather_rows", got, want, n * H, 0);
    free(src);
    gt_dev_free(d_src), gt_dev_free(d_dst), gt_dev_free(d_rows);
}

static void test_gemm(void) {
    gt_rng r = {5};
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        gt_fail(__FILE__, __LINE__, "cublasCreate failed");
        return;
    }
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 17, 33}, {64, 100, 257}, {1, 4096, 4096}, {129, 64, 2048}};
    static const jamba_dtype outs[3][2] = {{JAMBA_DTYPE_F32, JAMBA_DTYPE_F32},
                                           {JAMBA_DTYPE_BF16, JAMBA_DTYPE_F32},
                                           {JAMBA_DTYPE_BF16, JAMBA_DTYPE_BF16}};
    for (size_t si = 0; si < 5; si++)
        for (int oi = 0; oi < 3; oi++) {
            const jamba_dtype in = outs[oi][0], out = outs[oi][1];
            const int64_t T = shapes[si][0], N = shapes[si][1], K = shapes[si][2], ldx = K + 5, ldy = N + 3;
            if (gt_small_only() && T * N * K > 1000000)
                continue;
            float *X = gt_random(&r, T * ldx, -1, 1, in), *W = gt_random(&r, N * K, -1, 1, in);
            float *Xc = malloc((size_t)(T * K) * 4);
            for (int64_t t = 0; t < T; t++)
                memcpy(Xc + t * K, X + t * ldx, (size_t)K * 4);
            void *d_X = gt_dev_from(in, X, T * ldx), *d_W = gt_dev_from(in, W, N * K);
            void *d_Y = gt_dev_poisoned((size_t)(T * ldy) * gt_esize(out));
            cublasStatus_t b = jb_cuda_gemm(h, in, out, d_Y, ldy, d_X, ldx, d_W, T, N, K);
            GT_CHECK(b == CUBLAS_STATUS_SUCCESS, "gemm: cuBLAS status %d", (int)b);
            gt_sync("gemm");
            float *want = malloc((size_t)(T * N) * 4), *got_full = malloc((size_t)(T * ldy) * 4);
            float *got = malloc((size_t)(T * N) * 4);
            jb_weight w = {.data = W, .dtype = JAMBA_DTYPE_F32, .rank = 2, .shape = {N, K, 0}};
            jb_cpu_matmul(gt_cpu_pool(), want, Xc, T, &w, NULL);
            gt_to_host(out, got_full, d_Y, T * ldy);
            for (int64_t t = 0; t < T; t++)
                memcpy(got + t * N, got_full + t * ldy, (size_t)N * 4);
            char what[96];
            snprintf(what, sizeof what, "%s->%s %lldx%lldx%lld", gt_dname(in), gt_dname(out), (long long)T, (long long)N,
                     (long long)K);
            gt_expect_close(what, got, want, T * N, in == JAMBA_DTYPE_F32 ? GT_TOL_F32 : GT_TOL_BF16);
            free(X), free(W), free(Xc), free(want), free(got_full), free(got);
            gt_dev_free(d_X), gt_dev_free(d_W), gt_dev_free(d_Y);
        }
    cublasDestroy(h);
}

/* ---- Mamba --------------------------------------------------------------------------------------------- */


static void test_conv(void) {
    gt_rng r = {6};
    static const int64_t Ks[] = {1, 2, 4, 7};
    for (int di = 0; di < 2; di++)
        for (int ki = 0; ki < 4; ki++) {
            const jamba_dtype dt = gt_dts[di];
            const int64_t Di = 37, K = Ks[ki], S = 4, ldx = 2 * Di;
            jb_segment segs[3];
            const int64_t n_segs = gt_mamba_segments(segs, 9), T = 15;
            float *x = gt_random(&r, T * ldx, -2, 2, dt), *w = gt_random(&r, Di * K, -1, 1, JAMBA_DTYPE_F32);
            float *b = gt_random(&r, Di, -0.5f, 0.5f, JAMBA_DTYPE_F32);
            const int64_t wsz = Di * (K - 1);
            float *win = gt_random(&r, S * (wsz > 0 ? wsz : 1), -1, 1, JAMBA_DTYPE_F32);
            gt_dev_step ds = gt_make_step(segs, n_segs, T, NULL);
            void *d_x = gt_dev_from(dt, x, T * ldx), *d_out = gt_dev_poisoned((size_t)(T * Di) * gt_esize(dt));
            float *d_w = gt_dev_bytes(w, (size_t)(Di * K) * 4), *d_b = gt_dev_bytes(b, (size_t)Di * 4);
            float *d_win = gt_dev_bytes(win, (size_t)(S * (wsz > 0 ? wsz : 1)) * 4);
            jb_cuda_conv_args a = {d_x, ldx, d_w, d_b, d_win, wsz, d_out, Di, K};
            GT_CUDA(jb_cuda_conv_silu(dt, &a, &ds.step, 0));
            gt_sync("conv");
            float *want = malloc((size_t)(T * Di) * 4), *got = malloc((size_t)(T * Di) * 4);
            for (int64_t s = 0; s < n_segs; s++) {
                jb_conv_args c = {.n = segs[s].n, .d_inner = Di, .d_conv = K, .x = x + segs[s].row * ldx, .ldx = ldx,
                                  .w = w, .b = b, .window = win + segs[s].seq * wsz, .out = want + segs[s].row * Di};
                jb_cpu_conv_silu(gt_cpu_pool(), &c, 1);
            }
            gt_to_host(dt, got, d_out, T * Di);
            char what[64];
            snprintf(what, sizeof what, "%s K=%lld out", gt_dname(dt), (long long)K);
            gt_expect_close(what, got, want, T * Di, gt_tol(dt));
            if (wsz > 0) {
                float *gw = malloc((size_t)(S * wsz) * 4);
                gt_to_host(JAMBA_DTYPE_F32, gw, d_win, S * wsz);
                snprintf(what, sizeof what, "%s K=%lld windows", gt_dname(dt), (long long)K);
                gt_expect_close(what, gw, win, S * wsz, 0);
                free(gw);
            }
            free(x), free(w), free(b), free(win), free(want), free(got);
            gt_dev_free(d_x), gt_dev_free(d_out), gt_dev_free(d_w), gt_dev_free(d_b), gt_dev_free(d_win);
            gt_free_step(&ds);
        }
}

/* ---- fused decode products (fused.cu) ------------------------------------------------------------------ */

/* want[T, N] = X[x_rows[t], 0:K] · W[N, K]^T on the CPU (x_rows NULL: row t). */
static void cpu_product(float *want, const float *W, int64_t N, int64_t K, const float *X, int64_t ldx,
                        const int64_t *x_rows, int64_t T) {
    float *Xc = malloc((size_t)(T * K) * 4);
    for (int64_t t = 0; t < T; t++)
        memcpy(Xc + t * K, X + (x_rows ? x_rows[t] : t) * ldx, (size_t)K * 4);
    jb_weight w = {.data = (void *)W, .dtype = JAMBA_DTYPE_F32, .rank = 2, .shape = {N, K, 0}};
    jb_cpu_matmul(gt_cpu_pool(), want, Xc, T, &w, NULL);
    free(Xc);
}

/* Values as the device stores them in dt (bf16 rounding), in place. */
static void as_dt(jamba_dtype dt, float *x, int64_t n) {
    if (dt == JAMBA_DTYPE_BF16)
        gt_round_bf16(x, n);
}

/* Shapes that take each layout: odd K (element loads), 1, 2, 4 and 8 rows per block. */
static const int64_t fused_shapes[][2] = {{37, 45}, {300, 64}, {1100, 136}, {2050, 200}, {4100, 72}};
static const int64_t fused_rows[] = {1, 3, JB_CUDA_FUSED_ROWS};

/* Plain products over picked input rows; each row's result bitwise the same whatever T is. */
static void test_rows_gemv(void) {
    gt_rng r = {21};
    for (int di = 0; di < 2; di++)
        for (size_t si = 0; si < 5; si++)
            for (int ti = 0; ti < 3; ti++)
                for (int f32_out = 0; f32_out < 2; f32_out++) {
                    const jamba_dtype dt = gt_dts[di], out_dt = f32_out ? JAMBA_DTYPE_F32 : dt;
                    const int64_t N = fused_shapes[si][0], K = fused_shapes[si][1], T = fused_rows[ti];
                    const int64_t n_src = 11, ldx = K + (K % 8 ? 3 : 8), ldy = N + 5;
                    int64_t rows[JB_CUDA_FUSED_ROWS];
                    for (int64_t t = 0; t < T; t++)
                        rows[t] = (t * 7 + 3) % n_src;
                    float *W = gt_random(&r, N * K, -1, 1, dt), *X = gt_random(&r, n_src * ldx, -1, 1, dt);
                    void *d_W = gt_dev_from(dt, W, N * K), *d_X = gt_dev_from(dt, X, n_src * ldx);
                    int64_t *d_rows = gt_dev_bytes(rows, sizeof rows);
                    void *d_Y = gt_dev_poisoned((size_t)(T * ldy) * gt_esize(out_dt));
                    void *d_Y1 = gt_dev_poisoned((size_t)ldy * gt_esize(out_dt));
                    jb_cuda_rows_product p = {d_W, N, K, d_X, ldx, d_rows, T};
                    GT_CUDA(jb_cuda_rows_gemv(dt, &p, out_dt, d_Y, ldy, 0));
                    jb_cuda_rows_product last = {d_W, N, K, d_X, ldx, d_rows + (T - 1), 1};
                    GT_CUDA(jb_cuda_rows_gemv(dt, &last, out_dt, d_Y1, ldy, 0));
                    gt_sync("rows_gemv");
                    float *want = malloc((size_t)(T * N) * 4), *full = malloc((size_t)(T * ldy) * 4);
                    float *got = malloc((size_t)(T * N) * 4), *one = malloc((size_t)ldy * 4);
                    cpu_product(want, W, N, K, X, ldx, rows, T);
                    gt_to_host(out_dt, full, d_Y, T * ldy);
                    gt_to_host(out_dt, one, d_Y1, ldy);
                    for (int64_t t = 0; t < T; t++)
                        memcpy(got + t * N, full + t * ldy, (size_t)N * 4);
                    char what[96];
                    snprintf(what, sizeof what, "%s->%s T=%lld N=%lld K=%lld", gt_dname(dt), gt_dname(out_dt),
                             (long long)T, (long long)N, (long long)K);
                    gt_expect_close(what, got, want, T * N, gt_tol(dt));
                    GT_CHECK(memcmp(one, got + (T - 1) * N, (size_t)N * 4) == 0,
                             "%s: the last row alone differs from the same row among %lld", what, (long long)T);
                    free(W), free(X), free(want), free(full), free(got), free(one);
                    gt_dev_free(d_W), gt_dev_free(d_X), gt_dev_free(d_rows), gt_dev_free(d_Y), gt_dev_free(d_Y1);
                }
    /* rows outside 1 .. FUSED_ROWS are refused */
    jb_cuda_rows_product p = {NULL, 4, 4, NULL, 4, NULL, 0};
    GT_CHECK(jb_cuda_rows_gemv(JAMBA_DTYPE_F32, &p, JAMBA_DTYPE_F32, NULL, 4, 0) == cudaErrorInvalidValue, "T = 0");
    p.T = JB_CUDA_FUSED_ROWS + 1;
    GT_CHECK(jb_cuda_rows_gemv(JAMBA_DTYPE_F32, &p, JAMBA_DTYPE_F32, NULL, 4, 0) == cudaErrorInvalidValue, "T too big");
    cudaGetLastError();
}

/* in_proj with the conv1d + SiLU of decode rows (each its own sequence), against the product, bias and
 * jb_cpu_conv_silu on one-row segments. */
static void test_rows_gemv_conv(void) {
    gt_rng r = {22};
    static const int64_t Ks[] = {1, 2, 4};
    static const int64_t shapes[][2] = {{37, 45}, {600, 64}}; /* D_i, H */
    for (int di = 0; di < 2; di++)
        for (int ki = 0; ki < 3; ki++)
            for (int si = 0; si < 2; si++)
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    const jamba_dtype dt = gt_dts[di];
                    const int64_t Di = shapes[si][0], H = shapes[si][1], K = Ks[ki], T = 3 + 2 * ki, S = T + 2;
                    const int64_t N = 2 * Di, wsz = Di * (K - 1), wstride = wsz > 0 ? wsz : 1;
                    jb_segment segs[JB_CUDA_FUSED_ROWS];
                    for (int64_t t = 0; t < T; t++) /* sequences in a shuffled order, at various positions */
                        segs[t] = (jb_segment){.seq = (int32_t)((t * 3 + 1) % S), .pos = 5 + 7 * t, .n = 1, .row = t};
                    gt_dev_step ds = gt_make_step(segs, T, 1, NULL);
                    float *W = gt_random(&r, N * H, -0.5f, 0.5f, dt), *X = gt_random(&r, T * H, -1, 1, dt);
                    float *cw = gt_random(&r, Di * K, -1, 1, JAMBA_DTYPE_F32);
                    float *cb = gt_random(&r, Di, -0.5f, 0.5f, JAMBA_DTYPE_F32);
                    float *bias = gt_random(&r, N, -0.5f, 0.5f, JAMBA_DTYPE_F32);
                    float *win = gt_random(&r, S * wstride, -1, 1, JAMBA_DTYPE_F32);
                    void *d_W = gt_dev_from(dt, W, N * H), *d_X = gt_dev_from(dt, X, T * H);
                    float *d_cw = gt_dev_bytes(cw, (size_t)(Di * K) * 4), *d_cb = gt_dev_bytes(cb, (size_t)Di * 4);
                    float *d_bias = gt_dev_bytes(bias, (size_t)N * 4);
                    float *d_win = gt_dev_bytes(win, (size_t)(S * wstride) * 4);
                    void *d_wide = gt_dev_poisoned((size_t)(T * N) * gt_esize(dt));
                    void *d_u = gt_dev_poisoned((size_t)(T * Di) * gt_esize(dt));
                    jb_cuda_rows_product p = {d_W, N, H, d_X, H, NULL, T};
                    jb_cuda_conv_args conv = {d_wide, N, d_cw, d_cb, d_win, wsz, d_u, Di, K};
                    GT_CUDA(jb_cuda_rows_gemv_conv(dt, &p, with_bias ? d_bias : NULL, &conv, &ds.step, 0));
                    gt_sync("rows_gemv_conv");
                    float *wide = malloc((size_t)(T * N) * 4), *u = malloc((size_t)(T * Di) * 4);
                    cpu_product(wide, W, N, H, X, H, NULL, T);
                    as_dt(dt, wide, T * N);
                    if (with_bias) {
                        for (int64_t i = 0; i < T * N; i++)
                            wide[i] += bias[i % N];
                        as_dt(dt, wide, T * N);
                    }
                    for (int64_t t = 0; t < T; t++) {
                        jb_conv_args c = {.n = 1, .d_inner = Di, .d_conv = K, .x = wide + t * N, .ldx = N, .w = cw,
                                          .b = cb, .window = win + segs[t].seq * wsz, .out = u + t * Di};
                        jb_cpu_conv_silu(gt_cpu_pool(), &c, 1);
                    }
                    float *got = malloc((size_t)(T * N) * 4);
                    char what[96];
                    snprintf(what, sizeof what, "%s Di=%lld K=%lld bias=%d", gt_dname(dt), (long long)Di, (long long)K,
                             with_bias);
                    gt_to_host(dt, got, d_wide, T * N);
                    gt_expect_close(what, got, wide, T * N, gt_tol(dt));
                    gt_to_host(dt, got, d_u, T * Di);
                    gt_expect_close("conv output", got, u, T * Di, gt_tol(dt));
                    if (wsz > 0) {
                        float *gw = malloc((size_t)(S * wsz) * 4);
                        gt_to_host(JAMBA_DTYPE_F32, gw, d_win, S * wsz);
                        gt_expect_close("windows", gw, win, S * wsz, gt_tol(dt));
                        free(gw);
                    }
                    free(W), free(X), free(cw), free(cb), free(bias), free(win), free(wide), free(u), free(got);
                    gt_dev_free(d_W), gt_dev_free(d_X), gt_dev_free(d_cw), gt_dev_free(d_cb), gt_dev_free(d_bias);
                    gt_dev_free(d_win), gt_dev_free(d_wide), gt_dev_free(d_u);
                    gt_free_step(&ds);
                }
}

/* gate|up with SwiGLU against the product rounded to dt and jb_silu. */
static void test_rows_gemv_swiglu(void) {
    gt_rng r = {23};
    static const int64_t shapes[][2] = {{37, 45}, {600, 64}, {2100, 72}}; /* I, H: 1, 2 and 8 rows per block */
    for (int di = 0; di < 2; di++)
        for (int si = 0; si < 3; si++)
            for (int ti = 0; ti < 3; ti++) {
                const jamba_dtype dt = gt_dts[di];
                const int64_t I = shapes[si][0], H = shapes[si][1], T = fused_rows[ti], ld = I + 3;
                float *W = gt_random(&r, 2 * I * H, -0.5f, 0.5f, dt), *X = gt_random(&r, T * H, -1, 1, dt);
                void *d_W = gt_dev_from(dt, W, 2 * I * H), *d_X = gt_dev_from(dt, X, T * H);
                void *d_act = gt_dev_poisoned((size_t)(T * ld) * gt_esize(dt));
                jb_cuda_rows_product p = {d_W, 2 * I, H, d_X, H, NULL, T};
                GT_CUDA(jb_cuda_rows_gemv_swiglu(dt, &p, d_act, ld, 0));
                gt_sync("rows_gemv_swiglu");
                float *gu = malloc((size_t)(T * 2 * I) * 4), *want = malloc((size_t)(T * I) * 4);
                float *full = malloc((size_t)(T * ld) * 4), *got = malloc((size_t)(T * I) * 4);
                cpu_product(gu, W, 2 * I, H, X, H, NULL, T);
                as_dt(dt, gu, T * 2 * I);
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = 0; i < I; i++)
                        want[t * I + i] = jb_silu(gu[t * 2 * I + i]) * gu[t * 2 * I + I + i];
                gt_to_host(dt, full, d_act, T * ld);
                for (int64_t t = 0; t < T; t++)
                    memcpy(got + t * I, full + t * ld, (size_t)I * 4);
                char what[80];
                snprintf(what, sizeof what, "%s T=%lld I=%lld H=%lld", gt_dname(dt), (long long)T, (long long)I,
                         (long long)H);
                gt_expect_close(what, got, want, T * I, gt_tol(dt));
                free(W), free(X), free(gu), free(want), free(full), free(got);
                gt_dev_free(d_W), gt_dev_free(d_X), gt_dev_free(d_act);
            }
}

/* Output products into the residual stream with the next norm by the last block; run twice on one counter
 * (so it must have been reset), the second time on the first result. */
static void test_rows_gemv_residual(void) {
    gt_rng r = {24};
    static const int64_t shapes[][2] = {{45, 37}, {300, 64}, {4100, 72}}; /* H, K */
    const unsigned int zero = 0;
    unsigned int *d_counter = gt_dev_bytes(&zero, 4);
    for (int di = 0; di < 2; di++)
        for (int si = 0; si < 3; si++)
            for (int ti = 0; ti < 3; ti++)
                for (int variant = 0; variant < 3; variant++) { /* 0: bias + norm, 1: norm, 2: neither */
                    const jamba_dtype dt = gt_dts[di];
                    const int64_t H = shapes[si][0], K = shapes[si][1], T = fused_rows[ti];
                    float *W = gt_random(&r, H * K, -0.5f, 0.5f, dt), *X = gt_random(&r, T * K, -1, 1, dt);
                    float *x = gt_random(&r, T * H, -2, 2, JAMBA_DTYPE_F32);
                    float *bias = gt_random(&r, H, -0.5f, 0.5f, JAMBA_DTYPE_F32);
                    float *nw = gt_random(&r, H, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                    void *d_W = gt_dev_from(dt, W, H * K), *d_X = gt_dev_from(dt, X, T * K);
                    float *d_x = gt_dev_bytes(x, (size_t)(T * H) * 4), *d_bias = gt_dev_bytes(bias, (size_t)H * 4);
                    float *d_nw = gt_dev_bytes(nw, (size_t)H * 4);
                    void *d_out = gt_dev_poisoned((size_t)(T * H) * gt_esize(dt));
                    jb_cuda_rows_product p = {d_W, H, K, d_X, K, NULL, T};
                    const float *b = variant == 0 ? d_bias : NULL, *w = variant < 2 ? d_nw : NULL;
                    for (int rep = 0; rep < 2; rep++)
                        GT_CUDA(jb_cuda_rows_gemv_residual(dt, &p, b, d_x, w, w ? d_out : NULL, 1e-6f, d_counter, 0));
                    gt_sync("rows_gemv_residual");
                    float *v = malloc((size_t)(T * H) * 4), *want = malloc((size_t)(T * H) * 4);
                    float *got = malloc((size_t)(T * H) * 4);
                    cpu_product(v, W, H, K, X, K, NULL, T);
                    for (int rep = 0; rep < 2; rep++)
                        for (int64_t i = 0; i < T * H; i++)
                            x[i] = x[i] + (variant == 0 ? v[i] + bias[i % H] : v[i]);
                    char what[96];
                    snprintf(what, sizeof what, "%s T=%lld H=%lld K=%lld variant %d residual", gt_dname(dt),
                             (long long)T, (long long)H, (long long)K, variant);
                    gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * H);
                    gt_expect_close(what, got, x, T * H, gt_tol(dt));
                    if (w) {
                        jb_cpu_rmsnorm(want, got, T, H, H, nw, 1e-6); /* the norm of the device's own x */
                        gt_to_host(dt, got, d_out, T * H);
                        gt_expect_close("its norm", got, want, T * H, gt_tol(dt));
                    }
                    unsigned int left = 1;
                    cudaMemcpy(&left, d_counter, 4, cudaMemcpyDeviceToHost);
                    GT_CHECK(left == 0, "%s: the block counter was left at %u", what, left);
                    free(W), free(X), free(x), free(bias), free(nw), free(v), free(want), free(got);
                    gt_dev_free(d_W), gt_dev_free(d_X), gt_dev_free(d_x), gt_dev_free(d_bias), gt_dev_free(d_nw);
                    gt_dev_free(d_out);
                }
    gt_dev_free(d_counter);
}

/* x_proj with the dt/B/C norms by the last block, against the product and jb_cpu_rmsnorm. */
static void test_rows_gemv_ssm(void) {
    gt_rng r = {25};
    static const int64_t shapes[][3] = {{16, 16, 64}, {256, 16, 136}, {3, 5, 45}}; /* R, N, D_i */
    const unsigned int zero = 0;
    unsigned int *d_counter = gt_dev_bytes(&zero, 4);
    for (int di = 0; di < 2; di++)
        for (int si = 0; si < 3; si++)
            for (int ti = 0; ti < 3; ti++)
                for (int norms = 0; norms < 2; norms++) {
                    const jamba_dtype dt = gt_dts[di];
                    const int64_t R = shapes[si][0], N = shapes[si][1], Di = shapes[si][2], T = fused_rows[ti];
                    const int64_t xd = R + 2 * N;
                    float *W = gt_random(&r, xd * Di, -0.5f, 0.5f, dt), *U = gt_random(&r, T * Di, -1, 1, dt);
                    float *wdt = gt_random(&r, R, 0.5f, 1.5f, JAMBA_DTYPE_F32), *wb = gt_random(&r, N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                    float *wc = gt_random(&r, N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                    void *d_W = gt_dev_from(dt, W, xd * Di), *d_U = gt_dev_from(dt, U, T * Di);
                    float *d_wdt = gt_dev_bytes(wdt, (size_t)R * 4), *d_wb = gt_dev_bytes(wb, (size_t)N * 4);
                    float *d_wc = gt_dev_bytes(wc, (size_t)N * 4);
                    float *d_xdbl = gt_dev_poisoned((size_t)(T * xd) * 4);
                    void *d_dt = gt_dev_poisoned((size_t)(T * R) * gt_esize(dt));
                    jb_cuda_rows_product p = {d_W, xd, Di, d_U, Di, NULL, T};
                    GT_CUDA(jb_cuda_rows_gemv_ssm(dt, &p, d_xdbl, R, N, norms ? d_wdt : NULL, d_wb, d_wc, 1e-6f, d_dt,
                                                  d_counter, 0));
                    gt_sync("rows_gemv_ssm");
                    float *x = malloc((size_t)(T * xd) * 4), *want_dt = malloc((size_t)(T * R) * 4);
                    float *got = malloc((size_t)(T * xd) * 4);
                    cpu_product(x, W, xd, Di, U, Di, NULL, T);
                    for (int64_t t = 0; t < T; t++)
                        memcpy(want_dt + t * R, x + t * xd, (size_t)R * 4);
                    if (norms) {
                        jb_cpu_rmsnorm(want_dt, want_dt, T, R, R, wdt, 1e-6);
                        jb_cpu_rmsnorm(x + R, x + R, T, N, xd, wb, 1e-6);
                        jb_cpu_rmsnorm(x + R + N, x + R + N, T, N, xd, wc, 1e-6);
                    }
                    char what[96];
                    snprintf(what, sizeof what, "%s T=%lld R=%lld N=%lld norms=%d", gt_dname(dt), (long long)T,
                             (long long)R, (long long)N, norms);
                    gt_to_host(JAMBA_DTYPE_F32, got, d_xdbl, T * xd);
                    gt_expect_close(what, got, x, T * xd, gt_tol(dt));
                    gt_to_host(dt, got, d_dt, T * R);
                    gt_expect_close("dt", got, want_dt, T * R, gt_tol(dt));
                    free(W), free(U), free(wdt), free(wb), free(wc), free(x), free(want_dt), free(got);
                    gt_dev_free(d_W), gt_dev_free(d_U), gt_dev_free(d_wdt), gt_dev_free(d_wb), gt_dev_free(d_wc);
                    gt_dev_free(d_xdbl), gt_dev_free(d_dt);
                }
    gt_dev_free(d_counter);
}

/* The CPU twin of a decode step's Mamba mixer (every segment one row): the products, conv1d + SiLU, the
 * dt/B/C norms, dt_proj rounded to dt, softplus, the scan, out_proj added into x, the next norm. x, win
 * and state are updated in place; norm_out [T, H]. */
typedef struct cpu_mixer {
    int64_t T, H, Di, N, R, K, S;
    const jb_segment *segs;
    const float *in_w, *in_b, *conv_w, *conv_b, *xp_w, *dt_nw, *b_nw, *c_nw, *dp_w, *dt_bias, *A, *D, *op_w,
        *op_b, *norm_w, *xn;
} cpu_mixer;

static void cpu_mixer_run(jamba_dtype dt, const cpu_mixer *m, float *x, float *win, float *state, float *norm_out) {
    const int64_t T = m->T, H = m->H, Di = m->Di, N = m->N, R = m->R, K = m->K, xd = R + 2 * N;
    float *wide = malloc((size_t)(T * 2 * Di) * 4), *u = malloc((size_t)(T * Di) * 4);
    float *xdbl = malloc((size_t)(T * xd) * 4), *dtr = malloc((size_t)(T * R) * 4);
    float *delta = malloc((size_t)(T * Di) * 4), *y = malloc((size_t)(T * Di) * 4), *o = malloc((size_t)(T * H) * 4);
    cpu_product(wide, m->in_w, 2 * Di, H, m->xn, H, NULL, T);
    as_dt(dt, wide, T * 2 * Di);
    if (m->in_b) {
        for (int64_t i = 0; i < T * 2 * Di; i++)
            wide[i] += m->in_b[i % (2 * Di)];
        as_dt(dt, wide, T * 2 * Di);
    }
    for (int64_t t = 0; t < T; t++) {
        jb_conv_args c = {.n = 1, .d_inner = Di, .d_conv = K, .x = wide + t * 2 * Di, .ldx = 2 * Di, .w = m->conv_w,
                          .b = m->conv_b, .window = win + m->segs[t].seq * Di * (K - 1), .out = u + t * Di};
        jb_cpu_conv_silu(gt_cpu_pool(), &c, 1);
    }
    as_dt(dt, u, T * Di);
    cpu_product(xdbl, m->xp_w, xd, Di, u, Di, NULL, T);
    for (int64_t t = 0; t < T; t++)
        memcpy(dtr + t * R, xdbl + t * xd, (size_t)R * 4);
    if (m->dt_nw) {
        jb_cpu_rmsnorm(dtr, dtr, T, R, R, m->dt_nw, 1e-6);
        jb_cpu_rmsnorm(xdbl + R, xdbl + R, T, N, xd, m->b_nw, 1e-6);
        jb_cpu_rmsnorm(xdbl + R + N, xdbl + R + N, T, N, xd, m->c_nw, 1e-6);
    }
    as_dt(dt, dtr, T * R);
    cpu_product(delta, m->dp_w, Di, R, dtr, R, NULL, T);
    as_dt(dt, delta, T * Di);
    for (int64_t i = 0; i < T * Di; i++)
        delta[i] = jb_softplus(delta[i] + m->dt_bias[i % Di]);
    for (int64_t t = 0; t < T; t++) {
        jb_scan_args a = {.n = 1, .d_inner = Di, .d_state = N, .u = u + t * Di, .delta = delta + t * Di,
                          .B = xdbl + t * xd + R, .C = xdbl + t * xd + R + N, .ldbc = xd, .A = m->A, .D = m->D,
                          .z = wide + t * 2 * Di + Di, .ldz = 2 * Di, .state = state + m->segs[t].seq * Di * N,
                          .y = y + t * Di};
        jb_cpu_selective_scan(gt_cpu_pool(), &a, 1);
    }
    as_dt(dt, y, T * Di);
    cpu_product(o, m->op_w, H, Di, y, Di, NULL, T);
    for (int64_t i = 0; i < T * H; i++)
        x[i] = x[i] + (m->op_b ? o[i] + m->op_b[i % H] : o[i]);
    jb_cpu_rmsnorm(norm_out, x, T, H, H, m->norm_w, 1e-6);
    free(wide), free(u), free(xdbl), free(dtr), free(delta), free(y), free(o);
}

/* The whole Mamba mixer of decode rows (mamba_decode.cu), cooperative where the device can and as four
 * launches, against the CPU twin; run twice (the windows and states move on), several sequences at
 * different positions in a shuffled order. The two paths must give the same bits. */
static void test_mamba_mixer(void) {
    gt_rng r = {27};
    static const int64_t shapes[][5] = {{45, 37, 16, 5, 4}, {136, 264, 16, 16, 4}, {64, 100, 5, 3, 2}}; /* H, Di, N, R, K */
    const unsigned int zero = 0;
    unsigned int *d_counter = gt_dev_bytes(&zero, 4);
    int dev = 0;
    cudaGetDevice(&dev);
    for (int di = 0; di < 2; di++)
        for (int si = 0; si < 3; si++)
            for (int64_t T = 1; T <= JB_CUDA_FUSED_ROWS; T += (T < 3 ? 1 : 5)) { /* 1, 2, 3, 8 */
                const jamba_dtype dt = gt_dts[di];
                const int64_t H = shapes[si][0], Di = shapes[si][1], N = shapes[si][2], R = shapes[si][3];
                const int64_t K = shapes[si][4], S = T + 3, xd = R + 2 * N, wsz = Di * (K - 1);
                const bool extras = si != 1; /* biases and inner norms, or neither */
                jb_segment segs[JB_CUDA_FUSED_ROWS];
                for (int64_t t = 0; t < T; t++)
                    segs[t] = (jb_segment){.seq = (int32_t)((t * 5 + 2) % S), .pos = 3 + 11 * t, .n = 1, .row = t};
                gt_dev_step ds = gt_make_step(segs, T, 1, NULL);
                cpu_mixer m = {.T = T, .H = H, .Di = Di, .N = N, .R = R, .K = K, .S = S, .segs = segs};
                float *in_w = gt_random(&r, 2 * Di * H, -0.3f, 0.3f, dt), *in_b = gt_random(&r, 2 * Di, -0.2f, 0.2f, JAMBA_DTYPE_F32);
                float *conv_w = gt_random(&r, Di * K, -0.5f, 0.5f, JAMBA_DTYPE_F32);
                float *conv_b = gt_random(&r, Di, -0.2f, 0.2f, JAMBA_DTYPE_F32);
                float *xp_w = gt_random(&r, xd * Di, -0.3f, 0.3f, dt);
                float *nws = gt_random(&r, R + 2 * N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                float *dp_w = gt_random(&r, Di * R, -0.5f, 0.5f, dt);
                float *dt_bias = gt_random(&r, Di, -4.0f, -1.0f, JAMBA_DTYPE_F32);
                float *A = gt_random(&r, Di * N, -3.0f, -0.1f, JAMBA_DTYPE_F32);
                float *D = gt_random(&r, Di, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                float *op_w = gt_random(&r, H * Di, -0.2f, 0.2f, dt), *op_b = gt_random(&r, H, -0.2f, 0.2f, JAMBA_DTYPE_F32);
                float *norm_w = gt_random(&r, H, 0.5f, 1.5f, JAMBA_DTYPE_F32), *xn = gt_random(&r, T * H, -1, 1, dt);
                float *x0 = gt_random(&r, T * H, -2, 2, JAMBA_DTYPE_F32);
                float *win0 = gt_random(&r, S * (wsz > 0 ? wsz : 1), -1, 1, JAMBA_DTYPE_F32);
                float *st0 = gt_random(&r, S * Di * N, -1, 1, JAMBA_DTYPE_F32);
                m.in_w = in_w, m.in_b = extras ? in_b : NULL, m.conv_w = conv_w, m.conv_b = conv_b, m.xp_w = xp_w;
                m.dt_nw = extras ? nws : NULL, m.b_nw = nws + R, m.c_nw = nws + R + N, m.dp_w = dp_w;
                m.dt_bias = dt_bias, m.A = A, m.D = D, m.op_w = op_w, m.op_b = extras ? op_b : NULL;
                m.norm_w = norm_w, m.xn = xn;
                /* the CPU twin, two steps */
                float *x = malloc((size_t)(T * H) * 4), *win = malloc((size_t)(S * (wsz > 0 ? wsz : 1)) * 4);
                float *st = malloc((size_t)(S * Di * N) * 4), *want = malloc((size_t)(T * H) * 4);
                memcpy(x, x0, (size_t)(T * H) * 4), memcpy(win, win0, (size_t)(S * (wsz > 0 ? wsz : 1)) * 4);
                memcpy(st, st0, (size_t)(S * Di * N) * 4);
                for (int rep = 0; rep < 2; rep++)
                    cpu_mixer_run(dt, &m, x, win, st, want);
                int coop_grid = 0;
                GT_CUDA(jb_cuda_mamba_mixer_grid(dt, T, R, N, dev, &coop_grid));
                float *first_x = NULL;
                for (int path = 0; path < 2; path++) { /* 0: four launches, 1: cooperative */
                    const int grid = path ? coop_grid : 0;
                    if (path == 1 && grid == 0) {
                        gt_note("no cooperative launch on this device: the four-launch path only");
                        break;
                    }
                    void *d_in_w = gt_dev_from(dt, in_w, 2 * Di * H), *d_xp_w = gt_dev_from(dt, xp_w, xd * Di);
                    void *d_dp_w = gt_dev_from(dt, dp_w, Di * R), *d_op_w = gt_dev_from(dt, op_w, H * Di);
                    void *d_xn = gt_dev_from(dt, xn, T * H);
                    float *d_in_b = gt_dev_bytes(in_b, (size_t)(2 * Di) * 4), *d_cw = gt_dev_bytes(conv_w, (size_t)(Di * K) * 4);
                    float *d_cb = gt_dev_bytes(conv_b, (size_t)Di * 4), *d_nws = gt_dev_bytes(nws, (size_t)(R + 2 * N) * 4);
                    float *d_dtb = gt_dev_bytes(dt_bias, (size_t)Di * 4), *d_A = gt_dev_bytes(A, (size_t)(Di * N) * 4);
                    float *d_D = gt_dev_bytes(D, (size_t)Di * 4), *d_op_b = gt_dev_bytes(op_b, (size_t)H * 4);
                    float *d_nw = gt_dev_bytes(norm_w, (size_t)H * 4), *d_x = gt_dev_bytes(x0, (size_t)(T * H) * 4);
                    float *d_win = gt_dev_bytes(win0, (size_t)(S * (wsz > 0 ? wsz : 1)) * 4);
                    float *d_st = gt_dev_bytes(st0, (size_t)(S * Di * N) * 4);
                    void *d_wide = gt_dev_poisoned((size_t)(T * 2 * Di) * gt_esize(dt));
                    void *d_u = gt_dev_poisoned((size_t)(T * Di) * gt_esize(dt));
                    float *d_xdbl = gt_dev_poisoned((size_t)(T * xd) * 4);
                    void *d_dtin = gt_dev_poisoned((size_t)(T * R) * gt_esize(dt));
                    void *d_y = gt_dev_poisoned((size_t)(T * Di) * gt_esize(dt));
                    void *d_out = gt_dev_poisoned((size_t)(T * H) * gt_esize(dt));
                    jb_cuda_mamba_mixer_args a = {0};
                    a.in = (jb_cuda_rows_product){d_in_w, 2 * Di, H, d_xn, H, NULL, T};
                    a.in_bias = extras ? d_in_b : NULL;
                    a.conv = (jb_cuda_conv_args){d_wide, 2 * Di, d_cw, d_cb, d_win, wsz, d_u, Di, K};
                    a.xp = (jb_cuda_rows_product){d_xp_w, xd, Di, d_u, Di, NULL, T};
                    a.xdbl = d_xdbl;
                    a.dt_w = extras ? d_nws : NULL, a.b_w = d_nws + R, a.c_w = d_nws + R + N;
                    a.dt_in = d_dtin;
                    a.dp = (jb_cuda_rows_product){d_dp_w, Di, R, d_dtin, R, NULL, T};
                    a.scan = (jb_cuda_scan_args){d_u, NULL, d_dtb, d_A, d_xdbl + R, d_xdbl + R + N, xd, d_D,
                                                 (char *)d_wide + (size_t)Di * gt_esize(dt), 2 * Di, d_st, Di * N, d_y,
                                                 NULL, Di, N};
                    a.op = (jb_cuda_rows_product){d_op_w, H, Di, d_y, Di, NULL, T};
                    a.out_bias = extras ? d_op_b : NULL;
                    a.x = d_x, a.norm_w = d_nw, a.norm_out = d_out, a.eps = 1e-6f, a.counter = d_counter;
                    for (int rep = 0; rep < 2; rep++)
                        GT_CUDA(jb_cuda_mamba_mixer_rows(dt, &a, &ds.step, grid, 0));
                    gt_sync(path ? "mamba mixer (cooperative)" : "mamba mixer (four launches)");
                    char what[128];
                    snprintf(what, sizeof what, "%s %s T=%lld H=%lld Di=%lld N=%lld R=%lld K=%lld extras=%d",
                             path ? "cooperative" : "four launches", gt_dname(dt), (long long)T, (long long)H,
                             (long long)Di, (long long)N, (long long)R, (long long)K, (int)extras);
                    float *got = malloc((size_t)(S * Di * N + T * H) * 4);
                    gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * H);
                    gt_expect_close(what, got, x, T * H, gt_tol(dt));
                    if (path == 0) {
                        first_x = malloc((size_t)(T * H) * 4);
                        memcpy(first_x, got, (size_t)(T * H) * 4);
                    } else {
                        GT_CHECK(memcmp(first_x, got, (size_t)(T * H) * 4) == 0,
                                 "%s: the residual stream differs from the four-launch path's", what);
                    }
                    gt_to_host(dt, got, d_out, T * H);
                    gt_expect_close("the next norm", got, want, T * H, gt_tol(dt));
                    gt_to_host(JAMBA_DTYPE_F32, got, d_st, S * Di * N);
                    gt_expect_close("the states", got, st, S * Di * N, gt_tol(dt));
                    if (wsz > 0) {
                        gt_to_host(JAMBA_DTYPE_F32, got, d_win, S * wsz);
                        gt_expect_close("the windows", got, win, S * wsz, gt_tol(dt));
                    }
                    unsigned int left = 1;
                    cudaMemcpy(&left, d_counter, 4, cudaMemcpyDeviceToHost);
                    GT_CHECK(left == 0, "%s: the block counter was left at %u", what, left);
                    free(got);
                    gt_dev_free(d_in_w), gt_dev_free(d_xp_w), gt_dev_free(d_dp_w), gt_dev_free(d_op_w), gt_dev_free(d_xn);
                    gt_dev_free(d_in_b), gt_dev_free(d_cw), gt_dev_free(d_cb), gt_dev_free(d_nws), gt_dev_free(d_dtb);
                    gt_dev_free(d_A), gt_dev_free(d_D), gt_dev_free(d_op_b), gt_dev_free(d_nw), gt_dev_free(d_x);
                    gt_dev_free(d_win), gt_dev_free(d_st), gt_dev_free(d_wide), gt_dev_free(d_u), gt_dev_free(d_xdbl);
                    gt_dev_free(d_dtin), gt_dev_free(d_y), gt_dev_free(d_out);
                }
                free(first_x);
                free(in_w), free(in_b), free(conv_w), free(conv_b), free(xp_w), free(nws), free(dp_w), free(dt_bias);
                free(A), free(D), free(op_w), free(op_b), free(norm_w), free(xn), free(x0), free(win0), free(st0);
                free(x), free(win), free(st), free(want);
                gt_free_step(&ds);
            }
    gt_dev_free(d_counter);
}

/* A decode step's MoE block in three launches (the router with route and plan, gate|up, down with the
 * combine, residual and norm) against the six-launch path (the router product, jb_cuda_moe_route,
 * jb_cuda_moe_plan, the expert GEMVs, jb_cuda_moe_combine, jb_cuda_add_rmsnorm: each checked against its
 * CPU twin in test_gpu_moe.c and above). Same router logits (the fused product's, copied), so the routing,
 * the plan and every output must be bit-identical; int8 and dt experts, odd sizes, T = 1..8, empty experts. */
static void *dev_weights(jamba_dtype wdt, const float *w, int64_t n) {
    if (wdt != JAMBA_DTYPE_I8)
        return gt_dev_from(wdt, w, n);
    int8_t *q = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        q[i] = (int8_t)w[i];
    void *d = gt_dev_bytes(q, (size_t)n);
    free(q);
    return d;
}

static void test_moe_decode_block(void) {
    gt_rng r = {28};
    static const int64_t shapes[][4] = {{45, 37, 7, 2}, {136, 200, 16, 2}, {64, 96, 40, 3}}; /* H, I, E, k */
    const unsigned int zero = 0;
    unsigned int *d_counter = gt_dev_bytes(&zero, 4);
    for (int di = 0; di < 2; di++)
        for (int q8 = 0; q8 < 2; q8++)
            for (int si = 0; si < 3; si++)
                for (int64_t T = 1; T <= JB_CUDA_FUSED_ROWS; T += (T < 3 ? 1 : 5)) {
                    const jamba_dtype dt = gt_dts[di], wdt = q8 ? JAMBA_DTYPE_I8 : dt;
                    const int64_t H = shapes[si][0], I = shapes[si][1], E = shapes[si][2], k = shapes[si][3];
                    const int64_t slots = T * k, used = slots < E ? slots : E;
                    float *rw = gt_random(&r, E * H, -1, 1, dt), *xn = gt_random(&r, T * H, -1, 1, dt);
                    float *gu = q8 ? gt_random(&r, E * 2 * I * H, -127, 127, JAMBA_DTYPE_F32)
                                   : gt_random(&r, E * 2 * I * H, -0.3f, 0.3f, dt);
                    float *dn = q8 ? gt_random(&r, E * H * I, -127, 127, JAMBA_DTYPE_F32)
                                   : gt_random(&r, E * H * I, -0.3f, 0.3f, dt);
                    float *gsc = gt_random(&r, E * 2 * I, 0.001f, 0.004f, JAMBA_DTYPE_F32);
                    float *dsc = gt_random(&r, E * H, 0.001f, 0.004f, JAMBA_DTYPE_F32);
                    float *x0 = gt_random(&r, T * H, -2, 2, JAMBA_DTYPE_F32), *nw = gt_random(&r, H, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                    if (q8)
                        for (int64_t i = 0; i < E * 2 * I * H; i++)
                            gu[i] = roundf(gu[i]);
                    if (q8)
                        for (int64_t i = 0; i < E * H * I; i++)
                            dn[i] = roundf(dn[i]);
                    void *d_rw = gt_dev_from(dt, rw, E * H), *d_xn = gt_dev_from(dt, xn, T * H);
                    void *d_gu = dev_weights(wdt, gu, E * 2 * I * H), *d_dn = dev_weights(wdt, dn, E * H * I);
                    float *d_gsc = gt_dev_bytes(gsc, (size_t)(E * 2 * I) * 4), *d_dsc = gt_dev_bytes(dsc, (size_t)(E * H) * 4);
                    float *d_nw = gt_dev_bytes(nw, (size_t)H * 4);
                    float *d_logits = gt_dev_poisoned((size_t)(T * E) * 4);
                    float *d_x[2], *d_w[2], *d_sw[2], *d_mix = gt_dev_poisoned((size_t)(T * H) * 4);
                    int32_t *d_ex[2], *d_begin[2], *d_st[2], *d_pos[2];
                    void *d_act[2], *d_out[2];
                    float *d_eo = gt_dev_poisoned((size_t)(slots * H) * 4);
                    for (int i = 0; i < 2; i++) {
                        d_x[i] = gt_dev_bytes(x0, (size_t)(T * H) * 4);
                        d_w[i] = gt_dev_poisoned((size_t)slots * 4), d_sw[i] = gt_dev_poisoned((size_t)slots * 4);
                        d_ex[i] = gt_dev_poisoned((size_t)slots * 4), d_st[i] = gt_dev_poisoned((size_t)slots * 4);
                        d_pos[i] = gt_dev_poisoned((size_t)slots * 4), d_begin[i] = gt_dev_poisoned((size_t)(E + 1) * 4);
                        d_act[i] = gt_dev_poisoned((size_t)(slots * I) * gt_esize(dt));
                        d_out[i] = gt_dev_poisoned((size_t)(T * H) * gt_esize(dt));
                    }
                    /* the three launches */
                    const jb_cuda_rows_product rp = {d_rw, E, H, d_xn, H, NULL, T};
                    GT_CUDA(jb_cuda_moe_router_rows(dt, &rp, d_logits, k, d_ex[0], d_w[0], d_begin[0], d_st[0], d_sw[0],
                                                    d_pos[0], d_counter, 0));
                    jb_cuda_gemv_args g = {d_gu, wdt, q8 ? d_gsc : NULL, 2 * I * H, 2 * I, H, d_xn, H, d_st[0],
                                           d_begin[0], 0, E, d_act[0], false, true, used, slots};
                    GT_CUDA(jb_cuda_expert_gemv(dt, &g, 0));
                    jb_cuda_gemv_args d = {d_dn, wdt, q8 ? d_dsc : NULL, H * I, H, I, d_act[0], I, NULL, d_begin[0], 0,
                                           E, NULL, true, false, used, slots};
                    GT_CUDA(jb_cuda_moe_down_combine(dt, &d, d_st[0], d_sw[0], T, d_x[0], d_nw, d_out[0], 1e-6f,
                                                     d_counter, 0));
                    /* the six launches, from the same logits */
                    GT_CUDA(jb_cuda_moe_route(d_logits, T, E, k, d_ex[1], d_w[1], 0));
                    GT_CUDA(jb_cuda_moe_plan(d_ex[1], d_w[1], T, E, k, d_begin[1], d_st[1], d_sw[1], d_pos[1], 0));
                    g.in_token = d_st[1], g.begin = d_begin[1], g.out = d_act[1];
                    GT_CUDA(jb_cuda_expert_gemv(dt, &g, 0));
                    d.in = d_act[1], d.begin = d_begin[1], d.out = d_eo;
                    GT_CUDA(jb_cuda_expert_gemv(dt, &d, 0));
                    GT_CUDA(jb_cuda_moe_combine(d_eo, d_pos[1], d_ex[1], d_w[1], T, k, H, d_mix, 0));
                    GT_CUDA(jb_cuda_add_rmsnorm(dt, d_x[1], d_mix, d_nw, d_out[1], T, H, 1e-6f, 0));
                    gt_sync("MoE decode block");
                    char what[128];
                    snprintf(what, sizeof what, "%s %s experts T=%lld H=%lld I=%lld E=%lld k=%lld", gt_dname(dt),
                             gt_dname(wdt), (long long)T, (long long)H, (long long)I, (long long)E, (long long)k);
                    /* the router logits against the CPU product */
                    float *logits = malloc((size_t)(T * E) * 4), *want = malloc((size_t)(T * E) * 4);
                    gt_to_host(JAMBA_DTYPE_F32, logits, d_logits, T * E);
                    cpu_product(want, rw, E, H, xn, H, NULL, T);
                    gt_expect_close(what, logits, want, T * E, gt_tol(JAMBA_DTYPE_F32));
                    free(logits), free(want);
                    struct { void *p; size_t bytes; const char *name; } same[] = {
                        {NULL, (size_t)slots * 4, "experts"}, {NULL, (size_t)slots * 4, "weights"},
                        {NULL, (size_t)(E + 1) * 4, "plan begin"}, {NULL, (size_t)slots * 4, "slot tokens"},
                        {NULL, (size_t)slots * 4, "slot weights"}, {NULL, (size_t)slots * 4, "slot positions"},
                        {NULL, (size_t)(T * H) * 4, "residual stream"}, {NULL, (size_t)(T * H) * gt_esize(dt), "next norm"}};
                    void *pairs[8][2] = {{d_ex[0], d_ex[1]}, {d_w[0], d_w[1]}, {d_begin[0], d_begin[1]}, {d_st[0], d_st[1]},
                                         {d_sw[0], d_sw[1]}, {d_pos[0], d_pos[1]}, {d_x[0], d_x[1]}, {d_out[0], d_out[1]}};
                    for (int i = 0; i < 8; i++) {
                        char *a = malloc(same[i].bytes), *b = malloc(same[i].bytes);
                        cudaMemcpy(a, pairs[i][0], same[i].bytes, cudaMemcpyDeviceToHost);
                        cudaMemcpy(b, pairs[i][1], same[i].bytes, cudaMemcpyDeviceToHost);
                        GT_CHECK(memcmp(a, b, same[i].bytes) == 0, "%s: the %s differ from the six-launch path's", what,
                                 same[i].name);
                        free(a), free(b);
                    }
                    unsigned int left = 1;
                    cudaMemcpy(&left, d_counter, 4, cudaMemcpyDeviceToHost);
                    GT_CHECK(left == 0, "%s: the block counter was left at %u", what, left);
                    free(rw), free(xn), free(gu), free(dn), free(gsc), free(dsc), free(x0), free(nw);
                    gt_dev_free(d_rw), gt_dev_free(d_xn), gt_dev_free(d_gu), gt_dev_free(d_dn), gt_dev_free(d_gsc);
                    gt_dev_free(d_dsc), gt_dev_free(d_nw), gt_dev_free(d_logits), gt_dev_free(d_mix), gt_dev_free(d_eo);
                    for (int i = 0; i < 2; i++) {
                        gt_dev_free(d_x[i]), gt_dev_free(d_w[i]), gt_dev_free(d_sw[i]), gt_dev_free(d_ex[i]);
                        gt_dev_free(d_st[i]), gt_dev_free(d_pos[i]), gt_dev_free(d_begin[i]), gt_dev_free(d_act[i]);
                        gt_dev_free(d_out[i]);
                    }
                }
    gt_dev_free(d_counter);
}

static void test_embed_rmsnorm(void) {
    gt_rng r = {26};
    static const int64_t Hs[] = {7, 64, 333};
    for (int di = 0; di < 2; di++)
        for (int hi = 0; hi < 3; hi++) {
            const jamba_dtype dt = gt_dts[di];
            const int64_t V = 50, H = Hs[hi], T = 5;
            int32_t tokens[5] = {3, 0, 49, 3, 17};
            float *table = gt_random(&r, V * H, -2, 2, dt), *w = gt_random(&r, H, 0.5f, 1.5f, JAMBA_DTYPE_F32);
            void *d_table = gt_dev_from(dt, table, V * H), *d_tok = gt_dev_bytes(tokens, sizeof tokens);
            float *d_w = gt_dev_bytes(w, (size_t)H * 4), *d_x = gt_dev_poisoned((size_t)(T * H) * 4);
            void *d_out = gt_dev_poisoned((size_t)(T * H) * gt_esize(dt));
            GT_CUDA(jb_cuda_embed_rmsnorm(dt, d_x, d_table, d_tok, T, H, d_w, d_out, 1e-6f, 0));
            gt_sync("embed_rmsnorm");
            float *x = malloc((size_t)(T * H) * 4), *want = malloc((size_t)(T * H) * 4), *got = malloc((size_t)(T * H) * 4);
            for (int64_t t = 0; t < T; t++)
                memcpy(x + t * H, table + tokens[t] * H, (size_t)H * 4);
            jb_cpu_rmsnorm(want, x, T, H, H, w, 1e-6);
            gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * H);
            gt_expect_close("embedding", got, x, T * H, 0);
            gt_to_host(dt, got, d_out, T * H);
            gt_expect_close("its norm", got, want, T * H, gt_tol(dt));
            free(table), free(w), free(x), free(want), free(got);
            gt_dev_free(d_table), gt_dev_free(d_tok), gt_dev_free(d_w), gt_dev_free(d_x), gt_dev_free(d_out);
        }
}

/* ---- sampling --------------------------------------------------------------------------------------------- */

static void test_sample(void) {
    gt_rng r = {15};
    const int64_t V = 1000;
    jamba_sampler_params kinds[7];
    for (int i = 0; i < 7; i++) {
        kinds[i] = jamba_sampler_default_params();
        kinds[i].seed = 77 + (uint64_t)i;
    }
    kinds[0].temperature = 0;
    kinds[1].top_k = 1;
    kinds[2].top_k = 40, kinds[2].temperature = 0.7f, kinds[2].top_p = 0.9f, kinds[2].min_p = 0.05f;
    kinds[3].top_k = 256, kinds[3].temperature = 1.3f, kinds[3].top_p = 1.0f, kinds[3].min_p = 0;
    kinds[4].top_k = 50, kinds[4].repetition_penalty = 1.4f, kinds[4].presence_penalty = 0.7f;
    kinds[5].top_k = 10, kinds[5].temperature = 2.0f, kinds[5].min_p = 0.2f;
    kinds[6].top_k = 100, kinds[6].temperature = 0.3f;
    float *logits = malloc((size_t)V * 4), *d_work = gt_dev_poisoned((size_t)V * 4);
    float *d_logits = gt_dev_poisoned((size_t)V * 4);
    jb_sample_params *d_p = gt_dev_poisoned(sizeof(jb_sample_params));
    int32_t *d_pen = gt_dev_poisoned(512 * 4), *d_tok = gt_dev_poisoned(4), *d_used = gt_dev_poisoned(4);
    int mismatches = 0, rounds = 0;
    for (int kind = 0; kind < 7; kind++) {
        jamba_sampler *a, *b;
        jamba_sampler_create(&kinds[kind], V, &a, NULL);
        jamba_sampler_create(&kinds[kind], V, &b, NULL);
        for (int round = 0; round < 40; round++, rounds++) {
            for (int64_t i = 0; i < V; i++)
                logits[i] = gt_uniform(&r, -5, 5);
            if (round % 10 == 3)
                logits[gt_next(&r) % V] = NAN;
            if (round % 10 == 5)
                logits[17] = logits[900] = 20.0f; /* a tie at the top */
            if (round == 7)
                logits[123] = INFINITY;
            jb_sample_params p;
            int32_t pen[512];
            if (!jb_sampler_device_params(a, &p, pen, 512)) {
                gt_fail(__FILE__, __LINE__, "kind %d should be device-eligible", kind);
                break;
            }
            cudaMemcpy(d_logits, logits, (size_t)V * 4, cudaMemcpyHostToDevice);
            cudaMemcpy(d_p, &p, sizeof p, cudaMemcpyHostToDevice);
            cudaMemcpy(d_pen, pen, 512 * 4, cudaMemcpyHostToDevice);
            GT_CUDA(jb_cuda_sample_rows(d_logits, 1, V, d_p, d_pen, 512, d_work, d_tok, d_used, 0));
            int32_t tok = -2, used = -1, want = -3;
            cudaMemcpy(&tok, d_tok, 4, cudaMemcpyDeviceToHost);
            cudaMemcpy(&used, d_used, 4, cudaMemcpyDeviceToHost);
            GT_CHECK(jamba_sampler_sample(b, logits, &want, NULL) == JAMBA_OK, "CPU sampler failed");
            if (tok != want && mismatches++ < 5)
                gt_fail(__FILE__, __LINE__, "kind %d round %d: device token %d, CPU %d", kind, round, tok, want);
            if (used)
                jb_sampler_consume_draw(a);
            jamba_sampler_accept(a, want);
            jamba_sampler_accept(b, want);
        }
        jamba_sampler_free(a);
        jamba_sampler_free(b);
    }
    gt_note("%d rounds, %d mismatches", rounds, mismatches);
    /* nothing drawable: every logit -inf */
    for (int64_t i = 0; i < V; i++)
        logits[i] = -INFINITY;
    jb_sample_params p = {.temperature = 1, .top_k = 5, .top_p = 1, .repetition_penalty = 1, .uniform = 0.5};
    cudaMemcpy(d_logits, logits, (size_t)V * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_p, &p, sizeof p, cudaMemcpyHostToDevice);
    GT_CUDA(jb_cuda_sample_rows(d_logits, 1, V, d_p, d_pen, 512, d_work, d_tok, d_used, 0));
    int32_t tok = 0;
    cudaMemcpy(&tok, d_tok, 4, cudaMemcpyDeviceToHost);
    GT_CHECK(tok == -1, "all -inf: token %d, expected -1", tok);
    free(logits);
    gt_dev_free(d_work), gt_dev_free(d_logits), gt_dev_free(d_p), gt_dev_free(d_pen), gt_dev_free(d_tok);
    gt_dev_free(d_used);
}

const gt_case gt_op_cases[] = {
    {"ops/embed", test_embed, true},
    {"ops/add_rmsnorm", test_add_rmsnorm, true},
    {"ops/ssm_params", test_ssm_params, true},
    {"ops/swiglu_bias_gather", test_swiglu_bias_gather, true},
    {"ops/gemm", test_gemm, true},
    {"ops/conv", test_conv, true},
    {"ops/rows_gemv", test_rows_gemv, true},
    {"ops/rows_gemv_conv", test_rows_gemv_conv, true},
    {"ops/rows_gemv_swiglu", test_rows_gemv_swiglu, true},
    {"ops/rows_gemv_residual", test_rows_gemv_residual, true},
    {"ops/rows_gemv_ssm", test_rows_gemv_ssm, true},
    {"ops/mamba_mixer", test_mamba_mixer, true},
    {"ops/moe_decode_block", test_moe_decode_block, true},
    {"ops/embed_rmsnorm", test_embed_rmsnorm, true},
    {"ops/sample", test_sample, true},
};
const int gt_n_op_cases = sizeof gt_op_cases / sizeof gt_op_cases[0];

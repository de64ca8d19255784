/*
 * test_gpu_ops.c — every CUDA op (cuda/ops.h) against its CPU twin on fresh random inputs, over shapes
 * with odd sizes and tails, several sequences at different positions, GQA ratios, chunked scans, empty
 * and full experts. Device outputs are poisoned (NaN) before each run, so anything left unwritten fails.
 * Tolerances (normalised MSE): 1e-7 in fp32 mode, 5e-4 where bf16 values are produced.
 */
#include "tests/gpu/gpu_test.h"

#include "ckpt/dtype.h"
#include "cuda/moe.h"
#include "cuda/ops.h"
#include "cuda/step_plan.h"
#include "moe/router.h"
#include "cpu/attention.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"
#include "runtime/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const jamba_dtype DTS[2] = {JAMBA_DTYPE_F32, JAMBA_DTYPE_BF16};

static double tol(jamba_dtype dt) { return dt == JAMBA_DTYPE_BF16 ? GT_TOL_BF16 : GT_TOL_F32; }
static const char *dname(jamba_dtype dt) { return dt == JAMBA_DTYPE_BF16 ? "bf16" : "f32"; }
static size_t esize(jamba_dtype dt) { return dt == JAMBA_DTYPE_BF16 ? 2 : 4; }

static jb_pool *cpu_pool(void) {
    static jb_pool *pool;
    if (pool == NULL)
        jb_pool_create(4, &pool, NULL);
    return pool;
}

/* A step on the device from host segments (rows contiguous from 0), chunked at chunk_len. */
typedef struct dev_step {
    jb_cuda_step_desc step;
    jb_step_plan plan;
    void *d_row_seg, *d_segs, *d_chunks, *d_tokens;
} dev_step;

static dev_step make_step(const jb_segment *segs, int64_t n_segs, int64_t chunk_len, const int32_t *tokens) {
    dev_step d = {0};
    int64_t T = 0;
    for (int64_t s = 0; s < n_segs; s++)
        T += segs[s].n;
    d.plan.row_seg = malloc((size_t)T * 4);
    d.plan.segs = malloc((size_t)n_segs * sizeof(jb_cuda_seg));
    d.plan.chunks = malloc((size_t)jb_step_plan_max_chunks(T, n_segs, chunk_len) * sizeof(jb_cuda_chunk));
    jb_step_plan_build(&d.plan, segs, n_segs, chunk_len);
    d.d_row_seg = gt_dev_bytes(d.plan.row_seg, (size_t)T * 4);
    d.d_segs = gt_dev_bytes(d.plan.segs, (size_t)n_segs * sizeof(jb_cuda_seg));
    d.d_chunks = gt_dev_bytes(d.plan.chunks, (size_t)d.plan.n_chunks * sizeof(jb_cuda_chunk));
    d.d_tokens = tokens ? gt_dev_bytes(tokens, (size_t)T * 4) : NULL;
    d.step = (jb_cuda_step_desc){.tokens = d.d_tokens, .row_seg = d.d_row_seg, .segs = d.d_segs, .chunks = d.d_chunks,
                           .T = T, .n_segs = n_segs, .n_chunks = d.plan.n_chunks, .n_slots = d.plan.n_slots,
                           .max_seg_rows = d.plan.max_seg_rows};
    return d;
}

static void free_step(dev_step *d) {
    gt_dev_free(d->d_row_seg);
    gt_dev_free(d->d_segs);
    gt_dev_free(d->d_chunks);
    gt_dev_free(d->d_tokens);
    free(d->plan.row_seg);
    free(d->plan.segs);
    free(d->plan.chunks);
}

/* ---- row-wise ------------------------------------------------------------------------------------------ */

static void test_embed(void) {
    gt_rng r = {1};
    for (int di = 0; di < 2; di++) {
        const jamba_dtype dt = DTS[di];
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
        gt_expect_close(dname(dt), got, want, T * H, 0);
        free(table), free(got), free(want);
        gt_dev_free(d_table), gt_dev_free(d_tok), gt_dev_free(d_x);
    }
}

static void test_add_rmsnorm(void) {
    gt_rng r = {2};
    static const int64_t Hs[] = {1, 7, 64, 333, 4096};
    for (int di = 0; di < 2; di++)
        for (size_t hi = 0; hi < sizeof Hs / sizeof Hs[0]; hi++) {
            const jamba_dtype dt = DTS[di];
            const int64_t H = Hs[hi], T = 5;
            float *x = gt_random(&r, T * H, -3, 3, JAMBA_DTYPE_F32), *add = gt_random(&r, T * H, -1, 1, JAMBA_DTYPE_F32);
            float *w = gt_random(&r, H, 0.5f, 1.5f, JAMBA_DTYPE_F32);
            float *d_x = gt_dev_bytes(x, (size_t)(T * H) * 4), *d_add = gt_dev_bytes(add, (size_t)(T * H) * 4);
            float *d_w = gt_dev_bytes(w, (size_t)H * 4);
            void *d_out = gt_dev_poisoned((size_t)(T * H) * esize(dt));
            GT_CUDA(jb_cuda_add_rmsnorm(dt, d_x, d_add, d_w, d_out, T, H, 1e-6f, 0));
            gt_sync("add_rmsnorm");
            for (int64_t i = 0; i < T * H; i++)
                x[i] += add[i];
            float *want = malloc((size_t)(T * H) * 4), *got = malloc((size_t)(T * H) * 4);
            jb_cpu_rmsnorm(want, x, T, H, H, w, 1e-6);
            gt_to_host(dt, got, d_out, T * H);
            char what[64];
            snprintf(what, sizeof what, "%s H=%lld norm", dname(dt), (long long)H);
            gt_expect_close(what, got, want, T * H, tol(dt));
            gt_to_host(JAMBA_DTYPE_F32, got, d_x, T * H);
            snprintf(what, sizeof what, "%s H=%lld residual", dname(dt), (long long)H);
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
                const jamba_dtype dt = DTS[di];
                const int64_t R = shapes[si][0], N = shapes[si][1], T = 7, xd = R + 2 * N;
                float *x = gt_random(&r, T * xd, -2, 2, JAMBA_DTYPE_F32);
                float *wdt = gt_random(&r, R, 0.5f, 1.5f, JAMBA_DTYPE_F32), *wb = gt_random(&r, N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                float *wc = gt_random(&r, N, 0.5f, 1.5f, JAMBA_DTYPE_F32);
                float *d_x = gt_dev_bytes(x, (size_t)(T * xd) * 4);
                float *d_wdt = gt_dev_bytes(wdt, (size_t)R * 4), *d_wb = gt_dev_bytes(wb, (size_t)N * 4);
                float *d_wc = gt_dev_bytes(wc, (size_t)N * 4);
                void *d_dt = gt_dev_poisoned((size_t)(T * R) * esize(dt));
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
                gt_expect_close("dt", got, want_dt, T * R, tol(dt));
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
        const jamba_dtype dt = DTS[di];
        const int64_t T = 9, I = 37, ld = 2 * I + 3;
        float *gu = gt_random(&r, T * ld, -4, 4, dt);
        void *d_gu = gt_dev_from(dt, gu, T * ld), *d_out = gt_dev_poisoned((size_t)(T * I) * esize(dt));
        GT_CUDA(jb_cuda_swiglu(dt, d_gu, ld, d_out, T, I, 0));
        gt_sync("swiglu");
        float *want = malloc((size_t)(T * I) * 4), *got = malloc((size_t)(T * ld) * 4);
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < I; i++)
                want[t * I + i] = jb_silu(gu[t * ld + i]) * gu[t * ld + I + i];
        gt_to_host(dt, got, d_out, T * I);
        gt_expect_close("swiglu", got, want, T * I, tol(dt));
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
        gt_expect_close("add_bias", got, want2, T * ld, tol(dt));
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
            void *d_Y = gt_dev_poisoned((size_t)(T * ldy) * esize(out));
            cublasStatus_t b = jb_cuda_gemm(h, in, out, d_Y, ldy, d_X, ldx, d_W, T, N, K);
            GT_CHECK(b == CUBLAS_STATUS_SUCCESS, "gemm: cuBLAS status %d", (int)b);
            gt_sync("gemm");
            float *want = malloc((size_t)(T * N) * 4), *got_full = malloc((size_t)(T * ldy) * 4);
            float *got = malloc((size_t)(T * N) * 4);
            jb_weight w = {.data = W, .dtype = JAMBA_DTYPE_F32, .rank = 2, .shape = {N, K, 0}};
            jb_cpu_matmul(cpu_pool(), want, Xc, T, &w, NULL);
            gt_to_host(out, got_full, d_Y, T * ldy);
            for (int64_t t = 0; t < T; t++)
                memcpy(got + t * N, got_full + t * ldy, (size_t)N * 4);
            char what[96];
            snprintf(what, sizeof what, "%s->%s %lldx%lldx%lld", dname(in), dname(out), (long long)T, (long long)N,
                     (long long)K);
            gt_expect_close(what, got, want, T * N, in == JAMBA_DTYPE_F32 ? GT_TOL_F32 : GT_TOL_BF16);
            free(X), free(W), free(Xc), free(want), free(got_full), free(got);
            gt_dev_free(d_X), gt_dev_free(d_W), gt_dev_free(d_Y);
        }
    cublasDestroy(h);
}

/* ---- Mamba --------------------------------------------------------------------------------------------- */

/* Three sequences of a four-sequence cache: a continuing prefill, a decode token, a longer prefill. */
static int64_t mamba_segments(jb_segment *segs, int64_t long_n) {
    segs[0] = (jb_segment){.seq = 2, .pos = 11, .n = 5, .row = 0};
    segs[1] = (jb_segment){.seq = 0, .pos = 40, .n = 1, .row = 5};
    segs[2] = (jb_segment){.seq = 3, .pos = 0, .n = long_n, .row = 6};
    return 3;
}

static void test_conv(void) {
    gt_rng r = {6};
    static const int64_t Ks[] = {1, 2, 4, 7};
    for (int di = 0; di < 2; di++)
        for (int ki = 0; ki < 4; ki++) {
            const jamba_dtype dt = DTS[di];
            const int64_t Di = 37, K = Ks[ki], S = 4, ldx = 2 * Di;
            jb_segment segs[3];
            const int64_t n_segs = mamba_segments(segs, 9), T = 15;
            float *x = gt_random(&r, T * ldx, -2, 2, dt), *w = gt_random(&r, Di * K, -1, 1, JAMBA_DTYPE_F32);
            float *b = gt_random(&r, Di, -0.5f, 0.5f, JAMBA_DTYPE_F32);
            const int64_t wsz = Di * (K - 1);
            float *win = gt_random(&r, S * (wsz > 0 ? wsz : 1), -1, 1, JAMBA_DTYPE_F32);
            dev_step ds = make_step(segs, n_segs, T, NULL);
            void *d_x = gt_dev_from(dt, x, T * ldx), *d_out = gt_dev_poisoned((size_t)(T * Di) * esize(dt));
            float *d_w = gt_dev_bytes(w, (size_t)(Di * K) * 4), *d_b = gt_dev_bytes(b, (size_t)Di * 4);
            float *d_win = gt_dev_bytes(win, (size_t)(S * (wsz > 0 ? wsz : 1)) * 4);
            jb_cuda_conv_args a = {d_x, ldx, d_w, d_b, d_win, wsz, d_out, Di, K};
            GT_CUDA(jb_cuda_conv_silu(dt, &a, &ds.step, 0));
            gt_sync("conv");
            float *want = malloc((size_t)(T * Di) * 4), *got = malloc((size_t)(T * Di) * 4);
            for (int64_t s = 0; s < n_segs; s++) {
                jb_conv_args c = {.n = segs[s].n, .d_inner = Di, .d_conv = K, .x = x + segs[s].row * ldx, .ldx = ldx,
                                  .w = w, .b = b, .window = win + segs[s].seq * wsz, .out = want + segs[s].row * Di};
                jb_cpu_conv_silu(cpu_pool(), &c);
            }
            gt_to_host(dt, got, d_out, T * Di);
            char what[64];
            snprintf(what, sizeof what, "%s K=%lld out", dname(dt), (long long)K);
            gt_expect_close(what, got, want, T * Di, tol(dt));
            if (wsz > 0) {
                float *gw = malloc((size_t)(S * wsz) * 4);
                gt_to_host(JAMBA_DTYPE_F32, gw, d_win, S * wsz);
                snprintf(what, sizeof what, "%s K=%lld windows", dname(dt), (long long)K);
                gt_expect_close(what, gw, win, S * wsz, 0);
                free(gw);
            }
            free(x), free(w), free(b), free(win), free(want), free(got);
            gt_dev_free(d_x), gt_dev_free(d_out), gt_dev_free(d_w), gt_dev_free(d_b), gt_dev_free(d_win);
            free_step(&ds);
        }
}

/* The scan over three segments with chunk length chunk_len, d_state N. */
static void scan_case(jamba_dtype dt, int64_t N, int64_t long_n, int64_t chunk_len, gt_rng *r) {
    const int64_t Di = 19, R = 3, S = 4, xd = R + 2 * N;
    jb_segment segs[3];
    const int64_t n_segs = mamba_segments(segs, long_n), T = 6 + long_n;
    float *u = gt_random(r, T * Di, -2, 2, dt), *draw = gt_random(r, T * Di, -4, 1, dt);
    float *bias = gt_random(r, Di, -1, 0.5f, JAMBA_DTYPE_F32), *A = gt_random(r, Di * N, 0, 2, JAMBA_DTYPE_F32);
    for (int64_t i = 0; i < Di * N; i++)
        A[i] = -expf(A[i]);
    float *xdbl = gt_random(r, T * xd, -1.5f, 1.5f, JAMBA_DTYPE_F32), *D = gt_random(r, Di, -1, 1, JAMBA_DTYPE_F32);
    float *proj = gt_random(r, T * 2 * Di, -3, 3, dt), *state = gt_random(r, S * Di * N, -1, 1, JAMBA_DTYPE_F32);
    dev_step ds = make_step(segs, n_segs, chunk_len, NULL);
    void *d_u = gt_dev_from(dt, u, T * Di), *d_draw = gt_dev_from(dt, draw, T * Di), *d_z = gt_dev_from(dt, proj, T * 2 * Di);
    float *d_bias = gt_dev_bytes(bias, (size_t)Di * 4), *d_A = gt_dev_bytes(A, (size_t)(Di * N) * 4);
    float *d_x = gt_dev_bytes(xdbl, (size_t)(T * xd) * 4), *d_D = gt_dev_bytes(D, (size_t)Di * 4);
    float *d_state = gt_dev_bytes(state, (size_t)(S * Di * N) * 4);
    float *d_sum = gt_dev_poisoned((size_t)(2 * (ds.step.n_slots > 0 ? ds.step.n_slots : 1) * Di * N) * 4);
    void *d_y = gt_dev_poisoned((size_t)(T * Di) * esize(dt));
    jb_cuda_scan_args a = {d_u, d_draw, d_bias, d_A, d_x + R, d_x + R + N, xd, d_D, (char *)d_z + Di * esize(dt),
                          2 * Di, d_state, Di * N, d_y, d_sum, Di, N};
    cudaError_t e = jb_cuda_selective_scan(dt, &a, &ds.step, 0);
    GT_CHECK(e == cudaSuccess, "scan launch: %s", cudaGetErrorString(e));
    gt_sync("scan");
    float *delta = malloc((size_t)(T * Di) * 4), *want = malloc((size_t)(T * Di) * 4), *got = malloc((size_t)(T * Di) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < Di; d++)
            delta[t * Di + d] = jb_softplus(draw[t * Di + d] + bias[d]);
    for (int64_t s = 0; s < n_segs; s++) {
        const int64_t row = segs[s].row;
        jb_scan_args c = {.n = segs[s].n, .d_inner = Di, .d_state = N, .u = u + row * Di, .delta = delta + row * Di,
                          .B = xdbl + row * xd + R, .C = xdbl + row * xd + R + N, .ldbc = xd, .A = A, .D = D,
                          .z = proj + row * 2 * Di + Di, .ldz = 2 * Di, .state = state + segs[s].seq * Di * N,
                          .y = want + row * Di};
        jb_cpu_selective_scan(cpu_pool(), &c);
    }
    gt_to_host(dt, got, d_y, T * Di);
    char what[96];
    snprintf(what, sizeof what, "%s N=%lld rows=%lld chunk=%lld (%d slots) y", dname(dt), (long long)N,
             (long long)long_n, (long long)chunk_len, ds.step.n_slots);
    gt_expect_close(what, got, want, T * Di, tol(dt));
    float *gs = malloc((size_t)(S * Di * N) * 4);
    gt_to_host(JAMBA_DTYPE_F32, gs, d_state, S * Di * N);
    snprintf(what, sizeof what, "%s N=%lld chunk=%lld states", dname(dt), (long long)N, (long long)chunk_len);
    gt_expect_close(what, gs, state, S * Di * N, GT_TOL_F32);
    free(u), free(draw), free(bias), free(A), free(xdbl), free(D), free(proj), free(state);
    free(delta), free(want), free(got), free(gs);
    gt_dev_free(d_u), gt_dev_free(d_draw), gt_dev_free(d_z), gt_dev_free(d_bias), gt_dev_free(d_A);
    gt_dev_free(d_x), gt_dev_free(d_D), gt_dev_free(d_state), gt_dev_free(d_sum), gt_dev_free(d_y);
    free_step(&ds);
}

static void test_scan_one_chunk(void) {
    gt_rng r = {7};
    for (int di = 0; di < 2; di++)
        scan_case(DTS[di], 16, 40, 1 << 20, &r);
}

static void test_scan_chunked(void) {
    gt_rng r = {8};
    static const int64_t lens[] = {1, 3, 7, 16, 40};
    for (int di = 0; di < 2; di++)
        for (size_t li = 0; li < 5; li++)
            scan_case(DTS[di], 16, 70, lens[li], &r);
}

static void test_scan_states(void) {
    gt_rng r = {9};
    static const int64_t Ns[] = {1, 4, 5, 17, 32, 33, 64, 100, 256};
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
        for (int di = 0; di < 2; di++)
            scan_case(DTS[di], Ns[ni], gt_small_only() ? 9 : 50, ni % 2 ? 8 : 1 << 20, &r);
}

/* ---- attention ----------------------------------------------------------------------------------------- */

/* The e4m3 byte nearest to x (ties to the even code), saturating at ±448: the device's conversion. The
 * 127 non-negative finite codes increase with their value, so a binary search finds the neighbours. */
static uint8_t e4m3_encode(float x) {
    static float value[127];
    if (value[1] == 0.0f)
        for (int c = 0; c < 127; c++)
            value[c] = jb_e4m3_to_f32((uint8_t)c);
    const float ax = fabsf(x);
    int lo = 0, hi = 126; /* value[lo] <= ax < value[hi], or ax beyond an end */
    if (ax >= value[126])
        lo = hi = 126;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (value[mid] <= ax)
            lo = mid;
        else
            hi = mid;
    }
    const float dl = ax - value[lo], dh = value[hi] - ax;
    const int best = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
    return (uint8_t)(best | (x < 0 ? 0x80 : 0));
}

/* An fp8 cache [rows, n_kv * D] from floats: per (row, head) scale amax / 448; x becomes the values the
 * device holds (byte × scale). */
static void fp8_cache(float *x, int64_t rows, int64_t n_kv, int64_t D, uint8_t *bytes, float *scales) {
    for (int64_t h = 0; h < rows * n_kv; h++) {
        float amax = 0;
        for (int64_t d = 0; d < D; d++)
            amax = fmaxf(amax, fabsf(x[h * D + d]));
        scales[h] = amax / 448.0f;
        for (int64_t d = 0; d < D; d++) {
            bytes[h * D + d] = e4m3_encode(scales[h] > 0 ? x[h * D + d] / scales[h] : 0.0f);
            x[h * D + d] = jb_e4m3_to_f32(bytes[h * D + d]) * scales[h];
        }
    }
}

/* Floats of an fp8 device cache. */
static void fp8_read(float *x, const void *d_bytes, const float *d_scales, int64_t rows, int64_t n_kv, int64_t D) {
    uint8_t *b = malloc((size_t)(rows * n_kv * D));
    float *sc = malloc((size_t)(rows * n_kv) * 4);
    cudaMemcpy(b, d_bytes, (size_t)(rows * n_kv * D), cudaMemcpyDeviceToHost);
    cudaMemcpy(sc, d_scales, (size_t)(rows * n_kv) * 4, cudaMemcpyDeviceToHost);
    for (int64_t i = 0; i < rows * n_kv * D; i++)
        x[i] = jb_e4m3_to_f32(b[i]) * sc[i / D];
    free(b), free(sc);
}

/* Prefill continuing a cache, two decode rows, and a prefill from position 0 of 70 rows. fp8: the cache
 * is e4m3 with scales; the appended rows must be the new k/v within e4m3 precision, and the attention
 * is checked against the CPU over the values the cache then holds. */
static void attention_case(jamba_dtype dt, int64_t n_h, int64_t n_kv, int64_t D, int force, int32_t n_splits,
                           bool fp8, gt_rng *r) {
    const int64_t C = 256, S = 4, q = n_h * D, kv = n_kv * D, ld = q + 2 * kv;
    jb_segment segs[4] = {{.seq = 2, .pos = 37, .n = 20, .row = 0},
                          {.seq = 0, .pos = 0, .n = 1, .row = 20},
                          {.seq = 1, .pos = 180, .n = 1, .row = 21},
                          {.seq = 3, .pos = 5, .n = 70, .row = 22}};
    const int64_t T = 92;
    float *qkv = gt_random(r, T * ld, -1.5f, 1.5f, dt);
    float *kc = gt_random(r, S * C * kv, -1.5f, 1.5f, dt), *vc = gt_random(r, S * C * kv, -1.5f, 1.5f, dt);
    dev_step ds = make_step(segs, 4, T, NULL);
    void *d_qkv = gt_dev_from(dt, qkv, T * ld), *d_k, *d_v;
    float *d_ks = NULL, *d_vs = NULL;
    if (fp8) {
        uint8_t *bytes = malloc((size_t)(S * C * kv));
        float *scales = malloc((size_t)(S * C * n_kv) * 4);
        fp8_cache(kc, S * C, n_kv, D, bytes, scales);
        d_k = gt_dev_bytes(bytes, (size_t)(S * C * kv)), d_ks = gt_dev_bytes(scales, (size_t)(S * C * n_kv) * 4);
        fp8_cache(vc, S * C, n_kv, D, bytes, scales);
        d_v = gt_dev_bytes(bytes, (size_t)(S * C * kv)), d_vs = gt_dev_bytes(scales, (size_t)(S * C * n_kv) * 4);
        free(bytes), free(scales);
    } else {
        d_k = gt_dev_from(dt, kc, S * C * kv), d_v = gt_dev_from(dt, vc, S * C * kv);
    }
    void *d_out = gt_dev_poisoned((size_t)(T * q) * esize(dt));
    const int64_t pcap = T * n_h * n_splits * (D + 2);
    float *d_part = gt_dev_poisoned((size_t)pcap * 4);
    jb_cuda_attn_args a = {.qkv = d_qkv, .ld_qkv = ld, .k_cache = d_k, .v_cache = d_v, .seq_stride = C * kv,
                          .kv_dt = fp8 ? JAMBA_DTYPE_F8_E4M3 : dt, .k_scale = d_ks, .v_scale = d_vs,
                          .scale_seq_stride = C * n_kv, .out = d_out, .n_heads = n_h, .n_kv_heads = n_kv,
                          .head_dim = D, .partial = d_part, .partial_capacity = pcap, .n_splits = n_splits,
                          .split_len = (C + n_splits - 1) / n_splits};
    cudaError_t e = jb_cuda_kv_append(dt, &a, &ds.step, 0);
    if (e == cudaSuccess)
        e = jb_cuda_attention(dt, &a, &ds.step, force, 0);
    GT_CHECK(e == cudaSuccess, "attention launch: %s", cudaGetErrorString(e));
    gt_sync("attention");
    /* the CPU twin: append, then attend per segment */
    for (int64_t s = 0; s < 4; s++)
        for (int64_t i = 0; i < segs[s].n; i++) {
            const float *src = qkv + (segs[s].row + i) * ld;
            memcpy(kc + (segs[s].seq * C + segs[s].pos + i) * kv, src + q, (size_t)kv * 4);
            memcpy(vc + (segs[s].seq * C + segs[s].pos + i) * kv, src + q + kv, (size_t)kv * 4);
        }
    float *gk = malloc((size_t)(S * C * kv) * 4), *gv = malloc((size_t)(S * C * kv) * 4);
    if (fp8) {
        fp8_read(gk, d_k, d_ks, S * C, n_kv, D);
        fp8_read(gv, d_v, d_vs, S * C, n_kv, D);
        gt_expect_close("fp8 K cache after append", gk, kc, S * C * kv, 2e-3);
        gt_expect_close("fp8 V cache after append", gv, vc, S * C * kv, 2e-3);
        memcpy(kc, gk, (size_t)(S * C * kv) * 4); /* attend over what the cache holds */
        memcpy(vc, gv, (size_t)(S * C * kv) * 4);
    } else {
        gt_to_host(dt, gk, d_k, S * C * kv);
        gt_expect_close("K cache after append", gk, kc, S * C * kv, 0);
        gt_to_host(dt, gv, d_v, S * C * kv);
        gt_expect_close("V cache after append", gv, vc, S * C * kv, 0);
    }
    float *qc = malloc((size_t)(T * q) * 4), *want = malloc((size_t)(T * q) * 4), *got = malloc((size_t)(T * q) * 4);
    float *scratch = malloc((size_t)(4 * C) * 4);
    for (int64_t t = 0; t < T; t++)
        memcpy(qc + t * q, qkv + t * ld, (size_t)q * 4);
    for (int64_t s = 0; s < 4; s++) {
        jb_attn_args c = {.n = segs[s].n, .pos = segs[s].pos, .n_heads = n_h, .n_kv_heads = n_kv, .head_dim = D,
                          .q = qc + segs[s].row * q, .k = kc + segs[s].seq * C * kv, .v = vc + segs[s].seq * C * kv,
                          .out = want + segs[s].row * q, .scratch = scratch, .scratch_stride = C};
        jb_cpu_attention(cpu_pool(), &c);
    }
    gt_to_host(dt, got, d_out, T * q);
    char what[128];
    snprintf(what, sizeof what, "%s%s heads %lld/%lld d_h %lld path %d splits %d", dname(dt), fp8 ? " fp8 KV" : "",
             (long long)n_h, (long long)n_kv, (long long)D, force, n_splits);
    gt_expect_close(what, got, want, T * q, tol(dt));
    free(qkv), free(kc), free(vc), free(qc), free(want), free(got), free(scratch), free(gk), free(gv);
    gt_dev_free(d_qkv), gt_dev_free(d_k), gt_dev_free(d_v), gt_dev_free(d_out), gt_dev_free(d_part);
    gt_dev_free(d_ks), gt_dev_free(d_vs);
    free_step(&ds);
}

static void test_attention_split(void) {
    gt_rng r = {10};
    static const int64_t heads[][3] = {{4, 4, 16}, {8, 2, 64}, {6, 3, 20}, {8, 1, 128}, {32, 8, 128}, {4, 2, 4},
                                       {20, 1, 256}};
    for (int di = 0; di < 2; di++)
        for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++) {
            if (gt_small_only() && hi > 2)
                break;
            attention_case(DTS[di], heads[hi][0], heads[hi][1], heads[hi][2], 1, 1, false, &r);
            attention_case(DTS[di], heads[hi][0], heads[hi][1], heads[hi][2], 1, 5, false, &r);
            attention_case(DTS[di], heads[hi][0], heads[hi][1], heads[hi][2], 1, 5, true, &r);
        }
}

static void test_attention_flash(void) {
    gt_rng r = {11};
    static const int64_t heads[][3] = {{8, 2, 64}, {32, 8, 128}, {4, 4, 128}, {8, 1, 64}};
    for (size_t hi = 0; hi < 4; hi++) {
        attention_case(JAMBA_DTYPE_BF16, heads[hi][0], heads[hi][1], heads[hi][2], 2, 1, false, &r);
        attention_case(JAMBA_DTYPE_BF16, heads[hi][0], heads[hi][1], heads[hi][2], 0, 1, false, &r);
        attention_case(JAMBA_DTYPE_BF16, heads[hi][0], heads[hi][1], heads[hi][2], 2, 1, true, &r);
    }
}

/* ---- MoE ------------------------------------------------------------------------------------------------ */

static void test_moe_route(void) {
    gt_rng r = {12};
    static const int64_t cfg[][2] = {{4, 1}, {16, 2}, {33, 3}, {2, 2}, {128, 8}};
    for (size_t ci = 0; ci < 5; ci++) {
        const int64_t E = cfg[ci][0], k = cfg[ci][1], T = 37;
        float *logits = gt_random(&r, T * E, -3, 3, JAMBA_DTYPE_F32);
        for (int64_t e = 0; e < E; e++) /* row 1: all equal (ties to the lower index) */
            logits[1 * E + e] = 0.25f;
        logits[2 * E + E - 1] = NAN;  /* row 2: a NaN logit */
        logits[3 * E] = logits[3 * E + E - 1] = 9.0f; /* row 3: a tie at the top */
        float *d_l = gt_dev_bytes(logits, (size_t)(T * E) * 4);
        int32_t *d_ex = gt_dev_poisoned((size_t)(T * k) * 4);
        float *d_w = gt_dev_poisoned((size_t)(T * k) * 4);
        GT_CUDA(jb_cuda_moe_route(d_l, T, E, k, d_ex, d_w, 0));
        gt_sync("route");
        int32_t *ex = malloc((size_t)(T * k) * 4), *gex = malloc((size_t)(T * k) * 4);
        float *w = malloc((size_t)(T * k) * 4), *gw = malloc((size_t)(T * k) * 4);
        jb_moe_route(logits, T, E, k, ex, w);
        cudaMemcpy(gex, d_ex, (size_t)(T * k) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(gw, d_w, (size_t)(T * k) * 4, cudaMemcpyDeviceToHost);
        int bad = 0;
        for (int64_t i = 0; i < T * k; i++) {
            const bool same_w = (isnan(w[i]) && isnan(gw[i])) || fabsf(w[i] - gw[i]) <= 1e-6f * fmaxf(1.0f, fabsf(w[i]));
            if (ex[i] != gex[i] || !same_w) {
                if (bad++ < 3)
                    gt_fail(__FILE__, __LINE__, "E=%lld k=%lld token %lld choice %lld: expert %d w %g, CPU %d w %g",
                            (long long)E, (long long)k, (long long)(i / k), (long long)(i % k), gex[i], (double)gw[i],
                            ex[i], (double)w[i]);
            }
        }
        free(logits), free(ex), free(gex), free(w), free(gw);
        gt_dev_free(d_l), gt_dev_free(d_ex), gt_dev_free(d_w);
    }
}

/* A random routing of T tokens (k distinct experts each, some experts left empty). */
static void random_routing(gt_rng *r, int64_t T, int64_t E, int64_t k, int32_t *ex, float *w) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int32_t e;
            bool dup;
            do {
                e = (int32_t)(gt_next(r) % (uint64_t)(E > 3 ? E - 1 : E)); /* the last expert stays empty */
                dup = false;
                for (int64_t i = 0; i < j; i++)
                    dup |= ex[t * k + i] == e;
            } while (dup);
            ex[t * k + j] = e;
            w[t * k + j] = gt_uniform(r, 0.05f, 1);
        }
}

/* The CPU plan and each slot's position (token t's choice j), as the device plan must give them. */
static void cpu_plan(const int32_t *ex, const float *w, int64_t T, int64_t E, int64_t k, int64_t *begin,
                     int64_t *slot_token, float *slot_weight, int32_t *slot_pos) {
    jb_moe_plan p = {.expert_begin = begin, .slot_token = slot_token, .slot_weight = slot_weight};
    jb_moe_plan_build(&p, ex, w, T, E, k);
    int64_t *cursor = malloc((size_t)E * 8);
    memcpy(cursor, begin, (size_t)E * 8);
    for (int64_t s = 0; s < T * k; s++)
        slot_pos[s] = (int32_t)cursor[ex[s]]++;
    free(cursor);
}

static void test_moe_plan_and_combine(void) {
    gt_rng r = {13};
    static const int64_t cfg[][3] = {{1, 4, 1}, {37, 16, 2}, {300, 8, 3}, {5, 64, 8}};
    for (size_t ci = 0; ci < 4; ci++) {
        const int64_t T = cfg[ci][0], E = cfg[ci][1], k = cfg[ci][2], n = T * k, H = 23;
        int32_t *ex = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4);
        float *w = malloc((size_t)n * 4), *sw = malloc((size_t)n * 4);
        int64_t *begin = malloc((size_t)(E + 1) * 8), *st = malloc((size_t)n * 8);
        random_routing(&r, T, E, k, ex, w);
        cpu_plan(ex, w, T, E, k, begin, st, sw, pos);
        int32_t *d_ex = gt_dev_bytes(ex, (size_t)n * 4), *d_begin = gt_dev_poisoned((size_t)(E + 1) * 4);
        int32_t *d_st = gt_dev_poisoned((size_t)n * 4), *d_pos = gt_dev_poisoned((size_t)n * 4);
        float *d_w = gt_dev_bytes(w, (size_t)n * 4), *d_sw = gt_dev_poisoned((size_t)n * 4);
        GT_CUDA(jb_cuda_moe_plan(d_ex, d_w, T, E, k, d_begin, d_st, d_sw, d_pos, 0));
        gt_sync("plan");
        int32_t *g_begin = malloc((size_t)(E + 1) * 4), *g_st = malloc((size_t)n * 4), *g_pos = malloc((size_t)n * 4);
        float *g_sw = malloc((size_t)n * 4);
        cudaMemcpy(g_begin, d_begin, (size_t)(E + 1) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(g_st, d_st, (size_t)n * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(g_pos, d_pos, (size_t)n * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(g_sw, d_sw, (size_t)n * 4, cudaMemcpyDeviceToHost);
        int bad = 0;
        for (int64_t e = 0; e <= E; e++)
            bad += g_begin[e] != begin[e];
        for (int64_t s = 0; s < n; s++)
            bad += g_st[s] != st[s] || g_sw[s] != sw[s] || g_pos[s] != pos[s];
        GT_CHECK(bad == 0, "T=%lld E=%lld k=%lld: %d plan entries differ from the CPU plan", (long long)T, (long long)E,
                 (long long)k, bad);
        /* combine: bit-identical to the CPU's ascending-expert sum */
        float *eo = gt_random(&r, n * H, -2, 2, JAMBA_DTYPE_F32), *want = calloc((size_t)(T * H), 4);
        float *got = malloc((size_t)(T * H) * 4);
        for (int64_t e = 0; e < E; e++)
            for (int64_t p = begin[e]; p < begin[e + 1]; p++)
                for (int64_t h = 0; h < H; h++)
                    want[st[p] * H + h] += eo[p * H + h] * sw[p];
        float *d_eo = gt_dev_bytes(eo, (size_t)(n * H) * 4), *d_out = gt_dev_poisoned((size_t)(T * H) * 4);
        GT_CUDA(jb_cuda_moe_combine(d_eo, d_pos, d_ex, d_w, T, k, H, d_out, 0));
        gt_sync("combine");
        gt_to_host(JAMBA_DTYPE_F32, got, d_out, T * H);
        gt_expect_close("combine", got, want, T * H, 0);
        free(ex), free(pos), free(w), free(sw), free(begin), free(st), free(g_begin), free(g_st), free(g_pos);
        free(g_sw), free(eo), free(want), free(got);
        gt_dev_free(d_ex), gt_dev_free(d_begin), gt_dev_free(d_st), gt_dev_free(d_pos), gt_dev_free(d_w);
        gt_dev_free(d_sw), gt_dev_free(d_eo), gt_dev_free(d_out);
    }
}

/* Weights for a GEMV case: floats (the CPU twin's values) and the device copy, dt or int8 with row
 * scales (then W holds q * scale). */
static void *gemv_weights(gt_rng *r, jamba_dtype dt, bool q8, int64_t rows, int64_t K, float *W, float **d_scale) {
    if (!q8) {
        float *x = gt_random(r, rows * K, -1, 1, dt);
        memcpy(W, x, (size_t)(rows * K) * 4);
        free(x);
        *d_scale = NULL;
        return gt_dev_from(dt, W, rows * K);
    }
    int8_t *q = malloc((size_t)(rows * K));
    float *scale = malloc((size_t)rows * 4);
    for (int64_t n = 0; n < rows; n++) {
        scale[n] = gt_uniform(r, 0.001f, 0.02f);
        for (int64_t c = 0; c < K; c++) {
            q[n * K + c] = (int8_t)((int)(gt_next(r) % 255) - 127);
            W[n * K + c] = q[n * K + c] * scale[n];
        }
    }
    void *d = gt_dev_bytes(q, (size_t)(rows * K));
    *d_scale = gt_dev_bytes(scale, (size_t)rows * 4);
    free(q), free(scale);
    return d;
}

static void test_expert_gemv(void) {
    gt_rng r = {14};
    static const int64_t shapes[][2] = {{37, 40}, {64, 64}, {5, 3}, {300, 1000}};
    for (int di = 0; di < 2; di++)
        for (size_t si = 0; si < 4; si++)
            for (int variant = 0; variant < 8; variant++) {
                const jamba_dtype dt = DTS[di];
                const int by_token = variant & 1;
                const bool q8 = variant & 4;
                /* ldin = K allows vector loads when K is a multiple of 8; K + 2 forces the scalar path */
                const int64_t N = shapes[si][0], K = shapes[si][1], E = 6, k = 2, T = 7, n = T * k;
                const int64_t ldin = variant & 2 ? K + 2 : K;
                int32_t ex[14], pos[14];
                float w[14], sw[14];
                int64_t begin[7], st[14];
                random_routing(&r, T, E, k, ex, w);
                cpu_plan(ex, w, T, E, k, begin, st, sw, pos);
                int32_t begin32[7], st32[14];
                for (int e = 0; e <= E; e++)
                    begin32[e] = (int32_t)begin[e];
                for (int s = 0; s < n; s++)
                    st32[s] = (int32_t)st[s];
                const int64_t rows_in = by_token ? T : n;
                float *W = malloc((size_t)(E * N * K) * 4), *d_scale = NULL;
                float *in = gt_random(&r, rows_in * ldin, -1, 1, dt);
                void *d_W = gemv_weights(&r, dt, q8, E * N, K, W, &d_scale), *d_in = gt_dev_from(dt, in, rows_in * ldin);
                int32_t *d_begin = gt_dev_bytes(begin32, sizeof begin32), *d_st = gt_dev_bytes(st32, sizeof st32);
                const bool out_f32 = di == 0 || by_token == 0;
                const jamba_dtype odt = out_f32 ? JAMBA_DTYPE_F32 : dt;
                void *d_out = gt_dev_poisoned((size_t)(n * N) * esize(odt));
                jb_cuda_gemv_args g = {d_W, q8 ? JAMBA_DTYPE_I8 : dt, d_scale, N * K, N, K, d_in, ldin,
                                      by_token ? d_st : NULL, d_begin, 0, E, d_out, out_f32};
                GT_CUDA(jb_cuda_expert_gemv(dt, &g, 0));
                gt_sync("expert_gemv");
                float *want = malloc((size_t)(n * N) * 4), *got = malloc((size_t)(n * N) * 4);
                for (int64_t e = 0; e < E; e++)
                    for (int64_t p = begin[e]; p < begin[e + 1]; p++) {
                        const float *x = in + (by_token ? st[p] : p) * ldin;
                        for (int64_t o = 0; o < N; o++) {
                            double acc = 0;
                            for (int64_t c = 0; c < K; c++)
                                acc += (double)W[(e * N + o) * K + c] * x[c];
                            want[p * N + o] = (float)acc;
                        }
                    }
                gt_to_host(odt, got, d_out, n * N);
                char what[112];
                snprintf(what, sizeof what, "%s%s N=%lld K=%lld ldin=%lld %s out %s", dname(dt), q8 ? " int8 W" : "",
                         (long long)N, (long long)K, (long long)ldin, by_token ? "by token" : "by slot", dname(odt));
                gt_expect_close(what, got, want, n * N, tol(odt));
                if (q8 && !by_token) {
                    /* the dense form: one matrix, rows [0, T) without a plan */
                    jb_cuda_gemv_args d = {d_W, JAMBA_DTYPE_I8, d_scale, 0, N, K, d_in, ldin, NULL, NULL, T, 1, d_out,
                                          out_f32};
                    GT_CUDA(jb_cuda_expert_gemv(dt, &d, 0));
                    gt_sync("dense int8 gemv");
                    for (int64_t t = 0; t < T; t++)
                        for (int64_t o = 0; o < N; o++) {
                            double acc = 0;
                            for (int64_t c = 0; c < K; c++)
                                acc += (double)W[o * K + c] * in[t * ldin + c];
                            want[t * N + o] = (float)acc;
                        }
                    gt_to_host(odt, got, d_out, T * N);
                    gt_expect_close("dense int8 rows", got, want, T * N, tol(odt));
                }
                free(W), free(in), free(want), free(got);
                gt_dev_free(d_W), gt_dev_free(d_in), gt_dev_free(d_begin), gt_dev_free(d_st), gt_dev_free(d_out);
                gt_dev_free(d_scale);
            }
}

/* int8 rows widened for cuBLAS: exactly q * scale rounded once to dt. */
static void test_dequant_rows(void) {
    gt_rng r = {16};
    static const int64_t shapes[][2] = {{7, 13}, {64, 128}, {3, 4}, {300, 1001}};
    for (int di = 0; di < 2; di++)
        for (size_t si = 0; si < 4; si++) {
            const jamba_dtype dt = DTS[di];
            const int64_t N = shapes[si][0], K = shapes[si][1];
            float *W = malloc((size_t)(N * K) * 4), *d_scale = NULL, *got = malloc((size_t)(N * K) * 4);
            int8_t *d_q = gemv_weights(&r, dt, true, N, K, W, &d_scale);
            void *d_out = gt_dev_poisoned((size_t)(N * K) * esize(dt));
            GT_CUDA(jb_cuda_dequant_rows(dt, d_out, d_q, d_scale, N, K, 0));
            gt_sync("dequant_rows");
            if (dt == JAMBA_DTYPE_BF16)
                gt_round_bf16(W, N * K);
            gt_to_host(dt, got, d_out, N * K);
            gt_expect_close(dt == JAMBA_DTYPE_BF16 ? "dequant bf16" : "dequant f32", got, W, N * K, 0);
            free(W), free(got);
            gt_dev_free(d_q), gt_dev_free(d_scale), gt_dev_free(d_out);
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
    {"ops/scan/one_chunk", test_scan_one_chunk, true},
    {"ops/scan/chunked", test_scan_chunked, true},
    {"ops/scan/states", test_scan_states, false},
    {"ops/attention/split", test_attention_split, true},
    {"ops/attention/flash", test_attention_flash, true},
    {"ops/moe/route", test_moe_route, true},
    {"ops/moe/plan_combine", test_moe_plan_and_combine, true},
    {"ops/moe/expert_gemv", test_expert_gemv, true},
    {"ops/moe/dequant_rows", test_dequant_rows, true},
    {"ops/sample", test_sample, true},
};
const int gt_n_op_cases = sizeof gt_op_cases / sizeof gt_op_cases[0];

/*
 * test_gpu_ops.c — the row-wise, convolution, product and sampling CUDA ops (cuda/ops.h) against their CPU
 * twins on fresh random inputs, over shapes with odd sizes and tails and several sequences at different
 * positions. The attention, scan and MoE ops have their own files (test_gpu_attention.c, test_gpu_scan.c,
 * test_gpu_moe.c). Device outputs are poisoned (NaN) before each run, so anything left unwritten fails.
 * Tolerances (normalised MSE): 1e-7 in fp32 mode, 5e-4 where bf16 values are produced.
 */
#include "tests/gpu/gpu_ops.h"

#include "ckpt/dtype.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"
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
    {"ops/sample", test_sample, true},
};
const int gt_n_op_cases = sizeof gt_op_cases / sizeof gt_op_cases[0];

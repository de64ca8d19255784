/*
 * test_gpu_moe.c — the MoE ops (cuda/moe.h: routing, the expert plan and combine, the expert GEMV over
 * bf16/f32 and int8 weights, dequantisation) against their CPU twins, with empty and full experts.
 */
#include "tests/gpu/gpu_ops.h"

#include "ckpt/dtype.h"
#include "cuda/moe.h"
#include "moe/router.h"
#include "cpu/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                const jamba_dtype dt = gt_dts[di];
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
                void *d_out = gt_dev_poisoned((size_t)(n * N) * gt_esize(odt));
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
                snprintf(what, sizeof what, "%s%s N=%lld K=%lld ldin=%lld %s out %s", gt_dname(dt), q8 ? " int8 W" : "",
                         (long long)N, (long long)K, (long long)ldin, by_token ? "by token" : "by slot", gt_dname(odt));
                gt_expect_close(what, got, want, n * N, gt_tol(odt));
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
                    gt_expect_close("dense int8 rows", got, want, T * N, gt_tol(odt));
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
            const jamba_dtype dt = gt_dts[di];
            const int64_t N = shapes[si][0], K = shapes[si][1];
            float *W = malloc((size_t)(N * K) * 4), *d_scale = NULL, *got = malloc((size_t)(N * K) * 4);
            int8_t *d_q = gemv_weights(&r, dt, true, N, K, W, &d_scale);
            void *d_out = gt_dev_poisoned((size_t)(N * K) * gt_esize(dt));
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

const gt_case gt_moe_cases[] = {
    {"ops/moe/route", test_moe_route, true},
    {"ops/moe/plan_combine", test_moe_plan_and_combine, true},
    {"ops/moe/expert_gemv", test_expert_gemv, true},
    {"ops/moe/dequant_rows", test_dequant_rows, true},
};
const int gt_n_moe_cases = sizeof gt_moe_cases / sizeof gt_moe_cases[0];

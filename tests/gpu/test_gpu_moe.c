/*
 * test_gpu_moe.c — the MoE ops (cuda/moe.h: routing, the expert plan and combine, the expert GEMVs over
 * bf16/f32 and int8 weights, the w8a16 tensor-core product, SwiGLU in their epilogue, the whole expert half
 * of a MoE block) against their CPU twins, with empty experts and one expert taking every token.
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

/* A random routing of T tokens (k distinct experts each, the last expert left empty when E > 3); with
 * all_to_first, every token's first choice is expert 0 (one expert takes every token). */
static void random_routing_mode(gt_rng *r, int64_t T, int64_t E, int64_t k, int32_t *ex, float *w, bool all_to_first) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int32_t e;
            bool dup;
            do {
                e = all_to_first && j == 0 ? 0 : (int32_t)(gt_next(r) % (uint64_t)(E > 3 ? E - 1 : E));
                dup = false;
                for (int64_t i = 0; i < j; i++)
                    dup |= ex[t * k + i] == e;
            } while (dup);
            ex[t * k + j] = e;
            w[t * k + j] = gt_uniform(r, 0.05f, 1);
        }
}

static void random_routing(gt_rng *r, int64_t T, int64_t E, int64_t k, int32_t *ex, float *w) {
    random_routing_mode(r, T, E, k, ex, w, false);
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

/* One expert-product case on the device against the CPU product of the same values. */
typedef struct product_case {
    int64_t N, K, T, E, k;
    bool all_to_first; /* one expert takes every token */
    bool q8, by_token, swiglu, out_f32, pad_ldin, gemm, dense;
    jamba_dtype dt;
} product_case;

static void run_product_case(gt_rng *r, const product_case *pc) {
    const jamba_dtype dt = pc->dt;
    const int64_t N = pc->N, K = pc->K, E = pc->dense ? 1 : pc->E, k = pc->k;
    const int64_t n = pc->dense ? pc->T : pc->T * k, I = N / 2, cols = pc->swiglu ? I : N;
    /* K + 8 keeps 16-byte rows for the tensor-core product; K + 2 forces the GEMV's scalar path */
    const int64_t ldin = pc->pad_ldin ? K + (pc->gemm ? 8 : 2) : K;
    int32_t *ex = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4), *begin32 = malloc((size_t)(E + 1) * 4);
    int32_t *st32 = malloc((size_t)n * 4);
    float *w = malloc((size_t)n * 4), *sw = malloc((size_t)n * 4);
    int64_t *begin = malloc((size_t)(E + 1) * 8), *st = malloc((size_t)n * 8);
    if (pc->dense) {
        begin[0] = 0, begin[1] = n;
        for (int64_t s = 0; s < n; s++)
            st[s] = s;
    } else {
        random_routing_mode(r, pc->T, E, k, ex, w, pc->all_to_first);
        cpu_plan(ex, w, pc->T, E, k, begin, st, sw, pos);
    }
    for (int64_t e = 0; e <= E; e++)
        begin32[e] = (int32_t)begin[e];
    for (int64_t s = 0; s < n; s++)
        st32[s] = (int32_t)st[s];
    const bool by_token = pc->by_token && !pc->dense;
    const int64_t rows_in = by_token ? pc->T : n;
    float *W = malloc((size_t)(E * N * K) * 4), *d_scale = NULL;
    float *in = gt_random(r, rows_in * ldin, -1, 1, dt);
    void *d_W = gemv_weights(r, dt, pc->q8, E * N, K, W, &d_scale), *d_in = gt_dev_from(dt, in, rows_in * ldin);
    int32_t *d_begin = gt_dev_bytes(begin32, (size_t)(E + 1) * 4), *d_st = gt_dev_bytes(st32, (size_t)n * 4);
    const jamba_dtype odt = pc->out_f32 ? JAMBA_DTYPE_F32 : dt;
    void *d_out = gt_dev_poisoned((size_t)(n * cols) * gt_esize(odt));
    const int64_t used = n < E ? n : E;
    jb_cuda_gemv_args g = {d_W, pc->q8 ? JAMBA_DTYPE_I8 : dt, d_scale, N * K, N, K, d_in, ldin,
                          by_token ? d_st : NULL, pc->dense ? NULL : d_begin, pc->dense ? n : 0, E, d_out,
                          pc->out_f32, pc->swiglu, pc->T % 2 ? used : 0, n};
    if (pc->gemm) {
        GT_CHECK(jb_cuda_expert_gemm_supported(dt, &g), "the tensor-core product refuses a supported case");
        GT_CUDA(jb_cuda_expert_gemm(dt, &g, 0));
    } else {
        GT_CUDA(jb_cuda_expert_gemv(dt, &g, 0));
    }
    gt_sync(pc->gemm ? "expert_gemm" : "expert_gemv");
    float *want = malloc((size_t)(n * cols) * 4), *got = malloc((size_t)(n * cols) * 4), *row = malloc((size_t)N * 4);
    for (int64_t e = 0; e < E; e++)
        for (int64_t p = begin[e]; p < begin[e + 1]; p++) {
            const float *x = in + (by_token ? st[p] : p) * ldin;
            for (int64_t o = 0; o < N; o++) {
                double acc = 0;
                for (int64_t c = 0; c < K; c++)
                    acc += (double)W[(e * N + o) * K + c] * x[c];
                row[o] = (float)acc;
            }
            for (int64_t o = 0; o < cols; o++)
                want[p * cols + o] = pc->swiglu ? jb_silu(row[o]) * row[I + o] : row[o];
        }
    gt_to_host(odt, got, d_out, n * cols);
    char what[160];
    snprintf(what, sizeof what, "%s %s%s%s N=%lld K=%lld ldin=%lld T=%lld E=%lld k=%lld%s%s out %s",
             pc->gemm ? "gemm" : "gemv", gt_dname(dt), pc->q8 ? " int8 W" : "", pc->swiglu ? " SwiGLU" : "",
             (long long)N, (long long)K, (long long)ldin, (long long)pc->T, (long long)E, (long long)k,
             pc->dense ? " dense" : by_token ? " by token" : " by slot", pc->all_to_first ? " one expert for all" : "",
             gt_dname(odt));
    gt_expect_close(what, got, want, n * cols, gt_tol(odt));
    free(ex), free(pos), free(begin32), free(st32), free(w), free(sw), free(begin), free(st), free(W), free(in);
    free(want), free(got), free(row);
    gt_dev_free(d_W), gt_dev_free(d_in), gt_dev_free(d_begin), gt_dev_free(d_st), gt_dev_free(d_out);
    gt_dev_free(d_scale);
}

/* The GEMVs: 1..several slots per expert (T = 1, 2, 3, 7 with k = 2), empty experts, one expert taking
 * every token, odd N and K (scalar path), padded rows, SwiGLU, dense int8 rows, bf16/fp32 and int8 W. */
static void test_expert_gemv(void) {
    gt_rng r = {14};
    static const int64_t shapes[][2] = {{37, 40}, {64, 64}, {5, 3}, {300, 1000}, {34, 48}};
    static const int64_t tokens[] = {1, 2, 3, 7};
    for (int di = 0; di < 2; di++)
        for (size_t si = 0; si < 5; si++)
            for (int variant = 0; variant < 16; variant++) {
                product_case pc = {.N = shapes[si][0], .K = shapes[si][1], .T = tokens[(si + (size_t)variant) % 4],
                                   .E = 6, .k = 2, .dt = gt_dts[di], .by_token = variant & 1, .pad_ldin = variant & 2,
                                   .q8 = variant & 4, .all_to_first = variant & 8};
                pc.swiglu = pc.N % 2 == 0 && pc.by_token; /* gate|up reads tokens */
                pc.out_f32 = !pc.swiglu && (di == 0 || !pc.by_token);
                run_product_case(&r, &pc);
                if (pc.q8 && !pc.by_token && !pc.all_to_first) { /* the dense form: one matrix, rows [0, T) */
                    pc.dense = true;
                    run_product_case(&r, &pc);
                }
            }
}

/* The w8a16 tensor-core product at prefill sizes: many slots per expert (several M tiles), a partial last
 * tile, odd N (a partial N tile), K a multiple of 16 but not of the 64-wide stage, padded rows, SwiGLU,
 * fp32 and bf16 outputs, the dense form; and K not a multiple of 16 refused clearly. */
static void test_expert_gemm(void) {
    gt_rng r = {17};
    static const int64_t shapes[][2] = {{37, 48}, {300, 1008}, {130, 16}, {256, 64}};
    for (size_t si = 0; si < 4; si++)
        for (int variant = 0; variant < 8; variant++) {
            product_case pc = {.N = shapes[si][0], .K = shapes[si][1], .T = variant & 4 ? 150 : 41, .E = 6, .k = 2,
                               .dt = JAMBA_DTYPE_BF16, .q8 = true, .gemm = true, .by_token = variant & 1,
                               .pad_ldin = variant & 2, .all_to_first = si % 2 == 1};
            pc.swiglu = pc.by_token && pc.N % 2 == 0;
            pc.out_f32 = !pc.swiglu && variant % 3 != 0;
            run_product_case(&r, &pc);
            if (variant == 0) {
                pc.dense = true, pc.T = 77;
                run_product_case(&r, &pc);
            }
        }
    int8_t *d_W = gt_dev_poisoned(64 * 40);
    float *d_scale = gt_dev_poisoned(64 * 4);
    void *d_in = gt_dev_poisoned(100 * 40 * 2), *d_out = gt_dev_poisoned(100 * 64 * 4);
    jb_cuda_gemv_args g = {d_W, JAMBA_DTYPE_I8, d_scale, 0, 64, 40, d_in, 40, NULL, NULL, 100, 1, d_out, true,
                          false, 0, 0};
    GT_CHECK(!jb_cuda_expert_gemm_supported(JAMBA_DTYPE_BF16, &g), "K = 40 accepted by the tensor-core product");
    GT_CHECK(jb_cuda_expert_gemm(JAMBA_DTYPE_BF16, &g, 0) == cudaErrorInvalidValue, "K = 40 not refused");
    GT_CHECK(!jb_cuda_expert_gemm_supported(JAMBA_DTYPE_F32, &g), "fp32 activations accepted by the bf16 product");
    gt_dev_free(d_W), gt_dev_free(d_scale), gt_dev_free(d_in), gt_dev_free(d_out);
}

/* The MoE block's expert half as jb_cuda_moe_ffn runs it (device plan, gate|up with SwiGLU in the
 * epilogue, down, combine) against the CPU twin (moe/router.c's plan, cpu/ops.h's SiLU, the products in
 * double, act rounded to dt, the combine in ascending expert order): the GEMVs at decode sizes, the
 * tensor-core product at prefill sizes. */
static void test_moe_block(void) {
    gt_rng r = {18};
    static const int64_t cfg[][2] = {{1, 0}, {3, 0}, {32, 0}, {120, 1}, {200, 1}}; /* T, tensor cores */
    for (int di = 0; di < 2; di++)
        for (size_t ci = 0; ci < 5; ci++) {
            const jamba_dtype dt = gt_dts[di];
            const bool gemm = cfg[ci][1] && dt == JAMBA_DTYPE_BF16;
            const int64_t T = cfg[ci][0], E = 8, k = 2, H = 96, I = 80, n = T * k;
            int32_t *ex = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4);
            float *w = malloc((size_t)n * 4), *sw = malloc((size_t)n * 4);
            int64_t *begin = malloc((size_t)(E + 1) * 8), *st = malloc((size_t)n * 8);
            random_routing_mode(&r, T, E, k, ex, w, ci == 4);
            cpu_plan(ex, w, T, E, k, begin, st, sw, pos);
            float *Wgu = malloc((size_t)(E * 2 * I * H) * 4), *Wdn = malloc((size_t)(E * H * I) * 4);
            float *d_sgu, *d_sdn;
            void *d_gu = gemv_weights(&r, dt, true, E * 2 * I, H, Wgu, &d_sgu);
            void *d_dn = gemv_weights(&r, dt, true, E * H, I, Wdn, &d_sdn);
            float *xn = gt_random(&r, T * H, -1, 1, dt);
            void *d_xn = gt_dev_from(dt, xn, T * H);
            int32_t *d_ex = gt_dev_bytes(ex, (size_t)n * 4), *d_begin = gt_dev_poisoned((size_t)(E + 1) * 4);
            int32_t *d_st = gt_dev_poisoned((size_t)n * 4), *d_pos = gt_dev_poisoned((size_t)n * 4);
            float *d_w = gt_dev_bytes(w, (size_t)n * 4), *d_sw = gt_dev_poisoned((size_t)n * 4);
            void *d_act = gt_dev_poisoned((size_t)(n * I) * gt_esize(dt));
            float *d_eo = gt_dev_poisoned((size_t)(n * H) * 4), *d_mix = gt_dev_poisoned((size_t)(T * H) * 4);
            GT_CUDA(jb_cuda_moe_plan(d_ex, d_w, T, E, k, d_begin, d_st, d_sw, d_pos, 0));
            const int64_t used = n < E ? n : E;
            jb_cuda_gemv_args gu = {d_gu, JAMBA_DTYPE_I8, d_sgu, 2 * I * H, 2 * I, H, d_xn, H, d_st, d_begin, 0, E,
                                   d_act, false, true, used, n};
            jb_cuda_gemv_args dn = {d_dn, JAMBA_DTYPE_I8, d_sdn, H * I, H, I, d_act, I, NULL, d_begin, 0, E, d_eo,
                                   true, false, used, n};
            GT_CUDA(gemm ? jb_cuda_expert_gemm(dt, &gu, 0) : jb_cuda_expert_gemv(dt, &gu, 0));
            GT_CUDA(gemm ? jb_cuda_expert_gemm(dt, &dn, 0) : jb_cuda_expert_gemv(dt, &dn, 0));
            GT_CUDA(jb_cuda_moe_combine(d_eo, d_pos, d_ex, d_w, T, k, H, d_mix, 0));
            gt_sync("MoE block");
            /* the CPU twin */
            float *act = malloc((size_t)I * 4), *want = calloc((size_t)(T * H), 4), *got = malloc((size_t)(T * H) * 4);
            for (int64_t e = 0; e < E; e++)
                for (int64_t p = begin[e]; p < begin[e + 1]; p++) {
                    const float *x = xn + st[p] * H;
                    for (int64_t j = 0; j < I; j++) {
                        double g = 0, u = 0;
                        for (int64_t c = 0; c < H; c++) {
                            g += (double)Wgu[(e * 2 * I + j) * H + c] * x[c];
                            u += (double)Wgu[(e * 2 * I + I + j) * H + c] * x[c];
                        }
                        act[j] = jb_silu((float)g) * (float)u;
                    }
                    if (dt == JAMBA_DTYPE_BF16)
                        gt_round_bf16(act, I);
                    for (int64_t h = 0; h < H; h++) {
                        double y = 0;
                        for (int64_t j = 0; j < I; j++)
                            y += (double)Wdn[(e * H + h) * I + j] * act[j];
                        want[st[p] * H + h] += (float)y * sw[p];
                    }
                }
            gt_to_host(JAMBA_DTYPE_F32, got, d_mix, T * H);
            char what[96];
            snprintf(what, sizeof what, "MoE block %s T=%lld %s", gt_dname(dt), (long long)T,
                     gemm ? "tensor cores" : "GEMVs");
            gt_expect_close(what, got, want, T * H, gt_tol(dt));
            free(ex), free(pos), free(w), free(sw), free(begin), free(st), free(Wgu), free(Wdn), free(xn);
            free(act), free(want), free(got);
            gt_dev_free(d_gu), gt_dev_free(d_dn), gt_dev_free(d_sgu), gt_dev_free(d_sdn), gt_dev_free(d_xn);
            gt_dev_free(d_ex), gt_dev_free(d_begin), gt_dev_free(d_st), gt_dev_free(d_pos), gt_dev_free(d_w);
            gt_dev_free(d_sw), gt_dev_free(d_act), gt_dev_free(d_eo), gt_dev_free(d_mix);
        }
}

const gt_case gt_moe_cases[] = {
    {"ops/moe/route", test_moe_route, true},
    {"ops/moe/plan_combine", test_moe_plan_and_combine, true},
    {"ops/moe/expert_gemv", test_expert_gemv, true},
    {"ops/moe/expert_gemm", test_expert_gemm, true},
    {"ops/moe/block", test_moe_block, true},
};
const int gt_n_moe_cases = sizeof gt_moe_cases / sizeof gt_moe_cases[0];

/*
 * test_ops.c — the CPU reference ops and the MoE router on small hand-checked cases: conv orientation and
 * carried window, scan recurrence, softplus threshold, RMSNorm, matmul over every weight dtype (also
 * misaligned), fp16/bf16 widening, attention masking and GQA, routing ties/NaN and the dispatch plan,
 * and the thread pool's coverage of ranges.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe/router.h"
#include "cpu/attention.h"
#include "cpu/mamba.h"
#include "cpu/ops.h"
#include "tests/support/testutil.h"

static jb_pool *pool_of(int n) {
    jb_pool *p = NULL;
    cr_assert_eq(jb_pool_create(n, &p, NULL), JAMBA_OK);
    return p;
}

/* ---- thread pool ------------------------------------------------------------------------------ */

static void mark(void *arg, int64_t b, int64_t e, int thread) {
    (void)thread;
    int *hits = arg;
    for (int64_t i = b; i < e; i++)
        __atomic_fetch_add(&hits[i], 1, __ATOMIC_RELAXED);
}

JB_TEST(pool, every_item_exactly_once) {
    for (int threads = 1; threads <= 6; threads++) {
        jb_pool *p = pool_of(threads);
        for (int64_t n = 0; n < 40; n += 3)
            for (int64_t grain = 1; grain < 9; grain += 4) {
                int hits[40] = {0};
                jb_pool_run(p, n, grain, mark, hits);
                for (int64_t i = 0; i < 40; i++)
                    cr_assert_eq(hits[i], i < n ? 1 : 0, "threads %d n %lld grain %lld item %lld", threads,
                                 (long long)n, (long long)grain, (long long)i);
            }
        jb_pool_free(p);
    }
    jb_pool_free(NULL);
}

/* ---- widening and matmul ---------------------------------------------------------------------- */

JB_TEST(ops, half_and_bfloat_widening) {
    const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8400, 0x7c00, 0x0000, 0x8000, 0x03ff};
    const float want[] = {1.0f, -2.0f, 65504.0f, 5.9604645e-8f, -6.1035156e-5f, INFINITY, 0.0f, -0.0f,
                          6.0975552e-5f};
    float out[9];
    jb_to_f32(out, f16, JAMBA_DTYPE_F16, 9);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(out[i], want[i], "f16 %04x -> %g, want %g", f16[i], out[i], want[i]);
    uint16_t nan16 = 0x7e00;
    jb_to_f32(out, &nan16, JAMBA_DTYPE_F16, 1);
    cr_assert(isnan(out[0]));
    const uint16_t bf[] = {0x3f80, 0xc2f7, 0x0001};
    jb_to_f32(out, bf, JAMBA_DTYPE_BF16, 3);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -123.5f);
    cr_assert_gt(out[2], 0.0f);
}

static uint16_t to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)(b >> 16); /* exact for the values used (few mantissa bits) */
}

JB_TEST(ops, matmul_every_dtype_and_alignment) {
    enum { T = 5, K = 19, N = 11 };
    float x[T * K], w[N * K], bias[N], want[T * N];
    for (int i = 0; i < T * K; i++)
        x[i] = (float)((i * 7) % 13) - 6.0f;
    for (int i = 0; i < N * K; i++)
        w[i] = (float)((i * 5) % 9) * 0.25f - 1.0f;
    for (int i = 0; i < N; i++)
        bias[i] = (float)i;
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = bias[n];
            for (int k = 0; k < K; k++)
                s += (double)x[t * K + k] * w[n * K + k];
            want[t * N + n] = (float)s;
        }
    /* storage: F32, BF16, F16 (values exact in every format), each aligned and at an odd address */
    uint8_t *store = malloc(N * K * 4 + 1);
    for (int threads = 1; threads <= 3; threads += 2) {
        jb_pool *p = pool_of(threads);
        for (int dt = 0; dt < 3; dt++)
            for (int odd = 0; odd < 2; odd++) {
                jamba_dtype dtype = dt == 0 ? JAMBA_DTYPE_F32 : dt == 1 ? JAMBA_DTYPE_BF16 : JAMBA_DTYPE_F16;
                uint8_t *base = store + odd;
                for (int i = 0; i < N * K; i++) {
                    if (dtype == JAMBA_DTYPE_F32) {
                        memcpy(base + 4 * i, &w[i], 4);
                    } else {
                        uint16_t h = dtype == JAMBA_DTYPE_BF16 ? to_bf16(w[i]) : 0;
                        if (dtype == JAMBA_DTYPE_F16) { /* quarter steps in [-1, 1]: sign, exponent, 2 bits */
                            float a = fabsf(w[i]);
                            int e = a == 0 ? 0 : (int)floorf(log2f(a));
                            uint16_t mant = a == 0 ? 0 : (uint16_t)((a / ldexpf(1.0f, e) - 1.0f) * 1024.0f);
                            h = a == 0 ? 0 : (uint16_t)(((e + 15) << 10) | mant);
                            if (w[i] < 0)
                                h |= 0x8000;
                        }
                        memcpy(base + 2 * i, &h, 2);
                    }
                }
                jb_weight wt = {base, dtype, 2, {N, K, 0}, NULL};
                float y[T * N];
                jb_cpu_matmul(p, y, x, T, &wt, bias);
                for (int i = 0; i < T * N; i++)
                    cr_assert_float_eq(y[i], want[i], 1e-4, "dtype %s odd %d threads %d [%d]: %g vs %g",
                                       jamba_dtype_name(dtype), odd, threads, i, y[i], want[i]);
            }
        jb_pool_free(p);
    }
    free(store);
}

JB_TEST(ops, rmsnorm_and_activations) {
    float x[2][4] = {{1, 2, 3, 4}, {0, 0, 0, 0}}, w[4] = {1, 2, 0.5f, -1}, y[2][4];
    jb_cpu_rmsnorm(&y[0][0], &x[0][0], 2, 4, 4, w, 1e-6);
    float inv = 1.0f / sqrtf(7.5f + 1e-6f);
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(y[0][i], w[i] * x[0][i] * inv, 1e-6);
        cr_assert_eq(y[1][i], 0.0f);
    }
    /* strided rows, in place, over a column slice */
    float m[2][6] = {{9, 3, 4, 9, 9, 9}, {9, 6, 8, 9, 9, 9}};
    float ones[2] = {1, 1};
    jb_cpu_rmsnorm(&m[0][1], &m[0][1], 2, 2, 6, ones, 0);
    cr_assert_float_eq(m[0][1], 3 / sqrtf(12.5f), 1e-6);
    cr_assert_float_eq(m[1][2], 8 / sqrtf(50.0f), 1e-6);
    cr_assert_eq(m[0][0], 9);
    cr_assert_eq(m[1][3], 9);
    /* softplus passes values above 20 through unchanged (torch's threshold) */
    cr_assert_eq(jb_softplus(20.5f), 20.5f);
    cr_assert_float_eq(jb_softplus(0.0f), logf(2.0f), 1e-7);
    cr_assert_float_eq(jb_softplus(19.9f), log1pf(expf(19.9f)), 1e-5);
    cr_assert_float_eq(jb_silu(1.0f), 1.0f / (1.0f + expf(-1.0f)), 1e-7);
    cr_assert_eq(jb_silu(0.0f), 0.0f);
}

/* ---- Mamba ops -------------------------------------------------------------------------------- */

JB_TEST(mamba, conv_orientation_and_carried_window) {
    /* one channel, K = 3, weights [a, b, c]: out_t = SiLU(a x_{t-2} + b x_{t-1} + c x_t + bias) */
    jb_pool *p = pool_of(2);
    float w[3] = {100, 10, 1}, b = 0.5f, window[2] = {0, 0};
    float xs[5] = {1, 2, 3, 4, 5}, out[5];
    jb_conv_args a = {.n = 5, .d_inner = 1, .d_conv = 3, .x = xs, .ldx = 1, .w = w, .b = &b, .window = window, .out = out};
    jb_cpu_conv_silu(p, &a, 1);
    const float pre[5] = {1 + 0.5f, 10 + 2 + 0.5f, 100 + 20 + 3 + 0.5f, 200 + 30 + 4 + 0.5f, 300 + 40 + 5 + 0.5f};
    for (int t = 0; t < 5; t++)
        cr_assert_float_eq(out[t], jb_silu(pre[t]), 1e-4, "t %d", t);
    cr_assert_eq(window[0], 4);
    cr_assert_eq(window[1], 5);
    /* continuing: the next token sees the carried window */
    float x6 = 6, o6;
    a.n = 1, a.x = &x6, a.out = &o6;
    jb_cpu_conv_silu(p, &a, 1);
    cr_assert_float_eq(o6, jb_silu(400 + 50 + 6 + 0.5f), 1e-3);
    jb_pool_free(p);
}

JB_TEST(mamba, scan_recurrence_by_hand) {
    /* one channel, N = 2: h = exp(A dt) h + dt B u; y = (h . C + D u) SiLU(z) */
    jb_pool *p = pool_of(1);
    const float u[2] = {1.0f, -2.0f}, dt[2] = {0.5f, 0.25f}, BC[2][4] = {{1, 2, 3, 4}, {-1, 1, 0.5f, 2}};
    const float A[2] = {-1.0f, -2.0f}, D = 0.5f, z[2] = {1.0f, -1.0f};
    float state[2] = {0.25f, -0.5f}, y[2];
    jb_scan_args a = {.n = 2, .d_inner = 1, .d_state = 2, .u = u, .delta = dt, .B = &BC[0][0], .C = &BC[0][2],
                      .ldbc = 4, .A = A, .D = &D, .z = z, .ldz = 1, .state = state, .y = y};
    jb_cpu_selective_scan(p, &a, 1);
    double h0 = 0.25, h1 = -0.5, yy[2];
    for (int t = 0; t < 2; t++) {
        h0 = exp(A[0] * dt[t]) * h0 + dt[t] * BC[t][0] * u[t];
        h1 = exp(A[1] * dt[t]) * h1 + dt[t] * BC[t][1] * u[t];
        double s = h0 * BC[t][2] + h1 * BC[t][3] + D * u[t];
        yy[t] = s * (z[t] / (1 + exp(-z[t])));
    }
    cr_assert_float_eq(y[0], yy[0], 1e-6);
    cr_assert_float_eq(y[1], yy[1], 1e-6);
    cr_assert_float_eq(state[0], h0, 1e-6);
    cr_assert_float_eq(state[1], h1, 1e-6);
    jb_pool_free(p);
}

/* ---- attention -------------------------------------------------------------------------------- */

JB_TEST(attention, causal_gqa_by_hand) {
    /* 4 query heads share 2 KV heads (GQA 2:1), d_h = 2, three positions, rows 1 and 2 queried */
    jb_pool *p = pool_of(2);
    enum { NH = 4, NKV = 2, DH = 2, POS = 3 };
    float k[POS * NKV * DH], v[POS * NKV * DH], q[2 * NH * DH], out[2 * NH * DH];
    for (int i = 0; i < POS * NKV * DH; i++) {
        k[i] = sinf((float)i);
        v[i] = cosf((float)i * 0.7f);
    }
    for (int i = 0; i < 2 * NH * DH; i++)
        q[i] = (float)(i % 5) - 2.0f;
    float scratch[2 * 8];
    jb_attn_args a = {.n = 2, .pos = 1, .n_heads = NH, .n_kv_heads = NKV, .head_dim = DH, .q = q, .k = k, .v = v,
                      .out = out, .scratch = scratch, .scratch_stride = 8};
    jb_cpu_attention(p, &a, 1);
    for (int r = 0; r < 2; r++)
        for (int h = 0; h < NH; h++) {
            int g = h / 2, keys = 1 + r + 1;
            double s[3], mx = -1e30, sum = 0;
            for (int j = 0; j < keys; j++) {
                s[j] = 0;
                for (int d = 0; d < DH; d++)
                    s[j] += q[(r * NH + h) * DH + d] * k[(j * NKV + g) * DH + d];
                s[j] /= sqrt(DH);
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j < keys; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (int d = 0; d < DH; d++) {
                double o = 0;
                for (int j = 0; j < keys; j++)
                    o += s[j] / sum * v[(j * NKV + g) * DH + d];
                cr_assert_float_eq(out[(r * NH + h) * DH + d], o, 1e-6, "row %d head %d dim %d", r, h, d);
            }
        }
    jb_pool_free(p);
}

/* ---- routing ---------------------------------------------------------------------------------- */

JB_TEST(router, softmax_topk_without_renormalisation) {
    float logits[2][4] = {{1, 3, 2, 0}, {0, 0, 0, 0}};
    int32_t ex[2][2];
    float w[2][2];
    jb_moe_route(&logits[0][0], 2, 4, 2, &ex[0][0], &w[0][0]);
    double z = exp(1) + exp(3) + exp(2) + exp(0);
    cr_assert_eq(ex[0][0], 1);
    cr_assert_eq(ex[0][1], 2);
    cr_assert_float_eq(w[0][0], exp(3) / z, 1e-6);
    cr_assert_float_eq(w[0][1], exp(2) / z, 1e-6);
    cr_assert_lt(w[0][0] + w[0][1], 0.95f, "weights are not renormalised");
    /* ties go to the lower expert index */
    cr_assert_eq(ex[1][0], 0);
    cr_assert_eq(ex[1][1], 1);
    cr_assert_float_eq(w[1][0], 0.25f, 1e-7);
}

JB_TEST(router, nan_and_inf_never_give_invalid_experts) {
    float logits[3][3] = {{NAN, 1, 2}, {NAN, NAN, NAN}, {INFINITY, 0, -INFINITY}};
    int32_t ex[3][2];
    float w[3][2];
    jb_moe_route(&logits[0][0], 3, 3, 2, &ex[0][0], &w[0][0]);
    for (int t = 0; t < 3; t++) {
        cr_assert(ex[t][0] >= 0 && ex[t][0] < 3 && ex[t][1] >= 0 && ex[t][1] < 3, "row %d", t);
        cr_assert_neq(ex[t][0], ex[t][1], "row %d picks one expert twice", t);
    }
}

JB_TEST(router, plan_groups_by_expert_in_token_order) {
    /* 4 tokens, top-2 over 3 experts */
    const int32_t ex[4][2] = {{2, 0}, {0, 1}, {2, 1}, {0, 2}};
    const float w[4][2] = {{.5f, .3f}, {.6f, .2f}, {.7f, .1f}, {.4f, .35f}};
    int64_t begin[4], token[8];
    float weight[8];
    jb_moe_plan plan = {.expert_begin = begin, .slot_token = token, .slot_weight = weight};
    jb_moe_plan_build(&plan, &ex[0][0], &w[0][0], 4, 3, 2);
    const int64_t want_begin[4] = {0, 3, 5, 8};
    const int64_t want_token[8] = {0, 1, 3, 1, 2, 0, 2, 3};
    const float want_weight[8] = {.3f, .6f, .4f, .2f, .1f, .5f, .7f, .35f};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(begin[i], want_begin[i]);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(token[i], want_token[i], "slot %d", i);
        cr_assert_eq(weight[i], want_weight[i], "slot %d", i);
    }
    /* every expert empty but one */
    const int32_t all0[3] = {1, 1, 1};
    const float ones[3] = {1, 1, 1};
    jb_moe_plan_build(&plan, all0, ones, 3, 3, 1);
    cr_assert_eq(begin[0], 0);
    cr_assert_eq(begin[1], 0);
    cr_assert_eq(begin[2], 3);
    cr_assert_eq(begin[3], 3);
}

/*
 * test_gpu_attention.c — KV append and causal attention (jb_cuda_kv_append, jb_cuda_attention: the key-split
 * path and the flash path) against the CPU twin: GQA ratios, several sequences at different positions,
 * bf16 and fp8 caches.
 */
#include "tests/gpu/gpu_ops.h"

#include "ckpt/dtype.h"
#include "cpu/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    gt_dev_step ds = gt_make_step(segs, 4, T, NULL);
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
    void *d_out = gt_dev_poisoned((size_t)(T * q) * gt_esize(dt));
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
    float *scratch = malloc((size_t)(4 * JB_CPU_ATTN_HEADS_MAX * C) * 4);
    for (int64_t t = 0; t < T; t++)
        memcpy(qc + t * q, qkv + t * ld, (size_t)q * 4);
    for (int64_t s = 0; s < 4; s++) {
        jb_attn_args c = {.n = segs[s].n, .pos = segs[s].pos, .n_heads = n_h, .n_kv_heads = n_kv, .head_dim = D,
                          .q = qc + segs[s].row * q, .k = kc + segs[s].seq * C * kv, .v = vc + segs[s].seq * C * kv,
                          .out = want + segs[s].row * q, .scratch = scratch,
                          .scratch_stride = JB_CPU_ATTN_HEADS_MAX * C};
        jb_cpu_attention(gt_cpu_pool(), &c, 1);
    }
    gt_to_host(dt, got, d_out, T * q);
    char what[128];
    snprintf(what, sizeof what, "%s%s heads %lld/%lld d_h %lld path %d splits %d", gt_dname(dt), fp8 ? " fp8 KV" : "",
             (long long)n_h, (long long)n_kv, (long long)D, force, n_splits);
    gt_expect_close(what, got, want, T * q, gt_tol(dt));
    free(qkv), free(kc), free(vc), free(qc), free(want), free(got), free(scratch), free(gk), free(gv);
    gt_dev_free(d_qkv), gt_dev_free(d_k), gt_dev_free(d_v), gt_dev_free(d_out), gt_dev_free(d_part);
    gt_dev_free(d_ks), gt_dev_free(d_vs);
    gt_free_step(&ds);
}

static void test_attention_split(void) {
    gt_rng r = {10};
    static const int64_t heads[][3] = {{4, 4, 16}, {8, 2, 64}, {6, 3, 20}, {8, 1, 128}, {32, 8, 128}, {4, 2, 4},
                                       {20, 1, 256}};
    for (int di = 0; di < 2; di++)
        for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++) {
            if (gt_small_only() && hi > 2)
                break;
            attention_case(gt_dts[di], heads[hi][0], heads[hi][1], heads[hi][2], 1, 1, false, &r);
            attention_case(gt_dts[di], heads[hi][0], heads[hi][1], heads[hi][2], 1, 5, false, &r);
            attention_case(gt_dts[di], heads[hi][0], heads[hi][1], heads[hi][2], 1, 5, true, &r);
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

const gt_case gt_attention_cases[] = {
    {"ops/attention/split", test_attention_split, true},
    {"ops/attention/flash", test_attention_flash, true},
};
const int gt_n_attention_cases = sizeof gt_attention_cases / sizeof gt_attention_cases[0];

/*
 * test_gpu_attention.c — KV append and causal attention (jb_cuda_kv_append, jb_cuda_attention: the generic
 * key-split kernel, the tensor-core decode and flash prefill kernels) against the CPU twin: GQA ratios 1, 3,
 * 4 and 8, d_h 64 and 128 (and odd ones on the generic kernel), bf16 and fp8 caches, several sequences at
 * different positions, odd segment lengths, causal tiles straddling tile boundaries, and decode rows whose
 * split counts differ inside one call (1 split beside many). Split launches merge in their last-arriving
 * block: every case checks that the arrival counters are back at zero and that a second run over a
 * poisoned output gives the same bytes. The index arithmetic is checked on the CPU by
 * tests/test_attn_layout.c.
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

/* The steps the cases run: each sequence (its cache slot) appears once, segments in row order. */
typedef struct attn_layout {
    const char *name;
    int64_t C, S, n_segs, T; /* cache rows per sequence, sequences, segments, rows */
    jb_segment segs[5];
} attn_layout;

/* short: a prefill continuing a cache, two decode rows, a prefill of 70 rows from position 0. */
static const attn_layout SHORT = {"short", 256, 4, 4, 92,
                                  {{.seq = 2, .pos = 37, .n = 20, .row = 0},
                                   {.seq = 0, .pos = 0, .n = 1, .row = 20},
                                   {.seq = 1, .pos = 180, .n = 1, .row = 21},
                                   {.seq = 3, .pos = 5, .n = 70, .row = 22}}};
/* mixed: decode rows at 2,000, 300 and 5 keys (so with a small minimum split length each row uses a
 * different split count in the one call), a 33-row prefill at 1,200 and a 67-row prefill from 63 whose
 * queries straddle the 64-key tile boundaries (causal diagonal tiles with odd offsets). */
static const attn_layout MIXED = {"mixed", 2048, 5, 5, 103,
                                  {{.seq = 1, .pos = 1999, .n = 1, .row = 0},
                                   {.seq = 0, .pos = 300, .n = 1, .row = 1},
                                   {.seq = 2, .pos = 1200, .n = 33, .row = 2},
                                   {.seq = 3, .pos = 63, .n = 67, .row = 35},
                                   {.seq = 4, .pos = 5, .n = 1, .row = 102}}};

/* Append the step's k/v, then attend (path `force`, at most n_splits splits of at least split_min keys);
 * checked against the CPU twin. fp8: the cache is e4m3 with scales; the appended rows must be the new k/v
 * within e4m3 precision, and the attention is checked against the CPU over the values the cache then holds. */
static void attention_case(const attn_layout *lay, jamba_dtype dt, int64_t n_h, int64_t n_kv, int64_t D, int force,
                           int32_t n_splits, int64_t split_min, bool fp8, gt_rng *r) {
    const int64_t C = lay->C, S = lay->S, T = lay->T, q = n_h * D, kv = n_kv * D, ld = q + 2 * kv;
    const jb_segment *segs = lay->segs;
    float *qkv = gt_random(r, T * ld, -1.5f, 1.5f, dt);
    float *kc = gt_random(r, S * C * kv, -1.5f, 1.5f, dt), *vc = gt_random(r, S * C * kv, -1.5f, 1.5f, dt);
    gt_dev_step ds = gt_make_step(segs, lay->n_segs, T, NULL);
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
    const size_t out_bytes = (size_t)(T * q) * gt_esize(dt);
    void *d_out = gt_dev_poisoned(out_bytes);
    const int64_t pcap = T * n_h * n_splits * (D + 2), n_counters = T * n_h; /* >= rows x KV head groups */
    float *d_part = gt_dev_poisoned((size_t)pcap * 4);
    unsigned int *counters = calloc((size_t)n_counters, 4);
    unsigned int *d_count = gt_dev_bytes(counters, (size_t)n_counters * 4);
    jb_cuda_attn_args a = {.qkv = d_qkv, .ld_qkv = ld, .k_cache = d_k, .v_cache = d_v, .seq_stride = C * kv,
                          .kv_dt = fp8 ? JAMBA_DTYPE_F8_E4M3 : dt, .k_scale = d_ks, .v_scale = d_vs,
                          .scale_seq_stride = C * n_kv, .out = d_out, .n_heads = n_h, .n_kv_heads = n_kv,
                          .head_dim = D, .partial = d_part, .partial_capacity = pcap, .split_count = d_count,
                          .split_count_capacity = n_counters, .n_splits = n_splits, .split_len = split_min};
    cudaError_t e = jb_cuda_kv_append(dt, &a, &ds.step, 0);
    if (e == cudaSuccess)
        e = jb_cuda_attention(dt, &a, &ds.step, force, 0);
    GT_CHECK(e == cudaSuccess, "attention launch: %s", cudaGetErrorString(e));
    gt_sync("attention");
    /* the split paths merge in the last-arriving block: its counters are back at zero, and the same call
     * again (other arrival orders, over a poisoned output) gives the same bytes */
    unsigned char *first = malloc(out_bytes), *again = malloc(out_bytes);
    cudaMemcpy(first, d_out, out_bytes, cudaMemcpyDeviceToHost);
    for (int run = 0; run < 2; run++) {
        cudaMemcpy(counters, d_count, (size_t)n_counters * 4, cudaMemcpyDeviceToHost);
        int64_t left = 0;
        for (int64_t i = 0; i < n_counters; i++)
            left += counters[i] != 0;
        GT_CHECK(left == 0, "%s %s path %d splits <= %d: %lld arrival counters left non-zero after run %d", lay->name,
                 gt_dname(dt), force, n_splits, (long long)left, run + 1);
        if (run == 1 || n_splits == 1)
            break;
        cudaMemset(d_out, 0xff, out_bytes); /* NaN: an output the second run misses shows */
        e = jb_cuda_attention(dt, &a, &ds.step, force, 0);
        GT_CHECK(e == cudaSuccess, "attention launch again: %s", cudaGetErrorString(e));
        gt_sync("attention again");
        cudaMemcpy(again, d_out, out_bytes, cudaMemcpyDeviceToHost);
        GT_CHECK(memcmp(first, again, out_bytes) == 0, "%s %s path %d splits <= %d: a second run differs", lay->name,
                 gt_dname(dt), force, n_splits);
    }
    free(first), free(again), free(counters);
    /* the CPU twin: append, then attend per segment */
    for (int64_t s = 0; s < lay->n_segs; s++)
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
    float *scratch = malloc((size_t)(8 * JB_CPU_ATTN_HEADS_MAX * C) * 4);
    for (int64_t t = 0; t < T; t++)
        memcpy(qc + t * q, qkv + t * ld, (size_t)q * 4);
    for (int64_t s = 0; s < lay->n_segs; s++) {
        jb_attn_args c = {.n = segs[s].n, .pos = segs[s].pos, .n_heads = n_h, .n_kv_heads = n_kv, .head_dim = D,
                          .q = qc + segs[s].row * q, .k = kc + segs[s].seq * C * kv, .v = vc + segs[s].seq * C * kv,
                          .out = want + segs[s].row * q, .scratch = scratch,
                          .scratch_stride = JB_CPU_ATTN_HEADS_MAX * C};
        jb_cpu_attention(gt_cpu_pool(), &c, 1);
    }
    gt_to_host(dt, got, d_out, T * q);
    char what[160];
    snprintf(what, sizeof what, "%s %s%s heads %lld/%lld d_h %lld path %d splits <= %d of >= %lld keys", lay->name,
             gt_dname(dt), fp8 ? " fp8 KV" : "", (long long)n_h, (long long)n_kv, (long long)D, force, n_splits,
             (long long)split_min);
    gt_expect_close(what, got, want, T * q, gt_tol(dt));
    /* every row's own value, per row: a wrong causal boundary shows in single rows that the total hides */
    for (int64_t t = 0; t < T; t++) {
        const double e_row = gt_nmse(got + t * q, want + t * q, q);
        GT_CHECK(e_row <= 20 * gt_tol(dt), "%s: row %lld nmse %.3g", what, (long long)t, e_row);
    }
    free(qkv), free(kc), free(vc), free(qc), free(want), free(got), free(scratch), free(gk), free(gv);
    gt_dev_free(d_qkv), gt_dev_free(d_k), gt_dev_free(d_v), gt_dev_free(d_out), gt_dev_free(d_part);
    gt_dev_free(d_count);
    gt_dev_free(d_ks), gt_dev_free(d_vs);
    gt_free_step(&ds);
}

/* The generic split kernel (force 3) on every head shape, fp32 and bf16, one or several splits. */
static void test_attention_split(void) {
    gt_rng r = {10};
    static const int64_t heads[][3] = {{4, 4, 16}, {8, 2, 64}, {6, 3, 20}, {8, 1, 128}, {32, 8, 128}, {4, 2, 4},
                                       {20, 1, 256}};
    for (int di = 0; di < 2; di++)
        for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++) {
            if (gt_small_only() && hi > 2)
                break;
            attention_case(&SHORT, gt_dts[di], heads[hi][0], heads[hi][1], heads[hi][2], 3, 1, 256, false, &r);
            attention_case(&SHORT, gt_dts[di], heads[hi][0], heads[hi][1], heads[hi][2], 3, 5, 52, false, &r);
            attention_case(&SHORT, gt_dts[di], heads[hi][0], heads[hi][1], heads[hi][2], 3, 5, 52, true, &r);
        }
    /* split counts that differ row by row inside one call: 1 split (the 5-key row) up to 8, and up to 32 */
    attention_case(&MIXED, JAMBA_DTYPE_F32, 8, 2, 64, 3, 8, 64, false, &r);
    attention_case(&MIXED, JAMBA_DTYPE_BF16, 6, 3, 20, 3, 8, 64, true, &r);
    attention_case(&MIXED, JAMBA_DTYPE_F32, 20, 2, 36, 3, 40, 1, false, &r);
}

/* GQA ratios 1, 3, 4 and 8 at d_h 64 and 128 (the models' 128 with 32/8 and 64/8 heads). */
static const int64_t MMA_HEADS[][3] = {{8, 2, 64}, {32, 8, 128}, {4, 4, 128}, {8, 1, 64}, {16, 2, 128}, {6, 2, 64},
                                       {64, 8, 128}};
#define N_MMA_HEADS (sizeof MMA_HEADS / sizeof MMA_HEADS[0])

/* The tensor-core decode kernel (force 1 with bf16): one split, several, and row-dependent split counts. */
static void test_attention_decode(void) {
    gt_rng r = {12};
    for (size_t hi = 0; hi < N_MMA_HEADS; hi++) {
        if (gt_small_only() && hi > 1)
            break;
        const int64_t *h = MMA_HEADS[hi];
        for (int f8 = 0; f8 < 2; f8++) {
            attention_case(&SHORT, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 1, 1, 256, f8, &r);
            attention_case(&SHORT, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 1, 5, 52, f8, &r);
            attention_case(&MIXED, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 1, 8, 64, f8, &r);
            attention_case(&MIXED, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 1, 40, 1, f8, &r); /* 64-key splits */
        }
    }
}

/* The flash prefill kernel (force 2) and the automatic choice (force 0), bf16 and fp8 caches. */
static void test_attention_flash(void) {
    gt_rng r = {11};
    for (size_t hi = 0; hi < N_MMA_HEADS; hi++) {
        if (gt_small_only() && hi > 1)
            break;
        const int64_t *h = MMA_HEADS[hi];
        for (int f8 = 0; f8 < 2; f8++) {
            attention_case(&SHORT, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 2, 1, 256, f8, &r);
            attention_case(&MIXED, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 2, 1, 256, f8, &r);
        }
        attention_case(&MIXED, JAMBA_DTYPE_BF16, h[0], h[1], h[2], 0, 4, 256, false, &r);
    }
}

/* Arguments the tensor-core paths cannot take are refused or routed to the generic kernel. */
static void test_attention_paths(void) {
    gt_rng r = {13};
    /* fp32 and d_h 20 have no flash path: an invalid-value error, not a wrong result */
    const jamba_dtype dts[2] = {JAMBA_DTYPE_F32, JAMBA_DTYPE_BF16};
    const int64_t dims[2] = {64, 20};
    for (int i = 0; i < 2; i++) {
        const int64_t D = dims[i], n_h = 4, n_kv = 2, T = SHORT.T, ld = (n_h + 2 * n_kv) * D;
        float *x = gt_random(&r, T * ld, -1, 1, dts[i]);
        void *d = gt_dev_from(dts[i], x, T * ld);
        gt_dev_step ds = gt_make_step(SHORT.segs, SHORT.n_segs, T, NULL);
        jb_cuda_attn_args a = {.qkv = d, .ld_qkv = ld, .k_cache = d, .v_cache = d, .seq_stride = 0, .kv_dt = dts[i],
                              .out = d, .n_heads = n_h, .n_kv_heads = n_kv, .head_dim = D, .n_splits = 1,
                              .split_len = 256};
        GT_CHECK(jb_cuda_attention(dts[i], &a, &ds.step, 2, 0) == cudaErrorInvalidValue, "flash refused for %s d_h %lld",
                 gt_dname(dts[i]), (long long)D);
        gt_free_step(&ds);
        gt_dev_free(d);
        free(x);
    }
    /* a launch of several splits needs its partials and one arrival counter per (row, KV head, head group):
     * 16 query heads per KV head are one group of the tensor-core kernel, two of the generic one */
    {
        const int64_t n_h = 32, n_kv = 2, D = 64, T = SHORT.T, ld = (n_h + 2 * n_kv) * D, n_splits = 4;
        void *d = gt_dev_poisoned((size_t)(T * ld) * 2);
        float *part = gt_dev_poisoned((size_t)(T * n_h * n_splits * (D + 2)) * 4);
        unsigned int *count = gt_dev_poisoned((size_t)(T * 4) * 4);
        gt_dev_step ds = gt_make_step(SHORT.segs, SHORT.n_segs, T, NULL);
        jb_cuda_attn_args a = {.qkv = d, .ld_qkv = ld, .k_cache = d, .v_cache = d, .seq_stride = 0,
                              .kv_dt = JAMBA_DTYPE_BF16, .out = d, .n_heads = n_h, .n_kv_heads = n_kv, .head_dim = D,
                              .partial = part, .partial_capacity = T * n_h * n_splits * (D + 2), .split_count = NULL,
                              .split_count_capacity = T * 4, .n_splits = n_splits, .split_len = 1};
        GT_CHECK(jb_cuda_attention(JAMBA_DTYPE_BF16, &a, &ds.step, 1, 0) == cudaErrorInvalidValue,
                 "a split launch without counters is refused");
        a.split_count = count, a.split_count_capacity = T * 2 - 1;
        GT_CHECK(jb_cuda_attention(JAMBA_DTYPE_BF16, &a, &ds.step, 1, 0) == cudaErrorInvalidValue,
                 "tensor-core decode: one counter short is refused");
        a.split_count_capacity = T * 2;
        GT_CHECK(jb_cuda_attention(JAMBA_DTYPE_BF16, &a, &ds.step, 3, 0) == cudaErrorInvalidValue,
                 "generic split path: two groups per KV head need twice the counters");
        a.split_count_capacity = T * 4, a.partial_capacity -= 1;
        GT_CHECK(jb_cuda_attention(JAMBA_DTYPE_BF16, &a, &ds.step, 3, 0) == cudaErrorInvalidValue,
                 "one partial float short is refused");
        gt_free_step(&ds);
        gt_dev_free(d), gt_dev_free(part), gt_dev_free(count);
    }
    /* the automatic choice falls back to the generic kernel and is right */
    attention_case(&SHORT, JAMBA_DTYPE_BF16, 4, 2, 20, 0, 4, 52, true, &r);
    attention_case(&MIXED, JAMBA_DTYPE_F32, 8, 1, 128, 0, 8, 64, true, &r);
}

const gt_case gt_attention_cases[] = {
    {"ops/attention/split", test_attention_split, true},
    {"ops/attention/decode", test_attention_decode, true},
    {"ops/attention/flash", test_attention_flash, true},
    {"ops/attention/paths", test_attention_paths, true},
};
const int gt_n_attention_cases = sizeof gt_attention_cases / sizeof gt_attention_cases[0];

/*
 * attn_combine.cuh — the end of a key-split attention block (cuda/attention.cu's generic kernel and
 * cuda/attn_flash.cu's tensor-core decode kernel), so a decode step's attention is one launch: a row of
 * several splits leaves one (max, sum, weighted values) partial per split and head; the block that arrives
 * last at its item (row, KV head, head group), counted by an integer counter per item, merges the item's
 * heads over their splits and writes the output, and sets the counter back to zero for the next launch (a
 * replayed decode graph). No float atomics: the merge reads the splits in split order, so the output does
 * not depend on which block came last. Blocks of splits a row does not use never touch the counter.
 */
#ifndef JB_CUDA_ATTN_COMBINE_CUH
#define JB_CUDA_ATTN_COMBINE_CUH

#include "cuda/attn_layout.h"
#include "cuda/common.cuh"
#include "cuda/ops.h"

#include <math.h>

/* What a key-split block works on: row r (whose segment is seg) over keys [k0, k1) of its n_keys, split
 * `split` of the `used` its length gives it (of at most max_splits), query heads [h0, h0 + n_h) of KV head
 * kvh (n_h <= heads_per_block). */
struct attn_split_item {
    jb_cuda_seg seg;
    int64_t r, n_keys, max_splits, split, used, k0, k1, kvh, h0;
    int n_h;
};

/* This block's item (blockIdx: x the row, y the KV head and head group, z the split); false when the row
 * uses fewer splits than the launch allows for (the block has nothing to do and must not count itself). */
__device__ __forceinline__ bool attn_split_item_of(const jb_cuda_attn_args &a, const int32_t *row_seg,
                                                   const jb_cuda_seg *segs, int head_groups, int heads_per_block,
                                                   attn_split_item &it) {
    it.r = blockIdx.x;
    it.seg = segs[row_seg[it.r]];
    it.n_keys = it.seg.pos + (it.r - it.seg.row) + 1;
    it.max_splits = gridDim.z, it.split = blockIdx.z;
    const int64_t len = jb_attn_split_len(it.n_keys, it.max_splits, a.split_len);
    it.used = jb_attn_splits_used(it.n_keys, len);
    if (it.split >= it.used)
        return false;
    it.k0 = it.split * len, it.k1 = it.k0 + len < it.n_keys ? it.k0 + len : it.n_keys;
    const int64_t group = a.n_heads / a.n_kv_heads, hg = blockIdx.y % head_groups;
    it.kvh = blockIdx.y / head_groups, it.h0 = it.kvh * group + hg * heads_per_block;
    it.n_h = (int)(group - hg * heads_per_block < heads_per_block ? group - hg * heads_per_block : heads_per_block);
    return true;
}

/* The block's WARPS warps merged for the item's heads: warp w's running max, sum and weighted values of
 * head g at m[w·HB + g], l[w·HB + g] and o[(w·HB + g)·D + d] (shared memory; a warp that saw no key has
 * max -inf). A row of one split gets its output (T, [T, n_heads·D]); a row of several this split's partial
 * (max, sum, values) for the last block to merge. */
template <typename T, int HB, int WARPS>
__device__ __forceinline__ void attn_merge_warps(const jb_cuda_attn_args &a, const attn_split_item &it, const float *m,
                                                 const float *l, const float *o, int D) {
    for (int idx = threadIdx.x; idx < it.n_h * D; idx += blockDim.x) {
        const int g = idx / D, d = idx % D;
        float M = -INFINITY;
        for (int w = 0; w < WARPS; w++)
            M = fmaxf(M, m[w * HB + g]);
        float L = 0.0f, O = 0.0f;
        for (int w = 0; w < WARPS; w++) {
            const float mw = m[w * HB + g];
            if (mw == -INFINITY)
                continue; /* a warp that saw no key */
            const float f = exp2f(mw - M);
            L += l[w * HB + g] * f;
            O += o[(w * HB + g) * D + d] * f;
        }
        const int64_t head = it.h0 + g;
        if (it.used == 1) {
            ((T *)a.out)[it.r * a.n_heads * D + head * D + d] = from_f32<T>(O / L);
        } else {
            float *part = a.partial + jb_attn_partial_at(it.r, a.n_heads, head, it.max_splits, it.split, D);
            part[2 + d] = O;
            if (d == 0)
                part[0] = M, part[1] = L;
        }
    }
}

/* Merge heads [h0, h0 + n_h) (n_h <= HB) of row r over their `used` splits into out_rows ([T, n_heads * D],
 * T), THREADS threads. Each head's max and sum come from warp reductions over its splits; then each output
 * of VEC dims (VEC 2 needs an even D: 8-byte aligned values) adds its splits' values weighted by
 * exp2(m - max) in split order, and is divided by the sum at the end. Partials are read from L2 (__ldcg):
 * other blocks of this launch wrote them. Few registers (the kernels around it are near their bounds): one
 * output at a time, its splits' loads unrolled. */
template <typename T, int HB, int THREADS, int VEC>
__device__ __forceinline__ void attn_combine_splits(const float *partial, T *out_rows, int64_t n_heads, int D,
                                                    int64_t r, int64_t h0, int n_h, int64_t used,
                                                    int64_t max_splits) {
    static_assert(VEC == 1 || VEC == 2, "scalar or float2 values");
    __shared__ float head_max[HB], head_inv[HB];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t stride = D + 2, head_stride = max_splits * stride;
    const float *part = partial + jb_attn_partial_at(r, n_heads, h0, max_splits, 0, D);
    for (int g = warp; g < n_h; g += THREADS / 32) {
        /* each lane's splits lane, lane + 32, ...: their max and their sum scaled to it, in one pass */
        const float *ph = part + g * head_stride;
        float m = -INFINITY, l = 0.0f;
        for (int64_t sp = lane; sp < used; sp += 32) {
            const float ms = __ldcg(ph + sp * stride), ls = __ldcg(ph + sp * stride + 1);
            const float m_new = fmaxf(m, ms);
            l = l * exp2f(m - m_new) + ls * exp2f(ms - m_new);
            m = m_new;
        }
        const float M = warp_max(m); /* finite: every used split saw at least one key */
        const float L = warp_sum(m == -INFINITY ? 0.0f : l * exp2f(m - M));
        if (lane == 0)
            head_max[g] = M, head_inv[g] = 1.0f / L;
    }
    __syncthreads();
    const int per_head = D / VEC;
    T *out = out_rows + (r * n_heads + h0) * D;
    for (int idx = threadIdx.x; idx < n_h * per_head; idx += THREADS) {
        const int g = idx / per_head, d = (idx - g * per_head) * VEC;
        const float *ph = part + g * head_stride;
        const float M = head_max[g];
        float acc[VEC];
#pragma unroll
        for (int v = 0; v < VEC; v++)
            acc[v] = 0.0f;
#pragma unroll 8
        for (int64_t sp = 0; sp < used; sp++) {
            const float *ps = ph + sp * stride;
            const float wt = exp2f(__ldcg(ps) - M);
            if (VEC == 2) {
                const float2 o = __ldcg((const float2 *)(ps + 2 + d));
                acc[0] = fmaf(o.x, wt, acc[0]);
                acc[VEC - 1] = fmaf(o.y, wt, acc[VEC - 1]);
            } else {
                acc[0] = fmaf(__ldcg(ps + 2 + d), wt, acc[0]);
            }
        }
#pragma unroll
        for (int v = 0; v < VEC; v++)
            out[g * D + d + v] = from_f32<T>(acc[v] * head_inv[g]);
    }
}

#endif /* JB_CUDA_ATTN_COMBINE_CUH */

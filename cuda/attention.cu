/*
 * attention.cu — causal GQA attention of a step's rows over their sequences' KV caches: the KV append, the
 * path choice (jb_cuda_attention) and the generic key-split kernel.
 *
 * Paths (scores are q·k / sqrt(d_h) as in cpu/attention.c; softmax in fp32, in log2 units with exp2):
 *   flash    bf16 prefill with d_h 64 or 128: tensor-core tiles (cuda/attn_flash.cu).
 *   decode   bf16 with d_h 64 or 128, rows attended one by one with key splits (flash-decoding) on tensor
 *            cores (cuda/attn_flash.cu).
 *   generic  every other case (fp32 activations, other head dims up to 256): one block per (row, KV head,
 *            up to 8 query heads, key split), four warps walking the split's keys with an online softmax
 *            and merging in shared memory.
 * Both split paths take their split count per row from the row's own length (jb_attn_split_len, read from
 * device memory, so a recorded decode graph stays valid) within the launch's maximum; rows of several
 * splits write (max, sum, weighted values) partials that the last of the row's blocks to finish merges in
 * split order (attn_combine.cuh): one launch, its arrival counters back at zero after it.
 * The cache holds the activation type, or fp8 e4m3 with one fp32 scale per (token, KV head).
 */
#include "cuda/attn_combine.cuh"
#include "cuda/attn_kernels.h"
#include "cuda/attn_layout.h"
#include "cuda/common.cuh"

#include <cuda_fp8.h>

typedef __nv_fp8_e4m3 fp8;
#define E4M3_MAX 448.0f /* the largest finite e4m3 value */

__device__ __forceinline__ float to_f32(fp8 x) { return (float)x; }

/* Cache element types: the activation type, or fp8 with per-(token, head) scales. */
template <typename TC> struct kv_scaled {
    static constexpr bool value = false;
};
template <> struct kv_scaled<fp8> {
    static constexpr bool value = true;
};

/* ---- KV append -------------------------------------------------------------------------------------- */

template <typename T>
__global__ void kv_append_kernel(jb_cuda_attn_args a, const int32_t *row_seg, const jb_cuda_seg *segs, int64_t T_rows) {
    const int64_t kv = a.n_kv_heads * a.head_dim, q = a.n_heads * a.head_dim;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T_rows * kv)
        return;
    const int64_t r = i / kv, e = i % kv;
    const jb_cuda_seg s = segs[row_seg[r]];
    const int64_t dst = (int64_t)s.seq * a.seq_stride + (s.pos + r - s.row) * kv + e;
    const T *src = (const T *)a.qkv + r * a.ld_qkv;
    ((T *)a.k_cache)[dst] = src[q + e];
    ((T *)a.v_cache)[dst] = src[q + kv + e];
}

/* One warp per (row, KV head): the head's k (then v) values, their amax, the scale, the fp8 bytes. */
template <typename T>
__global__ void kv_append_fp8_kernel(jb_cuda_attn_args a, const int32_t *row_seg, const jb_cuda_seg *segs,
                                     int64_t T_rows) {
    const int lane = threadIdx.x & 31;
    const int64_t item = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (item >= T_rows * a.n_kv_heads)
        return;
    const int64_t D = a.head_dim, r = item / a.n_kv_heads, h = item % a.n_kv_heads;
    const int64_t kv = a.n_kv_heads * D, q = a.n_heads * D;
    const jb_cuda_seg s = segs[row_seg[r]];
    const int64_t tok = s.pos + r - s.row;
    for (int which = 0; which < 2; which++) {
        const T *x = (const T *)a.qkv + r * a.ld_qkv + q + which * kv + h * D;
        float amax = 0.0f;
        for (int64_t d = lane; d < D; d += 32)
            amax = fmaxf(amax, fabsf(to_f32(x[d])));
        amax = warp_max(amax);
        const float scale = amax / E4M3_MAX;
        fp8 *dst = (fp8 *)(which ? a.v_cache : a.k_cache) + (int64_t)s.seq * a.seq_stride + tok * kv + h * D;
        for (int64_t d = lane; d < D; d += 32)
            dst[d] = fp8(scale > 0.0f ? to_f32(x[d]) / scale : 0.0f);
        if (lane == 0)
            (which ? a.v_scale : a.k_scale)[(int64_t)s.seq * a.scale_seq_stride + tok * a.n_kv_heads + h] = scale;
    }
}

extern "C" cudaError_t jb_cuda_kv_append(jamba_dtype dt, const jb_cuda_attn_args *a, const jb_cuda_step_desc *step,
                                       cudaStream_t stream) {
    const int64_t n = step->T * a->n_kv_heads * a->head_dim;
    if (n == 0)
        return cudaSuccess;
    if (a->kv_dt == JAMBA_DTYPE_F8_E4M3) {
        if (a->k_scale == NULL || a->v_scale == NULL)
            return cudaErrorInvalidValue;
        const int64_t warps = step->T * a->n_kv_heads;
        if (dt == JAMBA_DTYPE_BF16)
            kv_append_fp8_kernel<bf16><<<div_up(warps, 8), 256, 0, stream>>>(*a, step->row_seg, step->segs, step->T);
        else
            kv_append_fp8_kernel<float><<<div_up(warps, 8), 256, 0, stream>>>(*a, step->row_seg, step->segs, step->T);
    } else if (a->kv_dt != dt) {
        return cudaErrorInvalidValue;
    } else if (dt == JAMBA_DTYPE_BF16) {
        kv_append_kernel<bf16><<<div_up(n, 256), 256, 0, stream>>>(*a, step->row_seg, step->segs, step->T);
    } else {
        kv_append_kernel<float><<<div_up(n, 256), 256, 0, stream>>>(*a, step->row_seg, step->segs, step->T);
    }
    return JB_LAUNCH_CHECK();
}

/* ---- generic split path -------------------------------------------------------------------------------- */

#define SPLIT_WARPS 4
#define HEADS_PER_BLOCK 8

/* grid: x = row, y = kv_head * head_groups + group, z = split (the launch's most; the row uses
 * jb_attn_splits_used of them, and counts its finished blocks in a.split_count[x * gridDim.y + y]).
 * DPL = head_dim / 32 rounded up. TC: the cache element type (T, or fp8 with scales). */
template <typename T, typename TC, int DPL>
__global__ void __launch_bounds__(SPLIT_WARPS * 32)
attn_split_kernel(jb_cuda_attn_args a, const int32_t *row_seg, const jb_cuda_seg *segs, int head_groups) {
    const int64_t D = a.head_dim, kv_w = a.n_kv_heads * D;
    attn_split_item it;
    if (!attn_split_item_of(a, row_seg, segs, head_groups, HEADS_PER_BLOCK, it))
        return; /* this row is shorter than the launch allows for */
    const int64_t r = it.r, k0 = it.k0, k1 = it.k1, kvh = it.kvh, h0 = it.h0;
    const int n_h = it.n_h;
    const jb_cuda_seg s = it.seg;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float scale_log2 = 1.4426950408889634f / sqrtf((float)D); /* log2(e) / sqrt(d_h) */

    float q[HEADS_PER_BLOCK][DPL], acc[HEADS_PER_BLOCK][DPL], m[HEADS_PER_BLOCK], l[HEADS_PER_BLOCK];
    const T *qrow = (const T *)a.qkv + r * a.ld_qkv;
#pragma unroll
    for (int g = 0; g < HEADS_PER_BLOCK; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int64_t d = lane + 32 * i;
            q[g][i] = g < n_h && d < D ? to_f32(qrow[(h0 + g) * D + d]) : 0.0f;
            acc[g][i] = 0.0f;
        }
    }
    const TC *K = (const TC *)a.k_cache + (int64_t)s.seq * a.seq_stride + (int64_t)kvh * D;
    const TC *V = (const TC *)a.v_cache + (int64_t)s.seq * a.seq_stride + (int64_t)kvh * D;
    const float *KS = kv_scaled<TC>::value ? a.k_scale + (int64_t)s.seq * a.scale_seq_stride + kvh : NULL;
    const float *VS = kv_scaled<TC>::value ? a.v_scale + (int64_t)s.seq * a.scale_seq_stride + kvh : NULL;
    for (int64_t j = k0 + warp; j < k1; j += SPLIT_WARPS) {
        float kj[DPL], vj[DPL];
        const float ks = kv_scaled<TC>::value ? KS[j * a.n_kv_heads] : 1.0f;
        const float vs = kv_scaled<TC>::value ? VS[j * a.n_kv_heads] : 1.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int64_t d = lane + 32 * i;
            kj[i] = d < D ? to_f32(K[j * kv_w + d]) * ks : 0.0f;
            vj[i] = d < D ? to_f32(V[j * kv_w + d]) * vs : 0.0f;
        }
#pragma unroll
        for (int g = 0; g < HEADS_PER_BLOCK; g++) {
            if (g >= n_h)
                break;
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; i++)
                dot += q[g][i] * kj[i];
            const float sc = warp_sum(dot) * scale_log2;
            const float m_new = fmaxf(m[g], sc);
            const float corr = exp2f(m[g] - m_new), p = exp2f(sc - m_new);
            l[g] = l[g] * corr + p;
#pragma unroll
            for (int i = 0; i < DPL; i++)
                acc[g][i] = acc[g][i] * corr + p * vj[i];
            m[g] = m_new;
        }
    }
    /* merge the warps: [warp][head] statistics and [warp][head][D] values in shared memory */
    extern __shared__ float smem[];
    float *sm_m = smem, *sm_l = sm_m + SPLIT_WARPS * HEADS_PER_BLOCK, *sm_acc = sm_l + SPLIT_WARPS * HEADS_PER_BLOCK;
    if (lane == 0)
        for (int g = 0; g < HEADS_PER_BLOCK; g++) {
            sm_m[warp * HEADS_PER_BLOCK + g] = m[g];
            sm_l[warp * HEADS_PER_BLOCK + g] = l[g];
        }
#pragma unroll
    for (int g = 0; g < HEADS_PER_BLOCK; g++)
#pragma unroll
        for (int i = 0; i < DPL; i++)
            if (lane + 32 * i < D)
                sm_acc[((int64_t)warp * HEADS_PER_BLOCK + g) * D + lane + 32 * i] = acc[g][i];
    __syncthreads();
    attn_merge_warps<T, HEADS_PER_BLOCK, SPLIT_WARPS>(a, it, sm_m, sm_l, sm_acc, (int)D);
    /* several splits: the item's last block to finish merges them */
    if (it.used > 1 && jb_last_arrival(a.split_count + r * gridDim.y + blockIdx.y, (unsigned int)it.used))
        attn_combine_splits<T, HEADS_PER_BLOCK, SPLIT_WARPS * 32, 1>(a.partial, (T *)a.out, a.n_heads, (int)D, r, h0,
                                                                    n_h, it.used, it.max_splits);
}

template <typename T, typename TC, int DPL>
static cudaError_t split_launch(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int n_splits, cudaStream_t stream) {
    const int64_t group = a->n_heads / a->n_kv_heads;
    const int head_groups = (int)((group + HEADS_PER_BLOCK - 1) / HEADS_PER_BLOCK);
    if (step->T > INT32_MAX || (int64_t)a->n_kv_heads * head_groups > 65535 || n_splits > 65535 ||
        !jb_attn_split_scratch_fits(a, step->T, n_splits, HEADS_PER_BLOCK))
        return cudaErrorInvalidValue;
    const size_t smem = sizeof(float) * (size_t)SPLIT_WARPS * HEADS_PER_BLOCK * (size_t)(2 + a->head_dim);
    dim3 grid((unsigned int)step->T, (unsigned int)(a->n_kv_heads * head_groups), (unsigned int)n_splits);
    attn_split_kernel<T, TC, DPL><<<grid, SPLIT_WARPS * 32, smem, stream>>>(*a, step->row_seg, step->segs, head_groups);
    return JB_LAUNCH_CHECK();
}

template <typename T, typename TC>
static cudaError_t split_dispatch(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int n_splits, cudaStream_t stream) {
    const int64_t dpl = (a->head_dim + 31) / 32;
    if (dpl <= 1)
        return split_launch<T, TC, 1>(a, step, n_splits, stream);
    if (dpl <= 2)
        return split_launch<T, TC, 2>(a, step, n_splits, stream);
    if (dpl <= 4)
        return split_launch<T, TC, 4>(a, step, n_splits, stream);
    if (dpl <= 8)
        return split_launch<T, TC, 8>(a, step, n_splits, stream);
    return cudaErrorInvalidValue; /* head_dim > 256 */
}

/* ---- entry -------------------------------------------------------------------------------------------- */

bool jb_attn_split_scratch_fits(const jb_cuda_attn_args *a, int64_t T, int32_t n_splits, int heads_per_block) {
    if (n_splits <= 1)
        return true;
    const int64_t items = T * jb_attn_kv_blocks(a->n_heads, a->n_kv_heads, heads_per_block);
    return a->partial != NULL && a->split_count != NULL &&
           T * a->n_heads * n_splits * (a->head_dim + 2) <= a->partial_capacity && items <= a->split_count_capacity;
}

extern "C" cudaError_t jb_cuda_attention(jamba_dtype dt, const jb_cuda_attn_args *a, const jb_cuda_step_desc *step,
                                       int force_path, cudaStream_t stream) {
    if (step->T == 0)
        return cudaSuccess;
    if (a->n_kv_heads < 1 || a->n_heads % a->n_kv_heads != 0 || a->head_dim < 1 || force_path < 0 || force_path > 3)
        return cudaErrorInvalidValue;
    const bool f8 = a->kv_dt == JAMBA_DTYPE_F8_E4M3;
    if ((!f8 && a->kv_dt != dt) || (f8 && (a->k_scale == NULL || a->v_scale == NULL)))
        return cudaErrorInvalidValue;
    const bool mma = jb_attn_mma_fits(dt, a);
    if (force_path == 2 && !mma)
        return cudaErrorInvalidValue;
    if (force_path == 2 || (force_path == 0 && mma && step->max_seg_rows >= 16))
        return jb_attn_flash(a, step, stream);
    const int32_t n_splits = a->n_splits > 0 ? a->n_splits : 1;
    if (mma && force_path != 3)
        return jb_attn_decode_mma(a, step, n_splits, stream);
    if (dt == JAMBA_DTYPE_BF16)
        return f8 ? split_dispatch<bf16, fp8>(a, step, n_splits, stream) : split_dispatch<bf16, bf16>(a, step, n_splits, stream);
    if (dt == JAMBA_DTYPE_F32)
        return f8 ? split_dispatch<float, fp8>(a, step, n_splits, stream)
                  : split_dispatch<float, float>(a, step, n_splits, stream);
    return cudaErrorInvalidValue;
}

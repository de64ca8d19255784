/*
 * attention.cu — causal GQA attention of a step's rows over their sequences' KV caches.
 *
 * Two paths, both exact softmax in fp32 (scores are dot / sqrt(d_h), as cpu/attention.c):
 *   split   one block per (row, KV head, head group, key split): four warps walk the split's keys with an
 *           online softmax for every query head sharing the KV head, merge in shared memory, and either
 *           write the output (one split) or a partial (max, sum, weighted values) that a combine kernel
 *           merges (flash-decoding). Any head_dim, fp32 or bf16; the decode path: one sequence at 256K
 *           tokens spreads over n_splits × n_kv blocks.
 *   flash   bf16 prefill with d_h 64 or 128: one block per (64-query tile, query head); tensor-core (WMMA)
 *           products Q·Kᵀ and P·V over 64-key tiles with an online softmax; T x T is never materialised.
 * The cache holds the activation type, or fp8 e4m3 with one fp32 scale per (token, KV head): both paths
 * widen a key or value as fp8 × scale (the flash path into its bf16 tiles).
 */
#include "cuda/common.cuh"
#include "cuda/ops.h"

#include <cuda_fp8.h>
#include <mma.h>

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

/* ---- split path ------------------------------------------------------------------------------------ */

#define SPLIT_WARPS 4
#define HEADS_PER_BLOCK 8

/* grid: x = row, y = kv_head * head_groups + group, z = split. DPL = head_dim / 32 rounded up. TC: the
 * cache element type (T, or fp8 with scales). */
template <typename T, typename TC, int DPL>
__global__ void __launch_bounds__(SPLIT_WARPS * 32)
attn_split_kernel(jb_cuda_attn_args a, const int32_t *row_seg, const jb_cuda_seg *segs, int head_groups) {
    const int64_t D = a.head_dim, kv_w = a.n_kv_heads * D, q_w = a.n_heads * D;
    const int64_t group = a.n_heads / a.n_kv_heads;
    const int64_t r = blockIdx.x;
    const int kvh = blockIdx.y / head_groups, hg = blockIdx.y % head_groups;
    const int64_t h0 = (int64_t)kvh * group + (int64_t)hg * HEADS_PER_BLOCK;
    const int n_h = (int)(group - (int64_t)hg * HEADS_PER_BLOCK < HEADS_PER_BLOCK ? group - (int64_t)hg * HEADS_PER_BLOCK
                                                                                  : HEADS_PER_BLOCK);
    const int split = blockIdx.z, n_splits = gridDim.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const jb_cuda_seg s = segs[row_seg[r]];
    const int64_t n_keys = s.pos + (r - s.row) + 1;
    const int64_t k0 = (int64_t)split * a.split_len;
    const int64_t k1 = k0 + a.split_len < n_keys ? k0 + a.split_len : n_keys;
    const float scale = sqrtf((float)D);

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
            const float sc = warp_sum(dot) / scale;
            const float m_new = fmaxf(m[g], sc);
            const float corr = expf(m[g] - m_new), p = expf(sc - m_new);
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
    for (int64_t idx = threadIdx.x; idx < (int64_t)n_h * D; idx += blockDim.x) {
        const int g = (int)(idx / D);
        const int64_t d = idx % D;
        float M = -INFINITY;
        for (int w = 0; w < SPLIT_WARPS; w++)
            M = fmaxf(M, sm_m[w * HEADS_PER_BLOCK + g]);
        float L = 0.0f, O = 0.0f;
        for (int w = 0; w < SPLIT_WARPS; w++) {
            const float mw = sm_m[w * HEADS_PER_BLOCK + g];
            if (mw == -INFINITY)
                continue; /* a warp that saw no key */
            const float f = expf(mw - M);
            L += sm_l[w * HEADS_PER_BLOCK + g] * f;
            O += sm_acc[((int64_t)w * HEADS_PER_BLOCK + g) * D + d] * f;
        }
        const int64_t head = h0 + g;
        if (n_splits == 1) {
            ((T *)a.out)[r * q_w + head * D + d] = from_f32<T>(O / L);
        } else {
            float *part = a.partial + ((r * a.n_heads + head) * n_splits + split) * (D + 2);
            part[2 + d] = O;
            if (d == 0) {
                part[0] = M;
                part[1] = L;
            }
        }
    }
}

/* Merge the splits of one (row, head): grid x = row, y = head; threads over d_h. */
template <typename T>
__global__ void attn_combine_kernel(jb_cuda_attn_args a, int n_splits) {
    const int64_t D = a.head_dim, r = blockIdx.x, head = blockIdx.y;
    const float *part = a.partial + (r * a.n_heads + head) * n_splits * (D + 2);
    float M = -INFINITY;
    for (int sp = 0; sp < n_splits; sp++)
        if (part[sp * (D + 2) + 1] > 0.0f)
            M = fmaxf(M, part[sp * (D + 2)]);
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float L = 0.0f, O = 0.0f;
        for (int sp = 0; sp < n_splits; sp++) {
            const float *p = part + sp * (D + 2);
            if (!(p[1] > 0.0f))
                continue; /* an empty split: its keys lie beyond the row's position */
            const float f = expf(p[0] - M);
            L += p[1] * f;
            O += p[2 + d] * f;
        }
        ((T *)a.out)[r * a.n_heads * D + head * D + d] = from_f32<T>(O / L);
    }
}

template <typename T, typename TC, int DPL>
static cudaError_t split_launch(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int n_splits, cudaStream_t stream) {
    const int64_t group = a->n_heads / a->n_kv_heads;
    const int head_groups = (int)((group + HEADS_PER_BLOCK - 1) / HEADS_PER_BLOCK);
    if (step->T > INT32_MAX || (int64_t)a->n_kv_heads * head_groups > 65535 || n_splits > 65535)
        return cudaErrorInvalidValue;
    if (n_splits > 1 && step->T * a->n_heads * n_splits * (a->head_dim + 2) > a->partial_capacity)
        return cudaErrorInvalidValue;
    const size_t smem = sizeof(float) * (size_t)SPLIT_WARPS * HEADS_PER_BLOCK * (size_t)(2 + a->head_dim);
    dim3 grid((unsigned int)step->T, (unsigned int)(a->n_kv_heads * head_groups), (unsigned int)n_splits);
    attn_split_kernel<T, TC, DPL><<<grid, SPLIT_WARPS * 32, smem, stream>>>(*a, step->row_seg, step->segs, head_groups);
    cudaError_t e = JB_LAUNCH_CHECK();
    if (e != cudaSuccess || n_splits == 1)
        return e;
    dim3 cgrid((unsigned int)step->T, (unsigned int)a->n_heads);
    attn_combine_kernel<T><<<cgrid, a->head_dim < 128 ? 32 : 128, 0, stream>>>(*a, n_splits);
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

/* ---- flash path (bf16, WMMA) ------------------------------------------------------------------------ */

#define FL_BM 64      /* query rows per block (16 per warp) */
#define FL_BN 64      /* keys per tile */
#define FL_WARPS 4

template <int D> struct flash_smem {
    static constexpr int QK_LD = D + 8;     /* bf16 rows of Q, K, V */
    static constexpr int S_LD = FL_BN + 4;  /* fp32 scores */
    static constexpr int P_LD = FL_BN + 8;  /* bf16 probabilities */
    static constexpr int O_LD = D + 4;      /* fp32 output accumulators */
    static constexpr size_t q_off = 0;
    static constexpr size_t k_off = q_off + sizeof(bf16) * FL_BM * QK_LD;
    static constexpr size_t v_off = k_off + sizeof(bf16) * FL_BN * QK_LD;
    static constexpr size_t s_off = v_off + sizeof(bf16) * FL_BN * QK_LD;
    static constexpr size_t p_off = s_off + sizeof(float) * FL_BM * S_LD;
    static constexpr size_t o_off = p_off + sizeof(bf16) * FL_BM * P_LD;
    static constexpr size_t ml_off = o_off + sizeof(float) * FL_BM * O_LD;
    static constexpr size_t bytes = ml_off + sizeof(float) * 2 * FL_BM;
};

/* Copy FL_BN rows of D values (row stride ld elements in global memory) into shared bf16 rows of QK_LD,
 * zero filling rows >= valid. Vectors of 8: D is a multiple of 8 and rows are 16-byte (bf16) or 8-byte
 * (fp8) aligned. fp8 rows are widened with their row's scale (scales[row * scale_ld]). */
template <int D>
__device__ void flash_load_rows(bf16 *dst, const bf16 *src, int64_t ld, int valid, const float *, int64_t) {
    constexpr int VEC = 8, PER_ROW = D / VEC;
    for (int idx = threadIdx.x; idx < FL_BN * PER_ROW; idx += blockDim.x) {
        const int row = idx / PER_ROW, c = (idx % PER_ROW) * VEC;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (row < valid)
            v = *(const uint4 *)(src + (int64_t)row * ld + c);
        *(uint4 *)(dst + row * flash_smem<D>::QK_LD + c) = v;
    }
}

template <int D>
__device__ void flash_load_rows(bf16 *dst, const fp8 *src, int64_t ld, int valid, const float *scales,
                                int64_t scale_ld) {
    constexpr int VEC = 8, PER_ROW = D / VEC;
    for (int idx = threadIdx.x; idx < FL_BN * PER_ROW; idx += blockDim.x) {
        const int row = idx / PER_ROW, c = (idx % PER_ROW) * VEC;
        __align__(16) bf16 out[VEC];
        if (row < valid) {
            const uint2 raw = *(const uint2 *)(src + (int64_t)row * ld + c);
            const fp8 *q = (const fp8 *)&raw;
            const float sc = scales[(int64_t)row * scale_ld];
#pragma unroll
            for (int i = 0; i < VEC; i++)
                out[i] = __float2bfloat16((float)q[i] * sc);
        } else {
#pragma unroll
            for (int i = 0; i < VEC; i++)
                out[i] = __float2bfloat16(0.0f);
        }
        *(uint4 *)(dst + row * flash_smem<D>::QK_LD + c) = *(const uint4 *)out;
    }
}

template <int D, typename TC>
__global__ void __launch_bounds__(FL_WARPS * 32)
attn_flash_kernel(jb_cuda_attn_args a, const jb_cuda_seg *segs, int64_t n_segs) {
    using namespace nvcuda;
    using L = flash_smem<D>;
    extern __shared__ __align__(128) unsigned char fl_smem[];
    bf16 *Qs = (bf16 *)(fl_smem + L::q_off), *Ks = (bf16 *)(fl_smem + L::k_off), *Vs = (bf16 *)(fl_smem + L::v_off);
    float *Ss = (float *)(fl_smem + L::s_off), *Os = (float *)(fl_smem + L::o_off);
    bf16 *Ps = (bf16 *)(fl_smem + L::p_off);
    float *row_m = (float *)(fl_smem + L::ml_off), *row_l = row_m + FL_BM;

    /* this block's tile: walk the segments' tile counts */
    int64_t tile = blockIdx.x, si = 0;
    for (; si < n_segs; si++) {
        const int64_t nt = (segs[si].n + FL_BM - 1) / FL_BM;
        if (tile < nt)
            break;
        tile -= nt;
    }
    if (si == n_segs)
        return;
    const jb_cuda_seg s = segs[si];
    const int64_t head = blockIdx.y, kvh = head / (a.n_heads / a.n_kv_heads);
    const int64_t q0 = tile * FL_BM; /* first query of the tile, within the segment */
    const int q_valid = (int)(s.n - q0 < FL_BM ? s.n - q0 : FL_BM);
    const int64_t kv_w = a.n_kv_heads * D;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float scale = sqrtf((float)D);

    flash_load_rows<D>(Qs, (const bf16 *)a.qkv + (s.row + q0) * a.ld_qkv + head * D, a.ld_qkv, q_valid, NULL, 0);
    for (int i = threadIdx.x; i < FL_BM * L::O_LD; i += blockDim.x)
        Os[i] = 0.0f;
    for (int i = threadIdx.x; i < FL_BM; i += blockDim.x) {
        row_m[i] = -INFINITY;
        row_l[i] = 0.0f;
    }
    const TC *K = (const TC *)a.k_cache + (int64_t)s.seq * a.seq_stride + kvh * D;
    const TC *V = (const TC *)a.v_cache + (int64_t)s.seq * a.seq_stride + kvh * D;
    const float *KS = kv_scaled<TC>::value ? a.k_scale + (int64_t)s.seq * a.scale_seq_stride + kvh : NULL;
    const float *VS = kv_scaled<TC>::value ? a.v_scale + (int64_t)s.seq * a.scale_seq_stride + kvh : NULL;
    const int64_t last_pos = s.pos + q0 + q_valid - 1; /* the tile's last query attends keys 0 .. last_pos */
    const int wr = warp * 16;                          /* this warp's first row in the tile */
    for (int64_t kt = 0; kt <= last_pos; kt += FL_BN) {
        const int k_valid = (int)(last_pos + 1 - kt < FL_BN ? last_pos + 1 - kt : FL_BN);
        __syncthreads(); /* everyone is done with the previous K/V tile (and Q/O/stats are initialised) */
        flash_load_rows<D>(Ks, K + kt * kv_w, kv_w, k_valid, KS ? KS + kt * a.n_kv_heads : NULL, a.n_kv_heads);
        flash_load_rows<D>(Vs, V + kt * kv_w, kv_w, k_valid, VS ? VS + kt * a.n_kv_heads : NULL, a.n_kv_heads);
        __syncthreads();

        /* S[16 x 64] = Q_w · Kᵀ */
        for (int nt = 0; nt < FL_BN / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
            wmma::fill_fragment(sf, 0.0f);
            for (int kk = 0; kk < D; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kf;
                wmma::load_matrix_sync(qf, Qs + wr * L::QK_LD + kk, L::QK_LD);
                wmma::load_matrix_sync(kf, Ks + nt * 16 * L::QK_LD + kk, L::QK_LD);
                wmma::mma_sync(sf, qf, kf, sf);
            }
            wmma::store_matrix_sync(Ss + wr * L::S_LD + nt * 16, sf, L::S_LD, wmma::mem_row_major);
        }
        __syncwarp();

        /* online softmax: two lanes per row, 32 keys each */
        {
            const int i = wr + (lane >> 1), half = lane & 1;
            const int64_t pos_i = s.pos + q0 + i;
            const bool row_ok = i < q_valid;
            float *srow = Ss + i * L::S_LD + half * 32;
            float mx = -INFINITY;
            for (int c = 0; c < 32; c++) {
                const int64_t key = kt + half * 32 + c;
                const float v = srow[c] / scale;
                srow[c] = v;
                if (row_ok && key <= pos_i && v > mx)
                    mx = v;
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            const float m_old = row_m[i], m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            bf16 *prow = Ps + i * L::P_LD + half * 32;
            for (int c = 0; c < 32; c++) {
                const int64_t key = kt + half * 32 + c;
                const float p = row_ok && key <= pos_i && m_new != -INFINITY ? expf(srow[c] - m_new) : 0.0f;
                prow[c] = __float2bfloat16(p);
                sum += p;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            const float alpha = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
            float *orow = Os + i * L::O_LD + half * (D / 2);
            for (int c = 0; c < D / 2; c++)
                orow[c] *= alpha;
            __syncwarp();
            if (half == 0) {
                row_m[i] = m_new;
                row_l[i] = row_l[i] * alpha + sum;
            }
        }
        __syncwarp();

        /* O_w[16 x D] += P_w[16 x 64] · V[64 x D] */
        for (int nt = 0; nt < D / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
            wmma::load_matrix_sync(of, Os + wr * L::O_LD + nt * 16, L::O_LD, wmma::mem_row_major);
            for (int kk = 0; kk < FL_BN; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, Ps + wr * L::P_LD + kk, L::P_LD);
                wmma::load_matrix_sync(vf, Vs + kk * L::QK_LD + nt * 16, L::QK_LD);
                wmma::mma_sync(of, pf, vf, of);
            }
            wmma::store_matrix_sync(Os + wr * L::O_LD + nt * 16, of, L::O_LD, wmma::mem_row_major);
        }
        __syncwarp();
    }
    __syncthreads();
    bf16 *out = (bf16 *)a.out;
    const int64_t q_w = a.n_heads * D;
    for (int idx = threadIdx.x; idx < q_valid * D; idx += blockDim.x) {
        const int i = idx / D, d = idx % D;
        out[(s.row + q0 + i) * q_w + head * D + d] = __float2bfloat16(Os[i * L::O_LD + d] / row_l[i]);
    }
}

template <int D, typename TC>
static cudaError_t flash_launch(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, cudaStream_t stream) {
    const size_t smem = flash_smem<D>::bytes;
    cudaError_t e =
        cudaFuncSetAttribute(attn_flash_kernel<D, TC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return e;
    /* tiles: the host knows every segment's length only through the step's bound, so launch for the
     * worst case; blocks past the last tile return at once */
    const int64_t tiles = step->n_segs + step->T / FL_BM;
    if (tiles > INT32_MAX || a->n_heads > 65535)
        return cudaErrorInvalidValue;
    dim3 grid((unsigned int)tiles, (unsigned int)a->n_heads);
    attn_flash_kernel<D, TC><<<grid, FL_WARPS * 32, smem, stream>>>(*a, step->segs, step->n_segs);
    return JB_LAUNCH_CHECK();
}

/* ---- entry -------------------------------------------------------------------------------------------- */

extern "C" cudaError_t jb_cuda_attention(jamba_dtype dt, const jb_cuda_attn_args *a, const jb_cuda_step_desc *step,
                                       int force_path, cudaStream_t stream) {
    if (step->T == 0)
        return cudaSuccess;
    if (a->n_kv_heads < 1 || a->n_heads % a->n_kv_heads != 0 || a->head_dim < 1)
        return cudaErrorInvalidValue;
    const bool flash_ok = dt == JAMBA_DTYPE_BF16 && (a->head_dim == 64 || a->head_dim == 128) &&
                          a->ld_qkv % 8 == 0;
    bool flash = force_path == 2 || (force_path == 0 && flash_ok && step->max_seg_rows >= 16);
    if (flash && !flash_ok)
        return cudaErrorInvalidValue;
    const bool f8 = a->kv_dt == JAMBA_DTYPE_F8_E4M3;
    if ((!f8 && a->kv_dt != dt) || (f8 && (a->k_scale == NULL || a->v_scale == NULL)))
        return cudaErrorInvalidValue;
    if (flash && f8)
        return a->head_dim == 64 ? flash_launch<64, fp8>(a, step, stream) : flash_launch<128, fp8>(a, step, stream);
    if (flash)
        return a->head_dim == 64 ? flash_launch<64, bf16>(a, step, stream) : flash_launch<128, bf16>(a, step, stream);
    const int n_splits = a->n_splits > 0 ? a->n_splits : 1;
    if (dt == JAMBA_DTYPE_BF16)
        return f8 ? split_dispatch<bf16, fp8>(a, step, n_splits, stream)
                  : split_dispatch<bf16, bf16>(a, step, n_splits, stream);
    return f8 ? split_dispatch<float, fp8>(a, step, n_splits, stream)
              : split_dispatch<float, float>(a, step, n_splits, stream);
}

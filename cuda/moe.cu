/*
 * moe.cu — the mixture-of-experts steps on the GPU, with moe/router.c as their CPU twin:
 *   route    softmax over the router logits and the top k, one warp per token;
 *   plan     the stable counting sort of (token, choice) slots by expert, one block;
 *   gather   each slot's token row;
 *   products the expert products over the plan in device memory (no host round trip, so a decode step
 *            can be a CUDA graph): warp-per-row GEMVs over only the real slots for small steps, fp32 and odd
 *            K; the w8a16 tensor-core product (moe_gemm.cu) for int8 experts at prefill sizes; cuBLAS per
 *            expert for weights of the activation type at prefill sizes. SwiGLU runs in the gate|up
 *            product's epilogue;
 *   combine  each token's weighted expert outputs, added in ascending expert order like the CPU;
 *   down+combine  a decode step's down GEMV that combines each token's experts in ascending order, adds into
 *            the residual stream and normalises in its last block (jb_cuda_moe_down_combine);
 * and the MoE block of a step (jb_cuda_moe_ffn: six launches) and of a fused decode step (jb_cuda_moe_decode:
 * the router with route and plan in its last block (fused.cu), gate|up, down+combine: three launches).
 */
#include "cuda/common.cuh"
#include "cuda/layer_dev.h"
#include "cuda/moe.h"
#include "cuda/moe_layout.h"
#include "cuda/moe_route.cuh"
#include "cuda/rownorm.cuh"
#include "moe/rule.h"

/* ---- route ------------------------------------------------------------------------------------------ */

#define ROUTE_WARPS 4

/* One warp per token; the probabilities live in shared memory ([warps][E]), chosen ones marked. */
__global__ void moe_route_kernel(const float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts,
                                 float *weights) {
    extern __shared__ float route_smem[];
    const int warp = threadIdx.x >> 5;
    const int64_t t = (int64_t)blockIdx.x * ROUTE_WARPS + warp;
    if (t >= T)
        return;
    unsigned char *taken = (unsigned char *)(route_smem + (int64_t)ROUTE_WARPS * E) + (int64_t)warp * E;
    moe_route_token(logits + t * E, E, k, route_smem + (int64_t)warp * E, taken, experts + t * k, weights + t * k);
}

extern "C" cudaError_t jb_cuda_moe_route(const float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts,
                                       float *weights, cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    if (k > E || E > 2048) /* 5 bytes per expert per warp of shared memory: 40 KB at 2048 */
        return cudaErrorInvalidValue;
    const size_t smem = moe_route_smem(ROUTE_WARPS, E);
    moe_route_kernel<<<div_up(T, ROUTE_WARPS), ROUTE_WARPS * 32, smem, stream>>>(logits, T, E, k, experts, weights);
    return JB_LAUNCH_CHECK();
}

/* ---- plan --------------------------------------------------------------------------------------------- */

/* One block of 1024 threads (moe_plan_block). */
__global__ void moe_plan_kernel(const int32_t *experts, const float *weights, int64_t n_slots, int64_t E, int64_t k,
                                int32_t *begin, int32_t *slot_token, float *slot_weight, int32_t *slot_pos) {
    extern __shared__ int32_t counts[]; /* [E + 1] */
    moe_plan_block(experts, weights, n_slots, E, k, begin, slot_token, slot_weight, slot_pos, counts);
}

extern "C" cudaError_t jb_cuda_moe_plan(const int32_t *experts, const float *weights, int64_t T, int64_t E, int64_t k,
                                      int32_t *begin, int32_t *slot_token, float *slot_weight, int32_t *slot_pos,
                                      cudaStream_t stream) {
    if (T * k > INT32_MAX || E > 8192) /* (E + 1) ints of shared memory */
        return cudaErrorInvalidValue;
    moe_plan_kernel<<<1, 1024, (size_t)(E + 1) * sizeof(int32_t), stream>>>(experts, weights, T * k, E, k, begin,
                                                                           slot_token, slot_weight, slot_pos);
    return JB_LAUNCH_CHECK();
}

/* ---- gather ---------------------------------------------------------------------------------------------- */

template <typename T>
__global__ void gather_tokens_kernel(T *dst, const T *x, int64_t ldx, const int32_t *slot_token, int64_t n, int64_t H) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * H)
        return;
    dst[i] = x[(int64_t)slot_token[i / H] * ldx + i % H];
}

extern "C" cudaError_t jb_cuda_gather_tokens(jamba_dtype dt, void *dst, const void *x, int64_t ldx,
                                           const int32_t *slot_token, int64_t n, int64_t H, cudaStream_t stream) {
    if (n * H == 0)
        return cudaSuccess;
    if (dt == JAMBA_DTYPE_BF16)
        gather_tokens_kernel<<<div_up(n * H, 256), 256, 0, stream>>>((bf16 *)dst, (const bf16 *)x, ldx, slot_token, n, H);
    else
        gather_tokens_kernel<<<div_up(n * H, 256), 256, 0, stream>>>((float *)dst, (const float *)x, ldx, slot_token, n, H);
    return JB_LAUNCH_CHECK();
}

/* ---- expert products as GEMVs (decode, fp32, odd K) ------------------------------------------------------- */

#define GEMV_WARPS 8
#define GEMV_PASS 4 /* slots of one expert per pass over a weight row, at most */

/* 16 bytes of weights (one vector load) as floats: 16 int8 (exact, through the fp32 bias trick of
 * moe_layout.h: a prmt and a subtraction each), 8 bf16 or 4 fp32. */
template <typename TW> struct wvec;
template <> struct wvec<int8_t> {
    static constexpr int EL = 16;
    static __device__ __forceinline__ void to_f32(uint4 raw, float *out) {
        const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int w = 0; w < 4; w++) {
            const uint32_t flipped = words[w] ^ 0x80808080u;
#pragma unroll
            for (int i = 0; i < 4; i++)
                out[4 * w + i] = __uint_as_float(jb_moe_i8_f32_bits(flipped, i)) - JB_MOE_F32_BIAS;
        }
    }
};
template <> struct wvec<bf16> {
    static constexpr int EL = 8;
    static __device__ __forceinline__ void to_f32(uint4 raw, float *out) {
        const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int w = 0; w < 4; w++) {
            out[2 * w] = __uint_as_float(words[w] << 16);
            out[2 * w + 1] = __uint_as_float(words[w] & 0xffff0000u);
        }
    }
};
template <> struct wvec<float> {
    static constexpr int EL = 4;
    static __device__ __forceinline__ void to_f32(uint4 raw, float *out) {
        out[0] = __uint_as_float(raw.x), out[1] = __uint_as_float(raw.y);
        out[2] = __uint_as_float(raw.z), out[3] = __uint_as_float(raw.w);
    }
};

/* EL activations from p (16-byte aligned) as floats, in 16-byte loads. */
template <int EL> __device__ __forceinline__ void load_act(const bf16 *p, float *out) {
#pragma unroll
    for (int v = 0; v < EL / 8; v++)
        wvec<bf16>::to_f32(((const uint4 *)p)[v], out + 8 * v);
}
template <int EL> __device__ __forceinline__ void load_act(const float *p, float *out) {
#pragma unroll
    for (int v = 0; v < EL / 4; v++)
        wvec<float>::to_f32(((const uint4 *)p)[v], out + 4 * v);
}

__device__ __forceinline__ float elem_f32(int8_t x) { return (float)x; }
__device__ __forceinline__ float elem_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float elem_f32(float x) { return x; }

/* The e-th expert (from 0) with slots in the plan begin[E + 1], or -1: one ballot per 32 experts. */
__device__ int64_t nth_used_expert(const int32_t *begin, int64_t E, int64_t u) {
    const int lane = threadIdx.x & 31;
    for (int64_t e0 = 0; e0 < E; e0 += 32) {
        const int64_t e = e0 + lane;
        const unsigned int used = __ballot_sync(0xffffffffu, e < E && begin[e + 1] > begin[e]);
        const int n = __popc(used);
        if (u < n)
            return e0 + jb_moe_nth_set_bit(used, (int)u);
        u -= n;
    }
    return -1;
}

/* What a warp computes: two weight rows (a: n, b: the next row, or with SwiGLU the gate row j and the up
 * row I + j) against SL slots, each weight vector loaded once for all of them. */
struct gemv_rows {
    const void *wa, *wb;
    bool b_valid;
};

/* One pass: SL slots from slot s0, K streamed in 16-byte vectors (VEC, two in flight per row) or one
 * element per lane per step; the per-row scales applied to the reduced dot products. */
template <typename TW, typename T, typename TOut, bool SWIGLU, bool VEC, int SL>
__device__ __forceinline__ void gemv_pass(const gemv_rows &r, float sa, float sb, int64_t K, const T *in,
                                          int64_t ldin, const int32_t *in_token, int32_t s0, TOut *out, int64_t ldo,
                                          int64_t col) {
    const int lane = threadIdx.x & 31;
    const TW *wa = (const TW *)r.wa, *wb = (const TW *)r.wb;
    const T *x[SL];
    float acc_a[SL], acc_b[SL];
#pragma unroll
    for (int b = 0; b < SL; b++) {
        x[b] = in + (int64_t)(in_token ? in_token[s0 + b] : s0 + b) * ldin;
        acc_a[b] = acc_b[b] = 0.0f;
    }
    if (VEC) {
        constexpr int EL = wvec<TW>::EL;
        auto step = [&](uint4 ra, uint4 rb, int64_t c) {
            float fa[EL], fb[EL];
            wvec<TW>::to_f32(ra, fa);
            wvec<TW>::to_f32(rb, fb);
#pragma unroll
            for (int b = 0; b < SL; b++) {
                float xv[EL];
                load_act<EL>(x[b] + c, xv);
#pragma unroll
                for (int i = 0; i < EL; i++) {
                    acc_a[b] = fmaf(fa[i], xv[i], acc_a[b]);
                    acc_b[b] = fmaf(fb[i], xv[i], acc_b[b]);
                }
            }
        };
        int64_t c = (int64_t)lane * EL;
        for (; c + 32 * EL < K; c += 64 * EL) { /* two vectors per row in flight */
            const uint4 ra0 = *(const uint4 *)(wa + c), rb0 = *(const uint4 *)(wb + c);
            const uint4 ra1 = *(const uint4 *)(wa + c + 32 * EL), rb1 = *(const uint4 *)(wb + c + 32 * EL);
            step(ra0, rb0, c);
            step(ra1, rb1, c + 32 * EL);
        }
        if (c < K)
            step(*(const uint4 *)(wa + c), *(const uint4 *)(wb + c), c);
    } else {
        for (int64_t c = lane; c < K; c += 32) {
            const float va = elem_f32(wa[c]), vb = elem_f32(wb[c]);
#pragma unroll
            for (int b = 0; b < SL; b++) {
                const float xv = elem_f32(x[b][c]);
                acc_a[b] = fmaf(va, xv, acc_a[b]);
                acc_b[b] = fmaf(vb, xv, acc_b[b]);
            }
        }
    }
#pragma unroll
    for (int b = 0; b < SL; b++) {
        const float ya = warp_sum(acc_a[b]) * sa, yb = warp_sum(acc_b[b]) * sb;
        if (lane == b) {
            TOut *o = out + (int64_t)(s0 + b) * ldo + col;
            if (SWIGLU) {
                o[0] = from_f32<TOut>(dev_silu(ya) * yb);
            } else {
                o[0] = from_f32<TOut>(ya);
                if (r.b_valid)
                    o[1] = from_f32<TOut>(yb);
            }
        }
    }
}

/* grid: x = blocks of GEMV_WARPS warps, each owning two weight rows (gemv_rows); y = the y-th expert with
 * slots (read from the plan), or the one matrix. Slots are taken in passes of 4, the last one exactly as
 * many as remain, so no slot is computed that is not real. */
template <typename TW, typename T, typename TOut, bool SWIGLU, bool VEC>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
expert_gemv_kernel(const TW *W, const float *scale, int64_t expert_stride, int64_t N, int64_t K, const T *in,
                   int64_t ldin, const int32_t *in_token, const int32_t *begin, int64_t E, int64_t n_rows, TOut *out) {
    const int64_t e = begin ? nth_used_expert(begin, E, blockIdx.y) : 0;
    if (e < 0)
        return;
    const int32_t s_begin = begin ? begin[e] : 0, s_end = begin ? begin[e + 1] : (int32_t)n_rows;
    const int64_t p = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int64_t I = N / 2;
    int64_t row_a, row_b, col, ldo;
    gemv_rows r;
    if (SWIGLU) {
        if (p >= I)
            return;
        row_a = p, row_b = I + p, col = p, ldo = I;
        r.b_valid = true;
    } else {
        if (2 * p >= N)
            return;
        row_a = 2 * p, col = 2 * p, ldo = N;
        r.b_valid = 2 * p + 1 < N;
        row_b = r.b_valid ? 2 * p + 1 : 2 * p; /* a lone last row is read twice, written once */
    }
    const TW *We = W + e * expert_stride;
    r.wa = We + row_a * K;
    r.wb = We + row_b * K;
    const float sa = scale ? scale[e * N + row_a] : 1.0f, sb = scale ? scale[e * N + row_b] : 1.0f;
    for (int32_t s0 = s_begin; s0 < s_end; s0 += GEMV_PASS) {
        switch (s_end - s0) {
        case 1:
            gemv_pass<TW, T, TOut, SWIGLU, VEC, 1>(r, sa, sb, K, in, ldin, in_token, s0, out, ldo, col);
            break;
        case 2:
            gemv_pass<TW, T, TOut, SWIGLU, VEC, 2>(r, sa, sb, K, in, ldin, in_token, s0, out, ldo, col);
            break;
        case 3:
            gemv_pass<TW, T, TOut, SWIGLU, VEC, 3>(r, sa, sb, K, in, ldin, in_token, s0, out, ldo, col);
            break;
        default:
            gemv_pass<TW, T, TOut, SWIGLU, VEC, 4>(r, sa, sb, K, in, ldin, in_token, s0, out, ldo, col);
        }
    }
}

template <typename TW, typename T, typename TOut, bool SWIGLU>
static void gemv_kernel_launch(const jb_cuda_gemv_args *a, bool vec, cudaStream_t stream) {
    const int64_t warps = SWIGLU ? a->N / 2 : (a->N + 1) / 2;
    const int64_t used = a->begin == NULL ? 1 : a->max_used > 0 && a->max_used < a->E ? a->max_used : a->E;
    const dim3 grid(div_up(warps, GEMV_WARPS), (unsigned int)used);
    if (vec)
        expert_gemv_kernel<TW, T, TOut, SWIGLU, true><<<grid, GEMV_WARPS * 32, 0, stream>>>(
            (const TW *)a->W, a->scale, a->expert_stride, a->N, a->K, (const T *)a->in, a->ldin, a->in_token,
            a->begin, a->E, a->n_rows, (TOut *)a->out);
    else
        expert_gemv_kernel<TW, T, TOut, SWIGLU, false><<<grid, GEMV_WARPS * 32, 0, stream>>>(
            (const TW *)a->W, a->scale, a->expert_stride, a->N, a->K, (const T *)a->in, a->ldin, a->in_token,
            a->begin, a->E, a->n_rows, (TOut *)a->out);
}

template <typename TW, typename T>
static void gemv_launch(const jb_cuda_gemv_args *a, cudaStream_t stream) {
    /* vector loads: 16 bytes of weights per lane step (wvec<TW>::EL elements), the activations of those
     * columns likewise; every row start and the bases aligned */
    constexpr int64_t EL = wvec<TW>::EL;
    const bool vec = a->K % EL == 0 && a->expert_stride % EL == 0 && (a->ldin * (int64_t)sizeof(T)) % 16 == 0 &&
                     (uintptr_t)a->W % 16 == 0 && (uintptr_t)a->in % 16 == 0;
    if (a->swiglu)
        gemv_kernel_launch<TW, T, T, true>(a, vec, stream);
    else if (a->out_f32)
        gemv_kernel_launch<TW, T, float, false>(a, vec, stream);
    else
        gemv_kernel_launch<TW, T, T, false>(a, vec, stream);
}

extern "C" cudaError_t jb_cuda_expert_gemv(jamba_dtype dt, const jb_cuda_gemv_args *a, cudaStream_t stream) {
    if (a->N == 0 || a->E == 0)
        return cudaSuccess;
    const bool q8 = a->wdt == JAMBA_DTYPE_I8;
    if (a->E > 65535 || (a->begin == NULL && (a->E != 1 || a->n_rows > INT32_MAX)) || (!q8 && a->wdt != dt) ||
        (q8 && a->scale == NULL) || (a->swiglu && (a->N % 2 != 0 || a->out_f32)))
        return cudaErrorInvalidValue;
    if (dt == JAMBA_DTYPE_BF16)
        q8 ? gemv_launch<int8_t, bf16>(a, stream) : gemv_launch<bf16, bf16>(a, stream);
    else
        q8 ? gemv_launch<int8_t, float>(a, stream) : gemv_launch<float, float>(a, stream);
    return JB_LAUNCH_CHECK();
}

/* ---- combine ---------------------------------------------------------------------------------------------- */

/* One block per token: its k choices are visited in ascending expert order and added with separate
 * multiply and add roundings, exactly the CPU's dst[h] += src[h] * w. */
__global__ void moe_combine_kernel(const float *expert_out, const int32_t *slot_pos, const int32_t *experts,
                                   const float *weights, int64_t k, int64_t H, float *out) {
    const int64_t t = blockIdx.x;
    const int32_t *ex = experts + t * k;
    for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
        float acc = 0.0f;
        int32_t last = -1;
        for (int64_t step = 0; step < k; step++) {
            /* the next choice: the smallest expert id above the previous one */
            int64_t pick = -1;
            for (int64_t j = 0; j < k; j++)
                if (ex[j] > last && (pick < 0 || ex[j] < ex[pick]))
                    pick = j;
            last = ex[pick];
            const float y = expert_out[(int64_t)slot_pos[t * k + pick] * H + h];
            acc = __fadd_rn(acc, __fmul_rn(y, weights[t * k + pick]));
        }
        out[t * H + h] = acc;
    }
}

extern "C" cudaError_t jb_cuda_moe_combine(const float *expert_out, const int32_t *slot_pos, const int32_t *experts,
                                         const float *weights, int64_t T, int64_t k, int64_t H, float *out,
                                         cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    moe_combine_kernel<<<(unsigned int)T, H < 256 ? 32 * (unsigned int)((H + 31) / 32) : 256, 0, stream>>>(
        expert_out, slot_pos, experts, weights, k, H, out);
    return JB_LAUNCH_CHECK();
}

/* ---- down products with the combine, the residual add and the next norm (decode) ----------------------- */

/* The lane's part of W_row · in_slot for SL slots, in the order gemv_pass takes (16-byte vectors lane, lane +
 * 32, ... or elements lane, lane + 32, ...), so the reduced dot products equal jb_cuda_expert_gemv's. */
template <typename TW, typename T, bool VEC, int SL>
__device__ __forceinline__ void slot_dots(const TW *w, int64_t K, const T *in, int64_t ldin, int32_t s0, float acc[SL]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int b = 0; b < SL; b++)
        acc[b] = 0.0f;
    if (VEC) {
        constexpr int EL = wvec<TW>::EL;
        for (int64_t c = (int64_t)lane * EL; c < K; c += 32 * EL) {
            float f[EL];
            wvec<TW>::to_f32(*(const uint4 *)(w + c), f);
#pragma unroll
            for (int b = 0; b < SL; b++) {
                float xv[EL];
                load_act<EL>(in + (int64_t)(s0 + b) * ldin + c, xv);
#pragma unroll
                for (int i = 0; i < EL; i++)
                    acc[b] = fmaf(f[i], xv[i], acc[b]);
            }
        }
    } else {
        for (int64_t c = lane; c < K; c += 32) {
            const float v = elem_f32(w[c]);
#pragma unroll
            for (int b = 0; b < SL; b++)
                acc[b] = fmaf(v, elem_f32(in[(int64_t)(s0 + b) * ldin + c]), acc[b]);
        }
    }
}

/* SL slots of expert row w (scale s): each slot's result y, then its token's sum (held by lane `token`)
 * gets y · weight with the combine's separate roundings. */
template <typename TW, typename T, bool VEC, int SL>
__device__ __forceinline__ void combine_slots(const TW *w, float s, int64_t K, const T *in, int64_t ldin, int32_t s0,
                                              const int32_t *slot_token, const float *slot_weight, float &mine) {
    float acc[SL];
    slot_dots<TW, T, VEC, SL>(w, K, in, ldin, s0, acc);
#pragma unroll
    for (int b = 0; b < SL; b++) {
        const float y = warp_sum(acc[b]) * s;
        if ((int)(threadIdx.x & 31) == slot_token[s0 + b])
            mine = __fadd_rn(mine, __fmul_rn(y, slot_weight[s0 + b]));
    }
}

/* A warp per output column h: experts visited in ascending order, each one's slots in passes of at most
 * GEMV_PASS, so every token's terms arrive in ascending expert order; lane t holds token t's sum. Then
 * x[t, h] += the sum, and the grid's last block normalises x's rows. */
template <typename TW, typename T, bool VEC>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 1)
moe_down_combine_kernel(const TW *W, const float *scale, int64_t expert_stride, int64_t H, int64_t K, const T *in,
                        int64_t ldin, const int32_t *begin, int64_t E, const int32_t *slot_token,
                        const float *slot_weight, int64_t n_tok, float *x, const float *norm_w, T *norm_out, float eps,
                        unsigned int *counter) {
    __shared__ double scratch[32];
    const int lane = threadIdx.x & 31;
    const int64_t h = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (h < H) {
        float mine = 0.0f;
        for (int64_t e = 0; e < E; e++) {
            const int32_t s_begin = begin[e], s_end = begin[e + 1];
            const TW *w = W + e * expert_stride + h * K;
            const float s = scale ? scale[e * H + h] : 1.0f;
            for (int32_t s0 = s_begin; s0 < s_end; s0 += GEMV_PASS) {
                switch (s_end - s0) {
                case 1:
                    combine_slots<TW, T, VEC, 1>(w, s, K, in, ldin, s0, slot_token, slot_weight, mine);
                    break;
                case 2:
                    combine_slots<TW, T, VEC, 2>(w, s, K, in, ldin, s0, slot_token, slot_weight, mine);
                    break;
                case 3:
                    combine_slots<TW, T, VEC, 3>(w, s, K, in, ldin, s0, slot_token, slot_weight, mine);
                    break;
                default:
                    combine_slots<TW, T, VEC, 4>(w, s, K, in, ldin, s0, slot_token, slot_weight, mine);
                }
            }
        }
        if (lane < n_tok)
            x[lane * H + h] += mine;
    }
    if (norm_w == NULL || !jb_last_arrival(counter, gridDim.x))
        return;
    for (int64_t t = 0; t < n_tok; t++)
        rmsnorm_row(x + t * H, H, norm_w, norm_out + t * H, eps, scratch);
}

template <typename TW, typename T>
static cudaError_t down_combine_launch(const jb_cuda_gemv_args *a, const int32_t *slot_token,
                                       const float *slot_weight, int64_t n_tok, float *x, const float *norm_w,
                                       void *norm_out, float eps, unsigned int *counter, cudaStream_t stream) {
    constexpr int64_t EL = wvec<TW>::EL;
    const bool vec = a->K % EL == 0 && a->expert_stride % EL == 0 && (a->ldin * (int64_t)sizeof(T)) % 16 == 0 &&
                     (uintptr_t)a->W % 16 == 0 && (uintptr_t)a->in % 16 == 0;
    auto kernel = vec ? moe_down_combine_kernel<TW, T, true> : moe_down_combine_kernel<TW, T, false>;
    kernel<<<div_up(a->N, GEMV_WARPS), GEMV_WARPS * 32, 0, stream>>>(
        (const TW *)a->W, a->scale, a->expert_stride, a->N, a->K, (const T *)a->in, a->ldin, a->begin, a->E,
        slot_token, slot_weight, n_tok, x, norm_w, (T *)norm_out, eps, counter);
    return JB_LAUNCH_CHECK();
}

extern "C" cudaError_t jb_cuda_moe_down_combine(jamba_dtype dt, const jb_cuda_gemv_args *a, const int32_t *slot_token,
                                              const float *slot_weight, int64_t T, float *x, const float *norm_w,
                                              void *norm_out, float eps, unsigned int *counter, cudaStream_t stream) {
    const bool q8 = a->wdt == JAMBA_DTYPE_I8;
    if (T < 1 || T > JB_CUDA_FUSED_ROWS || a->N < 1 || a->K < 1 || a->E < 1 || a->begin == NULL || a->swiglu ||
        (!q8 && a->wdt != dt) || (q8 && a->scale == NULL) || (dt != JAMBA_DTYPE_BF16 && dt != JAMBA_DTYPE_F32) ||
        (norm_w && (norm_out == NULL || counter == NULL)))
        return cudaErrorInvalidValue;
    if (dt == JAMBA_DTYPE_BF16)
        return q8 ? down_combine_launch<int8_t, bf16>(a, slot_token, slot_weight, T, x, norm_w, norm_out, eps, counter,
                                                      stream)
                  : down_combine_launch<bf16, bf16>(a, slot_token, slot_weight, T, x, norm_w, norm_out, eps, counter,
                                                    stream);
    return q8 ? down_combine_launch<int8_t, float>(a, slot_token, slot_weight, T, x, norm_w, norm_out, eps, counter,
                                                   stream)
              : down_combine_launch<float, float>(a, slot_token, slot_weight, T, x, norm_w, norm_out, eps, counter,
                                                  stream);
}

/* ---- the MoE block of a step ---------------------------------------------------------------------- */

bool jb_cuda_moe_ffn(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, I = c->I, E = c->E, k = c->k, slots = T * k;
    const bool q8 = w->ffn_wdt == JAMBA_DTYPE_I8;
    BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->router, E, c->xn, H, w->router, T, E, H), "MoE router");
    CU(jb_cuda_moe_route(c->router, T, E, k, c->experts, c->weights, c->stream), "MoE routing");
    CU(jb_cuda_moe_plan(c->experts, c->weights, T, E, k, c->begin, c->slot_token, c->slot_weight, c->slot_pos,
                       c->stream), "MoE plan");
    /* gate|up with SwiGLU in its epilogue (act [slots, I] dt), then down (expert_out [slots, H] f32), both
     * reading the plan from device memory: GEMVs for decode-sized steps, the w8a16 tensor-core product
     * for int8 experts at prefill sizes (GEMVs where it does not apply: fp32, odd K) */
    const int64_t used = slots < E ? slots : E;
    jb_cuda_gemv_args gu = {w->gate_up, w->ffn_wdt, w->gate_up_scale, 2 * I * H, 2 * I, H, c->xn, H,
                           c->slot_token, c->begin, 0, E, c->act, false, true, used, slots};
    jb_cuda_gemv_args dn = {w->down, w->ffn_wdt, w->down_scale, H * I, H, I, c->act, I, NULL, c->begin, 0, E,
                           c->expert_out, true, false, used, slots};
    if (s.moe_gemv || (q8 && !(jb_cuda_expert_gemm_supported(dt, &gu) && jb_cuda_expert_gemm_supported(dt, &dn)))) {
        CU(jb_cuda_expert_gemv(dt, &gu, c->stream), "MoE expert gate/up");
        CU(jb_cuda_expert_gemv(dt, &dn, c->stream), "MoE expert down");
    } else if (q8) {
        CU(jb_cuda_expert_gemm(dt, &gu, c->stream), "MoE expert gate/up");
        CU(jb_cuda_expert_gemm(dt, &dn, c->stream), "MoE expert down");
    } else { /* weights of the activation type: cuBLAS per expert, the counts read back */
        const size_t wes = c->es;
        CU(jb_cuda_gather_tokens(dt, c->gathered, c->xn, H, c->slot_token, slots, H, c->stream), "MoE gather");
        CU(cudaMemcpyAsync(c->h_begin, c->begin, (size_t)(E + 1) * 4, cudaMemcpyDeviceToHost, c->stream),
           "MoE expert counts");
        CU(cudaStreamSynchronize(c->stream), "MoE expert counts");
        for (int64_t e = 0; e < E; e++) {
            const int64_t b = c->h_begin[e], n = c->h_begin[e + 1] - b;
            if (n > 0)
                BL(jb_cuda_gemm(c->blas, dt, dt, jb_at(c->gu, b * 2 * I, c->es), 2 * I, jb_at(c->gathered, b * H, c->es),
                               H, jb_at(w->gate_up, e * 2 * I * H, wes), n, 2 * I, H), "MoE expert gate/up");
        }
        CU(jb_cuda_swiglu(dt, c->gu, 2 * I, c->act, slots, I, c->stream), "MoE SwiGLU");
        for (int64_t e = 0; e < E; e++) {
            const int64_t b = c->h_begin[e], n = c->h_begin[e + 1] - b;
            if (n > 0)
                BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->expert_out + b * H, H, jb_at(c->act, b * I, c->es), I,
                               jb_at(w->down, e * H * I, wes), n, H, I), "MoE expert down");
        }
    }
    CU(jb_cuda_moe_combine(c->expert_out, c->slot_pos, c->experts, c->weights, T, k, H, c->mix, c->stream),
       "MoE combine");
    return true;
}

bool jb_cuda_moe_decode(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, const jb_next_norm &next,
                        jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, I = c->I, E = c->E, k = c->k, slots = T * k;
    const float eps = (float)c->cfg->rms_norm_eps;
    const jb_cuda_rows_product router = {w->router, E, H, c->xn, H, NULL, T};
    CU(jb_cuda_moe_router_rows(dt, &router, c->router, k, c->experts, c->weights, c->begin, c->slot_token,
                               c->slot_weight, c->slot_pos, c->sync_counter, c->stream), "MoE router with the plan");
    const int64_t used = slots < E ? slots : E;
    const jb_cuda_gemv_args gu = {w->gate_up, w->ffn_wdt, w->gate_up_scale, 2 * I * H, 2 * I, H, c->xn, H,
                                  c->slot_token, c->begin, 0, E, c->act, false, true, used, slots};
    CU(jb_cuda_expert_gemv(dt, &gu, c->stream), "MoE expert gate/up");
    const jb_cuda_gemv_args dn = {w->down, w->ffn_wdt, w->down_scale, H * I, H, I, c->act, I, NULL, c->begin, 0, E,
                                  NULL, true, false, used, slots};
    CU(jb_cuda_moe_down_combine(dt, &dn, c->slot_token, c->slot_weight, T, c->x, next.w, next.out, eps,
                                c->sync_counter, c->stream), "MoE expert down with the combine, residual and norm");
    return true;
}

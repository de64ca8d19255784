/*
 * moe.cu — the mixture-of-experts steps on the GPU, with moe/router.c as their CPU twin:
 *   route    softmax over the router logits and the top k, one warp per token;
 *   plan     the stable counting sort of (token, choice) slots by expert, one block;
 *   gather   each slot's token row;
 *   gemv     the expert products for small batches, reading the plan from device memory (no host round
 *            trip, so a decode step can be a CUDA graph); large batches use cuBLAS per expert instead;
 *   combine  each token's weighted expert outputs, added in ascending expert order like the CPU.
 */
#include "../cuda/common.cuh"
#include "../cuda/ops.h"

/* ---- route ------------------------------------------------------------------------------------------ */

/* The CPU's choice rule as a total order: numbers beat NaN; a larger number wins; ties go to the lower
 * index; among NaNs the lower index wins. Returns true when (pa, ea) is preferred over (pb, eb). */
__device__ __forceinline__ bool route_better(float pa, int ea, float pb, int eb) {
    const bool na = isnan(pa), nb = isnan(pb);
    if (na != nb)
        return nb;
    if (!na && pa != pb)
        return pa > pb;
    return ea < eb;
}

#define ROUTE_WARPS 4

/* One warp per token; the probabilities live in shared memory ([warps][E]), chosen ones marked. */
__global__ void moe_route_kernel(const float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts,
                                 float *weights) {
    extern __shared__ float route_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t t = (int64_t)blockIdx.x * ROUTE_WARPS + warp;
    if (t >= T)
        return;
    float *p = route_smem + (int64_t)warp * E;
    unsigned char *taken = (unsigned char *)(route_smem + (int64_t)ROUTE_WARPS * E) + (int64_t)warp * E;
    const float *row = logits + t * E;
    /* softmax as jb_softmax: max (NaN never raises it), expf(x - max), the sum in double, divide by the
     * sum rounded to float */
    float mx = -INFINITY;
    for (int64_t e = lane; e < E; e += 32)
        if (row[e] > mx)
            mx = row[e];
    mx = warp_max(mx);
    double sum = 0;
    for (int64_t e = lane; e < E; e += 32) {
        p[e] = expf(row[e] - mx);
        sum += p[e];
        taken[e] = 0;
    }
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float total = (float)sum;
    for (int64_t e = lane; e < E; e += 32)
        p[e] /= total;
    __syncwarp();
    for (int64_t j = 0; j < k; j++) {
        float bp = NAN;
        int be = INT32_MAX;
        for (int64_t e = lane; e < E; e += 32)
            if (!taken[e] && (be == INT32_MAX || route_better(p[e], (int)e, bp, be))) {
                bp = p[e];
                be = (int)e;
            }
        for (int o = 16; o > 0; o >>= 1) {
            const float op = __shfl_xor_sync(0xffffffffu, bp, o);
            const int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (oe != INT32_MAX && (be == INT32_MAX || route_better(op, oe, bp, be))) {
                bp = op;
                be = oe;
            }
        }
        if (lane == 0) {
            experts[t * k + j] = be;
            weights[t * k + j] = bp;
            taken[be] = 1;
        }
        __syncwarp();
    }
}

extern "C" cudaError_t jb_gpu_moe_route(const float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts,
                                       float *weights, cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    if (k > E || E > 2048) /* 5 bytes per expert per warp of shared memory: 40 KB at 2048 */
        return cudaErrorInvalidValue;
    const size_t smem = (size_t)ROUTE_WARPS * (size_t)E * (sizeof(float) + 1);
    moe_route_kernel<<<div_up(T, ROUTE_WARPS), ROUTE_WARPS * 32, smem, stream>>>(logits, T, E, k, experts, weights);
    return JB_LAUNCH_CHECK();
}

/* ---- plan --------------------------------------------------------------------------------------------- */

/* One block of 1024 threads. Warp w handles experts w, w + 32, ...: it counts the expert's slots with
 * ballots, then (after the prefix sum) gives each of them its rank in slot order, which makes the sort
 * stable: tokens ascending within an expert. */
__global__ void moe_plan_kernel(const int32_t *experts, const float *weights, int64_t n_slots, int64_t E, int64_t k,
                                int32_t *begin, int32_t *slot_token, float *slot_weight, int32_t *slot_pos) {
    extern __shared__ int32_t counts[]; /* [E + 1] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int64_t e = warp; e < E; e += n_warps) {
        int32_t c = 0;
        for (int64_t s0 = 0; s0 < n_slots; s0 += 32) {
            const int64_t s = s0 + lane;
            c += __popc(__ballot_sync(0xffffffffu, s < n_slots && experts[s] == e));
        }
        if (lane == 0)
            counts[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t run = 0;
        for (int64_t e = 0; e < E; e++) {
            const int32_t c = counts[e];
            counts[e] = run;
            begin[e] = run;
            run += c;
        }
        begin[E] = run;
    }
    __syncthreads();
    for (int64_t e = warp; e < E; e += n_warps) {
        int32_t next = counts[e];
        for (int64_t s0 = 0; s0 < n_slots; s0 += 32) {
            const int64_t s = s0 + lane;
            const bool mine = s < n_slots && experts[s] == e;
            const unsigned int ballot = __ballot_sync(0xffffffffu, mine);
            if (mine) {
                const int32_t pos = next + __popc(ballot & ((1u << lane) - 1u));
                slot_token[pos] = (int32_t)(s / k);
                slot_weight[pos] = weights[s];
                slot_pos[s] = pos;
            }
            next += __popc(ballot);
        }
    }
}

extern "C" cudaError_t jb_gpu_moe_plan(const int32_t *experts, const float *weights, int64_t T, int64_t E, int64_t k,
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

extern "C" cudaError_t jb_gpu_gather_tokens(jamba_dtype dt, void *dst, const void *x, int64_t ldx,
                                           const int32_t *slot_token, int64_t n, int64_t H, cudaStream_t stream) {
    if (n * H == 0)
        return cudaSuccess;
    if (dt == JAMBA_DTYPE_BF16)
        gather_tokens_kernel<<<div_up(n * H, 256), 256, 0, stream>>>((bf16 *)dst, (const bf16 *)x, ldx, slot_token, n, H);
    else
        gather_tokens_kernel<<<div_up(n * H, 256), 256, 0, stream>>>((float *)dst, (const float *)x, ldx, slot_token, n, H);
    return JB_LAUNCH_CHECK();
}

/* ---- small-batch expert products ------------------------------------------------------------------------- */

#define GEMV_WARPS 8
#define GEMV_SLOTS 4 /* slots of one expert per pass over a weight row */

/* 16 bytes of T as floats: 8 bf16 or 4 fp32. */
template <typename T> struct vec16 {
    static constexpr int N = 16 / sizeof(T);
};

__device__ __forceinline__ void widen16(const bf16 *p, float *out) {
    const uint4 raw = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void widen16(const float *p, float *out) {
    const float4 raw = *(const float4 *)p;
    out[0] = raw.x, out[1] = raw.y, out[2] = raw.z, out[3] = raw.w;
}

/* grid: x = blocks of GEMV_WARPS output rows, y = expert. Each warp owns one output row n and streams the
 * row W_e[n, :] once per GEMV_SLOTS slots, keeping that many dot products. VEC: 16-byte loads (K, the
 * strides and the pointers allow it), else one element per lane per step. */
template <typename T, typename TOut, bool VEC>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
expert_gemv_kernel(const T *W, int64_t expert_stride, int64_t N, int64_t K, const T *in, int64_t ldin,
                   const int32_t *in_token, const int32_t *begin, TOut *out) {
    const int64_t e = blockIdx.y;
    const int32_t s_begin = begin[e], s_end = begin[e + 1];
    if (s_begin == s_end)
        return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + warp;
    if (n >= N)
        return;
    const T *w = W + e * expert_stride + n * K;
    for (int32_t s0 = s_begin; s0 < s_end; s0 += GEMV_SLOTS) {
        const T *x[GEMV_SLOTS];
        float acc[GEMV_SLOTS];
#pragma unroll
        for (int b = 0; b < GEMV_SLOTS; b++) {
            const int32_t slot = s0 + b < s_end ? s0 + b : s0;
            x[b] = in + (int64_t)(in_token ? in_token[slot] : slot) * ldin;
            acc[b] = 0.0f;
        }
        if (VEC) {
            constexpr int VW = vec16<T>::N;
            for (int64_t c = (int64_t)lane * VW; c < K; c += 32 * VW) {
                float wv[VW];
                widen16(w + c, wv);
#pragma unroll
                for (int b = 0; b < GEMV_SLOTS; b++) {
                    float xv[VW];
                    widen16(x[b] + c, xv);
#pragma unroll
                    for (int i = 0; i < VW; i++)
                        acc[b] += wv[i] * xv[i];
                }
            }
        } else {
            for (int64_t c = lane; c < K; c += 32) {
                const float wv = to_f32(w[c]);
#pragma unroll
                for (int b = 0; b < GEMV_SLOTS; b++)
                    acc[b] += wv * to_f32(x[b][c]);
            }
        }
#pragma unroll
        for (int b = 0; b < GEMV_SLOTS; b++) {
            const float v = warp_sum(acc[b]);
            if (lane == 0 && s0 + b < s_end)
                out[(int64_t)(s0 + b) * N + n] = from_f32<TOut>(v);
        }
    }
}

template <typename T, typename TOut>
static void gemv_kernel_launch(dim3 grid, cudaStream_t stream, bool vec, const T *W, int64_t expert_stride, int64_t N,
                               int64_t K, const T *in, int64_t ldin, const int32_t *in_token, const int32_t *begin,
                               TOut *out) {
    if (vec)
        expert_gemv_kernel<T, TOut, true><<<grid, GEMV_WARPS * 32, 0, stream>>>(W, expert_stride, N, K, in, ldin,
                                                                               in_token, begin, out);
    else
        expert_gemv_kernel<T, TOut, false><<<grid, GEMV_WARPS * 32, 0, stream>>>(W, expert_stride, N, K, in, ldin,
                                                                                in_token, begin, out);
}

template <typename T>
static cudaError_t gemv_launch(const void *W, int64_t expert_stride, int64_t N, int64_t K, const void *in,
                               int64_t ldin, const int32_t *in_token, const int32_t *begin, int64_t E, void *out,
                               bool out_f32, cudaStream_t stream) {
    dim3 grid(div_up(N, GEMV_WARPS), (unsigned int)E);
    const int64_t vw = vec16<T>::N;
    const bool vec = K % vw == 0 && ldin % vw == 0 && expert_stride % vw == 0 && (uintptr_t)W % 16 == 0 &&
                     (uintptr_t)in % 16 == 0;
    if (out_f32)
        gemv_kernel_launch<T, float>(grid, stream, vec, (const T *)W, expert_stride, N, K, (const T *)in, ldin,
                                     in_token, begin, (float *)out);
    else
        gemv_kernel_launch<T, T>(grid, stream, vec, (const T *)W, expert_stride, N, K, (const T *)in, ldin, in_token,
                                 begin, (T *)out);
    return JB_LAUNCH_CHECK();
}

extern "C" cudaError_t jb_gpu_expert_gemv(jamba_dtype dt, const void *W, int64_t expert_stride, int64_t N, int64_t K,
                                         const void *in, int64_t ldin, const int32_t *in_token, const int32_t *begin,
                                         int64_t E, void *out, bool out_f32, cudaStream_t stream) {
    if (N == 0 || E == 0)
        return cudaSuccess;
    if (E > 65535)
        return cudaErrorInvalidValue;
    return dt == JAMBA_DTYPE_BF16
               ? gemv_launch<bf16>(W, expert_stride, N, K, in, ldin, in_token, begin, E, out, out_f32, stream)
               : gemv_launch<float>(W, expert_stride, N, K, in, ldin, in_token, begin, E, out, out_f32, stream);
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

extern "C" cudaError_t jb_gpu_moe_combine(const float *expert_out, const int32_t *slot_pos, const int32_t *experts,
                                         const float *weights, int64_t T, int64_t k, int64_t H, float *out,
                                         cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    moe_combine_kernel<<<(unsigned int)T, H < 256 ? 32 * (unsigned int)((H + 31) / 32) : 256, 0, stream>>>(
        expert_out, slot_pos, experts, weights, k, H, out);
    return JB_LAUNCH_CHECK();
}

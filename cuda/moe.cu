/*
 * moe.cu — the mixture-of-experts steps on the GPU, with moe/router.c as their CPU twin:
 *   route    softmax over the router logits and the top k, one warp per token;
 *   plan     the stable counting sort of (token, choice) slots by expert, one block;
 *   gather   each slot's token row;
 *   gemv     the expert products for small batches, reading the plan from device memory (no host round
 *            trip, so a decode step can be a CUDA graph); large batches use cuBLAS per expert instead;
 *   combine  each token's weighted expert outputs, added in ascending expert order like the CPU;
 * and the MoE block of a step (jb_cuda_moe_ffn) that runs them.
 */
#include "cuda/common.cuh"
#include "cuda/layer_dev.h"
#include "cuda/moe.h"
#include "moe/rule.h"

/* ---- route ------------------------------------------------------------------------------------------ */

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
            if (!taken[e] && (be == INT32_MAX || jb_moe_prefer(p[e], (int)e, bp, be))) {
                bp = p[e];
                be = (int)e;
            }
        for (int o = 16; o > 0; o >>= 1) {
            const float op = __shfl_xor_sync(0xffffffffu, bp, o);
            const int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (oe != INT32_MAX && (be == INT32_MAX || jb_moe_prefer(op, oe, bp, be))) {
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

extern "C" cudaError_t jb_cuda_moe_route(const float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts,
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

/* ---- small-batch expert products ------------------------------------------------------------------------- */

#define GEMV_WARPS 8
#define GEMV_SLOTS 4 /* slots of one expert per pass over a weight row */
#define GEMV_VW 8    /* elements per lane per vector step: 16 B of bf16, 32 B of fp32, 8 B of int8 */

/* GEMV_VW consecutive elements as floats (16-byte aligned for bf16/fp32, 8-byte for int8). */
__device__ __forceinline__ void load8(const bf16 *p, float *out) {
    const uint4 raw = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void load8(const float *p, float *out) {
    const float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
    out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

__device__ __forceinline__ void load8(const int8_t *p, float *out) {
    const uint2 raw = *(const uint2 *)p;
    const int8_t *q = (const int8_t *)&raw;
#pragma unroll
    for (int i = 0; i < 8; i++)
        out[i] = (float)q[i];
}

__device__ __forceinline__ float to_f32(int8_t x) { return (float)x; }

/* grid: x = blocks of GEMV_WARPS output rows, y = expert. Each warp owns one output row n and streams the
 * row W_e[n, :] (TW: the activation type, or int8 with a row scale applied to the dot product) once per
 * GEMV_SLOTS slots, keeping that many dot products. VEC: vector loads (K, the strides and the pointers
 * allow it), else one element per lane per step. */
template <typename TW, typename T, typename TOut, bool VEC>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
expert_gemv_kernel(const TW *W, const float *scale, int64_t expert_stride, int64_t N, int64_t K, const T *in,
                   int64_t ldin, const int32_t *in_token, const int32_t *begin, int64_t n_rows, TOut *out) {
    const int64_t e = blockIdx.y;
    const int32_t s_begin = begin ? begin[e] : 0, s_end = begin ? begin[e + 1] : (int32_t)n_rows;
    if (s_begin == s_end)
        return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n = (int64_t)blockIdx.x * GEMV_WARPS + warp;
    if (n >= N)
        return;
    const TW *w = W + e * expert_stride + n * K;
    const float row_scale = scale ? scale[e * N + n] : 1.0f;
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
            for (int64_t c = (int64_t)lane * GEMV_VW; c < K; c += 32 * GEMV_VW) {
                float wv[GEMV_VW];
                load8(w + c, wv);
#pragma unroll
                for (int b = 0; b < GEMV_SLOTS; b++) {
                    float xv[GEMV_VW];
                    load8(x[b] + c, xv);
#pragma unroll
                    for (int i = 0; i < GEMV_VW; i++)
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
            const float v = warp_sum(acc[b]) * row_scale;
            if (lane == 0 && s0 + b < s_end)
                out[(int64_t)(s0 + b) * N + n] = from_f32<TOut>(v);
        }
    }
}

template <typename TW, typename T, typename TOut>
static void gemv_kernel_launch(const jb_cuda_gemv_args *a, bool vec, cudaStream_t stream) {
    const dim3 grid(div_up(a->N, GEMV_WARPS), (unsigned int)a->E);
    if (vec)
        expert_gemv_kernel<TW, T, TOut, true><<<grid, GEMV_WARPS * 32, 0, stream>>>(
            (const TW *)a->W, a->scale, a->expert_stride, a->N, a->K, (const T *)a->in, a->ldin, a->in_token,
            a->begin, a->n_rows, (TOut *)a->out);
    else
        expert_gemv_kernel<TW, T, TOut, false><<<grid, GEMV_WARPS * 32, 0, stream>>>(
            (const TW *)a->W, a->scale, a->expert_stride, a->N, a->K, (const T *)a->in, a->ldin, a->in_token,
            a->begin, a->n_rows, (TOut *)a->out);
}

template <typename TW, typename T>
static void gemv_launch(const jb_cuda_gemv_args *a, cudaStream_t stream) {
    const bool vec = a->K % GEMV_VW == 0 && a->ldin % GEMV_VW == 0 && a->expert_stride % GEMV_VW == 0 &&
                     (uintptr_t)a->W % 16 == 0 && (uintptr_t)a->in % 16 == 0;
    if (a->out_f32)
        gemv_kernel_launch<TW, T, float>(a, vec, stream);
    else
        gemv_kernel_launch<TW, T, T>(a, vec, stream);
}

extern "C" cudaError_t jb_cuda_expert_gemv(jamba_dtype dt, const jb_cuda_gemv_args *a, cudaStream_t stream) {
    if (a->N == 0 || a->E == 0)
        return cudaSuccess;
    const bool q8 = a->wdt == JAMBA_DTYPE_I8;
    if (a->E > 65535 || (a->begin == NULL && (a->E != 1 || a->n_rows > INT32_MAX)) || (!q8 && a->wdt != dt) ||
        (q8 && a->scale == NULL))
        return cudaErrorInvalidValue;
    if (dt == JAMBA_DTYPE_BF16)
        q8 ? gemv_launch<int8_t, bf16>(a, stream) : gemv_launch<bf16, bf16>(a, stream);
    else
        q8 ? gemv_launch<int8_t, float>(a, stream) : gemv_launch<float, float>(a, stream);
    return JB_LAUNCH_CHECK();
}

/* ---- int8 rows to the activation type (prefill through cuBLAS) ------------------------------------------ */

template <typename T>
__global__ void dequant_rows_kernel(T *dst, const int8_t *q, const float *scale, int64_t N, int64_t K) {
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= N * K)
        return;
    if (i + 4 <= N * K && K % 4 == 0) { /* four elements of one row */
        const char4 v = *(const char4 *)(q + i);
        const float s = scale[i / K];
        dst[i] = from_f32<T>(v.x * s), dst[i + 1] = from_f32<T>(v.y * s);
        dst[i + 2] = from_f32<T>(v.z * s), dst[i + 3] = from_f32<T>(v.w * s);
        return;
    }
    for (int64_t j = i; j < i + 4 && j < N * K; j++)
        dst[j] = from_f32<T>(q[j] * scale[j / K]);
}

extern "C" cudaError_t jb_cuda_dequant_rows(jamba_dtype dt, void *dst, const int8_t *q, const float *scale, int64_t N,
                                          int64_t K, cudaStream_t stream) {
    if (N * K == 0)
        return cudaSuccess;
    const int64_t threads = div_up(N * K, 4);
    if (dt == JAMBA_DTYPE_BF16)
        dequant_rows_kernel<<<div_up(threads, 256), 256, 0, stream>>>((bf16 *)dst, q, scale, N, K);
    else
        dequant_rows_kernel<<<div_up(threads, 256), 256, 0, stream>>>((float *)dst, q, scale, N, K);
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

/* ---- the MoE block of a step ---------------------------------------------------------------------- */

bool jb_cuda_moe_ffn(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, I = c->I, E = c->E, k = c->k, slots = T * k;
    const bool q8 = w->ffn_wdt == JAMBA_DTYPE_I8;
    const size_t wes = q8 ? 1 : c->es; /* bytes per expert weight */
    BL(jb_cuda_gemm(c->blas, dt, JAMBA_DTYPE_F32, c->router, E, c->xn, H, w->router, T, E, H), "MoE router");
    CU(jb_cuda_moe_route(c->router, T, E, k, c->experts, c->weights, c->stream), "MoE routing");
    CU(jb_cuda_moe_plan(c->experts, c->weights, T, E, k, c->begin, c->slot_token, c->slot_weight, c->slot_pos,
                       c->stream), "MoE plan");
    if (s.moe_gemv) {
        jb_cuda_gemv_args gu = {w->gate_up, w->ffn_wdt, w->gate_up_scale, 2 * I * H, 2 * I, H, c->xn, H,
                               c->slot_token, c->begin, 0, E, c->gu, false};
        CU(jb_cuda_expert_gemv(dt, &gu, c->stream), "MoE expert gate/up");
        CU(jb_cuda_swiglu(dt, c->gu, 2 * I, c->act, slots, I, c->stream), "MoE SwiGLU");
        jb_cuda_gemv_args dn = {w->down, w->ffn_wdt, w->down_scale, H * I, H, I, c->act, I, NULL, c->begin, 0, E,
                               c->expert_out, true};
        CU(jb_cuda_expert_gemv(dt, &dn, c->stream), "MoE expert down");
    } else {
        CU(jb_cuda_gather_tokens(dt, c->gathered, c->xn, H, c->slot_token, slots, H, c->stream), "MoE gather");
        CU(cudaMemcpyAsync(c->h_begin, c->begin, (size_t)(E + 1) * 4, cudaMemcpyDeviceToHost, c->stream),
           "MoE expert counts");
        CU(cudaStreamSynchronize(c->stream), "MoE expert counts");
        for (int64_t e = 0; e < E; e++) {
            const int64_t b = c->h_begin[e], n = c->h_begin[e + 1] - b;
            if (n > 0 && !jb_cuda_ffn_matmul(c, w, jb_at(w->gate_up, e * 2 * I * H, wes),
                                     q8 ? w->gate_up_scale + e * 2 * I : NULL, dt, jb_at(c->gu, b * 2 * I, c->es),
                                     jb_at(c->gathered, b * H, c->es), n, 2 * I, H, "MoE expert gate/up", rs))
                return false;
        }
        CU(jb_cuda_swiglu(dt, c->gu, 2 * I, c->act, slots, I, c->stream), "MoE SwiGLU");
        for (int64_t e = 0; e < E; e++) {
            const int64_t b = c->h_begin[e], n = c->h_begin[e + 1] - b;
            if (n > 0 && !jb_cuda_ffn_matmul(c, w, jb_at(w->down, e * H * I, wes), q8 ? w->down_scale + e * H : NULL,
                                     JAMBA_DTYPE_F32, c->expert_out + b * H, jb_at(c->act, b * I, c->es), n, H, I,
                                     "MoE expert down", rs))
                return false;
        }
    }
    CU(jb_cuda_moe_combine(c->expert_out, c->slot_pos, c->experts, c->weights, T, k, H, c->mix, c->stream),
       "MoE combine");
    return true;
}

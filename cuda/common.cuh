/*
 * common.cuh — what every CUDA file of the backend shares: element types and conversions, the scalar
 * functions the CPU reference uses (same definitions), warp and block reductions, and launch checks.
 *
 * Element types: activations and weights are `float` (the fp32 checking mode) or `__nv_bfloat16`; every
 * kernel that touches them is a template over that type. Accumulation, norms, softmax and the SSM state
 * are always fp32.
 */
#ifndef JB_CUDA_COMMON_CUH
#define JB_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16(x); }

/* The CPU reference's definitions (cpu/ops.h), with the accurate expf/log1pf. */
__device__ __forceinline__ float dev_silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float dev_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
 * `scratch` holds 32 floats of shared memory; the call ends with a barrier so it can be reused. */
__device__ __forceinline__ float block_sum(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : 0.0f;
    v = warp_sum(v);
    __syncthreads();
    return v;
}

/* Same in double, for norm statistics (the CPU reference sums squares in double). */
__device__ __forceinline__ double block_sum_f64(double v, double *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    return v;
}

/* 2^x by the exp unit alone (ex2.approx.ftz: relative error below 2^-22, subnormal results flushed to 0,
 * which for a Mamba decay factor changes nothing visible); exp2f would add a subnormal fix-up around it.
 * The selective scan (scan.cu) and the fused decode scan (fused_gemv.cuh) share it, so they agree bit for
 * bit. */
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* Whether this block is the last of `expected` blocks of the launch to arrive at *count: every thread of
 * each of them calls it after storing what the last block will read. Counted with an integer atomic (no
 * float atomics anywhere); the last block sets the count back to zero for the next launch (a replayed
 * graph) and sees the other blocks' stores through L2 (read them with __ldcg). */
__device__ __forceinline__ bool jb_last_arrival(unsigned int *count, unsigned int expected) {
    __shared__ int last;
    __threadfence(); /* this thread's stores are visible device-wide before its block is counted */
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(count, 1u) + 1u == expected;
        if (last) {
            atomicExch(count, 0u); /* every other block has counted itself */
            __threadfence();
        }
    }
    __syncthreads();
    return last != 0;
}

static inline unsigned int div_up(int64_t a, int64_t b) { return (unsigned int)((a + b - 1) / b); }

/* The error of the launch just made (configuration errors) — kernels report through the stream. */
#define JB_LAUNCH_CHECK() cudaGetLastError()

#endif /* JB_CUDA_COMMON_CUH */

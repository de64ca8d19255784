/*
 * synth.cu — random weights written straight into device memory, for synthetic models of any size
 * (benchmarks of Jamba-Mini without a 100 GB file). Values follow runtime/synthetic.c's reference ranges;
 * each element's value is a hash of (seed, index), so a fill is reproducible and needs no state.
 */
#include "cuda/common.cuh"
#include "cuda/ops.h"

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* uniform in [0, 1) */
__device__ __forceinline__ float unit(uint64_t seed, int64_t i) {
    return (float)(mix64(seed ^ mix64((uint64_t)i)) >> 40) * (1.0f / 16777216.0f);
}

__device__ float synth_value(jb_cuda_fill_kind kind, float a, int64_t period, uint64_t seed, int64_t i) {
    switch (kind) {
    case JB_FILL_CONST:
        return a;
    case JB_FILL_NEG_ARANGE: /* A = -exp(A_log) with A_log = log(1 .. period) */
        return -(float)(i % period + 1);
    case JB_FILL_DT_BIAS: { /* softplus^-1(dt), dt log-uniform in [0.001, 0.1] */
        const float dt = expf(logf(0.001f) + unit(seed, i) * (logf(0.1f) - logf(0.001f)));
        return dt + logf(-expm1f(-dt));
    }
    case JB_FILL_INT8:
        return floorf(unit(seed, i) * 255.0f) - 127.0f;
    default: /* JB_FILL_UNIFORM */
        return (2.0f * unit(seed, i) - 1.0f) * a;
    }
}

template <typename T>
__global__ void fill_kernel(T *dst, int64_t n, jb_cuda_fill_kind kind, float a, int64_t period, uint64_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<T>(synth_value(kind, a, period, seed, i));
}

__global__ void fill_int8_kernel(int8_t *dst, int64_t n, uint64_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = (int8_t)synth_value(JB_FILL_INT8, 0, 0, seed, i);
}

extern "C" cudaError_t jb_cuda_fill(void *dst, jamba_dtype dt, int64_t n, jb_cuda_fill_kind kind, float a,
                                  int64_t period, uint64_t seed, cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    const unsigned int blocks = (unsigned int)(div_up(n, 256) < 65536 ? div_up(n, 256) : 65536);
    if (dt == JAMBA_DTYPE_I8)
        fill_int8_kernel<<<blocks, 256, 0, stream>>>((int8_t *)dst, n, seed);
    else if (dt == JAMBA_DTYPE_BF16)
        fill_kernel<<<blocks, 256, 0, stream>>>((bf16 *)dst, n, kind, a, period, seed);
    else if (dt == JAMBA_DTYPE_F32)
        fill_kernel<<<blocks, 256, 0, stream>>>((float *)dst, n, kind, a, period, seed);
    else
        return cudaErrorInvalidValue;
    return JB_LAUNCH_CHECK();
}

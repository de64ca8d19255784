/*
 * rownorm.cuh — the RMS norms of one row by one block, shared by the row-wise ops (rows.cu) and the fused
 * decode products that finish with a norm (fused.cu, mamba_decode.cu, moe.cu), and the grid's-last-block
 * handshake that lets one block of a product normalise what the whole grid wrote. They follow cpu/ops.c exactly: squares summed in
 * double, inv = 1 / sqrt(mean + eps) in fp32, y = w * (x * inv). Inputs are read through L2 (__ldcg), so
 * a block may normalise rows that other blocks of the same grid wrote (after a __threadfence handshake).
 * blockDim.x: a multiple of 32, at most 1024; every thread of the block must call them.
 */
#ifndef JB_CUDA_ROWNORM_CUH
#define JB_CUDA_ROWNORM_CUH

#include "cuda/common.cuh"

/* inv = 1 / sqrt(mean(x²) + eps) of x[0, n), summed in double over the block. scratch: 32 doubles of
 * shared memory. */
static __device__ __forceinline__ float row_inv_rms(const float *x, int64_t n, float eps, double *scratch) {
    double ss = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double v = __ldcg(x + i);
        ss += v * v;
    }
    ss = block_sum_f64(ss, scratch);
    return 1.0f / sqrtf((float)(ss / (double)n) + eps);
}

/* out[0, n) (T) = w ⊙ x / rms(x). */
template <typename T>
static __device__ __forceinline__ void rmsnorm_row(const float *x, int64_t n, const float *w, T *out, float eps, double *scratch) {
    const float inv = row_inv_rms(x, n, eps, scratch);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        out[i] = from_f32<T>(w[i] * (__ldcg(x + i) * inv));
}

/* One row of xdbl [R + 2N] (f32, the x_proj output): dt [0, R), B [R, R+N) and C [R+N, R+2N) each
 * normalised with their weights (dt_w NULL: no inner norms, copied as they are); dt goes to dt_out[0, R)
 * (T), B and C to b_out[0, N) and c_out[0, N) (f32), which may be the row's own B and C (each element is
 * read and written by the same thread). */
template <typename T>
static __device__ __forceinline__ void ssm_params_row_to(const float *row, int64_t R, int64_t N, const float *dt_w, const float *b_w,
                                         const float *c_w, float eps, T *dt_out, float *b_out, float *c_out,
                                         double *scratch) {
    float inv_dt = 1.0f, inv_b = 1.0f, inv_c = 1.0f;
    if (dt_w) {
        inv_dt = row_inv_rms(row, R, eps, scratch);
        inv_b = row_inv_rms(row + R, N, eps, scratch);
        inv_c = row_inv_rms(row + R + N, N, eps, scratch);
    }
    for (int64_t i = threadIdx.x; i < R; i += blockDim.x) {
        const float v = __ldcg(row + i);
        dt_out[i] = from_f32<T>(dt_w ? dt_w[i] * (v * inv_dt) : v);
    }
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
        const float b = __ldcg(row + R + i), c = __ldcg(row + R + N + i);
        b_out[i] = dt_w ? b_w[i] * (b * inv_b) : b;
        c_out[i] = dt_w ? c_w[i] * (c * inv_c) : c;
    }
}

/* The same in place: B and C rewritten in the row. */
template <typename T>
static __device__ __forceinline__ void ssm_params_row(float *row, int64_t R, int64_t N, const float *dt_w, const float *b_w,
                                      const float *c_w, float eps, T *dt_out, double *scratch) {
    ssm_params_row_to(row, R, N, dt_w, b_w, c_w, eps, dt_out, row + R, row + R + N, scratch);
}

#endif /* JB_CUDA_ROWNORM_CUH */

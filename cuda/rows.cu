/*
 * rows.cu — the row-wise ops: embedding gather, residual add fused with RMSNorm, the dt/B/C norms after
 * x_proj, SwiGLU, bias, row gathers. Each row of a norm is one block (the norms of rownorm.cuh, shared with
 * the fused decode products); elementwise ops are one thread per element.
 */
#include "cuda/ops.h"
#include "cuda/rownorm.cuh"

/* Threads for a block that walks a row of n elements. */
static unsigned int row_threads(int64_t n) {
    unsigned int t = 32;
    while (t < 256 && t < n)
        t <<= 1;
    return t;
}

template <typename T>
__global__ void embed_kernel(float *x, const T *table, const int32_t *tokens, int64_t T_rows, int64_t H) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T_rows * H)
        return;
    int64_t t = i / H, h = i % H;
    x[i] = to_f32(table[(int64_t)tokens[t] * H + h]);
}

extern "C" cudaError_t jb_cuda_embed(jamba_dtype dt, float *x, const void *table, const int32_t *tokens, int64_t T,
                                    int64_t H, cudaStream_t stream) {
    if (T * H == 0)
        return cudaSuccess;
    unsigned int blocks = div_up(T * H, 256);
    if (dt == JAMBA_DTYPE_BF16)
        embed_kernel<<<blocks, 256, 0, stream>>>(x, (const bf16 *)table, tokens, T, H);
    else
        embed_kernel<<<blocks, 256, 0, stream>>>(x, (const float *)table, tokens, T, H);
    return JB_LAUNCH_CHECK();
}

template <typename T>
__global__ void embed_rmsnorm_kernel(float *x, const T *table, const int32_t *tokens, int64_t H, const float *w,
                                     T *out, float eps) {
    __shared__ double scratch[32];
    float *xr = x + (int64_t)blockIdx.x * H;
    const T *row = table + (int64_t)tokens[blockIdx.x] * H;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
        xr[i] = to_f32(row[i]);
    __syncthreads();
    rmsnorm_row(xr, H, w, out + (int64_t)blockIdx.x * H, eps, scratch);
}

extern "C" cudaError_t jb_cuda_embed_rmsnorm(jamba_dtype dt, float *x, const void *table, const int32_t *tokens,
                                            int64_t T, int64_t H, const float *w, void *out, float eps,
                                            cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    if (T > INT32_MAX)
        return cudaErrorInvalidValue;
    const unsigned int threads = row_threads(H);
    if (dt == JAMBA_DTYPE_BF16)
        embed_rmsnorm_kernel<<<(unsigned int)T, threads, 0, stream>>>(x, (const bf16 *)table, tokens, H, w, (bf16 *)out,
                                                                       eps);
    else
        embed_rmsnorm_kernel<<<(unsigned int)T, threads, 0, stream>>>(x, (const float *)table, tokens, H, w,
                                                                       (float *)out, eps);
    return JB_LAUNCH_CHECK();
}

template <typename T>
__global__ void add_rmsnorm_kernel(float *x, const float *add, const float *w, T *out, int64_t H, float eps) {
    __shared__ double scratch[32];
    float *xr = x + (int64_t)blockIdx.x * H;
    if (add) {
        const float *ar = add + (int64_t)blockIdx.x * H;
        for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
            xr[i] += ar[i];
        __syncthreads();
    }
    if (out != NULL)
        rmsnorm_row(xr, H, w, out + (int64_t)blockIdx.x * H, eps, scratch);
}

extern "C" cudaError_t jb_cuda_add_rmsnorm(jamba_dtype dt, float *x, const float *add, const float *w, void *out,
                                          int64_t T, int64_t H, float eps, cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    unsigned int threads = row_threads(H);
    if (dt == JAMBA_DTYPE_BF16)
        add_rmsnorm_kernel<<<(unsigned int)T, threads, 0, stream>>>(x, add, w, (bf16 *)out, H, eps);
    else
        add_rmsnorm_kernel<<<(unsigned int)T, threads, 0, stream>>>(x, add, w, (float *)out, H, eps);
    return JB_LAUNCH_CHECK();
}

__global__ void gather_rows_kernel(float *dst, const float *src, const int64_t *rows, int64_t n, int64_t H) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * H)
        return;
    dst[i] = src[rows[i / H] * H + i % H];
}

extern "C" cudaError_t jb_cuda_gather_rows(float *dst, const float *src, const int64_t *rows, int64_t n, int64_t H,
                                          cudaStream_t stream) {
    if (n * H == 0)
        return cudaSuccess;
    gather_rows_kernel<<<div_up(n * H, 256), 256, 0, stream>>>(dst, src, rows, n, H);
    return JB_LAUNCH_CHECK();
}

template <typename T>
__global__ void add_bias_kernel(T *Y, int64_t ldy, const float *bias, int64_t T_rows, int64_t N) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T_rows * N)
        return;
    T *y = Y + (i / N) * ldy + i % N;
    *y = from_f32<T>(to_f32(*y) + bias[i % N]);
}

extern "C" cudaError_t jb_cuda_add_bias(jamba_dtype dt, void *Y, int64_t ldy, const float *bias, int64_t T,
                                       int64_t N, cudaStream_t stream) {
    if (T * N == 0)
        return cudaSuccess;
    unsigned int blocks = div_up(T * N, 256);
    if (dt == JAMBA_DTYPE_BF16)
        add_bias_kernel<<<blocks, 256, 0, stream>>>((bf16 *)Y, ldy, bias, T, N);
    else if (dt == JAMBA_DTYPE_F32)
        add_bias_kernel<<<blocks, 256, 0, stream>>>((float *)Y, ldy, bias, T, N);
    else
        return cudaErrorInvalidValue;
    return JB_LAUNCH_CHECK();
}

template <typename T>
__global__ void swiglu_kernel(const T *gu, int64_t ld, T *out, int64_t T_rows, int64_t I) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T_rows * I)
        return;
    int64_t t = i / I, c = i % I;
    float g = to_f32(gu[t * ld + c]), u = to_f32(gu[t * ld + I + c]);
    out[i] = from_f32<T>(dev_silu(g) * u);
}

extern "C" cudaError_t jb_cuda_swiglu(jamba_dtype dt, const void *gu, int64_t ld, void *out, int64_t T, int64_t I,
                                     cudaStream_t stream) {
    if (T * I == 0)
        return cudaSuccess;
    unsigned int blocks = div_up(T * I, 256);
    if (dt == JAMBA_DTYPE_BF16)
        swiglu_kernel<<<blocks, 256, 0, stream>>>((const bf16 *)gu, ld, (bf16 *)out, T, I);
    else
        swiglu_kernel<<<blocks, 256, 0, stream>>>((const float *)gu, ld, (float *)out, T, I);
    return JB_LAUNCH_CHECK();
}

/* One row of xdbl per block (rownorm.cuh). */
template <typename T>
__global__ void ssm_params_kernel(float *xdbl, int64_t R, int64_t N, const float *dt_w, const float *b_w,
                                  const float *c_w, float eps, T *dt_out) {
    __shared__ double scratch[32];
    ssm_params_row(xdbl + (int64_t)blockIdx.x * (R + 2 * N), R, N, dt_w, b_w, c_w, eps,
                   dt_out + (int64_t)blockIdx.x * R, scratch);
}

extern "C" cudaError_t jb_cuda_ssm_params(jamba_dtype dt, float *xdbl, int64_t T, int64_t R, int64_t N,
                                         const float *dt_w, const float *b_w, const float *c_w, float eps,
                                         void *dt_out, cudaStream_t stream) {
    if (T == 0)
        return cudaSuccess;
    unsigned int threads = row_threads(R > N ? R : N);
    if (dt == JAMBA_DTYPE_BF16)
        ssm_params_kernel<<<(unsigned int)T, threads, 0, stream>>>(xdbl, R, N, dt_w, b_w, c_w, eps, (bf16 *)dt_out);
    else
        ssm_params_kernel<<<(unsigned int)T, threads, 0, stream>>>(xdbl, R, N, dt_w, b_w, c_w, eps, (float *)dt_out);
    return JB_LAUNCH_CHECK();
}

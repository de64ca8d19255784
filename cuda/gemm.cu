/*
 * gemm.cu — Y[T, N] = X[T, K] · W[N, K]^T through cuBLAS. Row-major Y is column-major Yᵀ [N, T], so the
 * call is Yᵀ = op(W)·Xᵀ with W transposed: m = N, n = T, k = K. fp32 accumulation always; the fp32 mode
 * asks for CUBLAS_COMPUTE_32F_PEDANTIC so no TF32 shortcut changes the numbers.
 */
#include "cuda/ops.h"

static cudaDataType_t cuda_type(jamba_dtype dt) {
    return dt == JAMBA_DTYPE_BF16 ? CUDA_R_16BF : dt == JAMBA_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

extern "C" cublasStatus_t jb_cuda_gemm(cublasHandle_t h, jamba_dtype in_dt, jamba_dtype out_dt, void *Y,
                                      int64_t ldy, const void *X, int64_t ldx, const void *W, int64_t T, int64_t N,
                                      int64_t K) {
    if (T == 0 || N == 0)
        return CUBLAS_STATUS_SUCCESS;
    if (T > INT32_MAX || N > INT32_MAX || K > INT32_MAX || ldx > INT32_MAX || ldy > INT32_MAX)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float one = 1.0f, zero = 0.0f;
    cublasComputeType_t compute = in_dt == JAMBA_DTYPE_F32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)T, (int)K, &one, W, cuda_type(in_dt), (int)K, X,
                        cuda_type(in_dt), (int)ldx, &zero, Y, cuda_type(out_dt), (int)ldy, compute,
                        CUBLAS_GEMM_DEFAULT);
}

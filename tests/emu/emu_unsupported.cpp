/*
 * emu_unsupported.cpp — the backend entry points the shared op-test files of tests/gpu reference but the CPU
 * emulation cannot run: cuBLAS, the tensor-core products (mma.sync/ldmatrix/cp.async PTX, which
 * emu_lower.cpp refuses) and the cooperative Mamba mixer (grid barriers need every block resident at once;
 * the emulation runs blocks one after another). Each returns its "not supported" status; test_gpu_emulated never selects the
 * cases that call them (emu_main.c), so reaching one is a failure of that case, not a silent pass.
 */
#include "tests/emu/emu.h"

#include "cuda/moe.h"
#include "cuda/ops.h"

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = nullptr;
    return CUBLAS_STATUS_NOT_SUPPORTED;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t) { return CUBLAS_STATUS_NOT_SUPPORTED; }

cublasStatus_t jb_cuda_gemm(cublasHandle_t, jamba_dtype, jamba_dtype, void *, int64_t, const void *, int64_t,
                            const void *, int64_t, int64_t, int64_t) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

bool jb_cuda_expert_gemm_supported(jamba_dtype, const jb_cuda_gemv_args *) { return false; }
cudaError_t jb_cuda_expert_gemm(jamba_dtype, const jb_cuda_gemv_args *, cudaStream_t) { return cudaErrorNotSupported; }

cudaError_t jb_cuda_mamba_mixer_grid(jamba_dtype, int64_t, int64_t, int64_t, int, int *grid) {
    *grid = 0;
    return cudaErrorNotSupported;
}
cudaError_t jb_cuda_mamba_mixer_rows(jamba_dtype, const jb_cuda_mamba_mixer_args *, const jb_cuda_step_desc *, int,
                                     cudaStream_t) {
    return cudaErrorNotSupported;
}

} // extern "C"

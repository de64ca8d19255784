/*
 * ffn.cu — the dense FFN half of a layer on the GPU (CPU twin: cpu/ffn.c's jb_cpu_mlp), and the product
 * of one FFN matrix held in the device dtype or as int8 with row scales, shared with the MoE block.
 */
#include "cuda/layer_dev.h"
#include "cuda/moe.h"

/* Y[n, N] = X[n, K] · W^T for one FFN matrix W [N, K] of an int8-or-dt block (row scales `scale` when
 * int8): int8 rows run as a GEMV up to GEMV_SLOTS rows, else are widened into the dequant workspace for
 * cuBLAS. */
bool jb_cuda_ffn_matmul(jb_cuda_ctx *c, const jb_dev_layer *w, const void *W, const float *scale, jamba_dtype out_dt,
                void *Y, const void *X, int64_t n, int64_t N, int64_t K, const char *what, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    if (w->ffn_wdt != JAMBA_DTYPE_I8) {
        BL(jb_cuda_gemm(c->blas, dt, out_dt, Y, N, X, K, W, n, N, K), what);
        return true;
    }
    if (n <= JB_CUDA_GEMV_SLOTS) {
        jb_cuda_gemv_args g = {W, JAMBA_DTYPE_I8, scale, 0, N, K, X, K, NULL, NULL, n, 1, Y, out_dt == JAMBA_DTYPE_F32};
        CU(jb_cuda_expert_gemv(dt, &g, c->stream), what);
        return true;
    }
    CU(jb_cuda_dequant_rows(dt, c->deq, (const int8_t *)W, scale, N, K, c->stream), what);
    BL(jb_cuda_gemm(c->blas, dt, out_dt, Y, N, X, K, c->deq, n, N, K), what);
    return true;
}

bool jb_cuda_dense_ffn(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, I = c->I;
    if (!jb_cuda_ffn_matmul(c, w, w->gate_up, w->gate_up_scale, dt, c->wide, c->xn, T, 2 * I, H, "mlp gate/up", rs))
        return false;
    CU(jb_cuda_swiglu(dt, c->wide, 2 * I, c->y, T, I, c->stream), "mlp SwiGLU");
    return jb_cuda_ffn_matmul(c, w, w->down, w->down_scale, JAMBA_DTYPE_F32, c->mix, c->y, T, H, I, "mlp down", rs);
}

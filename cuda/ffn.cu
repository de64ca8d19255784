/*
 * ffn.cu — the dense FFN half of a layer on the GPU (CPU twin: cpu/ffn.c's jb_cpu_mlp), and the product
 * of one FFN matrix held in the device dtype or as int8 with row scales, shared with the MoE block. A fused
 * decode step runs the dense MLP as two products (fused.cu) that end in the residual stream.
 */
#include "cuda/layer_dev.h"
#include "cuda/moe.h"

/* Y[n, N] = X[n, K] · W^T for one FFN matrix W [N, K] of an int8-or-dt block (row scales `scale` when
 * int8): int8 rows run as a GEMV up to GEMV_SLOTS rows (and where the tensor-core product does not
 * apply), else as the w8a16 tensor-core product (moe_gemm.cu). */
bool jb_cuda_ffn_matmul(jb_cuda_ctx *c, const jb_dev_layer *w, const void *W, const float *scale, jamba_dtype out_dt,
                void *Y, const void *X, int64_t n, int64_t N, int64_t K, const char *what, jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    if (w->ffn_wdt != JAMBA_DTYPE_I8) {
        BL(jb_cuda_gemm(c->blas, dt, out_dt, Y, N, X, K, W, n, N, K), what);
        return true;
    }
    const jb_cuda_gemv_args g = {W, JAMBA_DTYPE_I8, scale, 0, N, K, X, K, NULL, NULL, n, 1, Y, out_dt == JAMBA_DTYPE_F32,
                                  false, 0, 0};
    if (n > JB_CUDA_GEMV_SLOTS && jb_cuda_expert_gemm_supported(dt, &g))
        CU(jb_cuda_expert_gemm(dt, &g, c->stream), what);
    else
        CU(jb_cuda_expert_gemv(dt, &g, c->stream), what);
    return true;
}

bool jb_cuda_dense_ffn_fused(const jb_dev_layer *w, const jb_step_shape &s) {
    return s.fused && w->ffn_wdt != JAMBA_DTYPE_I8;
}

bool jb_cuda_dense_ffn(jb_cuda_ctx *c, const jb_dev_layer *w, const jb_step_shape &s, const jb_next_norm &next,
                       jb_run_state &rs) {
    const jamba_dtype dt = c->dt;
    const int64_t T = s.T, H = c->H, I = c->I;
    if (jb_cuda_dense_ffn_fused(w, s)) { /* two launches: gate|up with SwiGLU into y, down into x with the norm */
        const jb_cuda_rows_product gu = {w->gate_up, 2 * I, H, c->xn, H, NULL, T};
        CU(jb_cuda_rows_gemv_swiglu(dt, &gu, c->y, I, c->stream), "mlp gate/up with SwiGLU");
        const jb_cuda_rows_product dn = {w->down, H, I, c->y, I, NULL, T};
        CU(jb_cuda_rows_gemv_residual(dt, &dn, NULL, c->x, next.w, next.out, (float)c->cfg->rms_norm_eps,
                                      c->sync_counter, c->stream), "mlp down with the residual and next norm");
        return true;
    }
    if (!jb_cuda_ffn_matmul(c, w, w->gate_up, w->gate_up_scale, dt, c->wide, c->xn, T, 2 * I, H, "mlp gate/up", rs))
        return false;
    CU(jb_cuda_swiglu(dt, c->wide, 2 * I, c->y, T, I, c->stream), "mlp SwiGLU");
    return jb_cuda_ffn_matmul(c, w, w->down, w->down_scale, JAMBA_DTYPE_F32, c->mix, c->y, T, H, I, "mlp down", rs);
}

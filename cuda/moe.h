/*
 * moe.h — the mixture-of-experts kernels of the CUDA backend (moe.cu), each the twin of moe/router.c's
 * routing and dispatch plan or of cpu/ffn.c's expert products and combine. C ABI, like ops.h.
 */
#ifndef JB_CUDA_MOE_H
#define JB_CUDA_MOE_H

#include "cuda/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- mixture of experts ------------------------------------------------------------------------- */

/* Route T tokens: softmax over logits[T, E] (f32), the top k with ties to the lower index and NaN never
 * chosen; experts[T, k] and weights[T, k] in descending probability (moe/router.c's rule). */
cudaError_t jb_cuda_moe_route(const float *logits, int64_t T, int64_t E, int64_t k, int32_t *experts,
                             float *weights, cudaStream_t stream);

/* The dispatch plan (moe/router.c's jb_moe_plan_build): slots grouped by expert ascending, tokens
 * ascending within one. begin[E + 1]; slot_token, slot_weight [T*k]; slot_pos[t*k + j] = the plan
 * position of token t's j-th choice. */
cudaError_t jb_cuda_moe_plan(const int32_t *experts, const float *weights, int64_t T, int64_t E, int64_t k,
                            int32_t *begin, int32_t *slot_token, float *slot_weight, int32_t *slot_pos,
                            cudaStream_t stream);

/* dst[i, :] = x[slot_token[i], :] for i < n (dt rows of H, x with leading dimension ldx). */
cudaError_t jb_cuda_gather_tokens(jamba_dtype dt, void *dst, const void *x, int64_t ldx, const int32_t *slot_token,
                                 int64_t n, int64_t H, cudaStream_t stream);

/* Small-batch expert products without a host round trip: for every expert e and each plan slot i in
 * [begin[e], begin[e+1]), out[i, :] = W_e · in_i, with W_e [N, K] at W + e * expert_stride elements and
 * in_i = in[(in_token ? in_token[i] : i), :] (dt, leading dimension ldin). W is of the activation type dt,
 * or int8 with per-row scales (scale[e * N + n] multiplies the dot product). begin NULL: one matrix (E = 1)
 * and rows [0, n_rows), the dense layers' int8 product. out is f32 when out_f32, else dt. */
typedef struct jb_cuda_gemv_args {
    const void *W;
    jamba_dtype wdt;        /* dt, or JAMBA_DTYPE_I8 */
    const float *scale;     /* I8: [E, N]; else NULL */
    int64_t expert_stride, N, K;
    const void *in;
    int64_t ldin;
    const int32_t *in_token;
    const int32_t *begin;   /* [E + 1], or NULL */
    int64_t n_rows;         /* rows when begin is NULL */
    int64_t E;
    void *out;
    bool out_f32;
} jb_cuda_gemv_args;
cudaError_t jb_cuda_expert_gemv(jamba_dtype dt, const jb_cuda_gemv_args *a, cudaStream_t stream);

/* dst[N, K] (dt) = q[N, K] · scale[n] per row: an int8 matrix widened for cuBLAS. */
cudaError_t jb_cuda_dequant_rows(jamba_dtype dt, void *dst, const int8_t *q, const float *scale, int64_t N, int64_t K,
                                cudaStream_t stream);

/* out[t, :] (f32) = Σ_j weights[t, j] · expert_out[slot_pos[t*k + j], :], the terms added in ascending
 * expert order as the CPU reference does. */
cudaError_t jb_cuda_moe_combine(const float *expert_out, const int32_t *slot_pos, const int32_t *experts,
                               const float *weights, int64_t T, int64_t k, int64_t H, float *out,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_MOE_H */

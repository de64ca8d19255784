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

/* The expert products without a host round trip: for every expert e and each plan slot i in
 * [begin[e], begin[e+1]), out[i, :] = W_e · in_i, with W_e [N, K] at W + e * expert_stride elements and
 * in_i = in[(in_token ? in_token[i] : i), :] (dt, leading dimension ldin). W is of the activation type dt,
 * or int8 with per-row scales (scale[e * N + n] multiplies the dot product). begin NULL: one matrix (E = 1)
 * and rows [0, n_rows), the dense layers' int8 product. out is f32 when out_f32, else dt, with N columns;
 * with swiglu (N = 2I: gate rows then up rows) out[i, j] = SiLU(gate_j) · up_j in dt, I columns. Blocks
 * run only for the experts that have slots: at most max_used of them (0: E), the bound a CUDA graph
 * fixes for its row count (min(E, slots)). */
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
    bool swiglu;            /* out = SiLU(gate) · up, dt (out_f32 must be false) */
    int64_t max_used;       /* experts with slots at most (0: E) */
    int64_t max_slots;      /* slots of the plan at most: the tensor-core product's grid (begin != NULL) */
} jb_cuda_gemv_args;

/* The products as warp-per-row GEMVs (any shape, any slot count; only the real slots are computed, in
 * passes of up to 4 per weight row). The decode path, the fp32 path and the fallback for odd K. */
cudaError_t jb_cuda_expert_gemv(jamba_dtype dt, const jb_cuda_gemv_args *a, cudaStream_t stream);

/* The same on tensor cores for many slots, reading the int8 weights and widening them in registers
 * (moe_gemm.cu): bf16 activations, int8 W, K a multiple of 16, ldin a multiple of 8 and 16-byte aligned
 * operands; the grid covers max_slots (begin != NULL) or n_rows. Whether a product qualifies: */
bool jb_cuda_expert_gemm_supported(jamba_dtype dt, const jb_cuda_gemv_args *a);
cudaError_t jb_cuda_expert_gemm(jamba_dtype dt, const jb_cuda_gemv_args *a, cudaStream_t stream);

/* out[t, :] (f32) = Σ_j weights[t, j] · expert_out[slot_pos[t*k + j], :], the terms added in ascending
 * expert order as the CPU reference does. */
cudaError_t jb_cuda_moe_combine(const float *expert_out, const int32_t *slot_pos, const int32_t *experts,
                               const float *weights, int64_t T, int64_t k, int64_t H, float *out,
                               cudaStream_t stream);

/* ---- a decode step's MoE block in three launches (T <= FUSED_ROWS) ---------------------------------- */

/* The router product (W [E, H] of dt, X the normalised rows, fused.cu) into logits [T, E] (f32), then the
 * grid's last block routes every token and builds the plan, as jb_cuda_moe_route and jb_cuda_moe_plan do.
 * E <= JB_CUDA_FUSED_ROUTER_EXPERTS; counter: zero before and after. */
cudaError_t jb_cuda_moe_router_rows(jamba_dtype dt, const jb_cuda_rows_product *p, float *logits, int64_t k,
                                   int32_t *experts, float *weights, int32_t *begin, int32_t *slot_token,
                                   float *slot_weight, int32_t *slot_pos, unsigned int *counter,
                                   cudaStream_t stream);

/* The down products of the plan with the combine, the residual add and the next norm: for each output
 * column h and token t, Σ over its experts in ascending order of weight · (W_e[h] · act[slot]) (the numbers
 * of jb_cuda_expert_gemv then jb_cuda_moe_combine) added into x [T, H]; then, when norm_w is not NULL,
 * norm_out [T, H] (dt) = norm_w ⊙ x / rms(x) by the grid's last block (counter: zero before and after).
 * a: the down product as for jb_cuda_expert_gemv (begin, in = act by slot, N = H, out unused);
 * slot_token, slot_weight: the plan's; T <= FUSED_ROWS. */
cudaError_t jb_cuda_moe_down_combine(jamba_dtype dt, const jb_cuda_gemv_args *a, const int32_t *slot_token,
                                    const float *slot_weight, int64_t T, float *x, const float *norm_w, void *norm_out,
                                    float eps, unsigned int *counter, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_MOE_H */

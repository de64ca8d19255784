/*
 * fused.cu — the products of a decode step (a few rows, weights in the activation type) as one kernel each,
 * finishing the step's small row ops in their epilogue (the block and its epilogues: fused_gemv.cuh), so a
 * decode step launches one kernel where it launched a cuBLAS call and one to three row kernels
 * (docs/design.md, "Decode step launches"). What needs every block's output runs in the grid's last block
 * (the integer-counter handshake of rownorm.cuh, no float atomics):
 *   residual   then RMS-normalise x's rows with the next norm          out_proj, o_proj, down
 *   ssm        then the dt/B/C norms of xdbl                           x_proj
 *   router     then route every token (softmax top-k) and build the dispatch plan (moe_route.cuh)
 */
#include "cuda/fused_gemv.cuh"
#include "cuda/moe.h"
#include "cuda/moe_route.cuh"

namespace {

template <typename T, int MODE, int TR>
__global__ void __launch_bounds__(FUSED_THREADS, 1) fused_gemv_kernel(fused_args a) {
    __shared__ float part[FUSED_WARPS][TR];
    __shared__ double scratch[32];
    fused_block<T, MODE, TR, X_LDG>(a, a.X, a.bc, blockIdx.x, part);
    if (MODE == MODE_RESIDUAL && a.norm_w == NULL)
        return;
    if (MODE != MODE_RESIDUAL && MODE != MODE_SSM && MODE != MODE_ROUTER)
        return;
    if (!jb_last_arrival(a.counter, gridDim.x))
        return;
    if (MODE == MODE_ROUTER) {
        /* route every token (a warp each), then the plan over the block; the plan's counts reuse the
         * routing's shared memory */
        extern __shared__ float4 router_smem[];
        float *p = (float *)router_smem;
        unsigned char *taken = (unsigned char *)(p + (int64_t)FUSED_WARPS * a.E);
        const int warp = threadIdx.x >> 5;
        for (int64_t t = warp; t < a.T; t += FUSED_WARPS)
            moe_route_token((const float *)a.Y + t * a.ldy, a.E, a.k, p + warp * a.E, taken + warp * a.E,
                            a.experts + t * a.k, a.weights + t * a.k);
        __syncthreads();
        moe_plan_block(a.experts, a.weights, a.T * a.k, a.E, a.k, a.begin, a.slot_token, a.slot_weight, a.slot_pos,
                       (int32_t *)router_smem);
    }
    for (int64_t t = 0; MODE != MODE_ROUTER && t < a.T; t++) {
        if (MODE == MODE_RESIDUAL)
            rmsnorm_row(a.x + t * a.N, a.N, a.norm_w, (T *)a.norm_out + t * a.N, a.eps, scratch);
        else
            ssm_params_row((float *)a.Y + t * a.ldy, a.R, a.Ns, a.dt_w, a.b_w, a.c_w, a.eps, (T *)a.dt_out + t * a.R,
                           scratch);
    }
}

template <typename T, int MODE> cudaError_t launch_rows(fused_args a, size_t smem, cudaStream_t stream) {
    const int64_t blocks = fused_blocks<MODE>(a);
    if (blocks > INT32_MAX)
        return cudaErrorInvalidValue;
    if (a.T == 1)
        fused_gemv_kernel<T, MODE, 1><<<(unsigned int)blocks, FUSED_THREADS, smem, stream>>>(a);
    else
        fused_gemv_kernel<T, MODE, JB_CUDA_FUSED_ROWS><<<(unsigned int)blocks, FUSED_THREADS, smem, stream>>>(a);
    return JB_LAUNCH_CHECK();
}

template <int MODE> cudaError_t dispatch(jamba_dtype dt, const fused_args &a, cudaStream_t stream, size_t smem = 0) {
    return dt == JAMBA_DTYPE_BF16 ? launch_rows<bf16, MODE>(a, smem, stream) : launch_rows<float, MODE>(a, smem, stream);
}

} // namespace

extern "C" cudaError_t jb_cuda_rows_gemv(jamba_dtype dt, const jb_cuda_rows_product *p, jamba_dtype out_dt, void *Y,
                                        int64_t ldy, cudaStream_t stream) {
    fused_args a;
    if (!fused_product_args(dt, p, &a) || (out_dt != dt && out_dt != JAMBA_DTYPE_F32))
        return cudaErrorInvalidValue;
    a.Y = Y, a.ldy = ldy, a.y_f32 = out_dt == JAMBA_DTYPE_F32;
    return dispatch<MODE_PLAIN>(dt, a, stream);
}

extern "C" cudaError_t jb_cuda_rows_gemv_conv(jamba_dtype dt, const jb_cuda_rows_product *p, const float *bias,
                                             const jb_cuda_conv_args *conv, const jb_cuda_step_desc *step,
                                             cudaStream_t stream) {
    fused_args a;
    if (!fused_product_args(dt, p, &a) || conv->d_inner > p->N || conv->d_conv < 1 || step->T != p->T)
        return cudaErrorInvalidValue;
    a.Y = (void *)conv->x, a.ldy = conv->ldx, a.bias = bias, a.conv = *conv;
    a.row_seg = step->row_seg, a.segs = step->segs;
    return dispatch<MODE_CONV>(dt, a, stream);
}

extern "C" cudaError_t jb_cuda_rows_gemv_swiglu(jamba_dtype dt, const jb_cuda_rows_product *p, void *act,
                                               int64_t ld_act, cudaStream_t stream) {
    fused_args a;
    if (!fused_product_args(dt, p, &a) || p->N % 2 != 0)
        return cudaErrorInvalidValue;
    a.rpb = a.rpb < 2 ? 2 : a.rpb;
    a.Y = act, a.ldy = ld_act;
    return dispatch<MODE_SWIGLU>(dt, a, stream);
}

extern "C" cudaError_t jb_cuda_rows_gemv_residual(jamba_dtype dt, const jb_cuda_rows_product *p, const float *bias,
                                                 float *x, const float *norm_w, void *norm_out, float eps,
                                                 unsigned int *counter, cudaStream_t stream) {
    fused_args a;
    if (!fused_product_args(dt, p, &a) || p->x_rows || (norm_w && (norm_out == NULL || counter == NULL)))
        return cudaErrorInvalidValue;
    a.bias = bias, a.x = x, a.norm_w = norm_w, a.norm_out = norm_out, a.eps = eps, a.counter = counter;
    return dispatch<MODE_RESIDUAL>(dt, a, stream);
}

extern "C" cudaError_t jb_cuda_rows_gemv_ssm(jamba_dtype dt, const jb_cuda_rows_product *p, float *xdbl, int64_t R,
                                            int64_t N, const float *dt_w, const float *b_w, const float *c_w, float eps,
                                            void *dt_out, unsigned int *counter, cudaStream_t stream) {
    fused_args a;
    if (!fused_product_args(dt, p, &a) || p->N != R + 2 * N || counter == NULL)
        return cudaErrorInvalidValue;
    a.Y = xdbl, a.ldy = R + 2 * N, a.y_f32 = true;
    a.R = R, a.Ns = N, a.dt_w = dt_w, a.b_w = b_w, a.c_w = c_w, a.eps = eps, a.dt_out = dt_out, a.counter = counter;
    return dispatch<MODE_SSM>(dt, a, stream);
}

extern "C" cudaError_t jb_cuda_rows_gemv_scan(jamba_dtype dt, const jb_cuda_rows_product *p, const jb_cuda_scan_args *scan,
                                             const jb_cuda_step_desc *step, cudaStream_t stream) {
    fused_args a;
    if (!fused_scan_args(dt, p, scan, step, &a))
        return cudaErrorInvalidValue;
    return dispatch<MODE_DTSCAN>(dt, a, stream);
}

extern "C" cudaError_t jb_cuda_moe_router_rows(jamba_dtype dt, const jb_cuda_rows_product *p, float *logits, int64_t k,
                                              int32_t *experts, float *weights, int32_t *begin, int32_t *slot_token,
                                              float *slot_weight, int32_t *slot_pos, unsigned int *counter,
                                              cudaStream_t stream) {
    fused_args a;
    const int64_t E = p->N;
    if (!fused_product_args(dt, p, &a) || p->x_rows || k < 1 || k > E || E > JB_CUDA_FUSED_ROUTER_EXPERTS ||
        counter == NULL)
        return cudaErrorInvalidValue;
    a.Y = logits, a.ldy = E, a.y_f32 = true, a.counter = counter;
    a.E = E, a.k = k, a.experts = experts, a.weights = weights, a.begin = begin, a.slot_token = slot_token;
    a.slot_weight = slot_weight, a.slot_pos = slot_pos;
    const size_t route = moe_route_smem(FUSED_WARPS, E), plan = (size_t)(E + 1) * sizeof(int32_t);
    return dispatch<MODE_ROUTER>(dt, a, stream, route > plan ? route : plan);
}

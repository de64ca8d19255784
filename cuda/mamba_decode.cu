/*
 * mamba_decode.cu — the Mamba mixer of a decode step (every segment one row, T <= FUSED_ROWS) as one
 * persistent cooperative kernel, or, where the device cannot launch one, as four fused products:
 *
 *   phase                                                  cooperative kernel         four launches
 *   in_proj (+ bias), conv1d + SiLU, the window moves on   blocks stride the rows     rows_gemv_conv
 *   ── grid barrier ──
 *   x_proj into xdbl                                       blocks stride the rows     rows_gemv_ssm, its last
 *   ── grid barrier ──                                                                block runs the norms
 *   dt/B/C norms of every row                              every block, into its own
 *                                                          shared memory
 *   dt_proj, then the scan step per (channel, row)         blocks stride the rows     rows_gemv_scan
 *   ── grid barrier ──
 *   out_proj (+ bias) added into x                         blocks stride the rows     rows_gemv_residual, its
 *   ── grid barrier ──                                                                last block runs the norm
 *   the next norm of x's rows                              block t takes row t
 *
 * Each phase runs the same block function as the one-product kernels (fused_gemv.cuh) over the same block
 * numbering, so both paths give the same numbers; only the loads of what this kernel itself wrote go
 * through L2 (__ldcg) instead of the read-only path. The grid is every block that fits on the device at
 * once (cudaOccupancyMaxActiveBlocksPerMultiprocessor × SMs, queried when the context is made), launched
 * with the cooperative attribute, which a stream capture records as a cooperative kernel node.
 */
#include <cooperative_groups.h>

#include "cuda/fused_gemv.cuh"

namespace cg = cooperative_groups;

namespace {

struct mixer_params {
    fused_args in, xp, dp, op;
    int64_t R, N;          /* dt rank, d_state */
    size_t bc_offset;      /* bytes of the dt rows at the start of the dynamic shared memory */
};

/* Dynamic shared memory: the normalised dt rows [TR, R] (dt), then B and C [TR, N] (f32) each. */
template <typename T> size_t mixer_smem(int TR, int64_t R, int64_t N, size_t *bc_offset) {
    const size_t dt_bytes = ((size_t)TR * (size_t)R * sizeof(T) + 15) / 16 * 16;
    *bc_offset = dt_bytes;
    return dt_bytes + 2 * (size_t)TR * (size_t)N * sizeof(float);
}

template <typename T, int TR>
__global__ void __launch_bounds__(FUSED_THREADS) mamba_mixer_kernel(mixer_params p) {
    cg::grid_group grid = cg::this_grid();
    __shared__ float part[FUSED_WARPS][TR];
    __shared__ double scratch[32];
    extern __shared__ float4 mixer_smem_raw[];
    const int64_t rows = p.in.T;
    const scan_bc none = {NULL, NULL, 0};

    for (int64_t b = blockIdx.x, n = fused_blocks<MODE_CONV>(p.in); b < n; b += gridDim.x)
        fused_block<T, MODE_CONV, TR, X_LDG>(p.in, p.in.X, none, b, part);
    grid.sync();
    for (int64_t b = blockIdx.x, n = fused_blocks<MODE_SSM>(p.xp); b < n; b += gridDim.x)
        fused_block<T, MODE_SSM, TR, X_L2>(p.xp, p.xp.X, none, b, part);
    grid.sync();

    /* the dt/B/C norms of every row, computed by each block for itself (x_proj's output is small) */
    T *s_dt = (T *)mixer_smem_raw;
    float *s_B = (float *)((char *)mixer_smem_raw + p.bc_offset), *s_C = s_B + TR * p.N;
    const float *xdbl = (const float *)p.xp.Y;
    for (int64_t t = 0; t < rows; t++)
        ssm_params_row_to(xdbl + t * p.xp.ldy, p.R, p.N, p.xp.dt_w, p.xp.b_w, p.xp.c_w, p.xp.eps, s_dt + t * p.R,
                          s_B + t * p.N, s_C + t * p.N, scratch);
    __syncthreads();
    const scan_bc bc = {s_B, s_C, p.N};
    for (int64_t b = blockIdx.x, n = fused_blocks<MODE_DTSCAN>(p.dp); b < n; b += gridDim.x)
        fused_block<T, MODE_DTSCAN, TR, X_SHARED>(p.dp, s_dt, bc, b, part);
    grid.sync();

    for (int64_t b = blockIdx.x, n = fused_blocks<MODE_RESIDUAL>(p.op); b < n; b += gridDim.x)
        fused_block<T, MODE_RESIDUAL, TR, X_L2>(p.op, p.op.X, none, b, part);
    if (p.op.norm_w == NULL)
        return;
    grid.sync();
    const int64_t H = p.op.N;
    for (int64_t t = blockIdx.x; t < rows; t += gridDim.x)
        rmsnorm_row(p.op.x + t * H, H, p.op.norm_w, (T *)p.op.norm_out + t * H, p.op.eps, scratch);
}

template <typename T, int TR> cudaError_t launch_mixer(const mixer_params &p, int grid, cudaStream_t stream) {
    size_t bc_offset;
    const size_t smem = mixer_smem<T>(TR, p.R, p.N, &bc_offset);
    mixer_params q = p;
    q.bc_offset = bc_offset;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned int)grid);
    cfg.blockDim = dim3(FUSED_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, mamba_mixer_kernel<T, TR>, q);
}

template <typename T, int TR> cudaError_t mixer_occupancy(int64_t R, int64_t N, int device, int *grid) {
    size_t bc_offset;
    const size_t smem = mixer_smem<T>(TR, R, N, &bc_offset);
    int per_sm = 0, sms = 0;
    cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (e == cudaSuccess && smem > 48 * 1024)
        return cudaSuccess; /* beyond the default limit: the four-launch path */
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mamba_mixer_kernel<T, TR>, FUSED_THREADS, smem);
    if (e == cudaSuccess)
        *grid = per_sm * sms;
    return e;
}

/* The four products' arguments from the mixer's. */
bool mixer_args(jamba_dtype dt, const jb_cuda_mamba_mixer_args *a, const jb_cuda_step_desc *step, mixer_params *p) {
    const int64_t T = a->in.T, R = a->xp.N - 2 * a->scan.d_state;
    *p = mixer_params{};
    if (!fused_product_args(dt, &a->in, &p->in) || !fused_product_args(dt, &a->xp, &p->xp) ||
        !fused_scan_args(dt, &a->dp, &a->scan, step, &p->dp) || !fused_product_args(dt, &a->op, &p->op) ||
        a->xp.T != T || a->op.T != T || a->conv.d_inner > a->in.N || a->conv.d_conv < 1 || step->T != T ||
        a->dp.K != R || a->dp.ldx != R || R < 1 || a->in.x_rows || a->xp.x_rows || a->dp.x_rows || a->op.x_rows ||
        (a->norm_w && a->norm_out == NULL))
        return false;
    p->in.Y = (void *)a->conv.x, p->in.ldy = a->conv.ldx, p->in.bias = a->in_bias, p->in.conv = a->conv;
    p->in.row_seg = step->row_seg, p->in.segs = step->segs;
    p->xp.Y = a->xdbl, p->xp.ldy = a->xp.N, p->xp.y_f32 = true;
    p->xp.R = R, p->xp.Ns = a->scan.d_state, p->xp.dt_w = a->dt_w, p->xp.b_w = a->b_w, p->xp.c_w = a->c_w;
    p->xp.eps = a->eps, p->xp.dt_out = a->dt_in, p->xp.counter = a->counter;
    p->op.bias = a->out_bias, p->op.x = a->x, p->op.norm_w = a->norm_w, p->op.norm_out = a->norm_out;
    p->op.eps = a->eps, p->op.counter = a->counter;
    p->R = R, p->N = a->scan.d_state;
    return true;
}

} // namespace

extern "C" cudaError_t jb_cuda_mamba_mixer_rows(jamba_dtype dt, const jb_cuda_mamba_mixer_args *a,
                                               const jb_cuda_step_desc *step, int grid, cudaStream_t stream) {
    mixer_params p;
    if (!mixer_args(dt, a, step, &p))
        return cudaErrorInvalidValue;
    if (grid > 0) {
        const bool one = p.in.T == 1;
        if (dt == JAMBA_DTYPE_BF16)
            return one ? launch_mixer<bf16, 1>(p, grid, stream) : launch_mixer<bf16, JB_CUDA_FUSED_ROWS>(p, grid, stream);
        return one ? launch_mixer<float, 1>(p, grid, stream) : launch_mixer<float, JB_CUDA_FUSED_ROWS>(p, grid, stream);
    }
    if (a->counter == NULL)
        return cudaErrorInvalidValue;
    cudaError_t e;
    if ((e = jb_cuda_rows_gemv_conv(dt, &a->in, a->in_bias, &a->conv, step, stream)) != cudaSuccess ||
        (e = jb_cuda_rows_gemv_ssm(dt, &a->xp, a->xdbl, p.R, p.N, a->dt_w, a->b_w, a->c_w, a->eps, a->dt_in,
                                   a->counter, stream)) != cudaSuccess ||
        (e = jb_cuda_rows_gemv_scan(dt, &a->dp, &a->scan, step, stream)) != cudaSuccess)
        return e;
    return jb_cuda_rows_gemv_residual(dt, &a->op, a->out_bias, a->x, a->norm_w, a->norm_out, a->eps, a->counter,
                                      stream);
}

extern "C" cudaError_t jb_cuda_mamba_mixer_grid(jamba_dtype dt, int64_t T, int64_t R, int64_t N, int device,
                                               int *grid) {
    *grid = 0;
    int coop = 0;
    cudaError_t e = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device);
    if (e != cudaSuccess || !coop || T < 1 || T > JB_CUDA_FUSED_ROWS || R < 1 || N < 1)
        return e;
    const bool one = T == 1;
    if (dt == JAMBA_DTYPE_BF16)
        return one ? mixer_occupancy<bf16, 1>(R, N, device, grid)
                   : mixer_occupancy<bf16, JB_CUDA_FUSED_ROWS>(R, N, device, grid);
    if (dt == JAMBA_DTYPE_F32)
        return one ? mixer_occupancy<float, 1>(R, N, device, grid)
                   : mixer_occupancy<float, JB_CUDA_FUSED_ROWS>(R, N, device, grid);
    return cudaSuccess;
}

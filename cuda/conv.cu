/*
 * conv.cu — Mamba's causal depthwise conv1d + SiLU, prefill and decode alike.
 *
 * One thread per (row, channel): output row i of a segment needs inputs i-K+1 .. i; those before the
 * segment's first row come from the sequence's window (the K-1 previous inputs, oldest first). So every
 * output is independent and a single long sequence fills the GPU. A second kernel then moves each window
 * on to the segment's last K-1 inputs (older window entries when the segment is shorter than K-1). The
 * sum runs in the CPU reference's order: taps 0 .. K-1, then the bias (cpu/mamba.c).
 */
#include "cuda/common.cuh"
#include "cuda/ops.h"

template <typename T>
__global__ void conv_silu_kernel(jb_cuda_conv_args a, const int32_t *row_seg, const jb_cuda_seg *segs, int64_t T_rows) {
    const int64_t Di = a.d_inner, K = a.d_conv;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T_rows * Di)
        return;
    const int64_t row = i / Di, c = i % Di;
    const jb_cuda_seg s = segs[row_seg[row]];
    const int64_t offset = row - s.row; /* index within the segment */
    const T *x = (const T *)a.x;
    const float *w = a.w + c * K;
    const float *win = a.window + s.seq * a.window_stride + c * (K - 1);
    float acc = 0.0f;
    for (int64_t j = 0; j < K; j++) {
        int64_t src = offset - (K - 1) + j; /* input index relative to the segment start */
        float v = src >= 0 ? to_f32(x[(s.row + src) * a.ldx + c]) : win[K - 1 + src];
        acc += w[j] * v;
    }
    if (a.b)
        acc += a.b[c];
    ((T *)a.out)[row * Di + c] = from_f32<T>(dev_silu(acc));
}

/* Window entry k (k < K-1) becomes input n-(K-1)+k of the segment: a row of x, or an older window entry
 * at index n+k > k, which ascending k has not overwritten yet. */
template <typename T>
__global__ void conv_window_kernel(jb_cuda_conv_args a, const jb_cuda_seg *segs, int64_t n_segs) {
    const int64_t Di = a.d_inner, K = a.d_conv;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_segs * Di)
        return;
    const jb_cuda_seg s = segs[i / Di];
    const int64_t c = i % Di;
    const T *x = (const T *)a.x;
    float *win = a.window + s.seq * a.window_stride + c * (K - 1);
    for (int64_t k = 0; k < K - 1; k++) {
        int64_t src = s.n - (K - 1) + k;
        win[k] = src >= 0 ? to_f32(x[(s.row + src) * a.ldx + c]) : win[s.n + k];
    }
}

template <typename T> static cudaError_t conv_launch(const jb_cuda_conv_args *a, const jb_cuda_step_desc *step, cudaStream_t stream) {
    conv_silu_kernel<T><<<div_up(step->T * a->d_inner, 256), 256, 0, stream>>>(*a, step->row_seg, step->segs, step->T);
    cudaError_t e = JB_LAUNCH_CHECK();
    if (e != cudaSuccess || a->d_conv < 2)
        return e;
    conv_window_kernel<T><<<div_up(step->n_segs * a->d_inner, 256), 256, 0, stream>>>(*a, step->segs, step->n_segs);
    return JB_LAUNCH_CHECK();
}

extern "C" cudaError_t jb_cuda_conv_silu(jamba_dtype dt, const jb_cuda_conv_args *a, const jb_cuda_step_desc *step,
                                       cudaStream_t stream) {
    if (step->T == 0)
        return cudaSuccess;
    return dt == JAMBA_DTYPE_BF16 ? conv_launch<bf16>(a, step, stream) : conv_launch<float>(a, step, stream);
}

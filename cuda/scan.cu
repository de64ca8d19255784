/*
 * scan.cu — Mamba's selective scan on the GPU, prefill and decode alike.
 *
 *   Δ = softplus(delta_raw + dt_bias);  h_t = exp(A·Δ_t)·h_{t-1} + (Δ_t·B_t)·u_t;
 *   y_t = (Σ_n h_t·C_t + D·u_t) · SiLU(z_t)          (cpu/mamba.c, per channel d and state n)
 *
 * Parallel over channels and states: a group of G lanes (G = the power of two ≥ d_state, at most 32)
 * owns one channel, each lane J of its states, so the y sum is a shuffle reduction inside the group.
 * Parallel over time: a segment longer than its chunk length runs as several chunks at once. Pass 1
 * gives every chunk but the last its summary from a zero state, (Π exp(A·Δ), h_local); pass 2 carries
 * the sequence's state through the summaries, leaving in each slot the state that enters the next chunk;
 * pass 3 runs every chunk from its entering state and writes y; the last chunk's final state goes through
 * the spent P slot to the sequence's state in a last small pass (chunk 0 reads that state concurrently).
 * A segment of one chunk (every decode step) is pass 3 alone.
 */
#include "cuda/common.cuh"
#include "cuda/ops.h"

#define SCAN_THREADS 128

template <typename T, int J, bool SUMMARY>
__global__ void __launch_bounds__(SCAN_THREADS)
scan_chunk_kernel(jb_cuda_scan_args a, const jb_cuda_seg *segs, const jb_cuda_chunk *chunks, int G, int n_slots,
                  unsigned int channel_blocks) {
    const int64_t Di = a.d_inner, N = a.d_state;
    const jb_cuda_chunk ch = chunks[blockIdx.x / channel_blocks];
    if (SUMMARY && ch.slot_out < 0)
        return; /* the last chunk of a segment needs no summary (uniform over the block) */
    const int lane_g = threadIdx.x & (G - 1);
    const int64_t d_raw = (int64_t)(blockIdx.x % channel_blocks) * (SCAN_THREADS / G) + threadIdx.x / G;
    const bool active = d_raw < Di;
    const int64_t d = active ? d_raw : Di - 1; /* inactive lanes shadow a real channel so shuffles stay full */
    const jb_cuda_seg s = segs[ch.seg];
    const int64_t state_off = (int64_t)s.seq * a.state_stride + d * N;
    const int64_t slot_size = Di * N;
    float *P = a.summary, *S = a.summary + (int64_t)n_slots * slot_size;

    float A[J], h[J], prod[J];
    bool valid[J];
#pragma unroll
    for (int j = 0; j < J; j++) {
        const int64_t n = lane_g + (int64_t)G * j;
        valid[j] = n < N;
        A[j] = valid[j] ? a.A[d * N + n] : 0.0f;
        prod[j] = 1.0f;
        if (SUMMARY || !valid[j])
            h[j] = 0.0f;
        else if (ch.slot_in < 0)
            h[j] = a.state[state_off + n];
        else
            h[j] = S[(int64_t)ch.slot_in * slot_size + d * N + n];
    }
    const float bias = a.dt_bias[d], Dd = a.D[d];
    const T *u_p = (const T *)a.u, *dr_p = (const T *)a.delta_raw, *z_p = (const T *)a.z;
    T *y_p = (T *)a.y;
    for (int64_t r = ch.r0; r < ch.r1; r++) {
        const float dt = dev_softplus(to_f32(dr_p[r * Di + d]) + bias);
        const float u = to_f32(u_p[r * Di + d]);
        const float *Br = a.B + r * a.ldbc, *Cr = a.C + r * a.ldbc;
        float yp = 0.0f;
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (!valid[j])
                continue;
            const int64_t n = lane_g + (int64_t)G * j;
            const float dA = expf(A[j] * dt);
            h[j] = dA * h[j] + (dt * Br[n]) * u;
            if (SUMMARY)
                prod[j] *= dA;
            else
                yp += h[j] * Cr[n];
        }
        if (!SUMMARY) {
            for (int o = G >> 1; o > 0; o >>= 1)
                yp += __shfl_xor_sync(0xffffffffu, yp, o);
            if (lane_g == 0 && active)
                y_p[r * Di + d] = from_f32<T>((yp + u * Dd) * dev_silu(to_f32(z_p[r * a.ldz + d])));
        }
    }
    if (!active)
        return;
#pragma unroll
    for (int j = 0; j < J; j++) {
        if (!valid[j])
            continue;
        const int64_t n = lane_g + (int64_t)G * j;
        if (SUMMARY) {
            P[(int64_t)ch.slot_out * slot_size + d * N + n] = prod[j];
            S[(int64_t)ch.slot_out * slot_size + d * N + n] = h[j];
        } else if (ch.slot_out < 0 && ch.slot_in < 0) {
            a.state[state_off + n] = h[j]; /* a one-chunk segment: this thread read the state itself */
        } else if (ch.slot_out < 0) {
            /* the last of several chunks: chunk 0 of this segment may still be reading the state in
             * another block, so the final state waits in P (spent by the carry pass) for scan_commit */
            P[(int64_t)ch.slot_in * slot_size + d * N + n] = h[j];
        }
    }
}

/* Pass 2: per (segment, channel, state), walk the segment's summaries in order from its state; slot j
 * then holds the state entering chunk j + 1. */
__global__ void scan_carry_kernel(jb_cuda_scan_args a, const jb_cuda_seg *segs, int n_slots, unsigned int blocks_per_seg) {
    const jb_cuda_seg s = segs[blockIdx.x / blocks_per_seg];
    const int64_t slot_size = a.d_inner * a.d_state;
    const int64_t i = (int64_t)(blockIdx.x % blocks_per_seg) * blockDim.x + threadIdx.x;
    if (s.n_slots == 0 || i >= slot_size)
        return;
    const float *P = a.summary;
    float *S = a.summary + (int64_t)n_slots * slot_size;
    float h = a.state[(int64_t)s.seq * a.state_stride + i];
    for (int j = 0; j < s.n_slots; j++) {
        const int64_t at = (int64_t)(s.slot0 + j) * slot_size + i;
        h = P[at] * h + S[at];
        S[at] = h;
    }
}

/* After pass 3: move each multi-chunk segment's final state from P (its last chunk's entering slot,
 * slot0 + n_slots - 1) into the sequence's state. */
__global__ void scan_commit_kernel(jb_cuda_scan_args a, const jb_cuda_seg *segs, unsigned int blocks_per_seg) {
    const jb_cuda_seg s = segs[blockIdx.x / blocks_per_seg];
    const int64_t slot_size = a.d_inner * a.d_state;
    const int64_t i = (int64_t)(blockIdx.x % blocks_per_seg) * blockDim.x + threadIdx.x;
    if (s.n_slots == 0 || i >= slot_size)
        return;
    a.state[(int64_t)s.seq * a.state_stride + i] = a.summary[(int64_t)(s.slot0 + s.n_slots - 1) * slot_size + i];
}

template <typename T, int J>
static cudaError_t scan_launch(const jb_cuda_scan_args *a, const jb_cuda_step_desc *step, int G, cudaStream_t stream) {
    const unsigned int cb = div_up(a->d_inner, SCAN_THREADS / G);
    const int64_t blocks = (int64_t)cb * step->n_chunks;
    if (blocks > INT32_MAX)
        return cudaErrorInvalidValue;
    if (step->n_slots > 0) {
        scan_chunk_kernel<T, J, true><<<(unsigned int)blocks, SCAN_THREADS, 0, stream>>>(*a, step->segs, step->chunks, G,
                                                                                       step->n_slots, cb);
        cudaError_t e = JB_LAUNCH_CHECK();
        if (e != cudaSuccess)
            return e;
        const unsigned int per_seg = div_up(a->d_inner * a->d_state, 256);
        if ((int64_t)per_seg * step->n_segs > INT32_MAX)
            return cudaErrorInvalidValue;
        scan_carry_kernel<<<(unsigned int)(per_seg * step->n_segs), 256, 0, stream>>>(*a, step->segs, step->n_slots,
                                                                                     per_seg);
        if ((e = JB_LAUNCH_CHECK()) != cudaSuccess)
            return e;
    }
    scan_chunk_kernel<T, J, false><<<(unsigned int)blocks, SCAN_THREADS, 0, stream>>>(*a, step->segs, step->chunks, G,
                                                                                    step->n_slots, cb);
    cudaError_t e = JB_LAUNCH_CHECK();
    if (e != cudaSuccess || step->n_slots == 0)
        return e;
    const unsigned int per_seg = div_up(a->d_inner * a->d_state, 256);
    scan_commit_kernel<<<(unsigned int)(per_seg * step->n_segs), 256, 0, stream>>>(*a, step->segs, per_seg);
    return JB_LAUNCH_CHECK();
}

template <typename T>
static cudaError_t scan_dispatch(const jb_cuda_scan_args *a, const jb_cuda_step_desc *step, cudaStream_t stream) {
    int G = 1;
    while (G < 32 && G < a->d_state)
        G <<= 1;
    const int64_t per_lane = (a->d_state + G - 1) / G;
    if (per_lane <= 1)
        return scan_launch<T, 1>(a, step, G, stream);
    if (per_lane <= 2)
        return scan_launch<T, 2>(a, step, G, stream);
    if (per_lane <= 4)
        return scan_launch<T, 4>(a, step, G, stream);
    if (per_lane <= 8)
        return scan_launch<T, 8>(a, step, G, stream);
    return cudaErrorInvalidValue; /* d_state > 256: the config loader does not allow it */
}

extern "C" cudaError_t jb_cuda_selective_scan(jamba_dtype dt, const jb_cuda_scan_args *a, const jb_cuda_step_desc *step,
                                            cudaStream_t stream) {
    if (step->T == 0 || step->n_chunks == 0)
        return cudaSuccess;
    return dt == JAMBA_DTYPE_BF16 ? scan_dispatch<bf16>(a, step, stream) : scan_dispatch<float>(a, step, stream);
}

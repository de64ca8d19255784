/*
 * sample.cu — jamba_sampler_sample on the GPU, one block per row of logits, so a generated token costs a
 * 4-byte read instead of a copy of the logits. The arithmetic is the CPU sampler's (runtime/sampler.c):
 * the same penalties, greedy rule, candidate order (logit descending, id ascending), softmax in double at
 * the temperature with each weight rounded to float, min-p and top-p cut-offs, and the draw `uniform`
 * taken from the sampler's own generator on the host. Top-k is required (at most JB_SAMPLE_MAX_K);
 * the candidates are found by k block-wide arg-max rounds.
 */
#include "cuda/common.cuh"
#include "cuda/ops.h"

#define SAMPLE_THREADS 1024

/* (value, id) preferred: larger value, then lower id; NaN (also: already chosen) never. */
__device__ __forceinline__ bool cand_better(float va, int32_t ia, float vb, int32_t ib) {
    if (isnan(va))
        return false;
    if (isnan(vb))
        return true;
    return va > vb || (va == vb && ia < ib);
}

/* The best (value, id) over the warp, in every lane. */
__device__ __forceinline__ void warp_argmax(float &bv, int32_t &bi) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (cand_better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
}

/* The best (value, id) of work[0, V) over the block; every thread gets it. id -1 when all are NaN. */
__device__ void block_argmax(const float *work, int64_t V, float *out_v, int32_t *out_i, float *sv, int32_t *si) {
    float bv = NAN;
    int32_t bi = -1;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
        if (cand_better(work[i], (int32_t)i, bv, bi)) {
            bv = work[i];
            bi = (int32_t)i;
        }
    warp_argmax(bv, bi);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < (int)(blockDim.x >> 5) ? sv[lane] : NAN;
        bi = lane < (int)(blockDim.x >> 5) ? si[lane] : -1;
        warp_argmax(bv, bi);
        if (lane == 0) {
            sv[32] = bv;
            si[32] = bi;
        }
    }
    __syncthreads();
    *out_v = sv[32];
    *out_i = si[32];
    __syncthreads();
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *logits, int64_t V, const jb_sample_params *params, const int32_t *penalized,
              int64_t max_penalized, float *work_all, int32_t *out, int32_t *used_draw) {
    __shared__ float sv[33];
    __shared__ int32_t si[33];
    __shared__ float cand_v[JB_SAMPLE_MAX_K];
    __shared__ int32_t cand_i[JB_SAMPLE_MAX_K];
    const int64_t row = blockIdx.x;
    const jb_sample_params p = params[row];
    const float *lg = logits + row * V;
    float *work = work_all + row * V;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
        work[i] = lg[i];
    __syncthreads();
    /* penalties: each listed (distinct) id once, as the CPU does for its history */
    if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f)
        for (int64_t j = threadIdx.x; j < p.n_penalized; j += blockDim.x) {
            const int32_t id = penalized[row * max_penalized + j];
            float l = work[id];
            l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
            work[id] = l - p.presence_penalty;
        }
    __syncthreads();
    if (threadIdx.x == 0)
        used_draw[row] = 0;
    float bv;
    int32_t bi;
    block_argmax(work, V, &bv, &bi, sv, si);
    if (p.temperature == 0.0f || bi < 0 || (isinf(bv) && bv > 0)) {
        /* greedy, every logit NaN, or a +inf logit that wins outright (the lowest such id) */
        if (threadIdx.x == 0)
            out[row] = bi < 0 || (isinf(bv) && bv < 0) ? -1 : bi;
        return;
    }
    if (isinf(bv)) { /* the best is -inf: nothing can be drawn */
        if (threadIdx.x == 0)
            out[row] = -1;
        return;
    }
    const int keep = p.top_k < 1 ? 1 : p.top_k > JB_SAMPLE_MAX_K ? JB_SAMPLE_MAX_K : p.top_k;
    int n = 0;
    for (; n < keep; n++) {
        if (n > 0)
            block_argmax(work, V, &bv, &bi, sv, si);
        if (bi < 0)
            break; /* fewer non-NaN logits than top_k */
        if (threadIdx.x == 0) {
            cand_v[n] = bv;
            cand_i[n] = bi;
            work[bi] = NAN; /* taken */
        }
        __syncthreads();
    }
    if (threadIdx.x != 0)
        return;
    /* the CPU's arithmetic, sequentially over at most JB_SAMPLE_MAX_K candidates */
    const float top = cand_v[0];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const double e = exp(((double)cand_v[i] - top) / p.temperature);
        cand_v[i] = (float)e;
        sum += e;
    }
    int cut = n;
    double mass = 0;
    for (int i = 0; i < n; i++) {
        const double pi = cand_v[i] / sum;
        if (p.min_p > 0 && i > 0 && pi < p.min_p * (cand_v[0] / sum)) {
            cut = i;
            break;
        }
        mass += pi;
        if (mass >= p.top_p) {
            cut = i + 1;
            break;
        }
    }
    double total = 0;
    for (int i = 0; i < cut; i++)
        total += cand_v[i];
    double r = p.uniform * total;
    int32_t pick = cand_i[0];
    for (int i = 0; i < cut; i++) {
        r -= cand_v[i];
        if (r < 0 || i == cut - 1) {
            pick = cand_i[i];
            break;
        }
    }
    out[row] = pick;
    used_draw[row] = 1;
}

extern "C" cudaError_t jb_cuda_sample_rows(const float *logits, int64_t n, int64_t V, const jb_sample_params *params,
                                    const int32_t *penalized, int64_t max_penalized, float *work, int32_t *out,
                                    int32_t *used_draw, cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    if (n > INT32_MAX || V > INT32_MAX)
        return cudaErrorInvalidValue;
    sample_kernel<<<(unsigned int)n, SAMPLE_THREADS, 0, stream>>>(logits, V, params, penalized, max_penalized, work,
                                                                  out, used_draw);
    return JB_LAUNCH_CHECK();
}

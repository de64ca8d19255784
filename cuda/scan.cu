/*
 * scan.cu — Mamba's selective scan on the GPU, prefill and decode alike.
 *
 *   Δ = softplus(delta_raw + dt_bias);  h_t = exp(A·Δ_t)·h_{t-1} + (Δ_t·B_t)·u_t;
 *   y_t = (Σ_n h_t·C_t + D·u_t) · SiLU(z_t)          (cpu/mamba.c, per channel d and state n)
 *
 * The design of mamba-ssm's selective_scan and llama.cpp's ssm_scan: one thread per channel holds the
 * channel's states in registers (G = 1 lane per channel for d_state <= 16, every Jamba; a general path
 * spreads d_state <= 256 over G = 2..16 lanes, 16 states each, and sums y with shuffles). A block of
 * CH channels walks its time chunk in tiles of up to SCAN_TILE_ROWS rows staged in shared memory with
 * 16-byte coalesced loads: u, Δ (softplus and bias applied once per (channel, row) while staging),
 * SiLU(z) and the rows' B and C, which every channel of the block reads from there (a broadcast). exp(A·Δ)
 * is computed once per (channel, row, state) by the thread owning the state, as exp2 of a pre-scaled A.
 * y goes back through shared memory (over SiLU(z)) and out with 16-byte stores.
 *
 * Parallel over time: a segment longer than its chunk length (the rule of cuda/step_plan.h, tied to the
 * SM count) runs as several chunks at once. Pass 1 gives every chunk but the last its summary from a zero
 * state: ΣΔ per channel (the decay is Π exp(A·Δ) = exp(A·ΣΔ)) in the P half of the summary buffer, the
 * local state in the S half; pass 2 carries the sequence's state through the summaries, leaving in each
 * slot the state that enters the next chunk; pass 3 runs every chunk from its entering state and writes
 * y; the last chunk's final state goes through its spent P slot to the sequence's state in a last small
 * pass (chunk 0 reads that state concurrently). A segment of one chunk (every decode step) is pass 3 alone.
 * Decode steps (every chunk one row) use blocks of one warp, so a single sequence still spreads over
 * d_inner / 32 blocks.
 */
#include "cuda/common.cuh"
#include "cuda/ops.h"

#define SCAN_THREADS 128       /* threads of a prefill block (one warp for decode steps) */
#define SCAN_TILE_ROWS 16      /* rows staged in shared memory at a time */
#define SCAN_LANE_STATES 16    /* states one thread holds in registers */
#define SCAN_MAX_LANES 16      /* lanes per channel of the general path: d_state <= 256 */
#define SCAN_LOG2E 1.4426950408889634f

/* A launch's shape, the same for every block. */
struct scan_shape {
    int G;                       /* lanes per channel (a power of two, 1 for d_state <= 16) */
    int channels;                /* CH = threads per block / G */
    int tile_rows;               /* rows per staged tile */
    unsigned int channel_blocks; /* blocks per chunk: ceil(D_i / CH) */
    int n_slots;
    bool vec_io;                 /* u, delta_raw, z and y move as 16-byte vectors (in whole blocks) */
    bool vec_bc;                 /* B and C move as float4 */
    bool vec_state;              /* states, summaries and A move as float4 (the 16-state path) */
};

/* Shared memory of a block, in floats, each part a multiple of 4 floats from a 16-byte-aligned base:
 * u, Δ and SiLU(z) (then y) as [tile_rows, CH]; B and C as [tile_rows, N]; dt_bias as [CH]. */
struct scan_smem {
    int64_t u, dt, gz, B, C, bias, total;
};

__host__ __device__ static inline int64_t round4(int64_t n) { return (n + 3) & ~(int64_t)3; }

__host__ __device__ static inline scan_smem scan_smem_layout(int64_t tile_rows, int64_t CH, int64_t N) {
    scan_smem s;
    const int64_t tile = round4(tile_rows * CH), bc = round4(tile_rows * N);
    s.u = 0;
    s.dt = s.u + tile;
    s.gz = s.dt + tile;
    s.B = s.gz + tile;
    s.C = s.B + bc;
    s.bias = s.C + bc;
    s.total = s.bias + round4(CH);
    return s;
}

/* ---- staging ------------------------------------------------------------------------------------------ */

/* 16 bytes of T at p (16-byte aligned, global or shared) as floats, and back. */
__device__ __forceinline__ void load16(const float *p, float v[4]) {
    const float4 q = *(const float4 *)p;
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
__device__ __forceinline__ void load16(const bf16 *p, float v[8]) {
    const uint4 q = *(const uint4 *)p;
    const __nv_bfloat162 *b = (const __nv_bfloat162 *)&q;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 f = __bfloat1622float2(b[k]);
        v[2 * k] = f.x, v[2 * k + 1] = f.y;
    }
}
__device__ __forceinline__ void store16(float *p, const float v[4]) {
    *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store16(bf16 *p, const float v[8]) {
    uint4 q;
    __nv_bfloat162 *b = (__nv_bfloat162 *)&q;
#pragma unroll
    for (int k = 0; k < 4; k++)
        b[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
    *(uint4 *)p = q;
}

enum { STAGE_COPY, STAGE_DELTA, STAGE_GATE };

/* What a staged element holds: u as is, Δ = softplus(raw + dt_bias), SiLU(z). */
template <int OP> __device__ __forceinline__ float stage_value(float x, const float *s_bias, int c) {
    if (OP == STAGE_DELTA)
        return dev_softplus(x + s_bias[c]);
    if (OP == STAGE_GATE)
        return dev_silu(x);
    return x;
}

/* dst[rows, CH] = op(src[r0 + row, c0 + c]) for the block's `valid` channels, 0 beyond them. vec: the
 * rows are whole (valid == CH) and every row start is 16-byte aligned. */
template <typename T, int OP>
__device__ __forceinline__ void stage_tile(float *dst, const T *src, int64_t ld, int64_t r0, int rows, int64_t c0,
                                           int CH, int valid, bool vec, const float *s_bias) {
    constexpr int V = 16 / sizeof(T);
    if (vec) {
        const int per_row = CH / V;
        for (int i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
            const int row = i / per_row, c = (i - row * per_row) * V;
            float v[V];
            load16(src + (r0 + row) * ld + c0 + c, v);
#pragma unroll
            for (int k = 0; k < V; k++)
                v[k] = stage_value<OP>(v[k], s_bias, c + k);
#pragma unroll
            for (int k = 0; k < V; k += 4) /* 16-byte stores: scalar ones would conflict 8 ways for bf16 */
                store16(dst + row * CH + c + k, v + k);
        }
        return;
    }
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        const int row = i / CH, c = i - row * CH;
        dst[i] = c < valid ? stage_value<OP>(to_f32(src[(r0 + row) * ld + c0 + c]), s_bias, c) : 0.0f;
    }
}

/* dst[rows, N] = src[r0 + row, 0..N) (B or C, fp32, leading dimension ld). */
__device__ __forceinline__ void stage_bc(float *dst, const float *src, int64_t ld, int64_t r0, int rows, int N,
                                         bool vec) {
    if (vec) {
        const int per_row = N / 4;
        for (int i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
            const int row = i / per_row, n = (i - row * per_row) * 4;
            *(float4 *)(dst + row * N + n) = *(const float4 *)(src + (r0 + row) * ld + n);
        }
        return;
    }
    for (int i = threadIdx.x; i < rows * N; i += blockDim.x) {
        const int row = i / N;
        dst[i] = src[(r0 + row) * ld + (i - row * N)];
    }
}

/* y[r0 + row, c0 + c] = src[rows, CH] for the block's valid channels. */
template <typename T>
__device__ __forceinline__ void store_tile(T *y, int64_t ld, int64_t r0, int rows, int64_t c0, int CH, int valid,
                                           bool vec, const float *src) {
    constexpr int V = 16 / sizeof(T);
    if (vec) {
        const int per_row = CH / V;
        for (int i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
            const int row = i / per_row, c = (i - row * per_row) * V;
            float v[V];
#pragma unroll
            for (int k = 0; k < V; k += 4)
                load16(src + row * CH + c + k, v + k);
            store16(y + (r0 + row) * ld + c0 + c, v);
        }
        return;
    }
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        const int row = i / CH, c = i - row * CH;
        if (c < valid)
            y[(r0 + row) * ld + c0 + c] = from_f32<T>(src[i]);
    }
}

/* A thread's states n = lane + G·j (j < SCAN_LANE_STATES) of one channel's [N] row at p (a state or
 * summary row, or A's), and back; h[j] is left as it was for n >= N. */
template <bool EXACT>
__device__ __forceinline__ void load_states(float h[SCAN_LANE_STATES], const float *p, int lane, int G, int64_t N,
                                            bool vec) {
    if (EXACT && vec) {
#pragma unroll
        for (int q = 0; q < SCAN_LANE_STATES / 4; q++)
            load16(p + 4 * q, h + 4 * q);
        return;
    }
#pragma unroll
    for (int j = 0; j < SCAN_LANE_STATES; j++) {
        const int64_t n = lane + (int64_t)G * j;
        if (EXACT || n < N)
            h[j] = p[n];
    }
}
template <bool EXACT>
__device__ __forceinline__ void store_states(float *p, const float h[SCAN_LANE_STATES], int lane, int G, int64_t N,
                                             bool vec) {
    if (EXACT && vec) {
#pragma unroll
        for (int q = 0; q < SCAN_LANE_STATES / 4; q++)
            store16(p + 4 * q, h + 4 * q);
        return;
    }
#pragma unroll
    for (int j = 0; j < SCAN_LANE_STATES; j++) {
        const int64_t n = lane + (int64_t)G * j;
        if (EXACT || n < N)
            p[n] = h[j];
    }
}

/* ---- the chunk kernel (passes 1 and 3) ------------------------------------------------------------------ */

/* One block per (chunk, CH channels). EXACT: d_state == 16 with one lane per channel (every Jamba);
 * otherwise G lanes per channel and d_state <= 16·G. SUMMARY: pass 1 (zero state, no y). */
template <typename T, bool EXACT, bool SUMMARY>
__global__ void __launch_bounds__(SCAN_THREADS, EXACT ? 8 : 1) /* 8 blocks: 1,024 threads per SM at 64 registers */
scan_chunk_kernel(jb_cuda_scan_args a, const jb_cuda_seg *segs, const jb_cuda_chunk *chunks, scan_shape sh) {
    extern __shared__ float4 scan_smem_raw[];
    float *smem = (float *)scan_smem_raw;
    const int64_t Di = a.d_inner, N = EXACT ? SCAN_LANE_STATES : a.d_state;
    const int G = EXACT ? 1 : sh.G, CH = sh.channels;
    const jb_cuda_chunk ch = chunks[blockIdx.x / sh.channel_blocks];
    if (SUMMARY && ch.slot_out < 0)
        return; /* the last chunk of a segment needs no summary (uniform over the block) */
    const int64_t c0 = (int64_t)(blockIdx.x % sh.channel_blocks) * CH;
    const int valid = Di - c0 < CH ? (int)(Di - c0) : CH;
    const int c = threadIdx.x / G, lane = threadIdx.x - c * G;
    const bool active = c < valid, vec_io = sh.vec_io && valid == CH; /* a partial last block goes by element */
    const int64_t d = c0 + c;
    const scan_smem at = scan_smem_layout(sh.tile_rows, CH, N);
    float *s_u = smem + at.u, *s_dt = smem + at.dt, *s_gz = smem + at.gz, *s_B = smem + at.B, *s_C = smem + at.C;
    float *s_bias = smem + at.bias;
    if ((int)threadIdx.x < CH)
        s_bias[threadIdx.x] = (int)threadIdx.x < valid ? a.dt_bias[c0 + threadIdx.x] : 0.0f;

    const jb_cuda_seg s = segs[ch.seg];
    const int64_t slot_size = Di * N;
    float *P = a.summary, *S = a.summary + (int64_t)sh.n_slots * slot_size;
    float A2[SCAN_LANE_STATES], h[SCAN_LANE_STATES];
#pragma unroll
    for (int j = 0; j < SCAN_LANE_STATES; j++)
        A2[j] = h[j] = 0.0f;
    if (active)
        load_states<EXACT>(A2, a.A + d * N, lane, G, N, sh.vec_state);
#pragma unroll
    for (int j = 0; j < SCAN_LANE_STATES; j++)
        A2[j] *= SCAN_LOG2E;
    if (!SUMMARY && active)
        load_states<EXACT>(h,
                           ch.slot_in < 0 ? a.state + (int64_t)s.seq * a.state_stride + d * N
                                          : S + (int64_t)ch.slot_in * slot_size + d * N,
                           lane, G, N, sh.vec_state);
    const float Dd = active ? a.D[d] : 0.0f;
    float dt_sum = 0.0f;
    const T *u_p = (const T *)a.u, *dr_p = (const T *)a.delta_raw, *z_p = (const T *)a.z;

    for (int64_t r = ch.r0; r < ch.r1; r += sh.tile_rows) {
        const int rows = ch.r1 - r < sh.tile_rows ? (int)(ch.r1 - r) : sh.tile_rows;
        __syncthreads(); /* the previous tile is consumed and its y stored; s_bias is written */
        stage_tile<T, STAGE_COPY>(s_u, u_p, Di, r, rows, c0, CH, valid, vec_io, s_bias);
        stage_tile<T, STAGE_DELTA>(s_dt, dr_p, Di, r, rows, c0, CH, valid, vec_io, s_bias);
        stage_bc(s_B, a.B, a.ldbc, r, rows, (int)N, sh.vec_bc);
        if (!SUMMARY) {
            stage_tile<T, STAGE_GATE>(s_gz, z_p, a.ldz, r, rows, c0, CH, valid, vec_io, s_bias);
            stage_bc(s_C, a.C, a.ldbc, r, rows, (int)N, sh.vec_bc);
        }
        __syncthreads();
        for (int t = 0; t < rows; t++) {
            const float dt = s_dt[t * CH + c], u = s_u[t * CH + c], dtu = dt * u;
            const float *Bt = s_B + t * N, *Ct = s_C + t * N;
            float yp = 0.0f;
            if (EXACT) {
#pragma unroll
                for (int q = 0; q < SCAN_LANE_STATES / 4; q++) {
                    const float4 b = ((const float4 *)Bt)[q];
                    const float bv[4] = {b.x, b.y, b.z, b.w};
                    float cv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    if (!SUMMARY) {
                        const float4 cq = ((const float4 *)Ct)[q];
                        cv[0] = cq.x, cv[1] = cq.y, cv[2] = cq.z, cv[3] = cq.w;
                    }
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const int j = 4 * q + k;
                        h[j] = fmaf(exp2_ftz(A2[j] * dt), h[j], dtu * bv[k]);
                        if (!SUMMARY)
                            yp = fmaf(h[j], cv[k], yp);
                    }
                }
            } else {
#pragma unroll
                for (int j = 0; j < SCAN_LANE_STATES; j++) {
                    const int64_t n = lane + (int64_t)G * j;
                    if (n < N) {
                        h[j] = fmaf(exp2_ftz(A2[j] * dt), h[j], dtu * Bt[n]);
                        if (!SUMMARY)
                            yp = fmaf(h[j], Ct[n], yp);
                    }
                }
            }
            if (SUMMARY) {
                dt_sum += dt;
            } else {
                if (!EXACT)
                    for (int o = G >> 1; o > 0; o >>= 1)
                        yp += __shfl_xor_sync(0xffffffffu, yp, o);
                if (lane == 0) /* the gate's slot becomes y: only this thread reads it */
                    s_gz[t * CH + c] = (yp + u * Dd) * s_gz[t * CH + c];
            }
        }
        if (!SUMMARY) {
            __syncthreads();
            store_tile<T>((T *)a.y, Di, r, rows, c0, CH, valid, vec_io, s_gz);
        }
    }
    if (!active)
        return;
    if (SUMMARY) {
        store_states<EXACT>(S + (int64_t)ch.slot_out * slot_size + d * N, h, lane, G, N, sh.vec_state);
        if (lane == 0)
            P[(int64_t)ch.slot_out * slot_size + d] = dt_sum;
    } else if (ch.slot_out < 0 && ch.slot_in < 0) {
        /* a one-chunk segment: this thread read the state itself */
        store_states<EXACT>(a.state + (int64_t)s.seq * a.state_stride + d * N, h, lane, G, N, sh.vec_state);
    } else if (ch.slot_out < 0) {
        /* the last of several chunks: chunk 0 of this segment may still be reading the state in another
         * block, so the final state waits in P (spent by the carry pass) for scan_commit_kernel */
        store_states<EXACT>(P + (int64_t)ch.slot_in * slot_size + d * N, h, lane, G, N, sh.vec_state);
    }
}

/* Pass 2: per (segment, channel, state), walk the segment's summaries in order from its state; slot j
 * then holds the state entering chunk j + 1. The decay of slot j is exp(A·ΣΔ) from its P entry. */
__global__ void scan_carry_kernel(jb_cuda_scan_args a, const jb_cuda_seg *segs, int n_slots,
                                  unsigned int blocks_per_seg) {
    const jb_cuda_seg s = segs[blockIdx.x / blocks_per_seg];
    const int64_t slot_size = a.d_inner * a.d_state;
    const int64_t i = (int64_t)(blockIdx.x % blocks_per_seg) * blockDim.x + threadIdx.x;
    if (s.n_slots == 0 || i >= slot_size)
        return;
    const float *P = a.summary;
    float *S = a.summary + (int64_t)n_slots * slot_size;
    const int64_t d = i / a.d_state;
    const float A2 = a.A[i] * SCAN_LOG2E;
    float h = a.state[(int64_t)s.seq * a.state_stride + i];
    for (int j = 0; j < s.n_slots; j++) {
        const int64_t slot = (int64_t)(s.slot0 + j) * slot_size;
        h = fmaf(exp2_ftz(A2 * P[slot + d]), h, S[slot + i]);
        S[slot + i] = h;
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

/* ---- host side ---------------------------------------------------------------------------------------- */

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <typename T, bool EXACT>
static cudaError_t scan_launch(const jb_cuda_scan_args *a, const jb_cuda_step_desc *step, const scan_shape &sh,
                               int threads, cudaStream_t stream) {
    const int64_t blocks = (int64_t)sh.channel_blocks * step->n_chunks;
    if (blocks > INT32_MAX)
        return cudaErrorInvalidValue;
    const size_t smem = (size_t)scan_smem_layout(sh.tile_rows, sh.channels, a->d_state).total * sizeof(float);
    const unsigned int per_seg = div_up(a->d_inner * a->d_state, 256);
    if ((int64_t)per_seg * step->n_segs > INT32_MAX)
        return cudaErrorInvalidValue;
    cudaError_t e;
    if (step->n_slots > 0) {
        scan_chunk_kernel<T, EXACT, true>
            <<<(unsigned int)blocks, threads, smem, stream>>>(*a, step->segs, step->chunks, sh);
        if ((e = JB_LAUNCH_CHECK()) != cudaSuccess)
            return e;
        scan_carry_kernel<<<(unsigned int)(per_seg * step->n_segs), 256, 0, stream>>>(*a, step->segs, step->n_slots,
                                                                                     per_seg);
        if ((e = JB_LAUNCH_CHECK()) != cudaSuccess)
            return e;
    }
    scan_chunk_kernel<T, EXACT, false>
        <<<(unsigned int)blocks, threads, smem, stream>>>(*a, step->segs, step->chunks, sh);
    if ((e = JB_LAUNCH_CHECK()) != cudaSuccess || step->n_slots == 0)
        return e;
    scan_commit_kernel<<<(unsigned int)(per_seg * step->n_segs), 256, 0, stream>>>(*a, step->segs, per_seg);
    return JB_LAUNCH_CHECK();
}

template <typename T>
static cudaError_t scan_dispatch(const jb_cuda_scan_args *a, const jb_cuda_step_desc *step, cudaStream_t stream) {
    const int64_t N = a->d_state, Di = a->d_inner;
    if (N < 1 || N > SCAN_LANE_STATES * SCAN_MAX_LANES || Di < 1)
        return cudaErrorInvalidValue; /* the config loader allows d_state <= 256 */
    scan_shape sh;
    sh.G = 1;
    while (sh.G * SCAN_LANE_STATES < N)
        sh.G <<= 1;
    /* a decode step (every chunk one row) has nothing to stage in bulk: one-warp blocks spread it */
    const int threads = step->T == step->n_chunks ? 32 : SCAN_THREADS;
    sh.channels = threads / sh.G;
    sh.tile_rows = step->max_seg_rows < SCAN_TILE_ROWS ? (int)(step->max_seg_rows > 0 ? step->max_seg_rows : 1)
                                                       : SCAN_TILE_ROWS;
    sh.channel_blocks = div_up(Di, sh.channels);
    sh.n_slots = step->n_slots;
    const int64_t V = 16 / (int64_t)sizeof(T);
    sh.vec_io = sh.channels % V == 0 && Di % V == 0 && a->ldz % V == 0 && aligned16(a->u) && aligned16(a->delta_raw) &&
                aligned16(a->z) && aligned16(a->y);
    sh.vec_bc = N % 4 == 0 && a->ldbc % 4 == 0 && aligned16(a->B) && aligned16(a->C);
    sh.vec_state = N == SCAN_LANE_STATES && a->state_stride % 4 == 0 && aligned16(a->state) && aligned16(a->summary) &&
                   aligned16(a->A);
    if (N == SCAN_LANE_STATES)
        return scan_launch<T, true>(a, step, sh, threads, stream);
    return scan_launch<T, false>(a, step, sh, threads, stream);
}

extern "C" cudaError_t jb_cuda_selective_scan(jamba_dtype dt, const jb_cuda_scan_args *a, const jb_cuda_step_desc *step,
                                            cudaStream_t stream) {
    if (step->T == 0 || step->n_chunks == 0)
        return cudaSuccess;
    return dt == JAMBA_DTYPE_BF16 ? scan_dispatch<bf16>(a, step, stream) : scan_dispatch<float>(a, step, stream);
}

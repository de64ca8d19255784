/*
 * fused_gemv.cuh — the block of a decode-step product (a few rows, weights in the activation type) and the
 * epilogues that finish the step's small ops next to it (docs/design.md, "Decode step launches"), shared by
 * the one-product kernels of fused.cu and the Mamba mixer's cooperative kernel (mamba_decode.cu), so the two
 * compute the same numbers:
 *   plain      Y = X·Wᵀ (dt or f32)                      qkv, lm_head (rows picked by x_rows), the MoE router
 *   conv       in_proj (+ bias), then conv1d + SiLU of the x half with the window moved on (decode rows)
 *   swiglu     gate|up with act = SiLU(gate) ⊙ up: a block holds gate row i and up row I + i together
 *   residual   x += X·Wᵀ (+ bias)                        out_proj, o_proj, down
 *   ssm        x_proj into xdbl (f32)
 *   dtscan     dt_proj, then the selective-scan step of each (channel, row): Δ = softplus(Δ_raw + bias),
 *              the channel's state, y = (Σ h·C + D·u)·SiLU(z)
 *   router     the MoE router logits (f32)
 *
 * Layout: a block of 8 warps owns `rpb` output rows (1, 2, 4 or 8: more blocks for short matrices), each row
 * read by 8 / rpb warps that split K; every lane streams 16-byte vectors of the weight row (8 bf16 or 4
 * fp32) and keeps one sum per input row. Sums are reduced in a fixed order (lane, warp shuffle, then the
 * row's warps in ascending order), so a row's result does not depend on the other rows of the step, on the
 * grid, nor on the run; no float atomics.
 *
 * The epilogues round exactly where the unfused ops round (the dt product output, the bias added in dt, the
 * SwiGLU of the rounded gate and up, Δ_raw in dt before the scan), and the scan step is scan.cu's
 * arithmetic (exp2 of A·log2(e)·Δ, states in order), so the fused and the unfused steps agree up to the
 * products' own summation order.
 */
#ifndef JB_CUDA_FUSED_GEMV_CUH
#define JB_CUDA_FUSED_GEMV_CUH

#include "cuda/ops.h"
#include "cuda/rownorm.cuh"

#define FUSED_WARPS 8
#define FUSED_THREADS (FUSED_WARPS * 32)
#define FUSED_LOG2E 1.4426950408889634f

enum fused_mode { MODE_PLAIN, MODE_CONV, MODE_SWIGLU, MODE_RESIDUAL, MODE_SSM, MODE_DTSCAN, MODE_ROUTER };

/* Where a product's input rows come from: an earlier kernel (the read-only path), other blocks of the same
 * kernel after a grid barrier (through L2), or the block's shared memory. */
enum fused_source { X_LDG, X_L2, X_SHARED };

/* The normalised B and C rows MODE_DTSCAN reads: row t at B + t * ld (global or shared memory). */
struct scan_bc {
    const float *B, *C;
    int64_t ld;
};

struct fused_args {
    /* the product */
    const void *W;
    int64_t N, K;        /* W [N, K]; for MODE_SWIGLU N = 2I (gate rows, then up rows) */
    const void *X;       /* input row t at X + (x_rows ? x_rows[t] : t) * ldx */
    int64_t ldx;
    const int64_t *x_rows;
    int64_t T;
    int rpb;             /* output rows per block (MODE_SWIGLU: 2 x the gate/up pairs) */
    bool vec;            /* 16-byte loads: K, ldx and the pointers allow them */
    /* outputs */
    void *Y;             /* PLAIN, CONV: [T, ldy] (dt, or f32 when y_f32); SWIGLU: act; SSM: xdbl; DTSCAN: y;
                            ROUTER: logits [T, E] f32 */
    int64_t ldy;
    bool y_f32;
    const float *bias;   /* [N] or NULL (CONV, RESIDUAL) */
    /* MODE_CONV, MODE_DTSCAN: each decode row's sequence */
    jb_cuda_conv_args conv;
    const int32_t *row_seg;
    const jb_cuda_seg *segs;
    /* MODE_RESIDUAL: x [T, N] f32; the norm of its rows into norm_out [T, N] (dt) when norm_w is not NULL */
    float *x;
    const float *norm_w;
    void *norm_out;
    float eps;
    /* MODE_SSM: dt/B/C norms of xdbl [T, R + 2N] */
    int64_t R, Ns;
    const float *dt_w, *b_w, *c_w;
    void *dt_out;
    unsigned int *counter; /* RESIDUAL (with a norm), SSM, ROUTER: zero before and after */
    /* MODE_DTSCAN (channels = N; Ns states each): jb_cuda_scan_args' fields for one-row segments */
    const void *u, *z;   /* [T, N] (dt); z [T, ldz] */
    int64_t ldz;
    const float *dt_bias, *A, *D;
    float *state;
    int64_t state_stride;
    scan_bc bc;          /* the normalised B and C (xdbl's columns, after x_proj's norms) */
    /* MODE_ROUTER: route and plan (moe.h) */
    int64_t E, k;
    int32_t *experts, *begin, *slot_token, *slot_pos;
    float *weights, *slot_weight;
};

/* 16 bytes as floats: 8 bf16 or 4 fp32. */
template <typename T> struct vec16;
template <> struct vec16<bf16> {
    static constexpr int n = 8;
    static __device__ __forceinline__ void cvt(uint4 raw, float *out) {
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&raw;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __bfloat1622float2(h[i]);
            out[2 * i] = f.x;
            out[2 * i + 1] = f.y;
        }
    }
};
template <> struct vec16<float> {
    static constexpr int n = 4;
    static __device__ __forceinline__ void cvt(uint4 raw, float *out) {
        out[0] = __uint_as_float(raw.x), out[1] = __uint_as_float(raw.y);
        out[2] = __uint_as_float(raw.z), out[3] = __uint_as_float(raw.w);
    }
};

/* An input load by its source. */
template <int XS> __device__ __forceinline__ uint4 load_x16(const void *p) {
    if (XS == X_LDG)
        return __ldg((const uint4 *)p);
    if (XS == X_L2)
        return __ldcg((const uint4 *)p);
    return *(const uint4 *)p;
}
template <int XS, typename T> __device__ __forceinline__ T load_x1(const T *p) {
    if (XS == X_LDG)
        return __ldg(p);
    if (XS == X_L2)
        return __ldcg(p);
    return *p;
}

/* The W row of in-block row r of block b, or -1 past the matrix. */
template <int MODE> __device__ __forceinline__ int64_t weight_row(const fused_args &a, int64_t b, int r) {
    if (MODE == MODE_SWIGLU) {
        const int pairs = a.rpb / 2;
        const int64_t I = a.N / 2, i = b * pairs + (r % pairs);
        return i < I ? (r < pairs ? i : I + i) : -1;
    }
    const int64_t n = b * a.rpb + r;
    return n < a.N ? n : -1;
}

/* Blocks of a product: one per `rpb` output rows (per rpb / 2 gate/up pairs with SwiGLU). */
template <int MODE> __host__ __device__ __forceinline__ int64_t fused_blocks(const fused_args &a) {
    const int64_t outs = MODE == MODE_SWIGLU ? a.rpb / 2 : a.rpb, n_out = MODE == MODE_SWIGLU ? a.N / 2 : a.N;
    return (n_out + outs - 1) / outs;
}

/* Lane sums of row n of W against the TR input rows at X: lane `li` of the row's `stride` lanes takes
 * vectors (or elements) li, li + stride, ... */
template <typename T, int TR, int XS>
__device__ __forceinline__ void row_dots(const fused_args &a, const void *X, int64_t n, int li, int stride,
                                         float acc[TR]) {
    const T *w = (const T *)a.W + n * a.K;
    const T *x[TR];
#pragma unroll
    for (int t = 0; t < TR; t++) {
        const int64_t tt = t < a.T ? t : 0;
        x[t] = (const T *)X + (a.x_rows ? a.x_rows[tt] : tt) * a.ldx;
        acc[t] = 0.0f;
    }
    if (a.vec) {
        constexpr int V = vec16<T>::n;
        const int64_t chunks = a.K / V;
#pragma unroll 2
        for (int64_t c = li; c < chunks; c += stride) {
            float wv[V];
            vec16<T>::cvt(__ldg((const uint4 *)(w + c * V)), wv);
#pragma unroll
            for (int t = 0; t < TR; t++) {
                if (t >= a.T)
                    break;
                float xv[V];
                vec16<T>::cvt(load_x16<XS>(x[t] + c * V), xv);
#pragma unroll
                for (int i = 0; i < V; i++)
                    acc[t] += wv[i] * xv[i];
            }
        }
    } else {
        for (int64_t c = li; c < a.K; c += stride) {
            const float wv = to_f32(__ldg(w + c));
#pragma unroll
            for (int t = 0; t < TR; t++) {
                if (t >= a.T)
                    break;
                acc[t] += wv * to_f32(load_x1<XS>(x[t] + c));
            }
        }
    }
}

/* The selective-scan step of channel n, decode row t (its segment is this one row), from Δ_raw = v
 * (rounded to dt as dt_proj's output is): the state moves on, y[t, n] = (Σ_j h_j·C_j + D·u)·SiLU(z). u and
 * z may come from other blocks of the same kernel (read through L2). */
template <typename T>
__device__ __forceinline__ void scan_step(const fused_args &a, const scan_bc &bc, int64_t n, int64_t t, float v) {
    const int64_t Di = a.N, N = a.Ns;
    const float dt = dev_softplus(to_f32(from_f32<T>(v)) + a.dt_bias[n]);
    const float u = to_f32(__ldcg((const T *)a.u + t * Di + n)), dtu = dt * u;
    const jb_cuda_seg s = a.segs[a.row_seg[t]];
    float *h = a.state + (int64_t)s.seq * a.state_stride + n * N;
    const float *A = a.A + n * N, *B = bc.B + t * bc.ld, *C = bc.C + t * bc.ld;
    float yp = 0.0f;
#pragma unroll 4
    for (int64_t j = 0; j < N; j++) {
        const float A2 = A[j] * FUSED_LOG2E;
        const float hj = fmaf(exp2_ftz(A2 * dt), h[j], dtu * B[j]);
        h[j] = hj;
        yp = fmaf(hj, C[j], yp);
    }
    const float gz = dev_silu(to_f32(__ldcg((const T *)a.z + t * a.ldz + n)));
    ((T *)a.Y)[t * a.ldy + n] = from_f32<T>((yp + u * a.D[n]) * gz);
}

/* The output of row n, input row t, from its dot product v. */
template <typename T, int MODE>
__device__ __forceinline__ void epilogue(const fused_args &a, const scan_bc &bc, int64_t n, int64_t t, float v) {
    if (MODE == MODE_RESIDUAL) {
        float *xr = a.x + t * a.N + n;
        *xr = *xr + (a.bias ? v + a.bias[n] : v);
        return;
    }
    if (MODE == MODE_DTSCAN) {
        scan_step<T>(a, bc, n, t, v);
        return;
    }
    if (a.y_f32) {
        ((float *)a.Y)[t * a.ldy + n] = v;
        return;
    }
    T y = from_f32<T>(v);
    if (MODE == MODE_CONV && a.bias)
        y = from_f32<T>(to_f32(y) + a.bias[n]);
    ((T *)a.Y)[t * a.ldy + n] = y;
    if (MODE != MODE_CONV || n >= a.conv.d_inner)
        return;
    /* conv1d + SiLU of channel n for this decode row (its segment is this one row), then the window moves */
    const int64_t K = a.conv.d_conv;
    const jb_cuda_seg s = a.segs[a.row_seg[t]];
    float *win = a.conv.window + s.seq * a.conv.window_stride + n * (K - 1);
    const float *cw = a.conv.w + n * K, xv = to_f32(y);
    float acc = 0.0f;
    for (int64_t j = 0; j < K - 1; j++)
        acc += cw[j] * win[j];
    acc += cw[K - 1] * xv;
    if (a.conv.b)
        acc += a.conv.b[n];
    ((T *)a.conv.out)[t * a.conv.d_inner + n] = from_f32<T>(dev_silu(acc));
    for (int64_t j = 0; j + 1 < K - 1; j++)
        win[j] = win[j + 1];
    if (K > 1)
        win[K - 2] = xv;
}

/* Block b of the product: its rows' dot products against the T input rows at X, then their epilogues.
 * part: [FUSED_WARPS][TR] floats of shared memory, free again when the function returns. Every thread of
 * the block must call it. */
template <typename T, int MODE, int TR, int XS>
__device__ __forceinline__ void fused_block(const fused_args &a, const void *X, const scan_bc &bc, int64_t b,
                                            float (*part)[TR]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wpr = FUSED_WARPS / a.rpb, r = warp / wpr;
    const int64_t n = weight_row<MODE>(a, b, r);
    if (n >= 0) {
        float acc[TR];
        row_dots<T, TR, XS>(a, X, n, (warp % wpr) * 32 + lane, wpr * 32, acc);
#pragma unroll
        for (int t = 0; t < TR; t++) {
            const float s = warp_sum(acc[t]);
            if (lane == 0)
                part[warp][t] = s;
        }
    }
    __syncthreads();
    /* one thread per (output row, input row): the row's warps summed in ascending order */
    const int outs = MODE == MODE_SWIGLU ? a.rpb / 2 : a.rpb;
    for (int e = threadIdx.x; e < outs * a.T; e += blockDim.x) {
        const int ro = e / (int)a.T, t = e % (int)a.T;
        const int64_t no = weight_row<MODE>(a, b, ro);
        if (no < 0)
            continue;
        float v = 0.0f;
        for (int j = 0; j < wpr; j++)
            v += part[ro * wpr + j][t];
        if (MODE == MODE_SWIGLU) { /* row ro is gate row no; its up row sits `outs` rows later */
            float u = 0.0f;
            for (int j = 0; j < wpr; j++)
                u += part[(ro + outs) * wpr + j][t];
            const float g = to_f32(from_f32<T>(v)), up = to_f32(from_f32<T>(u));
            ((T *)a.Y)[t * a.ldy + no] = from_f32<T>(dev_silu(g) * up);
        } else {
            epilogue<T, MODE>(a, bc, no, t, v);
        }
    }
    __syncthreads();
}

/* Output rows per block: all 8 warps on one row for short matrices, so that they still spread over the
 * SMs; one warp per row from 4096 rows on. */
static inline int fused_rows_per_block(int64_t N) { return N >= 4096 ? 8 : N >= 2048 ? 4 : N >= 1024 ? 2 : 1; }

/* The product's fields of the arguments, checked: T within 1 .. FUSED_ROWS, dt F32 or BF16. */
static inline bool fused_product_args(jamba_dtype dt, const jb_cuda_rows_product *p, fused_args *a) {
    if (p->T < 1 || p->T > JB_CUDA_FUSED_ROWS || p->N < 1 || p->K < 1 ||
        (dt != JAMBA_DTYPE_F32 && dt != JAMBA_DTYPE_BF16))
        return false;
    *a = fused_args{};
    a->W = p->W, a->N = p->N, a->K = p->K, a->X = p->X, a->ldx = p->ldx, a->x_rows = p->x_rows, a->T = p->T;
    a->rpb = fused_rows_per_block(p->N);
    const int64_t v = dt == JAMBA_DTYPE_BF16 ? 8 : 4;
    a->vec = p->K % v == 0 && p->ldx % v == 0 && (uintptr_t)p->W % 16 == 0 && (uintptr_t)p->X % 16 == 0;
    return true;
}

/* The dt_proj + scan product's arguments (MODE_DTSCAN) from the scan's: channels D_i, X = dt rows [T, R]. */
static inline bool fused_scan_args(jamba_dtype dt, const jb_cuda_rows_product *p, const jb_cuda_scan_args *s,
                                   const jb_cuda_step_desc *step, fused_args *a) {
    if (!fused_product_args(dt, p, a) || p->N != s->d_inner || s->d_state < 1 || step->T != p->T || s->z == NULL)
        return false;
    a->Y = s->y, a->ldy = s->d_inner;
    a->u = s->u, a->z = s->z, a->ldz = s->ldz, a->dt_bias = s->dt_bias, a->A = s->A, a->D = s->D;
    a->state = s->state, a->state_stride = s->state_stride, a->Ns = s->d_state;
    a->row_seg = step->row_seg, a->segs = step->segs;
    a->bc = scan_bc{s->B, s->C, s->ldbc};
    return true;
}

#endif /* JB_CUDA_FUSED_GEMV_CUH */

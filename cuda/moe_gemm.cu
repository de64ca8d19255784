/*
 * moe_gemm.cu — the int8-weight, bf16-activation (w8a16) tensor-core product of the MoE experts and int8
 * dense MLPs at prefill sizes (the Marlin idea without its weight re-layout): out[i, :] = scale ⊙ (W_e · x_i)
 * for the plan's slots. The int8 weights are read once per tile with cp.async (no widened copy anywhere),
 * widened to bf16 in registers exactly (moe_layout.h's two-mask trick), multiplied by mma.sync m16n8k16
 * with fp32 accumulators, and the per-row scale is applied once per output in the epilogue, which also
 * applies SwiGLU for the gate|up product. The M tiles follow the expert plan in device memory, so a whole
 * MoE block runs without a host round trip. Tile shapes, fragment and swizzle arithmetic: moe_layout.h.
 */
#include "cuda/common.cuh"
#include "cuda/moe.h"
#include "cuda/moe_layout.h"

#define W8_THREADS (JB_W8_WARPS * 32)
#define W8_X_CHUNKS (JB_W8_BM * JB_W8_BK / 8)  /* 16-byte chunks of 8 bf16 per stage: 512 */
#define W8_W_CHUNKS (JB_W8_BN * JB_W8_BK / 16) /* 16-byte chunks of 16 int8 per stage: 512 */

struct w8_stage {
    uint4 x[W8_X_CHUNKS]; /* [BM][8 chunks] bf16, swizzled (jb_w8_x_chunk) */
    uint4 w[W8_W_CHUNKS]; /* [BN][4 chunks] int8, swizzled (jb_w8_w_chunk) */
};

/* 16 bytes global -> shared, or 16 zero bytes when !valid (src-size 0: nothing is read). */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    const unsigned int dst = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* Two int8 (bytes 2 pair, 2 pair + 1 of word) as one bf16x2 register, exactly. */
__device__ __forceinline__ uint32_t i8x2_to_bf16x2(uint32_t word, int pair) {
    uint32_t m, s;
    jb_moe_i8x2_bf16_parts(word, pair, &m, &s);
    __nv_bfloat162 hm, hs;
    memcpy(&hm, &m, 4);
    memcpy(&hs, &s, 4);
    const __nv_bfloat162 q = __hsub2(hm, hs);
    uint32_t r;
    memcpy(&r, &q, 4);
    return r;
}

/* d += a (16x16 bf16, row) · b (16x8 bf16, col), fp32 accumulators: the PTX ISA's fragment layout. */
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* grid: m_tiles x n_tiles blocks in GROUP_M order (jb_w8_block_tiles): M tiles over the plan's experts (or
 * of n_rows), N tiles of BN weight rows (BN/2 gate|up columns with SwiGLU). Warp w computes all BM rows
 * against its 4 n8 tiles (jb_w8_warp_tile). */
template <bool SWIGLU, typename TOut>
__global__ void __launch_bounds__(W8_THREADS, 3) /* 3 blocks (12 warps) per SM: <= 170 registers */
w8a16_kernel(const int8_t *W, const float *scale, int64_t expert_stride, int64_t N, int64_t K, const bf16 *X,
             int64_t ldin, const int32_t *in_token, const int32_t *begin, int64_t E, int64_t n_rows, int64_t m_tiles,
             int64_t n_tiles, TOut *out) {
    __shared__ w8_stage st[JB_W8_STAGES];
    int64_t e = 0, m0, m_end, mt_index, nt_index;
    jb_w8_block_tiles(blockIdx.x, m_tiles, n_tiles, &mt_index, &nt_index);
    if (begin) {
        if (!jb_moe_tile_of(begin, E, JB_W8_BM, mt_index, &e, &m0, &m_end))
            return;
    } else {
        m0 = mt_index * JB_W8_BM;
        m_end = m0 + JB_W8_BM < n_rows ? m0 + JB_W8_BM : n_rows;
    }
    const int64_t n0 = nt_index * (SWIGLU ? JB_W8_BN / 2 : JB_W8_BN);
    const int8_t *We = W + e * expert_stride;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    /* this thread's cp.async sources (jb_w8_*_load_*); rows past the slots or the matrix are zero-filled */
    const int xc = jb_w8_x_load_chunk(tid), wc = jb_w8_w_load_chunk(tid);
    const bf16 *xsrc[4];
    const int8_t *wsrc[4];
    bool xok[4], wok[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t slot = m0 + jb_w8_x_load_row(tid, i);
        xok[i] = slot < m_end;
        const int64_t s = xok[i] ? slot : m0;
        xsrc[i] = X + (int64_t)(in_token ? in_token[s] : s) * ldin + xc * 8;
        const int64_t row = jb_w8_weight_row(n0, jb_w8_w_load_row(tid, i), SWIGLU, N, &wok[i]);
        wsrc[i] = We + (wok[i] ? row : 0) * K + wc * 16;
    }
    const int64_t n_kt = (K + JB_W8_BK - 1) / JB_W8_BK;
    auto load_stage = [&](int64_t kt) {
        w8_stage &s = st[kt % JB_W8_STAGES];
        const int64_t k0 = kt * JB_W8_BK;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const bool xv = xok[i] && k0 + xc * 8 < K, wv = wok[i] && k0 + wc * 16 < K;
            cp_async16(&s.x[jb_w8_x_chunk(jb_w8_x_load_row(tid, i), xc)], xv ? xsrc[i] + k0 : xsrc[i], xv);
            cp_async16(&s.w[jb_w8_w_chunk(jb_w8_w_load_row(tid, i), wc)], wv ? wsrc[i] + k0 : wsrc[i], wv);
        }
    };

    float acc[4][4][4]; /* [m16 tile][warp n8 tile][fragment c0..c3] */
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                acc[mt][i][r] = 0.0f;

#pragma unroll
    for (int s = 0; s < JB_W8_STAGES - 1; s++) {
        if (s < n_kt)
            load_stage(s);
        cp_async_commit();
    }
    for (int64_t kt = 0; kt < n_kt; kt++) {
        cp_async_wait<JB_W8_STAGES - 2>(); /* stage kt has landed (for this thread) */
        __syncthreads();                   /* ... for every thread; and stage kt - 1 is free again */
        if (kt + JB_W8_STAGES - 1 < n_kt)
            load_stage(kt + JB_W8_STAGES - 1);
        cp_async_commit();
        const w8_stage &s = st[kt % JB_W8_STAGES];
#pragma unroll
        for (int h = 0; h < 2; h++) { /* the two 32-wide k halves of the stage, two mma steps each */
            uint32_t b[4][2][2];        /* [n8 tile][step][register] */
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const uint2 raw = *(const uint2 *)((const char *)s.w + jb_w8_b_frag_byte(warp, i, h, lane));
                b[i][0][0] = i8x2_to_bf16x2(raw.x, 0), b[i][0][1] = i8x2_to_bf16x2(raw.x, 1);
                b[i][1][0] = i8x2_to_bf16x2(raw.y, 0), b[i][1][1] = i8x2_to_bf16x2(raw.y, 1);
            }
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                const uint4 lo = s.x[jb_w8_a_frag_chunk(mt, 0, h, lane)], hi = s.x[jb_w8_a_frag_chunk(mt, 1, h, lane)];
                const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y}, a1[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    mma_bf16(acc[mt][i], a0, b[i][0]);
                    mma_bf16(acc[mt][i], a1, b[i][1]);
                }
            }
        }
    }
    cp_async_wait<0>();

    /* epilogue: the row scales, SwiGLU of a gate tile and its up tile (warp tiles i and i + 2) or a store */
    const float *sc = scale + e * N;
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int i = 0; i < (SWIGLU ? 2 : 4); i++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int64_t m = m0 + jb_w8_acc_row(mt, r, lane), col = n0 + jb_w8_acc_col(warp, i, r, lane);
                if (m >= m_end)
                    continue;
                if (SWIGLU) {
                    const int64_t I = N / 2;
                    if (col < I) {
                        const float gate = acc[mt][i][r] * sc[col], up = acc[mt][i + 2][r] * sc[I + col];
                        out[m * I + col] = from_f32<TOut>(dev_silu(gate) * up);
                    }
                } else if (col < N) {
                    out[m * N + col] = from_f32<TOut>(acc[mt][i][r] * sc[col]);
                }
            }
}

extern "C" bool jb_cuda_expert_gemm_supported(jamba_dtype dt, const jb_cuda_gemv_args *a) {
    return dt == JAMBA_DTYPE_BF16 && a->wdt == JAMBA_DTYPE_I8 && a->scale != NULL && a->K > 0 && a->K % 16 == 0 &&
           a->ldin % 8 == 0 && a->expert_stride % 16 == 0 && (uintptr_t)a->W % 16 == 0 && (uintptr_t)a->in % 16 == 0 &&
           (!a->swiglu || (a->N % 2 == 0 && !a->out_f32));
}

template <bool SWIGLU, typename TOut>
static void w8_launch(const jb_cuda_gemv_args *a, int64_t m_tiles, int64_t n_tiles, cudaStream_t stream) {
    w8a16_kernel<SWIGLU, TOut><<<(unsigned int)(m_tiles * n_tiles), W8_THREADS, 0, stream>>>(
        (const int8_t *)a->W, a->scale, a->expert_stride, a->N, a->K, (const bf16 *)a->in, a->ldin, a->in_token,
        a->begin, a->E, a->n_rows, m_tiles, n_tiles, (TOut *)a->out);
}

extern "C" cudaError_t jb_cuda_expert_gemm(jamba_dtype dt, const jb_cuda_gemv_args *a, cudaStream_t stream) {
    if (!jb_cuda_expert_gemm_supported(dt, a) || (a->begin == NULL && a->E != 1))
        return cudaErrorInvalidValue;
    if (a->max_slots > INT32_MAX || a->n_rows > INT32_MAX)
        return cudaErrorInvalidValue;
    const int64_t m_tiles = a->begin ? jb_moe_tiles_bound(a->max_slots, a->E, JB_W8_BM)
                                     : (a->n_rows + JB_W8_BM - 1) / JB_W8_BM;
    const int64_t cols = a->swiglu ? a->N / 2 : a->N, per_block = a->swiglu ? JB_W8_BN / 2 : JB_W8_BN;
    const int64_t n_tiles = (cols + per_block - 1) / per_block;
    if (m_tiles == 0 || n_tiles == 0)
        return cudaSuccess;
    if (n_tiles > INT32_MAX / m_tiles) /* one grid dimension */
        return cudaErrorInvalidValue;
    if (a->swiglu)
        w8_launch<true, bf16>(a, m_tiles, n_tiles, stream);
    else if (a->out_f32)
        w8_launch<false, float>(a, m_tiles, n_tiles, stream);
    else
        w8_launch<false, bf16>(a, m_tiles, n_tiles, stream);
    return JB_LAUNCH_CHECK();
}

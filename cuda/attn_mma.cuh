/*
 * attn_mma.cuh — the tensor-core building blocks of the attention kernels (cuda/attn_flash.cu): PTX
 * wrappers (mma.sync m16n8k16 bf16, ldmatrix, cp.async), the shared-memory layout of K/V tiles, and one
 * warp's step over a K/V tile on the FlashAttention-2 design: scores, probabilities and the output
 * accumulator stay in registers, the softmax runs online in log2 units (exp2 with log2(e) folded into the
 * score scale), and the row sums are reduced once at the end. The fragment and address arithmetic is that
 * of cuda/attn_layout.h (checked on the CPU by tests/test_attn_layout.c).
 */
#ifndef JB_CUDA_ATTN_MMA_CUH
#define JB_CUDA_ATTN_MMA_CUH

#include "cuda/attn_layout.h"
#include "cuda/common.cuh"

#include <cuda_fp8.h>

typedef __nv_fp8_e4m3 fp8;

#define ATTN_THREADS 128 /* four warps per block in every tensor-core attention kernel */

/* ---- PTX wrappers --------------------------------------------------------------------------------------- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/* c[16x8] += a[16x16] · b[16x8], bf16 inputs, fp32 accumulation. */
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 16 bytes global -> shared without a register round trip; zero filled when !valid (src is then not read). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 4 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

/* Wait until at most N of this thread's copy groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Two floats as bf16x2: lo in the low half (the lower column of a fragment register). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t *)&v;
}

/* ---- shared-memory layout ---------------------------------------------------------------------------------- */

/* A block's shared memory: two stages of K and V tiles (64 keys x D) for cp.async double buffering. bf16
 * caches: the stages are bf16 rows of D + 8 elements (the 16-byte shift makes ldmatrix conflict-free).
 * fp8 caches: the stages hold raw e4m3 rows of D bytes and their per-key scales; the current tile is
 * widened (exactly: every e4m3 value is a bf16 value) into one bf16 K and one V tile, and the scales are
 * applied to scores (K) and probabilities (V). The Q tile (up to 64 rows) is staged in a buffer first
 * written after Q sits in registers: stage 1's K (bf16) or the widened K (fp8). */
template <int D, bool FP8> struct attn_smem {
    static constexpr int LD = D + 8;                                                /* bf16 row stride */
    static constexpr size_t TILE = sizeof(bf16) * JB_ATTN_TILE_KEYS * LD;             /* one bf16 tile */
    static constexpr size_t STAGE_TILE = FP8 ? (size_t)JB_ATTN_TILE_KEYS * D : TILE; /* one staged tile */
    static constexpr size_t wide_off = 4 * STAGE_TILE;                              /* fp8: widened K, V */
    static constexpr size_t scale_off = wide_off + 2 * TILE;                        /* fp8: [stage][K|V][64] */
    static constexpr size_t q_off = FP8 ? wide_off : 2 * STAGE_TILE;
    static constexpr size_t bytes = FP8 ? scale_off + sizeof(float) * 4 * JB_ATTN_TILE_KEYS : 4 * STAGE_TILE;
    static_assert(TILE % 16 == 0 && STAGE_TILE % 16 == 0, "cp.async and ldmatrix need 16-byte rows");

    /* staged tile of stage s (0, 1), kv 0 = K, 1 = V */
    static __device__ unsigned char *stage(unsigned char *base, int s, int kv) { return base + (2 * s + kv) * STAGE_TILE; }
    static __device__ float *scales(unsigned char *base, int s, int kv) {
        return (float *)(base + scale_off) + (2 * s + kv) * JB_ATTN_TILE_KEYS;
    }
    static __device__ bf16 *wide(unsigned char *base, int kv) { return (bf16 *)(base + wide_off + kv * TILE); }
    static __device__ bf16 *q(unsigned char *base) { return (bf16 *)(base + q_off); }
};

/* Where one sequence's K and V rows for a KV head are: row j of K at k + j * ld, its scale (fp8) at
 * ks[j * scale_ld]. */
template <typename TC> struct kv_rows {
    const TC *k, *v;
    const float *ks, *vs;
    int64_t ld, scale_ld;
};

/* Issue the copies of keys [key0, key0 + 64) into stage s; keys at or beyond key_end become zeros (and
 * zero scales). One commit group is the caller's. */
template <int D, typename TC>
__device__ __forceinline__ void issue_kv_tile(unsigned char *sm, int s, const kv_rows<TC> &src, int64_t key0,
                                              int64_t key_end) {
    constexpr bool FP8 = sizeof(TC) == 1;
    using L = attn_smem<D, FP8>;
    constexpr int VEC = 16 / sizeof(TC), CPR = D / VEC, CHUNKS = JB_ATTN_TILE_KEYS * CPR;
    constexpr int ROW = FP8 ? D : L::LD; /* staged row stride, elements */
    static_assert(CHUNKS % ATTN_THREADS == 0, "tile chunks divide among the threads");
    TC *kd = (TC *)L::stage(sm, s, 0), *vd = (TC *)L::stage(sm, s, 1);
#pragma unroll
    for (int i = 0; i < CHUNKS / ATTN_THREADS; i++) {
        const int idx = threadIdx.x + i * ATTN_THREADS, row = idx / CPR, c = (idx % CPR) * VEC;
        const int64_t key = key0 + row;
        const bool ok = key < key_end;
        const int64_t off = (ok ? key : 0) * src.ld + c;
        cp_async16(kd + row * ROW + c, src.k + off, ok);
        cp_async16(vd + row * ROW + c, src.v + off, ok);
    }
    if (FP8 && threadIdx.x < JB_ATTN_TILE_KEYS) {
        const int64_t key = key0 + threadIdx.x;
        const bool ok = key < key_end;
        const int64_t off = (ok ? key : 0) * src.scale_ld;
        cp_async4(L::scales(sm, s, 0) + threadIdx.x, src.ks + off, ok);
        cp_async4(L::scales(sm, s, 1) + threadIdx.x, src.vs + off, ok);
    }
}

/* fp8: widen stage s's K and V tiles into the bf16 tiles (exact; the scales stay separate). */
template <int D> __device__ __forceinline__ void widen_fp8_tiles(unsigned char *sm, int s) {
    using L = attn_smem<D, true>;
    constexpr int CPR = D / 16, CHUNKS = JB_ATTN_TILE_KEYS * CPR;
    static_assert(CHUNKS % ATTN_THREADS == 0, "tile chunks divide among the threads");
#pragma unroll
    for (int kv = 0; kv < 2; kv++) {
        const unsigned char *raw = L::stage(sm, s, kv);
        bf16 *dst = L::wide(sm, kv);
#pragma unroll
        for (int i = 0; i < CHUNKS / ATTN_THREADS; i++) {
            const int idx = threadIdx.x + i * ATTN_THREADS, row = idx / CPR, c = (idx % CPR) * 16;
            const uint4 bytes = *(const uint4 *)(raw + row * D + c);
            const __nv_fp8x2_storage_t *pairs = (const __nv_fp8x2_storage_t *)&bytes;
            uint32_t out[8];
#pragma unroll
            for (int p = 0; p < 8; p++) {
                const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pairs[p], __NV_E4M3)));
                out[p] = pack_bf16(f.x, f.y);
            }
            *(uint4 *)(dst + row * L::LD + c) = make_uint4(out[0], out[1], out[2], out[3]);
            *(uint4 *)(dst + row * L::LD + c + 8) = make_uint4(out[4], out[5], out[6], out[7]);
        }
    }
}

/* The A fragments of a warp's 16 Q rows (rows of the bf16 tile at q, stride D + 8), all D / 16 k-steps. */
template <int D> __device__ __forceinline__ void load_q_frags(uint32_t (&qf)[D / 16][4], const bf16 *q) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int k = 0; k < D / 16; k++)
        ldsm_x4(qf[k], q + jb_ldsm_a_row(lane) * (D + 8) + k * 16 + jb_ldsm_a_col(lane));
}

/* One warp's online-softmax state for its 16 rows: this lane holds rows (lane >> 2) and (lane >> 2) + 8:
 * the running max (log2 units), its partial row sum (over its own columns; summed over the quad at the
 * end) and the output accumulator as D / 8 n-tiles of m16n8 fragments. */
template <int D> struct warp_softmax {
    float m[2], l[2], o[D / 8][4];
    __device__ __forceinline__ void init() {
#pragma unroll
        for (int r = 0; r < 2; r++)
            m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    }
    /* the quad's row sums: every lane of the quad gets the total */
    __device__ __forceinline__ void reduce_sums() {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        }
    }
};

/* One warp over NT x 8 keys of a K/V tile: smem rows kw .. kw + 8 NT of Kt and Vt (bf16, stride D + 8),
 * whose row 0 is key key0. Scores are q·k × scale_log2 (× the key's scale ks[row] for fp8); when `masked`,
 * a key at or beyond its row's limit lim[r] (r = 0: row lane >> 2, 1: that + 8) gets -inf. Probabilities
 * are exp2(score - running max); with fp8 they are multiplied by the value's scale vs[row] before P·V,
 * after being added to the row sum. */
template <int D, int NT, bool FP8>
__device__ __forceinline__ void attn_tile_step(const uint32_t (&qf)[D / 16][4], const bf16 *Kt, const bf16 *Vt,
                                               int kw, int64_t key0, bool masked, const int64_t (&lim)[2],
                                               const float *ks, const float *vs, float scale_log2,
                                               warp_softmax<D> &st) {
    constexpr int LD = D + 8;
    static_assert(NT % 2 == 0 && D % 32 == 0, "16-key P·V steps and 32-dim K loads");
    const int lane = threadIdx.x & 31;
    float s[NT][4];
    /* S = Q · Kᵀ */
#pragma unroll
    for (int j = 0; j < NT; j++) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int k = 0; k < D; k += 32) {
            uint32_t b[4];
            ldsm_x4(b, Kt + (kw + j * 8 + jb_ldsm_k_row(lane)) * LD + k + jb_ldsm_k_col(lane));
            mma_bf16(s[j], qf[k / 16], b[0], b[1]);
            mma_bf16(s[j], qf[k / 16 + 1], b[2], b[3]);
        }
    }
    /* scale into log2 units; mask the causal / range boundary */
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int key = kw + j * 8 + jb_mma_c_col(lane, i);
            float v = s[j][i] * scale_log2;
            if (FP8)
                v *= ks[key];
            if (masked && key0 + key >= lim[i >> 1])
                v = -INFINITY;
            s[j][i] = v;
        }
    /* one max reduction per row and tile (over the quad), then rescale what was accumulated */
    float m_use[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < NT; j++)
            mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(st.m[r], mx);
        m_use[r] = m_new == -INFINITY ? 0.0f : m_new; /* a row that has seen no key yet: every p is 0 */
        const float alpha = exp2f(st.m[r] - m_use[r]);
        st.m[r] = m_new;
        st.l[r] *= alpha;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            st.o[n][2 * r] *= alpha, st.o[n][2 * r + 1] *= alpha;
    }
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float p = exp2f(s[j][i] - m_use[i >> 1]);
            st.l[i >> 1] += p;
            s[j][i] = FP8 ? p * vs[kw + j * 8 + jb_mma_c_col(lane, i)] : p;
        }
    /* O += P · V, 16 keys per step, P straight from the score registers */
#pragma unroll
    for (int t = 0; t < NT / 2; t++) {
        uint32_t a[4];
#pragma unroll
        for (int reg = 0; reg < 4; reg++) {
            const float *src = s[2 * t + jb_p_from_s_tile(reg)];
            a[reg] = pack_bf16(src[jb_p_from_s_index(reg, 0)], src[jb_p_from_s_index(reg, 1)]);
        }
#pragma unroll
        for (int n = 0; n < D / 8; n += 2) {
            uint32_t b[4];
            ldsm_x4_trans(b, Vt + (kw + t * 16 + jb_ldsm_v_row(lane)) * LD + n * 8 + jb_ldsm_v_col(lane));
            mma_bf16(st.o[n], a, b[0], b[1]);
            mma_bf16(st.o[n + 1], a, b[2], b[3]);
        }
    }
}

#endif /* JB_CUDA_ATTN_MMA_CUH */

/*
 * moe_layout.h — the index and bit arithmetic of the int8 expert kernels (moe.cu's GEMV, moe_gemm.cu's
 * w8a16 tensor-core product) as plain functions, compiled for the device by those files and for the host
 * by tests/test_moe_layout.c, which checks them against the PTX ISA's mma.m16n8k16 fragment layouts,
 * shared-memory bank rules and the bf16/fp32 encodings. Plain C (no CUDA types), includable anywhere.
 */
#ifndef JB_CUDA_MOE_LAYOUT_H
#define JB_CUDA_MOE_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define JB_MOE_HD static inline __host__ __device__
#else
#define JB_MOE_HD static inline
#endif

/* ---- int8 -> bf16 / fp32, exactly and without conversion instructions --------------------------------- */

/* PTX prmt (default mode): byte i of the result is byte (sel >> 4i) & 7 of the 8-byte pair {y:x}. */
JB_MOE_HD uint32_t jb_moe_prmt(uint32_t x, uint32_t y, uint32_t sel) {
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, sel);
#else
    const uint64_t both = ((uint64_t)y << 32) | x;
    uint32_t r = 0;
    for (int i = 0; i < 4; i++)
        r |= (uint32_t)((both >> (8 * ((sel >> (4 * i)) & 7))) & 0xffu) << (8 * i);
    return r;
#endif
}

/* Two int8 of a packed word (bytes 2p and 2p+1) as bf16x2 bit patterns whose difference minuend - subtrahend
 * is exactly (q_lo, q_hi): with m = q & 0x7f and b7 its sign bit, 0x4300 | m is bf16 128 + m and
 * 0x4300 | (q & 0x80) is 128 + 128 b7, so the difference is m - 128 b7 = q (every term exact in bf16). One
 * prmt and two masks; the subtraction is one bf16x2 instruction on the device. */
#define JB_MOE_BF16_MAGIC 0x43u
JB_MOE_HD void jb_moe_i8x2_bf16_parts(uint32_t word, int pair, uint32_t *minuend, uint32_t *subtrahend) {
    const uint32_t t = jb_moe_prmt(word, JB_MOE_BF16_MAGIC, pair ? 0x4342u : 0x4140u); /* [q, 0x43] x 2 */
    *minuend = t & 0xff7fff7fu;
    *subtrahend = t & 0xff80ff80u;
}

/* Byte i of a packed word as the bit pattern of the fp32 2^23 + 128 + q (exact); subtracting
 * JB_MOE_F32_BIAS gives q. word_flipped = word ^ 0x80808080 (q + 128 in each byte), shared by the four. */
#define JB_MOE_F32_BIAS 8388736.0f
JB_MOE_HD uint32_t jb_moe_i8_f32_bits(uint32_t word_flipped, int i) {
    return jb_moe_prmt(word_flipped, 0x4b000000u, 0x7540u | (uint32_t)i);
}

/* ---- the plan: which expert a block serves ------------------------------------------------------------- */

/* The position of the n-th (from 0) set bit of m; -1 when m has at most n set bits. */
JB_MOE_HD int jb_moe_nth_set_bit(uint32_t m, int n) {
    for (int i = 0; i < n && m; i++)
        m &= m - 1u;
    if (!m)
        return -1;
    int pos = 0;
    while (!(m & 1u))
        m >>= 1, pos++;
    return pos;
}

/* The GEMM's M tiles over the dispatch plan begin[E + 1] (slots grouped by expert): tile `tile` of the
 * concatenation of each expert's ceil(count / bm) tiles. Sets *expert and its slot range [*m0, *m_end);
 * false when tile is past the last one (the grid is sized by a bound). */
JB_MOE_HD bool jb_moe_tile_of(const int32_t *begin, int64_t E, int64_t bm, int64_t tile, int64_t *expert,
                             int64_t *m0, int64_t *m_end) {
    for (int64_t e = 0; e < E; e++) {
        const int64_t n = (int64_t)begin[e + 1] - begin[e], tiles = (n + bm - 1) / bm;
        if (tile < tiles) {
            *expert = e;
            *m0 = begin[e] + tile * bm;
            *m_end = *m0 + bm < begin[e + 1] ? *m0 + bm : begin[e + 1];
            return true;
        }
        tile -= tiles;
    }
    return false;
}

/* An upper bound of the M tiles of any plan of `slots` slots over E experts (each used expert adds at
 * most one partial tile): the GEMM's grid, fixed without reading the plan. */
JB_MOE_HD int64_t jb_moe_tiles_bound(int64_t slots, int64_t E, int64_t bm) {
    return (slots + bm - 1) / bm + (E < slots ? E : slots);
}

/* ---- the w8a16 tile (moe_gemm.cu) ------------------------------------------------------------------------ */

#define JB_W8_BM 64     /* token rows (slots) per block */
#define JB_W8_BN 128    /* weight rows per block; with SwiGLU, 64 gate rows and the matching 64 up rows */
#define JB_W8_BK 64     /* k per pipeline stage */
#define JB_W8_WARPS 4   /* each warp: all 64 token rows x 4 n8 tiles (32 weight rows) */
#define JB_W8_STAGES 3  /* cp.async stages: 3 x (8 KB of X + 8 KB of W) = 48 KB of shared memory */
#define JB_W8_GROUP_M 8 /* M tiles that sweep the N tiles together (what L2 holds: their X rows, one W tile) */

/* Block L of the 1-D grid as (M tile, N tile): groups of GROUP_M consecutive M tiles (the last group may
 * be smaller) visit every N tile with the M tile fastest, so the blocks resident at one time share their
 * X rows and W tiles through L2 and each operand comes from memory about once (launch order ~ L). */
JB_MOE_HD void jb_w8_block_tiles(int64_t L, int64_t m_tiles, int64_t n_tiles, int64_t *mt, int64_t *nt) {
    const int64_t group = L / (JB_W8_GROUP_M * n_tiles), first = group * JB_W8_GROUP_M;
    const int64_t rows = m_tiles - first < JB_W8_GROUP_M ? m_tiles - first : JB_W8_GROUP_M;
    const int64_t r = L - first * n_tiles;
    *mt = first + r % rows;
    *nt = r / rows;
}

/* The k order inside a 32-wide half of a stage: mma.m16n8k16 gives thread (g = lane / 4, c = lane % 4) the
 * k slots 2c, 2c+1, 2c+8, 2c+9 in both A and B (PTX ISA, "Matrix Fragments for mma.m16n8k16"); the kernel
 * feeds those four slots of mma step s (0, 1) with the physical k 8c + 4s + 0..3, so each thread reads 8
 * consecutive k of a row with one vector load. The product is unchanged because A and B use the same map
 * (it depends on c alone); tests/test_moe_layout.c executes a whole stage by the ISA's rules to check it. */

/* Shared memory of one stage, in 16-byte chunks. X: [BM rows][8 chunks of 8 bf16]; W: [BN rows][4 chunks
 * of 16 int8]. XOR swizzles keep the fragment reads (X: 16 B per lane, W: 8 B per lane) and the cp.async
 * writes free of bank conflicts (checked by the CPU test). */
JB_MOE_HD int jb_w8_x_chunk(int row, int chunk) { return row * 8 + (chunk ^ ((row & 1) << 2)); }
JB_MOE_HD int jb_w8_w_chunk(int row, int chunk) { return row * 4 + (chunk ^ (((row >> 1) & 1) << 1)); }

/* The block's n8 tile (0..15) of warp w's i-th tile (0..3): tiles 2w, 2w+1 and 8+2w, 8+2w+1, so that with
 * SwiGLU a thread holds each gate value and its up value (tile t + 8) in its own accumulators. */
JB_MOE_HD int jb_w8_warp_tile(int warp, int i) { return (i < 2 ? 0 : 8) + 2 * warp + (i & 1); }

/* The weight row of tile row r (0..BN-1) of the block at n0: n0 + r, or with SwiGLU (n0 counting gate
 * rows, I gate rows then I up rows) gate row n0 + r for r < BN/2, up row I + n0 + r - BN/2 after.
 * *valid: the row exists (gate/up column n0 + r % (BN/2) < I, or n0 + r < N). */
JB_MOE_HD int64_t jb_w8_weight_row(int64_t n0, int r, bool swiglu, int64_t N, bool *valid) {
    if (!swiglu) {
        *valid = n0 + r < N;
        return n0 + r;
    }
    const int64_t I = N / 2, col = n0 + (r % (JB_W8_BN / 2));
    *valid = col < I;
    return r < JB_W8_BN / 2 ? col : I + col;
}

/* Who loads what: cp.async copy i (0..3) of thread tid (0..127) in a stage: X chunk tid % 8 of row
 * tid / 8 + 16 i, W chunk tid % 4 of row tid / 4 + 32 i (each 512 chunks once). */
JB_MOE_HD int jb_w8_x_load_row(int tid, int i) { return tid / 8 + 16 * i; }
JB_MOE_HD int jb_w8_x_load_chunk(int tid) { return tid % 8; }
JB_MOE_HD int jb_w8_w_load_row(int tid, int i) { return tid / 4 + 32 * i; }
JB_MOE_HD int jb_w8_w_load_chunk(int tid) { return tid % 4; }

/* The fragment reads of k half h (0, 1) of a stage. A: the 16-byte chunk (8 bf16, physical k 8c..8c+7)
 * of row mt * 16 + g (+ 8 when upper) of m16 tile mt; its words 2s and 2s + 1 are A registers {0, 2}
 * (upper: {1, 3}) of mma step s. B: the byte offset in the stage's W array of the 8 int8 (physical k
 * 8c..8c+7) of warp tile i's column g; word s holds B registers 0 and 1 of step s as byte pairs 0, 1. */
JB_MOE_HD int jb_w8_a_frag_chunk(int mt, int upper, int h, int lane) {
    return jb_w8_x_chunk(mt * 16 + lane / 4 + 8 * upper, 4 * h + lane % 4);
}
JB_MOE_HD int jb_w8_b_frag_byte(int warp, int i, int h, int lane) {
    const int c = lane % 4;
    return 16 * jb_w8_w_chunk(jb_w8_warp_tile(warp, i) * 8 + lane / 4, 2 * h + c / 2) + 8 * (c % 2);
}

/* The accumulator c_r (r = 0..3) of m16 tile mt and warp tile i: the block's row mt * 16 + g + 8 (r / 2)
 * and column 8 tile + 2c + r % 2 (PTX ISA, the m16n8 fp32 accumulator layout). */
JB_MOE_HD int jb_w8_acc_row(int mt, int r, int lane) { return mt * 16 + lane / 4 + 8 * (r / 2); }
JB_MOE_HD int jb_w8_acc_col(int warp, int i, int r, int lane) {
    return jb_w8_warp_tile(warp, i) * 8 + 2 * (lane % 4) + r % 2;
}

#endif /* JB_CUDA_MOE_LAYOUT_H */

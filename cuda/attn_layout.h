/*
 * attn_layout.h — the index arithmetic of the attention kernels (cuda/attention.cu, cuda/attn_flash.cu) as
 * plain functions, so the CPU tests (tests/test_attn_layout.c) check it against the PTX ISA without a GPU:
 *   - which (row, column) of the mma.m16n8k16 bf16 fragments each lane holds, and the lane addresses that
 *     make ldmatrix deliver exactly those fragments from row-major shared tiles (Q, K, and V transposed);
 *   - the reuse of the Q·Kᵀ accumulators as the A fragments of P·V (FlashAttention-2's register reuse);
 *   - the GQA packing of a flash block's 64 rows as (query, head) pairs;
 *   - the decode path's key splits: how many a row uses, from its own length and a launch-time maximum, the
 *     items whose last-arriving split block merges them, and where the partials lie.
 * Plain C (no CUDA types); the kernels call the same functions on the device.
 */
#ifndef JB_CUDA_ATTN_LAYOUT_H
#define JB_CUDA_ATTN_LAYOUT_H

#include <stdint.h>

#include "cuda/gpu_types.h"

#ifdef __CUDACC__
#define JB_HD __host__ __device__ __forceinline__
#else
#define JB_HD inline
#endif

#define JB_ATTN_TILE_KEYS 64    /* keys per K/V tile of the tensor-core kernels; split lengths are multiples */
#define JB_ATTN_BLOCK_ROWS 64   /* (query, head) rows of a flash prefill block: 16 per warp, 4 warps */
#define JB_ATTN_DECODE_HEADS 16 /* query heads of one decode block: one m16 row tile */
#define JB_ATTN_DECODE_BLOCKS_PER_SM 3 /* decode blocks resident per SM (registers, shared memory) */

/* ---- mma.m16n8k16 .bf16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
 * type"): groupID = lane >> 2, threadID_in_group = lane % 4. A is 16x16 in 4 registers of 2 bf16
 * (half 0 in the low 16 bits), B 16x8 in 2 registers, C/D 16x8 in 4 floats. ---- */

static JB_HD int jb_mma_a_row(int lane, int reg) { return (lane >> 2) + (reg & 1) * 8; }
static JB_HD int jb_mma_a_col(int lane, int reg, int half) { return (lane & 3) * 2 + half + (reg >> 1) * 8; }
static JB_HD int jb_mma_b_row(int lane, int reg, int half) { return (lane & 3) * 2 + half + reg * 8; } /* k */
static JB_HD int jb_mma_b_col(int lane) { return lane >> 2; }                                           /* n */
static JB_HD int jb_mma_c_row(int lane, int i) { return (lane >> 2) + (i >> 1) * 8; }
static JB_HD int jb_mma_c_col(int lane, int i) { return (lane & 3) * 2 + (i & 1); }

/* ---- ldmatrix .x4 (PTX ISA): lanes 8j..8j+7 give the addresses of rows 0..7 of 8x8 matrix j; register j of
 * a lane receives matrix j's row lane >> 2, columns 2 (lane % 4) and +1 (with .trans: column lane >> 2,
 * rows 2 (lane % 4) and +1). The functions below are the (row, column) a lane points at, relative to the
 * tile's corner in a row-major shared array. ---- */

/* Q (the A operand), a 16x16 tile: matrices (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15)
 * are registers a0..a3. */
static JB_HD int jb_ldsm_a_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
static JB_HD int jb_ldsm_a_col(int lane) { return (lane >> 4) * 8; }

/* K rows [key][dim] as the B operand of Q·Kᵀ (B[k][n] = K[n][k]), 8 keys x 32 dims: matrix j holds dims
 * 8j..8j+7, so registers (0, 1) are (b0, b1) of the k-step at dim 0 and (2, 3) those of the step at 16. */
static JB_HD int jb_ldsm_k_row(int lane) { return lane & 7; }
static JB_HD int jb_ldsm_k_col(int lane) { return (lane >> 3) * 8; }

/* V rows [key][dim] as the B operand of P·V (B[k][n] = V[k][n]), loaded with .trans, 16 keys x 16 dims:
 * matrices (keys 0-7, dims 0-7), (keys 8-15, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 8-15):
 * registers (0, 1) are (b0, b1) of the n-tile at dim 0, (2, 3) those of the n-tile at dim 8. */
static JB_HD int jb_ldsm_v_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
static JB_HD int jb_ldsm_v_col(int lane) { return (lane >> 4) * 8; }

/* P·V's A fragment for the 16 keys of score n-tiles 2t and 2t+1 is made of the Q·Kᵀ accumulators: register
 * `reg`, half `half` is accumulator jb_p_from_s_index(reg, half) of n-tile 2t + jb_p_from_s_tile(reg). */
static JB_HD int jb_p_from_s_tile(int reg) { return reg >> 1; }
static JB_HD int jb_p_from_s_index(int reg, int half) { return (reg & 1) * 2 + half; }

/* ---- GQA packing: a flash block's rows are (query, head) pairs, heads fastest, row = query * hpb + head,
 * for hpb = min(group, 64) heads of one KV head and 64 / hpb queries. ---- */

static JB_HD int jb_attn_heads_per_block(int64_t group, int rows) { return group < rows ? (int)group : rows; }
static JB_HD int jb_attn_row_query(int row, int hpb) { return row / hpb; }
static JB_HD int jb_attn_row_head(int row, int hpb) { return row % hpb; }

/* The segment of flash block `block` when every segment is cut into tiles of `queries` rows in order;
 * *tile = the tile within it. Returns n_segs when the block is past the last tile. */
static JB_HD int64_t jb_attn_block_segment(const jb_cuda_seg *segs, int64_t n_segs, int64_t block, int64_t queries,
                                           int64_t *tile) {
    int64_t i = 0;
    for (; i < n_segs; i++) {
        const int64_t tiles = (segs[i].n + queries - 1) / queries;
        if (block < tiles)
            break;
        block -= tiles;
    }
    *tile = block;
    return i;
}

/* A key tile starting at key0 needs the causal mask when some row of the block may not see all of it:
 * its last key reaches mask_from, the smallest key limit (last visible key + 1) of the block's rows. */
static JB_HD int jb_attn_tile_masked(int64_t key0, int64_t mask_from) { return key0 + JB_ATTN_TILE_KEYS > mask_from; }

/* ---- decode key splits ---- */

/* Keys per split for a row over n_keys >= 1 keys: as many splits as keep min_len keys each (min_len < 1
 * counts as 1), at least one and at most max_splits, each a whole number of key tiles. */
static JB_HD int64_t jb_attn_split_len(int64_t n_keys, int64_t max_splits, int64_t min_len) {
    if (min_len < 1)
        min_len = 1;
    int64_t splits = n_keys / min_len;
    if (splits > max_splits)
        splits = max_splits;
    if (splits < 1)
        splits = 1;
    const int64_t len = (n_keys + splits - 1) / splits;
    return (len + JB_ATTN_TILE_KEYS - 1) / JB_ATTN_TILE_KEYS * JB_ATTN_TILE_KEYS;
}

/* Splits a row over n_keys >= 1 keys uses with splits of len keys (never more than the max it came from). */
static JB_HD int64_t jb_attn_splits_used(int64_t n_keys, int64_t len) { return (n_keys + len - 1) / len; }

/* The split blocks of one row share an item: (KV head, group of up to heads_per_block of its query heads).
 * Items per row (a split launch's grid y): KV heads x head groups; at most n_heads, a group holding one
 * head or more. */
static JB_HD int64_t jb_attn_kv_blocks(int64_t n_heads, int64_t n_kv_heads, int64_t heads_per_block) {
    const int64_t group = n_heads / n_kv_heads;
    return n_kv_heads * ((group + heads_per_block - 1) / heads_per_block);
}

/* Where split `split` of (row r, head) starts in the partial scratch [T, n_heads, max_splits, D + 2]: its
 * max (log2 units), its sum, then its D weighted values (not yet divided by the sum). */
static JB_HD int64_t jb_attn_partial_at(int64_t r, int64_t n_heads, int64_t head, int64_t max_splits, int64_t split,
                                        int64_t D) {
    return ((r * n_heads + head) * max_splits + split) * (D + 2);
}

/* The most splits per row of a step of T rows (the decode grid's depth; the same for every step of T rows,
 * so a recorded CUDA graph stays valid): one full wave of JB_ATTN_DECODE_BLOCKS_PER_SM blocks per SM over
 * rows x kv_blocks (KV heads x head groups), within budget / T (the partial scratch) and
 * ceil(n_ctx / min_len). */
static inline int32_t jb_attn_max_splits(int64_t T, int64_t kv_blocks, int64_t sms, int64_t n_ctx, int64_t min_len,
                                         int64_t budget) {
    const int64_t rows = T > 0 ? T : 1, per_row = rows * (kv_blocks > 0 ? kv_blocks : 1);
    int64_t n = (JB_ATTN_DECODE_BLOCKS_PER_SM * (sms > 0 ? sms : 1) + per_row - 1) / per_row;
    const int64_t by_ctx = (n_ctx + (min_len > 0 ? min_len : 1) - 1) / (min_len > 0 ? min_len : 1);
    if (n > budget / rows)
        n = budget / rows;
    if (n > by_ctx)
        n = by_ctx;
    return (int32_t)(n < 1 ? 1 : n);
}

#endif /* JB_CUDA_ATTN_LAYOUT_H */

/*
 * attn_flash.cu — the tensor-core attention kernels (bf16, d_h 64 or 128), both on attn_mma.cuh's warp step:
 *   flash    prefill on the FlashAttention-2 design: one block of four warps per (64 rows, KV head), the rows
 *            being (query, head) pairs of the query heads sharing that KV head (GQA: each K/V tile is loaded
 *            once for all of them); K/V tiles of 64 keys double-buffered by cp.async; each warp keeps its 16
 *            rows' scores, probabilities and output in registers; key tiles past the block's last query are
 *            never visited and only tiles crossing the causal diagonal are masked; one reciprocal per row
 *            at the end.
 *   decode   split-K (flash-decoding): one block per (row, KV head, up to 16 query heads, key split); the
 *            row's query heads are the 16 rows of an m16 tile shared by the four warps, each warp takes 16
 *            keys of every 64-key tile, and the warps merge in shared memory. The split count comes from the
 *            row's own length read from device memory (jb_attn_split_len), so blocks past it exit. A row of
 *            several splits is merged by the last of its blocks to finish (attn_combine.cuh).
 * fp8 caches (e4m3, one scale per token and KV head) are copied raw, widened exactly to bf16 in shared
 * memory, and their scales applied to the scores (K) and the probabilities (V).
 */
#include "cuda/attn_combine.cuh"
#include "cuda/attn_kernels.h"
#include "cuda/attn_mma.cuh"

#include <math.h>

namespace {

/* log2(e) / sqrt(d_h): scores in log2 units, so the softmax is exp2 */
__device__ __forceinline__ float score_scale_log2(int D) { return 1.4426950408889634f / sqrtf((float)D); }

template <typename TC>
__device__ __forceinline__ kv_rows<TC> sequence_rows(const jb_cuda_attn_args &a, int64_t seq, int64_t kvh, int D) {
    constexpr bool FP8 = sizeof(TC) == 1;
    kv_rows<TC> r;
    r.k = (const TC *)a.k_cache + seq * a.seq_stride + kvh * D;
    r.v = (const TC *)a.v_cache + seq * a.seq_stride + kvh * D;
    r.ld = a.n_kv_heads * D;
    r.ks = FP8 ? a.k_scale + seq * a.scale_seq_stride + kvh : NULL;
    r.vs = FP8 ? a.v_scale + seq * a.scale_seq_stride + kvh : NULL;
    r.scale_ld = a.n_kv_heads;
    return r;
}

/* Copies of the block's Q rows into the bf16 tile at q (stride D + 8): row i from src_of(i), or zeros where
 * that is NULL (`any` is then the unread source address, a valid global one). */
template <int D, int ROWS, typename RowFn>
__device__ __forceinline__ void issue_q_tile(bf16 *q, const bf16 *any, const RowFn &src_of) {
    constexpr int CPR = D / 8, CHUNKS = ROWS * CPR;
    for (int idx = threadIdx.x; idx < CHUNKS; idx += ATTN_THREADS) {
        const int row = idx / CPR, c = (idx % CPR) * 8;
        const bf16 *src = src_of(row);
        cp_async16(q + row * (D + 8) + c, src ? src + c : any, src != NULL);
    }
}

/* Walk key tiles [first, first + n_tiles) of `rows` with the two-stage pipeline; stage 0 already holds
 * tile `first` in flight (one commit group) and the Q tile has been read into registers. step(t, Kt, Vt,
 * ks, vs) runs one warp step on the tile at key first + 64 t. */
template <int D, typename TC, typename StepFn>
__device__ __forceinline__ void walk_tiles(unsigned char *sm, const kv_rows<TC> &rows, int64_t first, int n_tiles,
                                           int64_t key_end, const StepFn &step) {
    constexpr bool FP8 = sizeof(TC) == 1;
    using L = attn_smem<D, FP8>;
    for (int t = 0; t < n_tiles; t++) {
        if (t + 1 < n_tiles)
            issue_kv_tile<D, TC>(sm, (t + 1) & 1, rows, first + (int64_t)(t + 1) * JB_ATTN_TILE_KEYS, key_end);
        cp_async_commit();
        cp_async_wait<1>(); /* tile t has landed (for this thread's copies) */
        __syncthreads();    /* ... and everyone's */
        const bf16 *Kt, *Vt;
        const float *ks = NULL, *vs = NULL;
        if (FP8) {
            widen_fp8_tiles<D>(sm, t & 1);
            __syncthreads();
            Kt = L::wide(sm, 0), Vt = L::wide(sm, 1);
            ks = L::scales(sm, t & 1, 0), vs = L::scales(sm, t & 1, 1);
        } else {
            Kt = (const bf16 *)L::stage(sm, t & 1, 0), Vt = (const bf16 *)L::stage(sm, t & 1, 1);
        }
        step(t, Kt, Vt, ks, vs);
        __syncthreads(); /* stage t & 1 (and the widened tiles) are free for tile t + 2 */
    }
}

/* ---- flash prefill ---------------------------------------------------------------------------------------- */

/* grid x: query tiles of every segment in order (blocks past the last exit), y: KV head x head group. hpb
 * query heads per block (jb_attn_heads_per_block), 64 / hpb queries. */
template <int D, typename TC>
__global__ void __launch_bounds__(ATTN_THREADS, 2)
attn_flash_kernel(jb_cuda_attn_args a, const jb_cuda_seg *segs, int64_t n_segs, int hpb, int head_groups) {
    constexpr bool FP8 = sizeof(TC) == 1;
    using L = attn_smem<D, FP8>;
    extern __shared__ __align__(128) unsigned char sm[];
    const int queries = JB_ATTN_BLOCK_ROWS / hpb;
    int64_t tile;
    const int64_t si = jb_attn_block_segment(segs, n_segs, blockIdx.x, queries, &tile);
    if (si == n_segs)
        return;
    const jb_cuda_seg s = segs[si];
    const int64_t group = a.n_heads / a.n_kv_heads, kvh = blockIdx.y / head_groups;
    const int64_t hg = blockIdx.y % head_groups, h0 = kvh * group + hg * hpb; /* the block's first query head */
    const int n_hb = (int)(group - hg * hpb < hpb ? group - hg * hpb : hpb);
    const int64_t q0 = tile * queries; /* the block's first query, within the segment */
    const int q_valid = (int)(s.n - q0 < queries ? s.n - q0 : queries);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    issue_q_tile<D, JB_ATTN_BLOCK_ROWS>(L::q(sm), (const bf16 *)a.qkv, [&](int row) -> const bf16 * {
        const int qi = jb_attn_row_query(row, hpb), g = jb_attn_row_head(row, hpb);
        if (qi >= q_valid || g >= n_hb)
            return NULL;
        return (const bf16 *)a.qkv + (s.row + q0 + qi) * a.ld_qkv + (h0 + g) * D;
    });
    cp_async_commit();
    /* keys 0 .. the last query's position; the first query sees keys below mask_from */
    const int64_t key_end = s.pos + q0 + q_valid, mask_from = s.pos + q0 + 1;
    const int n_tiles = (int)((key_end + JB_ATTN_TILE_KEYS - 1) / JB_ATTN_TILE_KEYS);
    const kv_rows<TC> rows = sequence_rows<TC>(a, s.seq, kvh, D);
    issue_kv_tile<D, TC>(sm, 0, rows, 0, key_end);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    uint32_t qf[D / 16][4];
    load_q_frags<D>(qf, L::q(sm) + warp * 16 * (D + 8));
    __syncthreads(); /* the Q buffer is reused from here on */

    int64_t lim[2]; /* this lane's rows: keys below lim are visible (0 for padding rows) */
    for (int r = 0; r < 2; r++) {
        const int row = warp * 16 + jb_mma_c_row(lane, 2 * r);
        const int qi = jb_attn_row_query(row, hpb), g = jb_attn_row_head(row, hpb);
        lim[r] = qi < q_valid && g < n_hb ? s.pos + q0 + qi + 1 : 0;
    }
    warp_softmax<D> st;
    st.init();
    const float scale_log2 = score_scale_log2(D);
    walk_tiles<D, TC>(sm, rows, 0, n_tiles, key_end,
                      [&](int t, const bf16 *Kt, const bf16 *Vt, const float *ks, const float *vs) {
                          const int64_t key0 = (int64_t)t * JB_ATTN_TILE_KEYS;
                          attn_tile_step<D, JB_ATTN_TILE_KEYS / 8, FP8>(qf, Kt, Vt, 0, key0,
                                                                        jb_attn_tile_masked(key0, mask_from), lim, ks,
                                                                        vs, scale_log2, st);
                      });
    st.reduce_sums();
    const int64_t q_w = a.n_heads * D;
    for (int r = 0; r < 2; r++) {
        if (lim[r] == 0)
            continue;
        const int row = warp * 16 + jb_mma_c_row(lane, 2 * r);
        const int qi = jb_attn_row_query(row, hpb), g = jb_attn_row_head(row, hpb);
        const float inv = 1.0f / st.l[r]; /* the row's own key is visible, so l >= 1 */
        bf16 *out = (bf16 *)a.out + (s.row + q0 + qi) * q_w + (h0 + g) * D;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *(uint32_t *)(out + n * 8 + jb_mma_c_col(lane, 2 * r)) =
                pack_bf16(st.o[n][2 * r] * inv, st.o[n][2 * r + 1] * inv);
    }
}

/* ---- decode ---------------------------------------------------------------------------------------------------- */

/* grid x: row, y: KV head x head group (JB_ATTN_DECODE_HEADS heads each), z: key split. A row of several
 * splits counts its finished blocks in a.split_count[x * gridDim.y + y]. */
template <int D, typename TC>
__global__ void __launch_bounds__(ATTN_THREADS, JB_ATTN_DECODE_BLOCKS_PER_SM)
attn_decode_kernel(jb_cuda_attn_args a, const int32_t *row_seg, const jb_cuda_seg *segs, int head_groups) {
    constexpr bool FP8 = sizeof(TC) == 1;
    constexpr int HB = JB_ATTN_DECODE_HEADS, WARPS = ATTN_THREADS / 32;
    using L = attn_smem<D, FP8>;
    extern __shared__ __align__(128) unsigned char sm[];
    attn_split_item it;
    if (!attn_split_item_of(a, row_seg, segs, head_groups, HB, it))
        return; /* this row is shorter than the launch allows for */
    const int64_t r = it.r, k0 = it.k0, k1 = it.k1, kvh = it.kvh, h0 = it.h0;
    const int n_hb = it.n_h;
    const jb_cuda_seg s = it.seg;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    const bf16 *qrow = (const bf16 *)a.qkv + r * a.ld_qkv;
    issue_q_tile<D, HB>(L::q(sm), qrow, [&](int row) -> const bf16 * { return row < n_hb ? qrow + (h0 + row) * D : NULL; });
    cp_async_commit();
    const int n_tiles = (int)((k1 - k0 + JB_ATTN_TILE_KEYS - 1) / JB_ATTN_TILE_KEYS);
    const kv_rows<TC> rows = sequence_rows<TC>(a, s.seq, kvh, D);
    issue_kv_tile<D, TC>(sm, 0, rows, k0, k1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    uint32_t qf[D / 16][4];
    load_q_frags<D>(qf, L::q(sm)); /* every warp: the same 16 head rows */
    __syncthreads();

    int64_t lim[2];
    for (int i = 0; i < 2; i++)
        lim[i] = jb_mma_c_row(lane, 2 * i) < n_hb ? k1 : 0;
    warp_softmax<D> st;
    st.init();
    const float scale_log2 = score_scale_log2(D);
    walk_tiles<D, TC>(sm, rows, k0, n_tiles, k1,
                      [&](int t, const bf16 *Kt, const bf16 *Vt, const float *ks, const float *vs) {
                          const int64_t key0 = k0 + (int64_t)t * JB_ATTN_TILE_KEYS;
                          attn_tile_step<D, 2, FP8>(qf, Kt, Vt, warp * 16, key0, jb_attn_tile_masked(key0, k1), lim,
                                                    ks, vs, scale_log2, st);
                      });
    st.reduce_sums();

    /* merge the warps: [warp][row] statistics and [warp][row][D] accumulators over the (now free) tiles */
    float *sm_m = (float *)sm, *sm_l = sm_m + WARPS * HB, *sm_o = sm_l + WARPS * HB;
    static_assert(sizeof(float) * WARPS * HB * (D + 2) <= L::bytes, "the merge fits the tile buffers");
    for (int i = 0; i < 2; i++) {
        const int row = jb_mma_c_row(lane, 2 * i);
        if ((lane & 3) == 0)
            sm_m[warp * HB + row] = st.m[i], sm_l[warp * HB + row] = st.l[i];
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *(float2 *)(sm_o + (warp * HB + row) * D + n * 8 + jb_mma_c_col(lane, 2 * i)) =
                make_float2(st.o[n][2 * i], st.o[n][2 * i + 1]);
    }
    __syncthreads();
    attn_merge_warps<bf16, HB, WARPS>(a, it, sm_m, sm_l, sm_o, D);
    /* several splits: the item's last block to finish merges them */
    if (it.used > 1 && jb_last_arrival(a.split_count + r * gridDim.y + blockIdx.y, (unsigned int)it.used))
        attn_combine_splits<bf16, HB, ATTN_THREADS, 2>(a.partial, (bf16 *)a.out, a.n_heads, D, r, h0, n_hb, it.used,
                                                       it.max_splits);
}

/* ---- launches ------------------------------------------------------------------------------------------------ */

template <int D, typename TC>
cudaError_t flash_launch(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, cudaStream_t stream) {
    const size_t smem = attn_smem<D, sizeof(TC) == 1>::bytes;
    const int64_t group = a->n_heads / a->n_kv_heads;
    const int hpb = jb_attn_heads_per_block(group, JB_ATTN_BLOCK_ROWS);
    const int64_t head_groups = (group + hpb - 1) / hpb, queries = JB_ATTN_BLOCK_ROWS / hpb;
    /* Σ ceil(n_i / queries) <= T / queries + n_segs: blocks past the last tile exit at once */
    const int64_t tiles = step->T / queries + step->n_segs;
    if (tiles > INT32_MAX || a->n_kv_heads * head_groups > 65535)
        return cudaErrorInvalidValue;
    cudaError_t e = cudaFuncSetAttribute(attn_flash_kernel<D, TC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return e;
    dim3 grid((unsigned int)tiles, (unsigned int)(a->n_kv_heads * head_groups));
    attn_flash_kernel<D, TC><<<grid, ATTN_THREADS, smem, stream>>>(*a, step->segs, step->n_segs, hpb, (int)head_groups);
    return JB_LAUNCH_CHECK();
}

template <int D, typename TC>
cudaError_t decode_launch(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int32_t n_splits,
                          cudaStream_t stream) {
    const size_t smem = attn_smem<D, sizeof(TC) == 1>::bytes;
    const int64_t group = a->n_heads / a->n_kv_heads;
    const int64_t head_groups = (group + JB_ATTN_DECODE_HEADS - 1) / JB_ATTN_DECODE_HEADS;
    if (step->T > INT32_MAX || a->n_kv_heads * head_groups > 65535 || n_splits < 1 || n_splits > 65535 ||
        !jb_attn_split_scratch_fits(a, step->T, n_splits, JB_ATTN_DECODE_HEADS))
        return cudaErrorInvalidValue;
    cudaError_t e = cudaFuncSetAttribute(attn_decode_kernel<D, TC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return e;
    dim3 grid((unsigned int)step->T, (unsigned int)(a->n_kv_heads * head_groups), (unsigned int)n_splits);
    attn_decode_kernel<D, TC><<<grid, ATTN_THREADS, smem, stream>>>(*a, step->row_seg, step->segs, (int)head_groups);
    return JB_LAUNCH_CHECK();
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

} /* namespace */

bool jb_attn_mma_fits(jamba_dtype dt, const jb_cuda_attn_args *a) {
    const int64_t es = a->kv_dt == JAMBA_DTYPE_F8_E4M3 ? 1 : 2;
    return dt == JAMBA_DTYPE_BF16 && (a->kv_dt == JAMBA_DTYPE_BF16 || a->kv_dt == JAMBA_DTYPE_F8_E4M3) &&
           (a->head_dim == 64 || a->head_dim == 128) && a->ld_qkv % 8 == 0 && (a->seq_stride * es) % 16 == 0 &&
           aligned16(a->qkv) && aligned16(a->k_cache) && aligned16(a->v_cache);
}

cudaError_t jb_attn_flash(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, cudaStream_t stream) {
    const bool f8 = a->kv_dt == JAMBA_DTYPE_F8_E4M3;
    if (a->head_dim == 64)
        return f8 ? flash_launch<64, fp8>(a, step, stream) : flash_launch<64, bf16>(a, step, stream);
    return f8 ? flash_launch<128, fp8>(a, step, stream) : flash_launch<128, bf16>(a, step, stream);
}

cudaError_t jb_attn_decode_mma(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int32_t n_splits,
                               cudaStream_t stream) {
    const bool f8 = a->kv_dt == JAMBA_DTYPE_F8_E4M3;
    if (a->head_dim == 64)
        return f8 ? decode_launch<64, fp8>(a, step, n_splits, stream) : decode_launch<64, bf16>(a, step, n_splits, stream);
    return f8 ? decode_launch<128, fp8>(a, step, n_splits, stream) : decode_launch<128, bf16>(a, step, n_splits, stream);
}

/*
 * kernels_body.h — the CPU kernels written once over a vector type; included (once) by each kernels_<set>.c
 * after it defines the set's primitives:
 *
 *   JB_K, JB_KI            attributes of the set's functions (its target), JB_KI adding always_inline
 *   vf, VW                 the vector type and its width in floats
 *   v_zero() v_set1(s) v_load(p) v_store(p, v) v_add v_sub v_mul v_div
 *   v_load_n(p, n) v_store_n(p, v, n)   the first n < VW lanes only (loads zero the rest)
 *   v_fma(a, b, c)         a·b + c: what the gemm accumulates with (kernels.h)
 *   v_exp(v), v_softplus(v)   per lane; or, for the body's own (below, within a few ulp of libm's):
 *                          v_clamp(v, lo, hi) keeping NaN, v_round(v) to nearest, v_ldexp(v, n) = v·2^n,
 *                          v_frexp(v, &e) = m in [0.5, 1) with v = m·2^e, v_where_gt(a, b, t, e) = a > b ? t : e,
 *                          v_where_nan(a, t, e) = a is NaN ? t : e
 *   v_bf16(p) v_f16(p) v_i8(p) v_e4m3(p) v_f32(p)    VW stored weights at byte address p, as fp32
 *   v_reduce4(a, b, c, d, out)   out[i] = the pairwise lane sum of the i-th vector (kernels.h's order)
 *   TILE_ROWS              activation rows per prefill tile (TILE_ROWS x 4 accumulators fit in registers),
 *                          at most 6
 *   TILE_ACCS              (optional) accumulators a tile may hold; TILE_ROWS x 4 unless the set says
 *   DECODE_COLS            (optional, 4 or 8) weight rows of a tile of fewer than TILE_ROWS rows (a chunk's
 *                          last rows) whose accumulators fit; 8 unless the set says
 *   ATTN_HEADS             (optional, 1 to JB_CPU_ATTN_HEADS_MAX) query heads of one KV head that attend
 *                          together, sharing each key and value vector (4 x ATTN_HEADS accumulators); 2
 *                          unless the set says
 *   KERNEL_SET, KERNEL_TABLE     the jb_cpu_kernels value and the table's name
 * and for the int8 x int8 product (gemm_q8):
 *   vi, vq                 int32 lanes; Q8_STEP bytes of activations or weights as the set multiplies them
 *   Q8_STEP, Q8_OFFSET     bytes per step (dividing JB_LOWP_ROW_ALIGN); what activation bytes add to xq
 *   Q8_TILE_ROWS, Q8_TILE_COLS   activation rows x weight rows of a tile (R·C + C + C + 1 registers)
 *   q8_load(p)             Q8_STEP bytes at p (activations or weights)
 *   vi_zero() vi_dot(acc, x, w)   acc + the products x·w summed into lanes (exact)
 *   vi_wsum(acc, w)        acc + the weights summed into lanes (used where Q8_OFFSET is not 0)
 *   vi_hsum(v)             the lanes' sum
 * and for the bf16 x bf16 product (gemm_b16): v_b16_pairs(p, &e, &o), 2·VW bf16 values at p as fp32, the
 * even-indexed ones in e and the odd ones in o; or, with HAVE_VB, the set's own vb, vb_load(p) and
 * vb_dot(acc, x, w) (vdpbf16ps); B16_TILE_ROWS (optional, default 2) activation rows of a tile.
 * For both: LOWP_STREAM_ROWS (optional, at most 8) the most activation rows whose product reads its weights
 * as two sequential streams where they come from memory (lowp_streams; 2·LOWP_STREAM_ROWS accumulators and
 * their operands must fit in the registers; by default fewer rows than the kind's tile).
 *
 * Shapes: T activation rows, K inputs, N outputs; a tile is R activation rows x C weight rows whose R·C
 * accumulators stay in registers while k runs over all of K.
 */
#include <stdint.h>
#include <string.h>

#include "ckpt/dtype.h"
#include "cpu/attention.h"
#include "cpu/kernels.h"
#include "cpu/mamba.h"

#include <math.h>

/* Loops over a tile's rows and columns are unrolled completely, so its accumulators live in registers. */
#define UNROLL _Pragma("GCC unroll 64")
#define TILE_COLS 4        /* weight rows of a prefill tile: one v_reduce4 */
#ifndef DECODE_COLS
#define DECODE_COLS 8      /* weight rows of a narrow tile: more independent chains */
#endif
#ifndef ATTN_HEADS
#define ATTN_HEADS 2
#endif
_Static_assert(ATTN_HEADS >= 1 && ATTN_HEADS <= JB_CPU_ATTN_HEADS_MAX, "ATTN_HEADS");
#define MAX_STATE 256      /* config.c's bound on mamba_d_state */
#define MAX_TAPS 64        /* and on mamba_d_conv */
#define L2_CHUNK_FLOATS 65536 /* activation rows per chunk: their floats stay within 256 KiB */
#define MAX2(a, b) ((a) > (b) ? (a) : (b))
/* Software prefetches go to L2 (prefetcht1), leaving L1 to the activation rows the tiles reread: from memory
 * (bench_gemv --K 1024 --N 4096 --footprint-mb 256, one thread; docs/BENCHMARKS.md, "a batched step's
 * few-row products from memory") bf16 weights x fp32 activations at 16 rows 80 -> 100 GFLOP/s against
 * prefetcht0, at 4 rows 11 -> 20 GB/s. */
#define PREFETCH_L2(p) __builtin_prefetch((p), 0, 2)
/* One-row products with shorter weight rows go DECODE_COLS rows side by side, not two streams: such rows
 * make chains of FMAs too short to hide their latency (K / VW steps), and streams too short to matter
 * (bench_gemv, T = 1, K = 192 bf16 in cache: 56 vs 48 GB/s, where models that small stay; at K = 512 the
 * two are even in cache, and two streams win by 2.7x from memory). */
#define SHORT_ROW_K 512

/* ---- the product ------------------------------------------------------------------------------------ */

static inline JB_KI size_t elem_size(jamba_dtype dt) {
    return dt == JAMBA_DTYPE_F32 ? 4 : dt == JAMBA_DTYPE_F16 || dt == JAMBA_DTYPE_BF16 ? 2 : 1;
}

/* VW weights of one row from k on, as fp32 (dt is a constant once inlined). */
static inline JB_KI vf load_w(const uint8_t *row, int64_t k, jamba_dtype dt) {
    switch (dt) {
    case JAMBA_DTYPE_BF16:
        return v_bf16(row + 2 * k);
    case JAMBA_DTYPE_F16:
        return v_f16(row + 2 * k);
    case JAMBA_DTYPE_I8:
        return v_i8(row + k);
    case JAMBA_DTYPE_F8_E4M3:
        return v_e4m3(row + k);
    default:
        return v_f32(row + 4 * k);
    }
}

/* acc[i·C + j] += x_i[k, k+nk) ⊙ w_j[k, k+VW) for i < R, j < C (nk = VW but in the tail, where x's other
 * lanes are read as zeros; quantized rows as their integers, the row's scale applied to the sum). prefetch:
 * when not 0, the bytes that far past each weight row's current position are prefetched. */
static inline JB_KI void tile_step(vf *acc, int R, int C, const float *const *x, const uint8_t *const *w,
                                   int64_t k, jamba_dtype dt, size_t prefetch, int nk) {
    vf wv[DECODE_COLS];
    UNROLL for (int j = 0; j < C; j++) {
        if (prefetch)
            PREFETCH_L2(w[j] + prefetch + (size_t)k * elem_size(dt));
        wv[j] = load_w(w[j], k, dt);
    }
    UNROLL for (int i = 0; i < R; i++) {
        const vf xv = nk < VW ? v_load_n(x[i] + k, nk) : v_load(x[i] + k);
        UNROLL for (int j = 0; j < C; j++)
            acc[i * C + j] = v_fma(xv, wv[j], acc[i * C + j]);
    }
}

/* Row w's columns [k, K) (fewer than VW) copied into wpad, zeros after them; returns wpad. */
static inline JB_KI const uint8_t *pad_tail(uint8_t wpad[VW * 4], const uint8_t *w, int64_t k, int64_t K,
                                            jamba_dtype dt) {
    memset(wpad, 0, VW * 4);
    memcpy(wpad, w + (size_t)k * elem_size(dt), (size_t)(K - k) * elem_size(dt));
    return wpad;
}

/* The last K mod VW columns as one more step, with the lanes past K zero in x and w (so they add 0·0): x read
 * with v_load_n, w copied into zero-padded vectors. */
static inline JB_KI void tile_tail(vf *acc, int R, int C, const float *const *x, const uint8_t *const *w,
                                   int64_t k, int64_t K, jamba_dtype dt) {
    uint8_t wpad[DECODE_COLS][VW * 4];
    const uint8_t *wp[DECODE_COLS];
    for (int j = 0; j < C; j++)
        wp[j] = pad_tail(wpad[j], w[j], k, K, dt);
    const float *xk[TILE_ROWS];
    for (int i = 0; i < R; i++)
        xk[i] = x[i] + k;
    tile_step(acc, R, C, xk, wp, 0, dt, 0, (int)(K - k));
}

/* sum[p·R + i] = the lane sums of activation row x_i [K] against weight row w_p [K], i < R, p < P: one
 * accumulator per pair, k in steps of VW (a tile's order, so a row's results do not depend on how many rows
 * were multiplied with it). */
static inline JB_KI void rows_dot(vf *sum, int R, const float *const *x, int P, const uint8_t *const *w,
                                  int64_t K, jamba_dtype dt) {
    UNROLL for (int i = 0; i < P * R; i++)
        sum[i] = v_zero();
    int64_t k = 0;
    for (; k + VW <= K; k += VW)
        UNROLL for (int p = 0; p < P; p++) {
            const vf wv = load_w(w[p], k, dt);
            UNROLL for (int i = 0; i < R; i++)
                sum[p * R + i] = v_fma(v_load(x[i] + k), wv, sum[p * R + i]);
        }
    if (k < K) /* the tail as tile_tail takes it */
        UNROLL for (int p = 0; p < P; p++) {
            uint8_t wpad[VW * 4];
            const vf wv = load_w(pad_tail(wpad, w[p], k, K, dt), 0, dt);
            UNROLL for (int i = 0; i < R; i++)
                sum[p * R + i] = v_fma(v_load_n(x[i] + k, (int)(K - k)), wv, sum[p * R + i]);
        }
}

/* Whether rows of dtype dt come with scales (a constant once inlined). */
static inline JB_KI int quantized(jamba_dtype dt) { return dt == JAMBA_DTYPE_I8 || dt == JAMBA_DTYPE_F8_E4M3; }

/* Y[·, n] from the sum over k of x[·, k] times row n's stored values: times the row's scale where the rows
 * are quantized (scale not NULL), plus the bias where there is one. The callers read the pointers once per
 * tile, scale as a constant NULL for float rows (a test per element cost the prefill tiles 10% at K = 192). */
static inline JB_KI float output(float sum, const float *scale, const float *bias, int64_t n) {
    const float y = scale ? sum * scale[n] : sum;
    return bias ? y + bias[n] : y;
}

/* Y[t0 .. t0+R, P weight rows w_p] (rows n_p) from rows_dot's sums, each reduced alone in v_reduce4's lane
 * order. */
static inline JB_KI void few_rows_pass(const jb_gemm_args *a, int64_t t0, int R, const float *const *x, int P,
                                       const int64_t *n, jamba_dtype dt) {
    const size_t ldw = (size_t)a->K * elem_size(dt);
    const float *scale = quantized(dt) ? a->scale : NULL, *bias = a->bias;
    float *Y = a->Y;
    const uint8_t *w[2];
    vf sum[2 * TILE_ROWS];
    UNROLL for (int p = 0; p < P; p++)
        w[p] = (const uint8_t *)a->W + (size_t)n[p] * ldw;
    rows_dot(sum, R, x, P, w, a->K, dt);
    UNROLL for (int j = 0; j < P * R; j++) {
        float s[4];
        v_reduce4(sum[j], sum[j], sum[j], sum[j], s);
        Y[(t0 + j % R) * a->N + n[j / R]] = output(s[0], scale, bias, n[j / R]);
    }
}

/* Y[t0 .. t0+R, n0 .. n1) for a product of few activation rows (R < TILE_ROWS), whose weights are read once
 * and serve R FMAs per vector however the tile is shaped. Weight rows side by side are short streams the
 * hardware prefetcher does not follow (and software prefetching did not help it), so the range is read as
 * two sequential streams, its first and second halves, one row of each at a time: two independent chains
 * of FMAs for weights in cache, two streams in different pages for weights from DRAM: 1.5-2.6x the read
 * bandwidth from memory on one thread (bench_gemv; docs/BENCHMARKS.md, CPU kernels, "two sequential
 * streams"). */
static inline JB_KI void few_rows(const jb_gemm_args *a, int64_t t0, int R, int64_t n0, int64_t n1,
                                  jamba_dtype dt) {
    const float *x[TILE_ROWS];
    for (int i = 0; i < R; i++)
        x[i] = a->X + (t0 + i) * a->K;
    const int64_t half = (n1 - n0) / 2;
    for (int64_t n = n0; n < n0 + half; n++) {
        const int64_t pair[2] = {n, n + half};
        few_rows_pass(a, t0, R, x, 2, pair, dt);
    }
    if ((n1 - n0) % 2) {
        const int64_t last = n1 - 1;
        few_rows_pass(a, t0, R, x, 1, &last, dt);
    }
}

/* Y[t0 .. t0+R, n0 .. min(n0+C, n_end)) from full-K dot products (R ≤ TILE_ROWS, C ∈ {4, 8}). stream: the
 * tile is the first to read these weight rows (the chunk's first tile over them). */
static inline JB_KI void tile(const jb_gemm_args *a, int64_t t0, int R, int64_t n0, int C, int64_t n_end,
                              jamba_dtype dt, int stream) {
    const int64_t K = a->K, N = a->N;
    const size_t ldw = (size_t)K * elem_size(dt);
    const float *scale = quantized(dt) ? a->scale : NULL, *bias = a->bias;
    float *Y = a->Y;
    const float *x[TILE_ROWS];
    const uint8_t *w[DECODE_COLS];
    vf acc[TILE_ROWS * DECODE_COLS];
    for (int i = 0; i < R; i++)
        x[i] = a->X + (t0 + i) * K;
    for (int j = 0; j < C; j++) /* rows past n_end repeat the last one; their sums are not stored */
        w[j] = (const uint8_t *)a->W + (size_t)(n0 + j < n_end ? n0 + j : n_end - 1) * ldw;
    UNROLL for (int i = 0; i < R * C; i++)
        acc[i] = v_zero();
    int64_t k = 0;
    /* tiles that stream their weights fetch the rows two tiles ahead (measured: +10% decode on weights from
     * DRAM; the hardware prefetcher alone falls behind on the short streams of 2 KiB rows) */
    const size_t prefetch = stream && n0 + 3 * C <= n_end ? 2 * (size_t)C * ldw : 0;
    for (; k + VW <= K; k += VW)
        tile_step(acc, R, C, x, w, k, dt, prefetch, VW);
    if (k < K)
        tile_tail(acc, R, C, x, w, k, K, dt);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j += 4) {
            float s[4];
            v_reduce4(acc[i * C + j], acc[i * C + j + 1], acc[i * C + j + 2], acc[i * C + j + 3], s);
            for (int q = 0; q < 4 && n0 + j + q < n_end; q++)
                Y[(t0 + i) * N + n0 + j + q] = output(s[q], scale, bias, n0 + j + q);
        }
}

/* Weight rows of a tile of r < TILE_ROWS activation rows: DECODE_COLS where its r x DECODE_COLS accumulators
 * fit in the registers of a full tile, else TILE_COLS. Every widened weight vector serves r FMAs, so few-row
 * tiles are bound by the widening, not by the FMAs: wide ones at least keep enough independent chains. */
#ifndef TILE_ACCS
#define TILE_ACCS (TILE_ROWS * TILE_COLS)
#endif
#define NARROW_COLS(r) ((r) * DECODE_COLS <= TILE_ACCS ? DECODE_COLS : TILE_COLS)

/* Rows [t, t + r) (0 < r < TILE_ROWS) against weight rows [n, min(n + NARROW_COLS(r), n1)): one tile of
 * constant shape (TILE_COLS wide when no more columns are left). */
static inline JB_KI void narrow_tile(const jb_gemm_args *a, int64_t t, int r, int64_t n, int64_t n1,
                                     jamba_dtype dt, int stream) {
    const int wide = n1 - n > TILE_COLS;
#define NARROW_CASE(R)                                                                                       \
    case R:                                                                                                  \
        if (wide)                                                                                            \
            tile(a, t, R < TILE_ROWS ? R : 1, n, NARROW_COLS(R), n1, dt, stream);                           \
        else                                                                                                 \
            tile(a, t, R < TILE_ROWS ? R : 1, n, TILE_COLS, n1, dt, stream);                                \
        break;
    switch (r) { /* TILE_ROWS ≤ 6 */
        NARROW_CASE(1)
        NARROW_CASE(2)
        NARROW_CASE(3)
        NARROW_CASE(4)
    default:
        NARROW_CASE(5)
    }
#undef NARROW_CASE
}

/* Columns [n0, n1) of a one-row product whose rows are shorter than SHORT_ROW_K: tiles of DECODE_COLS
 * weight rows side by side. */
static inline JB_KI void short_row_tiles(const jb_gemm_args *a, int64_t n0, int64_t n1, jamba_dtype dt) {
    for (int64_t n = n0; n < n1; n += DECODE_COLS) {
        if (n1 - n > TILE_COLS) /* separate calls: the tile's shape must be a constant */
            tile(a, 0, 1, n, DECODE_COLS, n1, dt, 1);
        else
            tile(a, 0, 1, n, TILE_COLS, n1, dt, 1);
    }
}

/* Columns [n0, n1) of a product of fewer than TILE_ROWS rows, as few_rows of that constant count. */
static inline JB_KI void few_row_product(const jb_gemm_args *a, int64_t n0, int64_t n1, jamba_dtype dt) {
    switch (a->T) { /* TILE_ROWS ≤ 6 */
#define FEW_ROWS_CASE(R)                                                                                     \
    case R:                                                                                                  \
        few_rows(a, 0, R < TILE_ROWS ? R : 1, n0, n1, dt);                                                  \
        break;
        FEW_ROWS_CASE(1)
        FEW_ROWS_CASE(2)
        FEW_ROWS_CASE(3)
        FEW_ROWS_CASE(4)
        FEW_ROWS_CASE(5)
    default:
        FEW_ROWS_CASE(6)
#undef FEW_ROWS_CASE
    }
}

/* Where a tile's operands fit in L1 (its activation rows and weight rows together at most L1_TILE_BYTES: K up
 * to 1024 for bf16 weights on AVX-512) and its weight rows are fewer bytes than its activation rows, a
 * chunk's row tiles walk the weight rows in panels of L2_PANEL_BYTES, each row tile the whole panel: it
 * rereads its activation rows from L1 and reads only the panel's weight rows from L2 (on AVX-512 for bf16
 * weights half the bytes of the activation rows it read from L2 before). The order of the tiles changes no
 * sum. Measured (bench_gemv, one thread, an Intel Xeon with AVX-512; docs/BENCHMARKS.md "the order of the
 * prefill tiles"): bf16 weights at K = 1024 79 -> 99 GFLOP/s in cache, 75 -> 89 from memory (medians), int8
 * +1%. During development (an uncommitted switch): fp32 weights (as many bytes as the rows) -6%, not taken;
 * K = 2048 +15% on that machine's 48 KiB L1, not taken for the 32 KiB L1 of others; K = 4096 no gain; the
 * AVX2 set (3-row tiles) even at K = 1024. */
#define L1_TILE_BYTES (24 * 1024)
#define L2_PANEL_BYTES (192 * 1024)
_Static_assert(DECODE_COLS % TILE_COLS == 0, "a panel of DECODE_COLS weight rows holds whole tiles");

/* Rows [t0, t1) of one chunk against weight rows [n0, n1) (a multiple of DECODE_COLS wide, or ending at
 * n_end, the end of this call's range): tiles of TILE_ROWS x TILE_COLS, the chunk's last rows (fewer than
 * TILE_ROWS) as narrow tiles. rows_first: each row tile walks all of [n0, n1) in turn (its activation rows
 * stay in L1); else all row tiles walk each group of weight rows in turn (those weight rows stay in L1). */
static inline JB_KI void chunk_tiles(const jb_gemm_args *a, int64_t t0, int64_t t1, int64_t n0, int64_t n1,
                                     int64_t n_end, jamba_dtype dt, int rows_first) {
    const int64_t full_end = t0 + (t1 - t0) / TILE_ROWS * TILE_ROWS;
    const int r = (int)(t1 - full_end);
    const int64_t step = r ? NARROW_COLS(r) : TILE_COLS;
    if (rows_first) {
        for (int64_t t = t0; t < full_end; t += TILE_ROWS)
            for (int64_t c = n0; c < n1; c += TILE_COLS)
                tile(a, t, TILE_ROWS, c, TILE_COLS, n_end, dt, t == t0);
        for (int64_t n = n0; r && n < n1; n += step)
            narrow_tile(a, full_end, r, n, n_end, dt, full_end == t0);
        return;
    }
    for (int64_t n = n0; n < n1; n += step) {
        for (int64_t c = n; c < n + step && c < n1; c += TILE_COLS)
            for (int64_t t = t0; t < full_end; t += TILE_ROWS)
                tile(a, t, TILE_ROWS, c, TILE_COLS, n_end, dt, t == t0);
        if (r)
            narrow_tile(a, full_end, r, n, n_end, dt, full_end == t0);
    }
}

/* Columns [n0, n1) for every row of a product of at least TILE_ROWS rows: in chunks of rows that stay in L2,
 * each as chunk_tiles (in panels, or all columns at once), the first tile over each weight row streaming it
 * from memory. (A full tile's FMAs outweigh its streams: at T = TILE_ROWS = 4 the tiles beat two streams by
 * 13%, bench_gemv.) */
static inline JB_KI void gemm_dtype(const jb_gemm_args *a, int64_t n0, int64_t n1, jamba_dtype dt) {
    int64_t chunk = L2_CHUNK_FLOATS / a->K / TILE_ROWS * TILE_ROWS;
    chunk = chunk < TILE_ROWS ? TILE_ROWS : chunk;
    const int64_t x_bytes = TILE_ROWS * (int64_t)sizeof(float), w_bytes = TILE_COLS * (int64_t)elem_size(dt);
    const int rows_first = w_bytes < x_bytes && (x_bytes + w_bytes) * a->K <= L1_TILE_BYTES;
    int64_t panel = L2_PANEL_BYTES / (a->K * (int64_t)elem_size(dt)) / DECODE_COLS * DECODE_COLS;
    panel = !rows_first ? n1 - n0 : panel < DECODE_COLS ? DECODE_COLS : panel;
    for (int64_t t0 = 0; t0 < a->T; t0 += chunk) {
        const int64_t t1 = a->T - t0 < chunk ? a->T : t0 + chunk;
        for (int64_t p = n0; p < n1; p += panel)
            chunk_tiles(a, t0, t1, p, n1 - p < panel ? n1 : p + panel, n1, dt, rows_first);
    }
}

/* The three ways of a product, each a function of its own per stored dtype (the dtype a constant in it), so
 * that each gets registers of its own: inlined side by side in one function, GCC kept some accumulators of
 * the few-row and one-row paths in memory. */
#define GEMM_PATHS(suffix, DT)                                                                               \
    static JB_K __attribute__((noinline)) void short_rows_##suffix(const jb_gemm_args *a, int64_t n0,       \
                                                                   int64_t n1) {                            \
        short_row_tiles(a, n0, n1, DT);                                                                      \
    }                                                                                                        \
    static JB_K __attribute__((noinline)) void few_rows_##suffix(const jb_gemm_args *a, int64_t n0,         \
                                                                 int64_t n1) {                              \
        few_row_product(a, n0, n1, DT);                                                                      \
    }                                                                                                        \
    static JB_K __attribute__((noinline)) void tiles_##suffix(const jb_gemm_args *a, int64_t n0, int64_t n1) { \
        gemm_dtype(a, n0, n1, DT);                                                                           \
    }                                                                                                        \
    static JB_K void gemm_##suffix(const jb_gemm_args *a, int64_t n0, int64_t n1) {                          \
        if (a->T >= TILE_ROWS)                                                                               \
            tiles_##suffix(a, n0, n1);                                                                       \
        else if (a->T == 1 && a->K < SHORT_ROW_K)                                                            \
            short_rows_##suffix(a, n0, n1);                                                                  \
        else                                                                                                 \
            few_rows_##suffix(a, n0, n1);                                                                    \
    }
GEMM_PATHS(bf16, JAMBA_DTYPE_BF16)
GEMM_PATHS(f16, JAMBA_DTYPE_F16)
GEMM_PATHS(i8, JAMBA_DTYPE_I8)
GEMM_PATHS(e4m3, JAMBA_DTYPE_F8_E4M3)
GEMM_PATHS(f32, JAMBA_DTYPE_F32)
#undef GEMM_PATHS

static JB_K void gemm(const jb_gemm_args *a, int64_t n0, int64_t n1) {
    switch (a->dtype) {
    case JAMBA_DTYPE_BF16:
        gemm_bf16(a, n0, n1);
        break;
    case JAMBA_DTYPE_F16:
        gemm_f16(a, n0, n1);
        break;
    case JAMBA_DTYPE_I8:
        gemm_i8(a, n0, n1);
        break;
    case JAMBA_DTYPE_F8_E4M3:
        gemm_e4m3(a, n0, n1);
        break;
    default:
        gemm_f32(a, n0, n1);
        break;
    }
}

/* ---- low-precision products' shapes: int8 (KIND_Q8) and bf16 (KIND_B16) -------------------------- */

#ifndef B16_TILE_ROWS
#define B16_TILE_ROWS 2
#endif
#define B16_TILE_COLS 4
#define KIND_Q8 0
#define KIND_B16 1
#define LOWP_ROWS(kind) ((kind) == KIND_Q8 ? Q8_TILE_ROWS : B16_TILE_ROWS)
#define LOWP_COLS(kind) ((kind) == KIND_Q8 ? Q8_TILE_COLS : B16_TILE_COLS)
#define LOWP_MAX_COLS MAX2(Q8_TILE_COLS, B16_TILE_COLS)
#define LOWP_ELEM(kind) ((kind) == KIND_Q8 ? 1 : 2) /* bytes per weight and per activation */
/* Products of at most LOWP_STREAMED(kind) rows may read their weights as two streams (lowp_few; when, see
 * lowp_streams), more always by tiles. */
#ifdef LOWP_STREAM_ROWS
_Static_assert(LOWP_STREAM_ROWS >= 1 && LOWP_STREAM_ROWS <= 8, "LOWP_STREAM_ROWS");
#define LOWP_STREAMED(kind) LOWP_STREAM_ROWS
#define LOWP_STREAMED_MAX LOWP_STREAM_ROWS
#else
#define LOWP_STREAMED(kind) (LOWP_ROWS(kind) - 1)
#define LOWP_STREAMED_MAX 0
#endif
/* A block's activation rows and accumulators at most: a tile's, or two streams' */
#define LOWP_MAX_ROWS MAX2(MAX2(Q8_TILE_ROWS, B16_TILE_ROWS), LOWP_STREAMED_MAX)
#define LOWP_MAX_ACCS MAX2(MAX2(Q8_TILE_ROWS * Q8_TILE_COLS, B16_TILE_ROWS * B16_TILE_COLS), 2 * LOWP_STREAMED_MAX)

/* ---- int8 weights x int8 activations (gemm_q8) -------------------------------------------------- */

_Static_assert(JB_LOWP_ROW_ALIGN % Q8_STEP == 0, "Q8_STEP");

/* y from an exact integer sum (kernels.h's formula; the same scalar operations in every set). */
static inline JB_KI float q8_output(int64_t sum, float sx, float sw, const float *bias, int64_t n) {
    const float y = ((float)sum * sx) * sw;
    return bias ? y + bias[n] : y;
}

#ifndef HAVE_VI_HSUM4
/* The lane sums of four accumulators. */
static inline JB_KI void vi_hsum4(vi a, vi b, vi c, vi d, int64_t out[4]) {
    out[0] = vi_hsum(a), out[1] = vi_hsum(b), out[2] = vi_hsum(c), out[3] = vi_hsum(d);
}
#endif

/* Y[t0 .. t0+R, rows n_p] for P weight rows: one integer accumulator per (row, weight row); the last
 * K mod Q8_STEP weights from a zero-padded copy (the activations' padding is theirs: 0 + offset, times a zero
 * weight). Where activations carry an offset, wsum[p] is row n_p's weight sum (offset · wsum is taken off):
 * computed here when `have_wsum` is 0, then kept by the caller for the next rows. Any order gives the same
 * sums, so decode reads its weights as two streams (P = 2) and prefill as tiles (P = Q8_TILE_COLS). */
static inline JB_KI void q8_block(const jb_gemm_lowp_args *a, int64_t t0, int R, int P, const int64_t *n,
                                  int64_t wsum[Q8_TILE_COLS], int have_wsum, size_t prefetch) {
    const int64_t K = a->K;
    const uint8_t *x[LOWP_MAX_ROWS];
    const int8_t *w[Q8_TILE_COLS];
    vi acc[LOWP_MAX_ACCS], ws[4];
    const int sums = Q8_OFFSET && !have_wsum;
    UNROLL for (int i = 0; i < R; i++)
        x[i] = (const uint8_t *)a->X + (t0 + i) * a->ldx;
    UNROLL for (int p = 0; p < P; p++) {
        w[p] = (const int8_t *)a->W + n[p] * K;
        ws[p] = vi_zero();
        UNROLL for (int i = 0; i < R; i++)
            acc[p * R + i] = vi_zero();
    }
    int64_t k = 0;
    for (; k + Q8_STEP <= K; k += Q8_STEP)
        UNROLL for (int p = 0; p < P; p++) {
            if (prefetch)
                PREFETCH_L2(w[p] + prefetch + k);
            const vq wv = q8_load(w[p] + k);
            if (sums)
                ws[p] = vi_wsum(ws[p], wv);
            UNROLL for (int i = 0; i < R; i++)
                acc[p * R + i] = vi_dot(acc[p * R + i], q8_load(x[i] + k), wv);
        }
    if (k < K)
        UNROLL for (int p = 0; p < P; p++) {
            int8_t pad[Q8_STEP] = {0};
            memcpy(pad, w[p] + k, (size_t)(K - k));
            const vq wv = q8_load(pad);
            if (sums)
                ws[p] = vi_wsum(ws[p], wv);
            UNROLL for (int i = 0; i < R; i++)
                acc[p * R + i] = vi_dot(acc[p * R + i], q8_load(x[i] + k), wv);
        }
    if (sums) {
        int64_t s4[4];
        vi_hsum4(ws[0], P > 1 ? ws[1] : ws[0], P > 2 ? ws[2] : ws[0], P > 3 ? ws[3] : ws[0], s4);
        UNROLL for (int p = 0; p < P; p++)
            wsum[p] = s4[p];
    }
    const int nacc = P * R;
    UNROLL for (int j = 0; j < nacc; j += 4) {
        int64_t s4[4];
        vi_hsum4(acc[j], j + 1 < nacc ? acc[j + 1] : acc[j], j + 2 < nacc ? acc[j + 2] : acc[j],
                 j + 3 < nacc ? acc[j + 3] : acc[j], s4);
        for (int q = 0; q < 4 && j + q < nacc; q++) {
            const int p = (j + q) / R, i = (j + q) % R;
            const int64_t offset = Q8_OFFSET ? Q8_OFFSET * wsum[p] : 0;
            a->Y[(t0 + i) * a->N + n[p]] =
                q8_output(s4[q] - offset, a->sx[t0 + i], a->scale[n[p]], a->bias, n[p]);
        }
    }
}

/* ---- bf16 weights x bf16 activations (gemm_b16) -------------------------------------------------- */

#define B16_STEP (2 * VW) /* bf16 values per step: a pair per lane */
_Static_assert(JB_LOWP_ROW_ALIGN % (2 * B16_STEP) == 0, "B16_STEP");

#ifndef HAVE_VB
/* 2·VW bf16 values as the lanes' pairs: e = the even-indexed values, o = the odd ones, as fp32 (v_b16_pairs). */
typedef struct vb {
    vf e, o;
} vb;
static inline JB_KI vb vb_load(const uint16_t *p) {
    vb v;
    v_b16_pairs(p, &v.e, &v.o);
    return v;
}
/* acc + each lane's pair: x_o·w_o first, then x_e·w_e, each sum rounded once (the products of two bf16 values
 * are exact in fp32, so a fused multiply-add is that sum): vdpbf16ps's order. */
static inline JB_KI vf vb_dot(vf acc, vb x, vb w) { return v_fma(x.e, w.e, v_fma(x.o, w.o, acc)); }
#endif

/* Y[t0 .. t0+R, rows n_p] for P weight rows: one fp32 accumulator per (row, weight row), lanes of pairs in
 * increasing k, the last K mod B16_STEP values from a zero-padded copy of the weights (the activations are
 * padded with zeros), then the lanes pairwise (v_reduce4's order). */
static inline JB_KI void b16_block(const jb_gemm_lowp_args *a, int64_t t0, int R, int P, const int64_t *n,
                                   size_t prefetch) {
    const int64_t K = a->K;
    const uint16_t *x[LOWP_MAX_ROWS], *w[B16_TILE_COLS];
    vf acc[LOWP_MAX_ACCS];
    UNROLL for (int i = 0; i < R; i++)
        x[i] = (const uint16_t *)a->X + (t0 + i) * a->ldx;
    UNROLL for (int p = 0; p < P; p++) {
        w[p] = (const uint16_t *)a->W + n[p] * K;
        UNROLL for (int i = 0; i < R; i++)
            acc[p * R + i] = v_zero();
    }
    int64_t k = 0;
#ifdef HAVE_VB
    /* one register per vb: all P weight vectors first, then each activation vector loaded once for all of them
     * (bench_gemv --dtype b16 --T 4 --K 1024 --N 512 --footprint-mb 1, two streams: 103 -> 154-162 GFLOP/s) */
    for (; k + B16_STEP <= K; k += B16_STEP) {
        vb wv[B16_TILE_COLS];
        UNROLL for (int p = 0; p < P; p++) {
            if (prefetch)
                PREFETCH_L2((const uint8_t *)(w[p] + k) + prefetch);
            wv[p] = vb_load(w[p] + k);
        }
        UNROLL for (int i = 0; i < R; i++) {
            const vb xv = vb_load(x[i] + k);
            UNROLL for (int p = 0; p < P; p++)
                acc[p * R + i] = vb_dot(acc[p * R + i], xv, wv[p]);
        }
    }
#else
    /* two registers per vb: a weight vector at a time (all of them at once spill on AVX2: the tiles in cache
     * 76 -> 50 GFLOP/s) */
    for (; k + B16_STEP <= K; k += B16_STEP)
        UNROLL for (int p = 0; p < P; p++) {
            if (prefetch)
                PREFETCH_L2((const uint8_t *)(w[p] + k) + prefetch);
            const vb wv = vb_load(w[p] + k);
            UNROLL for (int i = 0; i < R; i++)
                acc[p * R + i] = vb_dot(acc[p * R + i], vb_load(x[i] + k), wv);
        }
#endif
    if (k < K)
        UNROLL for (int p = 0; p < P; p++) {
            uint16_t pad[B16_STEP] = {0};
            memcpy(pad, w[p] + k, (size_t)(K - k) * sizeof *pad);
            const vb wv = vb_load(pad);
            UNROLL for (int i = 0; i < R; i++)
                acc[p * R + i] = vb_dot(acc[p * R + i], vb_load(x[i] + k), wv);
        }
    const int nacc = P * R;
    UNROLL for (int j = 0; j < nacc; j += 4) {
        float s4[4];
        v_reduce4(acc[j], j + 1 < nacc ? acc[j + 1] : acc[j], j + 2 < nacc ? acc[j + 2] : acc[j],
                  j + 3 < nacc ? acc[j + 3] : acc[j], s4);
        for (int q = 0; q < 4 && j + q < nacc; q++) {
            const int p = (j + q) / R, i = (j + q) % R;
            a->Y[(t0 + i) * a->N + n[p]] = a->bias ? s4[q] + a->bias[n[p]] : s4[q];
        }
    }
}

/* ---- walking a low-precision product: int8 (KIND_Q8) or bf16 (KIND_B16) blocks ---------------------- */

/* Columns [n0, n1) for rows [t0, t0 + R) as blocks of P consecutive weight rows (the last block's rows past
 * n1 repeat n1 - 1; those sums are stored again, the same values). */
static inline JB_KI void lowp_columns(const jb_gemm_lowp_args *a, int kind, int64_t t0, int R, int P, int64_t n0,
                                      int64_t n1, int64_t wsum[LOWP_MAX_COLS], int have_wsum, size_t prefetch) {
    for (int64_t c = n0; c < n1; c += P) {
        int64_t n[LOWP_MAX_COLS];
        UNROLL for (int p = 0; p < P; p++)
            n[p] = c + p < n1 ? c + p : n1 - 1;
        if (kind == KIND_Q8)
            q8_block(a, t0, R, P, n, wsum, have_wsum, prefetch);
        else
            b16_block(a, t0, R, P, n, prefetch);
    }
}

/* Weights from this many bytes on cannot stay in L2 between steps (they come from memory). */
#define LOWP_FROM_MEMORY_BYTES ((int64_t)1 << 20)
/* How far ahead each stream of lowp_few fetches, for two or more rows of weights from memory: the next page
 * (the hardware prefetcher stops at page ends, and while several rows multiply it falls behind). Measured
 * during development (bench_gemv --dtype b16 --K 1024 --N 4096 --footprint-mb 256, against none; docs/
 * BENCHMARKS.md): T = 4 18 -> 22 GB/s on one thread (medians) and 31 -> 46 summed over two processes at
 * once, T = 8 9 -> 17 (one run each), T = 3 +12%, T = 2 +4%; T = 1 not better (so not taken), and in cache
 * 5-10% slower (so only from memory). */
#define LOWP_STREAM_AHEAD 4096

/* At most LOWP_STREAMED(kind) rows: the range's halves as two sequential weight streams (as few_rows). */
static inline JB_KI void lowp_few(const jb_gemm_lowp_args *a, int kind, int R, int64_t n0, int64_t n1) {
    const int64_t half = (n1 - n0) / 2;
    const int64_t bytes = a->N * a->K * LOWP_ELEM(kind);
    const size_t ahead = R >= 2 && bytes >= LOWP_FROM_MEMORY_BYTES ? LOWP_STREAM_AHEAD : 0;
    int64_t wsum[LOWP_MAX_COLS];
    for (int64_t c = n0; c < n0 + half; c++) {
        const int64_t pair[2] = {c, c + half};
        if (kind == KIND_Q8)
            q8_block(a, 0, R, 2, pair, wsum, 0, ahead);
        else
            b16_block(a, 0, R, 2, pair, ahead);
    }
    if ((n1 - n0) % 2)
        lowp_columns(a, kind, 0, R, 1, n1 - 1, n1, wsum, 0, 0);
}

/* Tiles over chunks of rows whose bytes stay in L2, the chunk's last rows (fewer than a tile) as one
 * narrower block per weight rows. */
static inline JB_KI void lowp_tiles(const jb_gemm_lowp_args *a, int kind, int64_t n0, int64_t n1) {
    const int TR = LOWP_ROWS(kind), TC = LOWP_COLS(kind);
    const int64_t row_bytes = a->ldx * LOWP_ELEM(kind);
    int64_t chunk = 4 * L2_CHUNK_FLOATS / row_bytes / TR * TR;
    chunk = chunk < TR ? TR : chunk;
    for (int64_t t0 = 0; t0 < a->T; t0 += chunk) {
        const int64_t t1 = a->T - t0 < chunk ? a->T : t0 + chunk;
        const int64_t full_end = t0 + (t1 - t0) / TR * TR;
        for (int64_t c = n0; c < n1; c += TC) {
            const int64_t c1 = n1 - c < TC ? n1 : c + TC;
            int64_t wsum[LOWP_MAX_COLS] = {0}; /* int8: the first block over these weight rows sums them */
            /* the first block over these weight rows streams them: it fetches the rows two tiles ahead (the
             * rows side by side are short streams the hardware prefetcher does not follow; as `tile`) */
            const size_t ahead = c + 3 * TC <= n1 ? (size_t)(2 * TC * a->K * LOWP_ELEM(kind)) : 0;
            for (int64_t t = t0; t < full_end; t += TR)
                lowp_columns(a, kind, t, TR, TC, c, c1, wsum, t > t0, t == t0 ? ahead : 0);
            const int have = full_end > t0;
            const size_t tail_ahead = have ? 0 : ahead;
            switch (t1 - full_end) { /* tiles of at most 4 rows */
            case 1:
                lowp_columns(a, kind, full_end, 1, TC, c, c1, wsum, have, tail_ahead);
                break;
            case 2:
                lowp_columns(a, kind, full_end, 2 < TR ? 2 : 1, TC, c, c1, wsum, have, tail_ahead);
                break;
            case 3:
                lowp_columns(a, kind, full_end, 3 < TR ? 3 : 1, TC, c, c1, wsum, have, tail_ahead);
                break;
            default:
                break;
            }
        }
    }
}

/* A product of at most LOWP_STREAMED(kind) rows, as lowp_few of that constant count. */
static inline JB_KI void lowp_few_rows(const jb_gemm_lowp_args *a, int kind, int64_t n0, int64_t n1) {
    switch (a->T) { /* LOWP_STREAMED ≤ 8 */
#define LOWP_FEW_CASE(R)                                                                                     \
    case R:                                                                                                  \
        lowp_few(a, kind, R <= LOWP_STREAMED(kind) ? R : 1, n0, n1);                                         \
        break;
        LOWP_FEW_CASE(1)
        LOWP_FEW_CASE(2)
#if LOWP_STREAMED_MAX >= 4 /* sets without two-stream blocks of 4+ rows compile no copies for them */
        LOWP_FEW_CASE(3)
        LOWP_FEW_CASE(4)
        LOWP_FEW_CASE(5)
        LOWP_FEW_CASE(6)
        LOWP_FEW_CASE(7)
    default:
        LOWP_FEW_CASE(8)
#else
    default:
        LOWP_FEW_CASE(3)
#endif
#undef LOWP_FEW_CASE
    }
}

/* Whether a product reads its weights as two streams (lowp_few) rather than by tiles: with fewer rows than a
 * tile, or up to LOWP_STREAMED(kind) rows of a matrix of LOWP_FROM_MEMORY_BYTES or more, whose weights come
 * from memory (smaller ones stay in cache, where the tiles are faster on the sets without vdpbf16ps:
 * docs/BENCHMARKS.md, "a batched step's few-row products from memory"). */
static inline JB_KI int lowp_streams(const jb_gemm_lowp_args *a, int kind) {
    return a->T < LOWP_ROWS(kind) ||
           (a->T <= LOWP_STREAMED(kind) && a->N * a->K * LOWP_ELEM(kind) >= LOWP_FROM_MEMORY_BYTES);
}

/* Each way of each kind a function of its own (registers of its own, as GEMM_PATHS). The tiles come first:
 * placed after the few-row function with its eight row counts, the int8 tiles ran 9% slower (bench_gemv
 * --dtype q8 --T 256 --K 1024 --N 1024 --footprint-mb 2: 229 against 255 GFLOP/s), code placement alone. */
#define LOWP_PATHS(suffix, KIND)                                                                             \
    static JB_K __attribute__((noinline)) void suffix##_tile_rows(const jb_gemm_lowp_args *a, int64_t n0,    \
                                                                  int64_t n1) {                             \
        lowp_tiles(a, KIND, n0, n1);                                                                         \
    }                                                                                                        \
    static JB_K __attribute__((noinline)) void suffix##_few_rows(const jb_gemm_lowp_args *a, int64_t n0,     \
                                                                 int64_t n1) {                              \
        lowp_few_rows(a, KIND, n0, n1);                                                                      \
    }                                                                                                        \
    static JB_K void gemm_##suffix(const jb_gemm_lowp_args *a, int64_t n0, int64_t n1) {                     \
        if (lowp_streams(a, KIND))                                                                           \
            suffix##_few_rows(a, n0, n1);                                                                    \
        else                                                                                                 \
            suffix##_tile_rows(a, n0, n1);                                                                   \
    }
LOWP_PATHS(q8, KIND_Q8)
LOWP_PATHS(b16, KIND_B16)
#undef LOWP_PATHS

/* ---- e^x ---------------------------------------------------------------------------------------------- */

#ifndef HAVE_V_EXP
/* Cephes' expf: x = n ln2 + r (ln2 in two parts), e^r = 1 + r + r² P(r) on |r| ≤ ln2/2, times 2^n in two
 * steps (so results down to subnormals and up to +inf come out right); x clamped to [-104, 89], where e^x
 * is 0 and +inf in float, NaN kept. (tests/test_cpu_kernels.c: SiLU and softplus built on it, and on v_log
 * below, come within 4 ulp of libm's.) */
static inline JB_KI vf v_exp(vf x) {
    x = v_clamp(x, v_set1(-104.0f), v_set1(89.0f));
    const vf n = v_round(v_mul(x, v_set1(1.44269504088896341f)));
    vf r = v_fma(n, v_set1(-0.693359375f), x);
    r = v_fma(n, v_set1(2.12194440e-4f), r);
    vf p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_add(v_fma(p, v_mul(r, r), r), v_set1(1.0f));
    return v_ldexp(p, n);
}

/* Cephes' logf for positive normal x: x = m·2^e with m in [sqrt(1/2), sqrt(2)), log(m) = f - f²/2 + f³ P(f)
 * with f = m - 1, plus e·ln2 (in two parts). */
static inline JB_KI vf v_log(vf x) {
    vf e, m = v_frexp(x, &e);
    const vf one = v_set1(1.0f), sqrt_half = v_set1(0.707106781186547524f);
    e = v_where_gt(sqrt_half, m, v_sub(e, one), e);
    const vf f = v_where_gt(sqrt_half, m, v_sub(v_add(m, m), one), v_sub(m, one));
    const vf z = v_mul(f, f);
    vf p = v_set1(7.0376836292e-2f);
    p = v_fma(p, f, v_set1(-1.1514610310e-1f));
    p = v_fma(p, f, v_set1(1.1676998740e-1f));
    p = v_fma(p, f, v_set1(-1.2420140846e-1f));
    p = v_fma(p, f, v_set1(1.4249322787e-1f));
    p = v_fma(p, f, v_set1(-1.6668057665e-1f));
    p = v_fma(p, f, v_set1(2.0000714765e-1f));
    p = v_fma(p, f, v_set1(-2.4999993993e-1f));
    p = v_fma(p, f, v_set1(3.3333331174e-1f));
    vf y = v_mul(v_mul(p, f), z);
    y = v_fma(e, v_set1(-2.12194440e-4f), y);
    y = v_fma(z, v_set1(-0.5f), y);
    return v_fma(e, v_set1(0.693359375f), v_add(f, y));
}

/* softplus as jb_softplus: x above 20 passes through, else log1p(e^x), log1p(y) = log(u)·y / (u - 1) with
 * u = 1 + y (Goldberg; y itself where u rounds to 1); NaN stays NaN. */
static inline JB_KI vf v_softplus(vf x) {
    const vf y = v_exp(x), u = v_add(v_set1(1.0f), y), d = v_sub(u, v_set1(1.0f));
    const vf log1p = v_where_gt(d, v_zero(), v_div(v_mul(v_log(u), y), d), y);
    return v_where_nan(x, x, v_where_gt(x, v_set1(20.0f), x, log1p));
}
#endif

/* ---- Mamba: VW channels at a time, each in the plain loop's order ------------------------------------- */

/* Tokens from which transposing per-channel data into vectors of channels is amortised for the scan
 * (scan_block); fewer take scan_block_few, bit-identical (measured on AVX-512 with N = 16 before its transposed
 * sums: 2x faster at one token and level at about four). The conv takes it for a d_conv other than 4. */
#define FEW_TOKENS 4

/* nc (≤ VW) floats from p, zero-padded to a vector; and back. */
static inline JB_KI vf load_n(const float *p, int nc) { return nc == VW ? v_load(p) : v_load_n(p, nc); }

static inline JB_KI void store_n(float *p, vf v, int nc) {
    if (nc == VW)
        v_store(p, v);
    else
        v_store_n(p, v, nc);
}

/* lanes[l] = src[l·stride] for l < nc, zeros after: a strided column as a vector. */
static inline JB_KI vf gather_n(const float *src, int64_t stride, int nc) {
    float pad[VW] = {0};
    for (int l = 0; l < nc; l++)
        pad[l] = src[l * stride];
    return v_load(pad);
}

static inline JB_KI void scatter_n(float *dst, int64_t stride, vf v, int nc) {
    float pad[VW];
    v_store(pad, v);
    for (int l = 0; l < nc; l++)
        dst[l * stride] = pad[l];
}

/* SiLU as jb_silu: x / (1 + e^-x). */
static inline JB_KI vf v_silu(vf x) { return v_div(x, v_add(v_set1(1.0f), v_exp(v_sub(v_zero(), x)))); }

/* Channels [c, c + nc): taps and window transposed to one vector per tap, the window slid in registers. K:
 * a->d_conv, a constant where the caller passes one (then the taps and window stay in registers). */
static inline JB_KI void conv_block_k(const jb_conv_args *a, int64_t c, int nc, const int64_t K) {
    const int64_t Di = a->d_inner;
    vf w[MAX_TAPS], win[MAX_TAPS];
    UNROLL for (int64_t j = 0; j < K; j++)
        w[j] = gather_n(a->w + c * K + j, K, nc);
    UNROLL for (int64_t j = 0; j < K - 1; j++)
        win[j] = gather_n(a->window + c * (K - 1) + j, K - 1, nc);
    const vf b = a->b ? load_n(a->b + c, nc) : v_zero();
    for (int64_t t = 0; t < a->n; t++) {
        const vf cur = load_n(a->x + t * a->ldx + c, nc);
        vf acc = v_zero();
        UNROLL for (int64_t j = 0; j < K - 1; j++)
            acc = v_add(acc, v_mul(w[j], win[j]));
        acc = v_add(acc, v_mul(w[K - 1], cur));
        if (a->b)
            acc = v_add(acc, b);
        store_n(a->out + t * Di + c, v_silu(acc), nc);
        if (K > 1) {
            UNROLL for (int64_t j = 0; j + 1 < K - 1; j++)
                win[j] = win[j + 1];
            win[K - 2] = cur;
        }
    }
    UNROLL for (int64_t j = 0; j < K - 1; j++)
        scatter_n(a->window + c * (K - 1) + j, K - 1, win[j], nc);
}

/* The same for few tokens without transposing taps and window: each channel's sum in scalars (the same
 * operations in the same order as its lane of conv_block_k), then SiLU VW channels at a time. */
static inline JB_KI void conv_block_few(const jb_conv_args *a, int64_t c, int nc) {
    const int64_t K = a->d_conv, Di = a->d_inner;
    for (int64_t t = 0; t < a->n; t++) {
        float acc[VW];
        for (int i = 0; i < nc; i++) {
            const float *w = a->w + (c + i) * K;
            float *win = a->window + (c + i) * (K - 1);
            const float cur = a->x[t * a->ldx + c + i];
            float sum = 0.0f;
            for (int64_t j = 0; j < K - 1; j++)
                sum = sum + w[j] * win[j];
            sum = sum + w[K - 1] * cur;
            if (a->b)
                sum = sum + a->b[c + i];
            acc[i] = sum;
            if (K > 1) {
                for (int64_t j = 0; j + 1 < K - 1; j++)
                    win[j] = win[j + 1];
                win[K - 2] = cur;
            }
        }
        store_n(a->out + t * Di + c, v_silu(load_n(acc, nc)), nc);
    }
}

static JB_K void conv(const jb_conv_args *a, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c += VW) {
        const int nc = c1 - c < VW ? (int)(c1 - c) : VW;
        if (a->d_conv == 4) /* every Jamba checkpoint's: the taps and window in registers (bench_mamba: 2.6x
                               faster than with K a variable at 32 tokens, 5.8x at 512, 2x at one token) */
            conv_block_k(a, c, nc, 4);
        else if (a->n < FEW_TOKENS)
            conv_block_few(a, c, nc);
        else
            conv_block_k(a, c, nc, a->d_conv);
    }
}

/* Channels [c, c + nc): state and A transposed to one vector per state index. */
static inline JB_KI void scan_block(const jb_scan_args *a, int64_t c, int nc) {
    const int64_t N = a->d_state, Di = a->d_inner;
    vf h[MAX_STATE], A[MAX_STATE];
    for (int64_t s = 0; s < N; s++) {
        h[s] = gather_n(a->state + c * N + s, N, nc);
        A[s] = gather_n(a->A + c * N + s, N, nc);
    }
    const vf D = load_n(a->D + c, nc);
    for (int64_t t = 0; t < a->n; t++) {
        const vf dt = load_n(a->delta + t * Di + c, nc), u = load_n(a->u + t * Di + c, nc);
        const float *B = a->B + t * a->ldbc, *C = a->C + t * a->ldbc;
        vf y = v_zero();
        for (int64_t s = 0; s < N; s++) {
            h[s] = v_add(v_mul(v_exp(v_mul(A[s], dt)), h[s]), v_mul(v_mul(dt, v_set1(B[s])), u));
            y = v_add(y, v_mul(h[s], v_set1(C[s])));
        }
        y = v_add(y, v_mul(u, D));
        store_n(a->y + t * Di + c, v_mul(y, v_silu(load_n(a->z + t * a->ldz + c, nc))), nc);
    }
    for (int64_t s = 0; s < N; s++)
        scatter_n(a->state + c * N + s, N, h[s], nc);
}

#ifdef HAVE_V_TRANSPOSE
/* scan_block_few for VW channels of VW states each (d_state 16 on AVX-512): the products h·C of each channel
 * (one vector of states) transposed into vectors of channels, then summed over the states in order as vectors
 * (v_transpose: the same sums, bit for bit, without the VW x VW scalar additions). */
static inline JB_KI void scan_block_few_transposed(const jb_scan_args *a, int64_t c) {
    const int64_t Di = a->d_inner;
    for (int64_t t = 0; t < a->n; t++) {
        const vf B = v_load(a->B + t * a->ldbc), C = v_load(a->C + t * a->ldbc);
        vf prod[VW];
        UNROLL for (int i = 0; i < VW; i++) {
            const int64_t ch = c + i;
            const vf dt = v_set1(a->delta[t * Di + ch]), u = v_set1(a->u[t * Di + ch]);
            float *h = a->state + ch * VW;
            const vf hs = v_add(v_mul(v_exp(v_mul(v_load(a->A + ch * VW), dt)), v_load(h)), v_mul(v_mul(dt, B), u));
            v_store(h, hs);
            prod[i] = v_mul(hs, C);
        }
        v_transpose(prod); /* prod[s]: state s of every channel */
        vf y = v_zero();
        UNROLL for (int s = 0; s < VW; s++)
            y = v_add(y, prod[s]);
        const vf u = v_load(a->u + t * Di + c);
        const vf yv = v_add(y, v_mul(u, v_load(a->D + c)));
        v_store(a->y + t * Di + c, v_mul(yv, v_silu(v_load(a->z + t * a->ldz + c))));
    }
}
#endif

/* The same channels and arithmetic for few tokens, with the state in its own layout: each channel's N states
 * are contiguous, so they are loaded and stored VW at a time (states in lanes) instead of transposed in and
 * out, which costs more than a decode token's arithmetic. Every state gets the operations scan_block gives
 * it (exp(A·dt)·h + (dt·B)·u, lane for lane), and y = 0 + h_0·C_0 + h_1·C_1 + ... is summed in state order,
 * so the results are bit-identical to scan_block's. */
static inline JB_KI void scan_block_few(const jb_scan_args *a, int64_t c, int nc) {
    const int64_t N = a->d_state, Di = a->d_inner;
    float prod[VW][MAX_STATE], y[VW];
#ifdef HAVE_V_TRANSPOSE
    if (N == VW && nc == VW) { /* one vector of states per channel: the sums as vectors of channels */
        scan_block_few_transposed(a, c);
        return;
    }
#endif
    for (int64_t t = 0; t < a->n; t++) {
        const float *B = a->B + t * a->ldbc, *C = a->C + t * a->ldbc;
        for (int i = 0; i < VW; i++)
            y[i] = 0.0f;
        for (int i = 0; i < nc; i++) {
            const int64_t ch = c + i;
            const vf dt = v_set1(a->delta[t * Di + ch]), u = v_set1(a->u[t * Di + ch]);
            float *h = a->state + ch * N;
            for (int64_t s = 0; s < N; s += VW) {
                const int ns = N - s < VW ? (int)(N - s) : VW;
                const vf A = load_n(a->A + ch * N + s, ns);
                const vf hs = v_add(v_mul(v_exp(v_mul(A, dt)), load_n(h + s, ns)),
                                    v_mul(v_mul(dt, load_n(B + s, ns)), u));
                store_n(h + s, hs, ns);
                store_n(prod[i] + s, v_mul(hs, load_n(C + s, ns)), ns);
            }
        }
        for (int64_t s = 0; s < N; s++) /* the channels' sums side by side: independent chains */
            for (int i = 0; i < nc; i++)
                y[i] += prod[i][s];
        const vf u = load_n(a->u + t * Di + c, nc);
        const vf yv = v_add(load_n(y, nc), v_mul(u, load_n(a->D + c, nc)));
        store_n(a->y + t * Di + c, v_mul(yv, v_silu(load_n(a->z + t * a->ldz + c, nc))), nc);
    }
}

static JB_K void scan(const jb_scan_args *a, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c += VW) {
        const int nc = c1 - c < VW ? (int)(c1 - c) : VW;
        if (a->n < FEW_TOKENS)
            scan_block_few(a, c, nc);
        else
            scan_block(a, c, nc);
    }
}

/* ---- elementwise ------------------------------------------------------------------------------------ */

static JB_K void silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i += VW) {
        const int nc = n - i < VW ? (int)(n - i) : VW;
        store_n(g + i, v_mul(v_silu(load_n(g + i, nc)), load_n(u + i, nc)), nc);
    }
}

static JB_K void softplus(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += VW) {
        const int nc = n - i < VW ? (int)(n - i) : VW;
        store_n(x + i, v_softplus(load_n(x + i, nc)), nc);
    }
}

static JB_K void neg_exp(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += VW) {
        const int nc = n - i < VW ? (int)(n - i) : VW;
        store_n(y + i, v_sub(v_zero(), v_exp(load_n(x + i, nc))), nc);
    }
}

/* ---- attention ------------------------------------------------------------------------------------ */

/* out[h][j] = q_h · k_j for nh ≤ ATTN_HEADS query rows q_h and the keys k_j = k + j·ld, j < nk ≤ 4: VW lanes
 * over d, zero-padded, pairwise sum (each key vector loaded once for every head). */
static inline JB_KI void dot4_heads(const float *const *q, int nh, const float *k, int64_t ld, int nk, int64_t dh,
                                    float out[][4]) {
    const float *kj[4];
    vf acc[ATTN_HEADS][4];
    UNROLL for (int j = 0; j < 4; j++) {
        kj[j] = k + (j < nk ? j : nk - 1) * ld;
        UNROLL for (int h = 0; h < nh; h++)
            acc[h][j] = v_zero();
    }
    for (int64_t d = 0; d < dh; d += VW) {
        const int nd = dh - d < VW ? (int)(dh - d) : VW;
        vf kv[4];
        UNROLL for (int j = 0; j < 4; j++)
            kv[j] = load_n(kj[j] + d, nd);
        UNROLL for (int h = 0; h < nh; h++) {
            const vf qv = load_n(q[h] + d, nd);
            UNROLL for (int j = 0; j < 4; j++)
                acc[h][j] = v_fma(qv, kv[j], acc[h][j]);
        }
    }
    UNROLL for (int h = 0; h < nh; h++)
        v_reduce4(acc[h][0], acc[h][1], acc[h][2], acc[h][3], out[h]);
}

/* jb_softmax's operations (base/numeric.h) with the set's exp: the maximum (NaN never raises it),
 * e^(p - max), their sum in double in index order, each divided by the sum. */
static inline JB_KI void softmax(float *p, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (p[i] > mx)
            mx = p[i];
    for (int64_t i = 0; i < n; i += VW) {
        const int nc = n - i < VW ? (int)(n - i) : VW;
        store_n(p + i, v_exp(v_sub(load_n(p + i, nc), v_set1(mx))), nc);
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += p[i];
    const vf total = v_set1((float)sum);
    for (int64_t i = 0; i < n; i += VW) {
        const int nc = n - i < VW ? (int)(n - i) : VW;
        store_n(p + i, v_div(load_n(p + i, nc), total), nc);
    }
}

/* o_h[d0 .. d0 + 4·VW) ∩ [0, d_h) = Σ_j p_h[j] v_j for nh ≤ ATTN_HEADS heads: each element summed in key order,
 * each value vector loaded once for every head. */
static inline JB_KI void weighted_sum_heads(float *const *o, const float *const *p, int nh, const float *v,
                                            int64_t ld, int64_t n_keys, int64_t d0, int64_t dh) {
    int nd[4];
    vf acc[ATTN_HEADS][4];
    UNROLL for (int c = 0; c < 4; c++) {
        const int64_t left = dh - d0 - c * VW;
        nd[c] = left <= 0 ? 0 : left < VW ? (int)left : VW;
        UNROLL for (int h = 0; h < nh; h++)
            acc[h][c] = v_zero();
    }
    for (int64_t j = 0; j < n_keys; j++) {
        vf pj[ATTN_HEADS];
        UNROLL for (int h = 0; h < nh; h++)
            pj[h] = v_set1(p[h][j]);
        const float *vj = v + j * ld + d0;
        UNROLL for (int c = 0; c < 4; c++)
            if (nd[c] > 0) {
                const vf vv = load_n(vj + c * VW, nd[c]);
                UNROLL for (int h = 0; h < nh; h++)
                    acc[h][c] = v_fma(pj[h], vv, acc[h][c]);
            }
    }
    UNROLL for (int h = 0; h < nh; h++)
        UNROLL for (int c = 0; c < 4; c++)
            if (nd[c] > 0)
                store_n(o[h] + d0 + c * VW, acc[h][c], nd[c]);
}

/* Query row `row` of heads [head0, head0 + nh) (nh ≤ ATTN_HEADS, all reading one KV head) against keys
 * [0, n_keys): scores / sqrt(d_h), softmax, Σ p_j v_j; head i's scores in score + i·(pos + n). nh is a
 * constant once inlined, so the loops over heads unroll and keep their accumulators in registers. */
static inline JB_KI void attend_heads(const jb_attn_args *a, int64_t row, int64_t head0, const int nh, float *score) {
    const int64_t dh = a->head_dim, kvh = head0 / (a->n_heads / a->n_kv_heads);
    const int64_t q_ld = a->n_heads * dh, kv_ld = a->n_kv_heads * dh, n_keys = a->pos + row + 1;
    const float *k = a->k + kvh * dh, *v = a->v + kvh * dh;
    const float *q[ATTN_HEADS];
    float *p[ATTN_HEADS], *o[ATTN_HEADS];
    for (int h = 0; h < nh; h++) {
        q[h] = a->q + row * q_ld + (head0 + h) * dh;
        p[h] = score + h * (a->pos + a->n);
        o[h] = a->out + row * q_ld + (head0 + h) * dh;
    }
    const float scale = sqrtf((float)dh);
    for (int64_t j = 0; j < n_keys; j += 4) {
        float s[ATTN_HEADS][4];
        const int nk = n_keys - j < 4 ? (int)(n_keys - j) : 4;
        dot4_heads(q, nh, k + j * kv_ld, kv_ld, nk, dh, s);
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < nk; i++)
                p[h][j + i] = s[h][i] / scale;
    }
    for (int h = 0; h < nh; h++)
        softmax(p[h], n_keys);
    for (int64_t d0 = 0; d0 < dh; d0 += 4 * VW) /* up to four independent chains of VW elements per head */
        weighted_sum_heads(o, (const float *const *)p, nh, v, kv_ld, n_keys, d0, dh);
}

static JB_K void attend(const jb_attn_args *a, int64_t row, int64_t head0, int nh, float *score) {
    switch (nh < ATTN_HEADS ? nh : ATTN_HEADS) {
    case 1:
        attend_heads(a, row, head0, 1, score);
        break;
#if ATTN_HEADS >= 2
    case 2:
        attend_heads(a, row, head0, 2, score);
        break;
#endif
#if ATTN_HEADS >= 3
    case 3:
        attend_heads(a, row, head0, 3, score);
        break;
#endif
#if ATTN_HEADS >= 4
    case 4:
        attend_heads(a, row, head0, 4, score);
        break;
#endif
    default:
        break;
    }
}

const jb_cpu_kernel_table KERNEL_TABLE = {KERNEL_SET, VW, ATTN_HEADS, gemm,   conv,   scan,     silu_mul,
                                          softplus,   neg_exp, attend, gemm_q8, Q8_OFFSET, gemm_b16};

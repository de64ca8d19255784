/*
 * test_attn_layout.c — the index arithmetic of the tensor-core attention kernels (cuda/attn_layout.h), checked
 * on the CPU: the fragment ownership of mma.m16n8k16 against this file's own transcription of the PTX ISA
 * tables (element-wise: a0..a7, b0..b3, c0..c3), and the kernels' ldmatrix addressing composed with an
 * emulation of ldmatrix and mma on integer matrices, so Q·Kᵀ and P·V come out exactly as the plain
 * products; then the GQA row packing, the flash block walk over segments, the causal tile rule, the
 * decode split rules, and the scratch of the split launches: the partials' places and the arrival counters
 * a CUDA context holds for every launch of several splits.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ckpt/config.h"
#include "cuda/attn_layout.h"
#include "cuda/ctx_layout.h"
#include "tests/support/testutil.h"

/* ---- the PTX ISA tables ("Matrix Fragments for mma.m16n8k16 with floating point type", .bf16) ---- */

static int isa_group(int lane) { return lane >> 2; }
static int isa_tig(int lane) { return lane % 4; }
/* A element a_i (i < 8; register i / 2, half i % 2) */
static int isa_a_row(int lane, int i) { return isa_group(lane) + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0); }
static int isa_a_col(int lane, int i) { return isa_tig(lane) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
/* B element b_i (i < 4; register i / 2) */
static int isa_b_row(int lane, int i) { return isa_tig(lane) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
static int isa_b_col(int lane) { return isa_group(lane); }
/* C element c_i (i < 4) */
static int isa_c_row(int lane, int i) { return isa_group(lane) + (i >= 2 ? 8 : 0); }
static int isa_c_col(int lane, int i) { return isa_tig(lane) * 2 + (i & 1); }

JB_TEST(attn_layout, fragments_match_the_isa) {
    for (int lane = 0; lane < 32; lane++) {
        for (int i = 0; i < 8; i++) {
            cr_assert_eq(jb_mma_a_row(lane, i / 2), isa_a_row(lane, i), "a%d lane %d", i, lane);
            cr_assert_eq(jb_mma_a_col(lane, i / 2, i % 2), isa_a_col(lane, i), "a%d lane %d", i, lane);
        }
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(jb_mma_b_row(lane, i / 2, i % 2), isa_b_row(lane, i), "b%d lane %d", i, lane);
            cr_assert_eq(jb_mma_b_col(lane), isa_b_col(lane));
            cr_assert_eq(jb_mma_c_row(lane, i), isa_c_row(lane, i), "c%d lane %d", i, lane);
            cr_assert_eq(jb_mma_c_col(lane, i), isa_c_col(lane, i), "c%d lane %d", i, lane);
        }
    }
    /* every element of A (16x16), B (16x8), C (16x8) is held by exactly one (lane, element) */
    int a[16][16] = {{0}}, b[16][8] = {{0}}, c[16][8] = {{0}};
    for (int lane = 0; lane < 32; lane++) {
        for (int i = 0; i < 8; i++)
            a[isa_a_row(lane, i)][isa_a_col(lane, i)]++;
        for (int i = 0; i < 4; i++) {
            b[isa_b_row(lane, i)][isa_b_col(lane)]++;
            c[isa_c_row(lane, i)][isa_c_col(lane, i)]++;
        }
    }
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 16; k++) {
            cr_assert_eq(a[r][k], 1);
            if (k < 8)
                cr_assert(b[r][k] == 1 && c[r][k] == 1);
        }
}

/* ---- emulation ---- */

enum { MAX_D = 128, LDS = MAX_D + 8, KEYS = JB_ATTN_TILE_KEYS };

/* A shared tile of floats with the kernels' row stride. */
typedef struct tile {
    float x[KEYS][LDS];
} smem_tile;

typedef int (*addr_fn)(int lane);

/* ldmatrix .x4 (PTX ISA): register j of `lane` from matrix j, whose row r is at the address lane 8j + r
 * gives (row_of, col_of relative to (r0, c0)); without .trans the lane gets row lane / 4, columns
 * 2 (lane % 4) + half; with .trans column lane / 4 of rows 2 (lane % 4) + half. */
static float ldsm(const smem_tile *t, int r0, int c0, addr_fn row_of, addr_fn col_of, bool trans, int lane, int j,
                  int half) {
    if (!trans) {
        const int p = 8 * j + lane / 4;
        return t->x[r0 + row_of(p)][c0 + col_of(p) + 2 * (lane % 4) + half];
    }
    const int p = 8 * j + 2 * (lane % 4) + half;
    return t->x[r0 + row_of(p)][c0 + col_of(p) + lane / 4];
}

/* c += a · b on fragments: a[lane][8] = a0..a7, b[lane][4] = b0..b3, c[lane][4], by the ISA tables. */
static void mma(float c[32][4], float a[32][8], float b[32][4]) {
    float A[16][16], B[16][8];
    for (int lane = 0; lane < 32; lane++) {
        for (int i = 0; i < 8; i++)
            A[isa_a_row(lane, i)][isa_a_col(lane, i)] = a[lane][i];
        for (int i = 0; i < 4; i++)
            B[isa_b_row(lane, i)][isa_b_col(lane)] = b[lane][i];
    }
    for (int lane = 0; lane < 32; lane++)
        for (int i = 0; i < 4; i++) {
            float s = 0;
            for (int k = 0; k < 16; k++)
                s += A[isa_c_row(lane, i)][k] * B[k][isa_c_col(lane, i)];
            c[lane][i] += s;
        }
}

static int q_row(int lane) { return jb_ldsm_a_row(lane); }
static int q_col(int lane) { return jb_ldsm_a_col(lane); }
static int k_row(int lane) { return jb_ldsm_k_row(lane); }
static int k_col(int lane) { return jb_ldsm_k_col(lane); }
static int v_row(int lane) { return jb_ldsm_v_row(lane); }
static int v_col(int lane) { return jb_ldsm_v_col(lane); }

static void fill(smem_tile *t, uint64_t *seed) {
    for (int r = 0; r < KEYS; r++)
        for (int c = 0; c < LDS; c++) {
            *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
            t->x[r][c] = (float)((int)(*seed >> 60) - 8); /* small integers: the products are exact */
        }
}

/* One warp's Q·Kᵀ over keys kw .. kw + 8 nt of the K tile, as attn_tile_step addresses it, against the
 * plain product; then P·V from the score registers against the plain product. */
static void check_warp_tile(int D, int kw, int nt, int q0, uint64_t seed) {
    static smem_tile Q, K, V;
    fill(&Q, &seed), fill(&K, &seed), fill(&V, &seed);
    /* Q fragments of the warp's 16 rows at q0, all k-steps: qf[k][lane][a_i] */
    static float qf[MAX_D / 16][32][8];
    for (int k = 0; k < D / 16; k++)
        for (int lane = 0; lane < 32; lane++)
            for (int reg = 0; reg < 4; reg++)
                for (int h = 0; h < 2; h++)
                    qf[k][lane][2 * reg + h] = ldsm(&Q, q0, k * 16, q_row, q_col, false, lane, reg, h);
    float s[8][32][4];
    memset(s, 0, sizeof s);
    for (int j = 0; j < nt; j++)
        for (int k = 0; k < D; k += 32) {
            float b[2][32][4];
            for (int lane = 0; lane < 32; lane++)
                for (int reg = 0; reg < 4; reg++)
                    for (int h = 0; h < 2; h++)
                        b[reg / 2][lane][2 * (reg % 2) + h] =
                            ldsm(&K, kw + j * 8, k, k_row, k_col, false, lane, reg, h);
            mma(s[j], qf[k / 16], b[0]);
            mma(s[j], qf[k / 16 + 1], b[1]);
        }
    for (int j = 0; j < nt; j++)
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++) {
                const int row = q0 + jb_mma_c_row(lane, i), key = kw + j * 8 + jb_mma_c_col(lane, i);
                float want = 0;
                for (int d = 0; d < D; d++)
                    want += Q.x[row][d] * K.x[key][d];
                cr_assert_eq(s[j][lane][i], want, "D %d kw %d score (%d, %d)", D, kw, row, key);
            }
    /* P·V with P = the score registers (values of the 16 x 8nt score block) */
    float o[MAX_D / 8][32][4];
    memset(o, 0, sizeof o);
    for (int t = 0; t < nt / 2; t++) {
        float a[32][8];
        for (int lane = 0; lane < 32; lane++)
            for (int reg = 0; reg < 4; reg++)
                for (int h = 0; h < 2; h++)
                    a[lane][2 * reg + h] = s[2 * t + jb_p_from_s_tile(reg)][lane][jb_p_from_s_index(reg, h)];
        for (int n = 0; n < D / 8; n += 2) {
            float b[2][32][4];
            for (int lane = 0; lane < 32; lane++)
                for (int reg = 0; reg < 4; reg++)
                    for (int h = 0; h < 2; h++)
                        b[reg / 2][lane][2 * (reg % 2) + h] =
                            ldsm(&V, kw + t * 16, n * 8, v_row, v_col, true, lane, reg, h);
            mma(o[n], a, b[0]);
            mma(o[n + 1], a, b[1]);
        }
    }
    for (int n = 0; n < D / 8; n++)
        for (int lane = 0; lane < 32; lane++)
            for (int i = 0; i < 4; i++) {
                const int row = q0 + jb_mma_c_row(lane, i), dim = n * 8 + jb_mma_c_col(lane, i);
                float want = 0;
                for (int key = kw; key < kw + 8 * nt; key++) {
                    float score = 0;
                    for (int d = 0; d < D; d++)
                        score += Q.x[row][d] * K.x[key][d];
                    want += score * V.x[key][dim];
                }
                cr_assert_eq(o[n][lane][i], want, "D %d kw %d output (%d, %d)", D, kw, row, dim);
            }
}

JB_TEST(attn_layout, flash_warp_products) {
    /* prefill: a warp's own 16 rows (rows 16..31 of the Q tile) against all 64 keys */
    check_warp_tile(128, 0, 8, 16, 1);
    check_warp_tile(64, 0, 8, 48, 2);
}

JB_TEST(attn_layout, decode_warp_products) {
    /* decode: rows 0..15 (the heads), each warp its 16 keys of the tile */
    for (int w = 0; w < 4; w++) {
        check_warp_tile(128, 16 * w, 2, 0, 3 + (uint64_t)w);
        check_warp_tile(64, 16 * w, 2, 0, 7 + (uint64_t)w);
    }
}

/* ---- tile-level rules ---- */

JB_TEST(attn_layout, gqa_rows_cover_every_query_head_once) {
    static const int64_t groups[] = {1, 2, 3, 4, 6, 8, 16, 64, 100};
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
        const int hpb = jb_attn_heads_per_block(groups[gi], JB_ATTN_BLOCK_ROWS);
        cr_assert(hpb >= 1 && hpb <= JB_ATTN_BLOCK_ROWS && hpb <= groups[gi]);
        const int queries = JB_ATTN_BLOCK_ROWS / hpb;
        int seen[64][64] = {{0}};
        for (int row = 0; row < queries * hpb; row++) {
            const int q = jb_attn_row_query(row, hpb), g = jb_attn_row_head(row, hpb);
            cr_assert(q < queries && g < hpb, "group %lld row %d", (long long)groups[gi], row);
            seen[q][g]++;
        }
        for (int q = 0; q < queries; q++)
            for (int g = 0; g < hpb; g++)
                cr_assert_eq(seen[q][g], 1);
        /* rows past queries * hpb map past the block's queries, so the kernel treats them as padding */
        for (int row = queries * hpb; row < JB_ATTN_BLOCK_ROWS; row++)
            cr_assert(jb_attn_row_query(row, hpb) >= queries);
    }
}

JB_TEST(attn_layout, flash_blocks_walk_every_tile_once) {
    uint64_t seed = 5;
    for (int trial = 0; trial < 200; trial++) {
        jb_cuda_seg segs[6];
        int64_t n_segs = 1 + trial % 6, T = 0;
        for (int64_t i = 0; i < n_segs; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            segs[i] = (jb_cuda_seg){.pos = (int64_t)(seed >> 50), .n = 1 + (int64_t)((seed >> 20) % 300), .row = T};
            T += segs[i].n;
        }
        const int64_t queries = JB_ATTN_BLOCK_ROWS / jb_attn_heads_per_block(1 + trial % 9, JB_ATTN_BLOCK_ROWS);
        const int64_t launched = T / queries + n_segs; /* the launch bound of cuda/attn_flash.cu */
        int64_t expect_seg = 0, expect_tile = 0, blocks = 0;
        for (int64_t b = 0; b < launched; b++) {
            int64_t tile;
            const int64_t si = jb_attn_block_segment(segs, n_segs, b, queries, &tile);
            if (si == n_segs)
                continue;
            cr_assert(si == expect_seg && tile == expect_tile, "block %lld", (long long)b);
            cr_assert(tile * queries < segs[si].n);
            blocks++;
            if (++expect_tile * queries >= segs[si].n)
                expect_seg++, expect_tile = 0;
        }
        cr_assert_eq(expect_seg, n_segs, "every tile of every segment has a block within the launch");
        (void)blocks;
    }
}

JB_TEST(attn_layout, unmasked_tiles_are_fully_visible) {
    for (int64_t first = 0; first < 300; first += 7) /* a block whose first query sits at `first` */
        for (int64_t key0 = 0; key0 <= first + 64; key0 += JB_ATTN_TILE_KEYS) {
            const int64_t mask_from = first + 1;
            if (!jb_attn_tile_masked(key0, mask_from))
                cr_assert(key0 + JB_ATTN_TILE_KEYS - 1 < mask_from, "key0 %lld first %lld", (long long)key0,
                          (long long)first);
            else
                cr_assert(key0 + JB_ATTN_TILE_KEYS - 1 >= mask_from);
        }
}

JB_TEST(attn_layout, decode_splits_follow_the_length) {
    for (int64_t n = 1; n < 70000; n = n * 3 / 2 + 1)
        for (int64_t max = 1; max <= 80; max += 7)
            for (int64_t min_len = 0; min_len <= 512; min_len += 256) {
                const int64_t len = jb_attn_split_len(n, max, min_len), used = jb_attn_splits_used(n, len);
                cr_assert(len % JB_ATTN_TILE_KEYS == 0 && len > 0);
                cr_assert(used >= 1 && used <= max, "n %lld max %lld: %lld splits", (long long)n, (long long)max,
                          (long long)used);
                cr_assert(used * len >= n && (used - 1) * len < n, "every used split has keys");
                if (min_len > 0 && n >= min_len)
                    cr_assert(len >= min_len, "n %lld: %lld keys per split", (long long)n, (long long)len);
            }
    /* a 4K row at Jamba-Mini width on 132 SMs: 16 splits of 256; 256K: every split the launch allows */
    const int32_t max = jb_attn_max_splits(1, 8, 132, 262144, 256, 4096);
    cr_assert_eq(max, (3 * 132 + 7) / 8);
    cr_assert_eq(jb_attn_splits_used(4096, jb_attn_split_len(4096, max, 256)), 16);
    cr_assert_eq(jb_attn_splits_used(262144, jb_attn_split_len(262144, max, 256)), max);
    cr_assert_eq(jb_attn_splits_used(1, jb_attn_split_len(1, max, 256)), 1);
    /* the bounds: the partial budget per row, and the context */
    cr_assert_eq(jb_attn_max_splits(1024, 8, 132, 262144, 256, 4096), 1);
    cr_assert_eq(jb_attn_max_splits(1, 1, 132, 1000, 256, 4096), 4);
    cr_assert_eq(jb_attn_max_splits(64, 1, 132, 1 << 20, 256, 4096), 7);
}

/* The items of a split launch (its grid y): every query head in exactly one (KV head, group) item. */
JB_TEST(attn_layout, split_items_cover_the_heads) {
    for (int64_t n_kv = 1; n_kv <= 8; n_kv++)
        for (int64_t group = 1; group <= 40; group++)
            for (int64_t hpb = 8; hpb <= 16; hpb += 8) {
                const int64_t n_h = n_kv * group, items = jb_attn_kv_blocks(n_h, n_kv, hpb);
                const int64_t per_kv = items / n_kv;
                cr_assert_eq(items % n_kv, 0);
                cr_assert(per_kv * hpb >= group && (per_kv - 1) * hpb < group, "group %lld hpb %lld: %lld items",
                          (long long)group, (long long)hpb, (long long)per_kv);
                cr_assert_leq(items, n_h, "at most one item per query head");
            }
}

/* Partials [T, n_heads, max_splits, D + 2]: each split's run of D + 2 floats follows the previous one. */
JB_TEST(attn_layout, partials_are_dense_and_disjoint) {
    const int64_t T = 3, n_h = 5, S = 7, D = 20;
    int64_t expect = 0;
    for (int64_t r = 0; r < T; r++)
        for (int64_t h = 0; h < n_h; h++)
            for (int64_t sp = 0; sp < S; sp++, expect += D + 2)
                cr_assert_eq(jb_attn_partial_at(r, n_h, h, S, sp, D), expect);
}

/* Every launch of two splits or more that the forward pass makes (jb_attn_max_splits at any row count,
 * SM count and context) finds an arrival counter per item in a context of each model, on either split path
 * (16 or 8 query heads per item). */
JB_TEST(attn_layout, contexts_hold_the_split_counters) {
    static const char *models[] = {"jamba-1.5-mini", "jamba-1.5-large", "jamba-v0.1"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/models/configs/%s", JB_SOURCE_DIR, models[i]);
        jamba_config c;
        jamba_error err = {0};
        cr_assert_eq(jb_config_load(dir, &c, NULL, &err), JAMBA_OK, "%s", err.message);
        const jb_ctx_shape shape = {.S = 1, .C = 262144, .Tb = 4096, .cap = 1, .dt = JAMBA_DTYPE_BF16,
                                    .kv_dt = JAMBA_DTYPE_BF16};
        jb_ctx_layout L;
        cr_assert_eq(jb_ctx_layout_plan(&c, &shape, &L, &err), JAMBA_OK, "%s", err.message);
        cr_assert_eq(L.bytes[JB_BUF_SPLIT_COUNT], (uint64_t)L.split_counters * 4);
        const int64_t n_h = c.num_attention_heads, n_kv = c.num_key_value_heads;
        for (int64_t sms = 1; sms <= 1024; sms *= 4)
            for (int64_t T = 1; T <= shape.Tb; T++) {
                const int32_t n = jb_attn_max_splits(T, n_kv, sms, shape.C, JB_CUDA_MIN_SPLIT_LEN, JB_CUDA_SPLIT_BUDGET);
                if (n < 2)
                    continue;
                cr_assert_leq(T * n_h * n * (c.head_dim + 2), L.partial_floats, "%s T %lld", models[i], (long long)T);
                for (int64_t hpb = 8; hpb <= 16; hpb += 8)
                    cr_assert_leq(T * jb_attn_kv_blocks(n_h, n_kv, hpb), L.split_counters, "%s T %lld, %lld SMs",
                                  models[i], (long long)T, (long long)sms);
            }
    }
}

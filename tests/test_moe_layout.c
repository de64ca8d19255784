/*
 * test_moe_layout.c — the index and bit arithmetic of the int8 expert kernels (cuda/moe_layout.h), checked
 * on the CPU where no GPU is needed: the exact int8 -> bf16 / fp32 encodings, the expert and M-tile lookups
 * over a dispatch plan, the shared-memory swizzles (every chunk once, no bank conflicts), and one whole
 * stage of the w8a16 tile executed by an emulation of mma.m16n8k16 that follows the PTX ISA's fragment
 * layouts, against the plain product.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/moe_layout.h"
#include "support/testutil.h"

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static float bf16_value(uint16_t bits) {
    const uint32_t u = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t bf16_bits_of(float f) { /* exact for the small integers used here */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static float f32_value(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

JB_TEST(moe_layout, prmt_follows_the_ptx_definition) {
    /* a selector nibble picks byte n of {y:x}: x bytes 0-3, y bytes 4-7 */
    const uint32_t x = 0x33221100u, y = 0x77665544u;
    cr_assert_eq(jb_moe_prmt(x, y, 0x3210u), x);
    cr_assert_eq(jb_moe_prmt(x, y, 0x7654u), y);
    cr_assert_eq(jb_moe_prmt(x, y, 0x0415u), 0x00441155u);
}

JB_TEST(moe_layout, int8_pairs_widen_to_bf16_exactly) {
    for (int lo = 0; lo < 256; lo++)
        for (int hi = 0; hi < 256; hi++)
            for (int pair = 0; pair < 2; pair++) {
                const uint32_t word = pair ? (uint32_t)lo << 16 | (uint32_t)hi << 24 | 0x5aa5u
                                           : (uint32_t)lo | (uint32_t)hi << 8 | 0xa55a0000u;
                uint32_t m, s;
                jb_moe_i8x2_bf16_parts(word, pair, &m, &s);
                /* both halves: minuend and subtrahend are exact bf16 values; their difference is the int8 */
                const float d_lo = bf16_value((uint16_t)m) - bf16_value((uint16_t)s);
                const float d_hi = bf16_value((uint16_t)(m >> 16)) - bf16_value((uint16_t)(s >> 16));
                cr_assert_eq(d_lo, (float)(int8_t)lo, "byte %d (pair %d): %g", lo, pair, (double)d_lo);
                cr_assert_eq(d_hi, (float)(int8_t)hi, "byte %d (pair %d): %g", hi, pair, (double)d_hi);
                /* minuends in [128, 256), where bf16 steps by 1: the device's bf16 subtraction is exact */
                cr_assert(bf16_value((uint16_t)m) >= 128.0f && bf16_value((uint16_t)(m >> 16)) < 256.0f);
            }
}

JB_TEST(moe_layout, int8_bytes_widen_to_f32_exactly) {
    uint64_t r = 7;
    for (int it = 0; it < 4096; it++) {
        const uint32_t word = (uint32_t)rng_next(&r);
        for (int i = 0; i < 4; i++) {
            const float v = f32_value(jb_moe_i8_f32_bits(word ^ 0x80808080u, i)) - JB_MOE_F32_BIAS;
            cr_assert_eq(v, (float)(int8_t)(word >> (8 * i)), "word %08x byte %d: %g", word, i, (double)v);
        }
    }
}

JB_TEST(moe_layout, nth_set_bit) {
    uint64_t r = 11;
    for (int it = 0; it < 2000; it++) {
        const uint32_t m = (uint32_t)rng_next(&r) & (uint32_t)rng_next(&r);
        int seen = 0;
        for (int b = 0; b < 32; b++)
            if (m >> b & 1u)
                cr_assert_eq(jb_moe_nth_set_bit(m, seen++), b);
        cr_assert_eq(jb_moe_nth_set_bit(m, seen), -1);
    }
}

/* Every slot of a plan lies in exactly one M tile, tiles stay inside one expert, in plan order, and
 * their count is within the grid bound; empty experts and a single full expert included. */
JB_TEST(moe_layout, m_tiles_cover_the_plan) {
    uint64_t r = 5;
    for (int it = 0; it < 300; it++) {
        const int64_t E = 1 + (int64_t)(rng_next(&r) % 20), bm = it % 3 == 0 ? 64 : 1 + (int64_t)(rng_next(&r) % 9);
        int32_t begin[21];
        begin[0] = 0;
        const int64_t full = it % 7 == 0 ? (int64_t)(rng_next(&r) % (uint64_t)E) : -1;
        for (int64_t e = 0; e < E; e++) {
            const int64_t n = full >= 0 ? (e == full ? 1 + (int64_t)(rng_next(&r) % 300) : 0)
                                        : (rng_next(&r) % 3 == 0 ? 0 : (int64_t)(rng_next(&r) % 150));
            begin[e + 1] = begin[e] + (int32_t)n;
        }
        const int64_t slots = begin[E];
        int64_t next = 0, tile = 0, expert, m0, m_end;
        while (jb_moe_tile_of(begin, E, bm, tile, &expert, &m0, &m_end)) {
            cr_assert_eq(m0, next, "tile %lld starts at %lld, not %lld", (long long)tile, (long long)m0, (long long)next);
            cr_assert(m_end > m0 && m_end - m0 <= bm && m0 >= begin[expert] && m_end <= begin[expert + 1]);
            next = m_end;
            tile++;
        }
        cr_assert_eq(next, slots);
        cr_assert(tile <= jb_moe_tiles_bound(slots, E, bm), "%lld tiles > bound %lld", (long long)tile,
                  (long long)jb_moe_tiles_bound(slots, E, bm));
    }
}

/* The block order: every (M tile, N tile) once over the grid, M tiles in groups of GROUP_M. */
JB_TEST(moe_layout, block_order_covers_every_tile_once) {
    for (int64_t m_tiles = 1; m_tiles <= 40; m_tiles += 3)
        for (int64_t n_tiles = 1; n_tiles <= 37; n_tiles += 4) {
            int *seen = calloc((size_t)(m_tiles * n_tiles), sizeof *seen);
            for (int64_t L = 0; L < m_tiles * n_tiles; L++) {
                int64_t mt, nt;
                jb_w8_block_tiles(L, m_tiles, n_tiles, &mt, &nt);
                cr_assert(mt >= 0 && mt < m_tiles && nt >= 0 && nt < n_tiles, "L=%lld: (%lld, %lld)", (long long)L,
                          (long long)mt, (long long)nt);
                cr_assert_eq(mt / JB_W8_GROUP_M, L / (JB_W8_GROUP_M * n_tiles)); /* its group */
                seen[mt * n_tiles + nt]++;
            }
            for (int64_t i = 0; i < m_tiles * n_tiles; i++)
                cr_assert_eq(seen[i], 1);
            free(seen);
        }
}

/* The SwiGLU pairing: over all blocks, every gate row and every up row of N = 2I is loaded exactly once,
 * and tile rows r and r + BN/2 hold gate row j and up row I + j. Plain: rows n0 + r. */
JB_TEST(moe_layout, weight_rows_pair_gate_and_up) {
    for (int64_t I = 1; I <= 200; I += 13) {
        const int64_t N = 2 * I;
        int *seen = calloc((size_t)N, sizeof *seen);
        for (int64_t n0 = 0; n0 < I; n0 += JB_W8_BN / 2)
            for (int r = 0; r < JB_W8_BN; r++) {
                bool valid;
                const int64_t row = jb_w8_weight_row(n0, r, true, N, &valid);
                if (!valid)
                    continue;
                cr_assert(row >= 0 && row < N);
                seen[row]++;
                if (r < JB_W8_BN / 2) {
                    bool v2;
                    cr_assert_eq(jb_w8_weight_row(n0, r + JB_W8_BN / 2, true, N, &v2), I + row);
                    cr_assert(v2);
                }
            }
        for (int64_t n = 0; n < N; n++)
            cr_assert_eq(seen[n], 1, "I=%lld row %lld loaded %d times", (long long)I, (long long)n, seen[n]);
        free(seen);
        bool valid;
        cr_assert_eq(jb_w8_weight_row(128, 5, false, 140, &valid), 133);
        cr_assert(valid);
        jb_w8_weight_row(128, 12, false, 140, &valid);
        cr_assert(!valid);
    }
}

/* The 4-byte words one phase of lanes touches must sit in distinct banks unless they are the same word. */
static void expect_no_bank_conflict(const int *byte_addr, int lanes, int width, const char *what) {
    const int per_phase = 128 / width; /* 128-byte wavefronts: 8 lanes of 16 B, 16 of 8 B, 32 of 4 B */
    for (int p0 = 0; p0 < lanes; p0 += per_phase) {
        int bank_word[32];
        for (int b = 0; b < 32; b++)
            bank_word[b] = -1;
        for (int l = p0; l < p0 + per_phase && l < lanes; l++)
            for (int w = 0; w < width / 4; w++) {
                const int word = byte_addr[l] / 4 + w, bank = word % 32;
                cr_assert(bank_word[bank] < 0 || bank_word[bank] == word, "%s: lanes %d.. conflict on bank %d", what,
                          p0, bank);
                bank_word[bank] = word;
            }
    }
}

JB_TEST(moe_layout, shared_memory_access_is_conflict_free) {
    int addr[32];
    for (int warp = 0; warp < JB_W8_WARPS; warp++) {
        for (int h = 0; h < 2; h++) {
            for (int mt = 0; mt < 4; mt++)
                for (int upper = 0; upper < 2; upper++) {
                    for (int l = 0; l < 32; l++)
                        addr[l] = 16 * jb_w8_a_frag_chunk(mt, upper, h, l);
                    expect_no_bank_conflict(addr, 32, 16, "A fragments");
                }
            for (int i = 0; i < 4; i++) {
                for (int l = 0; l < 32; l++)
                    addr[l] = jb_w8_b_frag_byte(warp, i, h, l);
                expect_no_bank_conflict(addr, 32, 8, "B fragments");
            }
        }
        for (int i = 0; i < 4; i++) { /* the cp.async writes of this warp's threads */
            for (int l = 0; l < 32; l++)
                addr[l] = 16 * jb_w8_x_chunk(jb_w8_x_load_row(32 * warp + l, i), jb_w8_x_load_chunk(32 * warp + l));
            expect_no_bank_conflict(addr, 32, 16, "X stores");
            for (int l = 0; l < 32; l++)
                addr[l] = 16 * jb_w8_w_chunk(jb_w8_w_load_row(32 * warp + l, i), jb_w8_w_load_chunk(32 * warp + l));
            expect_no_bank_conflict(addr, 32, 16, "W stores");
        }
    }
}

/* One stage of the block, end to end: the threads' cp.async copies into the swizzled stage, the
 * fragment reads, the int8 widening, mma.m16n8k16 executed by the ISA's rules (A[m][k] from lane
 * (m % 8) * 4 + (k % 8) / 2, register (m >= 8) + 2 (k >= 8), half k % 2; B[k][n] from lane n * 4 + (k % 8) / 2,
 * register k >= 8; D[m][n] to lane (m % 8) * 4 + n / 2, c (m >= 8) * 2 + n % 2), and the epilogue's
 * coordinates: every output of the 64 x 128 tile once, equal to the plain product over the 64 k. */
JB_TEST(moe_layout, emulated_stage_equals_the_plain_product) {
    enum { BM = JB_W8_BM, BN = JB_W8_BN, BK = JB_W8_BK };
    static uint16_t X[BM][BK];
    static int8_t W[BN][BK];
    static uint8_t xs[BM * BK * 2], ws[BN * BK];
    static int x_written[BM * 8], w_written[BN * 4];
    static double acc[JB_W8_WARPS][4][4][32][4]; /* [warp][mt][i][lane][c] */
    static int covered[BM][BN];
    uint64_t r = 99;
    for (int m = 0; m < BM; m++)
        for (int k = 0; k < BK; k++) /* small integers: the products and sums are exact */
            X[m][k] = bf16_bits_of((float)((int)(rng_next(&r) % 17) - 8));
    for (int n = 0; n < BN; n++)
        for (int k = 0; k < BK; k++)
            W[n][k] = (int8_t)rng_next(&r);
    memset(x_written, 0, sizeof x_written), memset(w_written, 0, sizeof w_written);
    for (int tid = 0; tid < JB_W8_WARPS * 32; tid++)
        for (int i = 0; i < 4; i++) {
            const int xr = jb_w8_x_load_row(tid, i), xc = jb_w8_x_load_chunk(tid);
            const int wr = jb_w8_w_load_row(tid, i), wc = jb_w8_w_load_chunk(tid);
            memcpy(xs + 16 * jb_w8_x_chunk(xr, xc), &X[xr][8 * xc], 16);
            memcpy(ws + 16 * jb_w8_w_chunk(wr, wc), &W[wr][16 * wc], 16);
            x_written[jb_w8_x_chunk(xr, xc)]++, w_written[jb_w8_w_chunk(wr, wc)]++;
        }
    for (int q = 0; q < BM * 8; q++)
        cr_assert_eq(x_written[q], 1, "X chunk %d written %d times", q, x_written[q]);
    for (int q = 0; q < BN * 4; q++)
        cr_assert_eq(w_written[q], 1, "W chunk %d written %d times", q, w_written[q]);

    memset(acc, 0, sizeof acc);
    for (int warp = 0; warp < JB_W8_WARPS; warp++)
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 2; s++) {
                /* the fragments each lane holds, as the kernel builds them */
                float a[4][32][4][2], b[4][32][2][2]; /* A: [mt][lane][reg][half]; B: [i][lane][reg][half] */
                for (int l = 0; l < 32; l++) {
                    for (int mt = 0; mt < 4; mt++)
                        for (int reg = 0; reg < 4; reg++) {
                            uint32_t word;
                            memcpy(&word, xs + 16 * jb_w8_a_frag_chunk(mt, reg & 1, h, l) + 4 * (2 * s + (reg >> 1)), 4);
                            a[mt][l][reg][0] = bf16_value((uint16_t)word);
                            a[mt][l][reg][1] = bf16_value((uint16_t)(word >> 16));
                        }
                    for (int i = 0; i < 4; i++) {
                        uint32_t word;
                        memcpy(&word, ws + jb_w8_b_frag_byte(warp, i, h, l) + 4 * s, 4);
                        for (int reg = 0; reg < 2; reg++) {
                            uint32_t mn, sb;
                            jb_moe_i8x2_bf16_parts(word, reg, &mn, &sb);
                            b[i][l][reg][0] = bf16_value((uint16_t)mn) - bf16_value((uint16_t)sb);
                            b[i][l][reg][1] = bf16_value((uint16_t)(mn >> 16)) - bf16_value((uint16_t)(sb >> 16));
                        }
                    }
                }
                /* mma.m16n8k16 by the ISA */
                for (int mt = 0; mt < 4; mt++)
                    for (int i = 0; i < 4; i++)
                        for (int m = 0; m < 16; m++)
                            for (int n = 0; n < 8; n++) {
                                double d = 0;
                                for (int k = 0; k < 16; k++)
                                    d += (double)a[mt][(m % 8) * 4 + (k % 8) / 2][(m >= 8) + 2 * (k >= 8)][k % 2] *
                                         b[i][n * 4 + (k % 8) / 2][k >= 8][k % 2];
                                acc[warp][mt][i][(m % 8) * 4 + n / 2][(m >= 8) * 2 + n % 2] += d;
                            }
            }
    memset(covered, 0, sizeof covered);
    for (int warp = 0; warp < JB_W8_WARPS; warp++)
        for (int mt = 0; mt < 4; mt++)
            for (int i = 0; i < 4; i++)
                for (int l = 0; l < 32; l++)
                    for (int c = 0; c < 4; c++) {
                        const int m = jb_w8_acc_row(mt, c, l), n = jb_w8_acc_col(warp, i, c, l);
                        cr_assert(m >= 0 && m < BM && n >= 0 && n < BN);
                        covered[m][n]++;
                        double want = 0;
                        for (int k = 0; k < BK; k++)
                            want += (double)bf16_value(X[m][k]) * W[n][k];
                        cr_assert_eq(acc[warp][mt][i][l][c], want, "row %d column %d: %g, want %g", m, n,
                                     acc[warp][mt][i][l][c], want);
                    }
    for (int m = 0; m < BM; m++)
        for (int n = 0; n < BN; n++)
            cr_assert_eq(covered[m][n], 1, "output (%d, %d) written %d times", m, n, covered[m][n]);
}

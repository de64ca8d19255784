/*
 * test_step_plan.c — the host side of the CUDA backend that runs without a GPU: how a step's rows map to
 * segments and how long segments split into scan chunks with summary slots (cuda/step_plan.c). Every
 * invariant the scan kernels rely on is checked over many random layouts.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "cuda/step_plan.h"
#include "tests/support/testutil.h"

JB_TEST(step_plan, chunk_length_rules) {
    /* enough lanes per row already: one chunk per segment */
    cr_assert_eq(jb_scan_chunk_len(32768, 8192 * 16, 132 * 1024, 64, 32), 32768);
    /* few lanes: chunks multiply the parallelism, never shorter than min_len */
    int64_t len = jb_scan_chunk_len(4096, 1024, 132 * 1024, 64, 32);
    cr_assert_eq(len, 4096 / 64, "the slot budget bounds the chunk count (got %lld)", (long long)len);
    cr_assert_eq(jb_scan_chunk_len(100, 64, 1 << 20, 64, 32), 32);
    cr_assert_eq(jb_scan_chunk_len(10, 64, 1 << 20, 64, 32), 10, "never longer than T");
    cr_assert_eq(jb_scan_chunk_len(1, 64, 1 << 20, 64, 32), 1);
    /* the slot budget: T / len <= max_slots */
    for (int64_t T = 1; T < 5000; T += 97) {
        int64_t l = jb_scan_chunk_len(T, 16, 1 << 20, 8, 1);
        cr_assert(T / l <= 8, "T %lld len %lld", (long long)T, (long long)l);
    }
}

/* Check one plan against its segments: every invariant cuda/scan.cu and the row kernels use. */
static void check_plan(const jb_step_plan *p, const jb_segment *segs, int64_t n_segs, int64_t chunk_len,
                       int64_t max_slots_bound) {
    int64_t T = 0, slots = 0;
    for (int64_t s = 0; s < n_segs; s++)
        T += segs[s].n;
    cr_assert_eq(p->T, T);
    cr_assert_eq(p->n_segs, n_segs);
    cr_assert_leq(p->n_chunks, jb_step_plan_max_chunks(T, n_segs, chunk_len));
    cr_assert_leq(p->n_slots, max_slots_bound);
    int64_t c = 0;
    for (int64_t s = 0; s < n_segs; s++) {
        const jb_cuda_seg *g = &p->segs[s];
        cr_assert_eq(g->seq, segs[s].seq);
        cr_assert_eq(g->pos, segs[s].pos);
        cr_assert_eq(g->row, segs[s].row);
        for (int64_t r = g->row; r < g->row + g->n; r++)
            cr_assert_eq(p->row_seg[r], s);
        /* the segment's chunks are consecutive, tile its rows in order, and chain through its slots */
        int64_t k = (g->n + chunk_len - 1) / chunk_len, next_row = g->row;
        cr_assert_eq(g->n_slots, k - 1);
        cr_assert_eq(g->slot0, k > 1 ? slots : -1);
        for (int64_t j = 0; j < k; j++, c++) {
            const jb_cuda_chunk *ch = &p->chunks[c];
            cr_assert_eq(ch->seg, s);
            cr_assert_eq(ch->r0, next_row);
            cr_assert(ch->r1 > ch->r0 && ch->r1 - ch->r0 <= chunk_len);
            next_row = ch->r1;
            cr_assert_eq(ch->slot_in, j == 0 ? -1 : g->slot0 + j - 1);
            cr_assert_eq(ch->slot_out, j == k - 1 ? -1 : g->slot0 + j);
        }
        cr_assert_eq(next_row, g->row + g->n);
        slots += k - 1;
    }
    cr_assert_eq(c, p->n_chunks);
    cr_assert_eq(slots, p->n_slots);
}

JB_TEST(step_plan, random_layouts_keep_every_invariant) {
    srand(7);
    enum { MAX_SEGS = 12, MAX_T = 600 };
    jb_segment segs[MAX_SEGS];
    int32_t row_seg[MAX_T];
    jb_cuda_seg gsegs[MAX_SEGS];
    jb_cuda_chunk chunks[MAX_SEGS + MAX_T];
    for (int trial = 0; trial < 500; trial++) {
        int64_t n_segs = 1 + rand() % MAX_SEGS, row = 0;
        for (int64_t s = 0; s < n_segs; s++) {
            int64_t n = 1 + rand() % (s == 0 ? 300 : 25);
            if (row + n > MAX_T)
                n = MAX_T - row > 0 ? MAX_T - row : 0;
            if (n == 0) {
                n_segs = s;
                break;
            }
            segs[s] = (jb_segment){.seq = (int32_t)(s * 3 + 1), .pos = rand() % 1000, .n = n, .row = row};
            row += n;
        }
        int64_t max_slots = 1 + rand() % 16;
        int64_t len = jb_scan_chunk_len(row, 1 + rand() % 64, 4096, max_slots, 1 + rand() % 8);
        jb_step_plan p = {row_seg, gsegs, chunks, 0, 0, 0, 0, 0};
        jb_step_plan_build(&p, segs, n_segs, len);
        check_plan(&p, segs, n_segs, len, max_slots);
    }
}

JB_TEST(step_plan, decode_steps_are_one_chunk_per_sequence) {
    jb_segment segs[4];
    for (int s = 0; s < 4; s++)
        segs[s] = (jb_segment){.seq = 3 - s, .pos = 100 * s, .n = 1, .row = s};
    int32_t row_seg[4];
    jb_cuda_seg gsegs[4];
    jb_cuda_chunk chunks[8];
    jb_step_plan p = {row_seg, gsegs, chunks, 0, 0, 0, 0, 0};
    jb_step_plan_build(&p, segs, 4, jb_scan_chunk_len(4, 16, 1 << 20, 64, 32));
    cr_assert_eq(p.n_chunks, 4);
    cr_assert_eq(p.n_slots, 0);
    cr_assert_eq(p.max_seg_rows, 1);
    check_plan(&p, segs, 4, 1, 0);
}

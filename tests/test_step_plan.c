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

/* One sequence of T rows at d_inner channels on `sms` SMs, planned as cuda/forward.cu does. */
static int64_t plan_one_sequence(int64_t T, int64_t d_inner, int64_t sms, jb_step_plan *p) {
    const jb_segment seg = {.seq = 0, .pos = 7, .n = T, .row = 0};
    const int64_t len = jb_scan_chunk_rows(T, d_inner, sms, 64);
    cr_assert(len >= 1 && len <= T, "T %lld: chunk length %lld", (long long)T, (long long)len);
    jb_step_plan_build(p, &seg, 1, len);
    check_plan(p, &seg, 1, len, 64); /* chunks tile the rows in order: full coverage, no overlap */
    return len;
}

JB_TEST(step_plan, scan_chunk_rule_follows_the_sm_count) {
    enum { MAX_T = 262144 };
    int32_t *row_seg = malloc(MAX_T * sizeof *row_seg);
    jb_cuda_chunk *chunks = malloc((MAX_T + 1) * sizeof *chunks);
    jb_cuda_seg gseg;
    cr_assert(row_seg && chunks);
    jb_step_plan p = {row_seg, &gseg, chunks, 0, 0, 0, 0, 0};
    /* chunks of one sequence: {d_inner, T, chunks at 1 SM, at 78 SMs, at 132 SMs} */
    static const int64_t want[][5] = {
        {8192, 262144, 1, 4, 8},  /* Jamba-Mini width, 256K prefill at batch 1 */
        {8192, 4096, 1, 4, 8},    /* 512 rows per chunk on an H100 */
        {8192, 100, 1, 4, 4},     /* never below 32 rows: 32 + 32 + 32 + 4 */
        {8192, 32, 1, 1, 1},      /* a short prompt stays one chunk */
        {8192, 1, 1, 1, 1},       /* a decode row */
        {16384, 262144, 1, 2, 4}, /* Jamba-1.5-Large width */
        {4096, 262144, 1, 9, 16}, /* Mini over two ranks */
        {64, 4096, 8, 64, 64},    /* a small model: the slot budget (63 slots) caps the chunks */
        {19, 1000, 26, 32, 32},   /* odd width: 1,000 rows in chunks of at least 32 */
    };
    static const int64_t sms[3] = {1, 78, 132};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        for (int m = 0; m < 3; m++) {
            const int64_t Di = want[k][0], T = want[k][1];
            const int64_t len = plan_one_sequence(T, Di, sms[m], &p);
            cr_assert_eq(p.n_chunks, want[k][2 + m], "D_i %lld T %lld on %lld SMs: %lld chunks of %lld rows",
                         (long long)Di, (long long)T, (long long)sms[m], (long long)p.n_chunks, (long long)len);
            cr_assert_eq(p.n_slots, p.n_chunks - 1);
            /* never more threads than the target asks for, and chunks of at least the minimum length */
            cr_assert(p.n_chunks == 1 || p.n_chunks * Di <= sms[m] * JB_SCAN_THREADS_PER_SM);
            cr_assert(p.n_chunks == 1 || len >= JB_SCAN_MIN_CHUNK_ROWS);
        }
    /* eight sequences of 4,096 rows already fill an H100 at Mini width: no chunking, no summaries */
    jb_segment segs[8];
    for (int s = 0; s < 8; s++)
        segs[s] = (jb_segment){.seq = s, .pos = 1000 * s, .n = 4096, .row = 4096 * s};
    jb_cuda_seg gsegs[8];
    jb_step_plan q = {row_seg, gsegs, chunks, 0, 0, 0, 0, 0};
    const int64_t len = jb_scan_chunk_rows(8 * 4096, 8192, 132, 64);
    jb_step_plan_build(&q, segs, 8, len);
    check_plan(&q, segs, 8, len, 64);
    cr_assert_eq(q.n_chunks, 8);
    cr_assert_eq(q.n_slots, 0);
    /* two of them do not: each runs as 4 chunks */
    const int64_t len2 = jb_scan_chunk_rows(2 * 4096, 8192, 132, 64);
    jb_step_plan_build(&q, segs, 2, len2);
    check_plan(&q, segs, 2, len2, 64);
    cr_assert_eq(q.n_chunks, 8);
    cr_assert_eq(q.n_slots, 6);
    free(row_seg);
    free(chunks);
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

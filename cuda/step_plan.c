/*
 * step_plan.c — segments, row map and scan chunks of a step, built on the host (step_plan.h).
 */
#include "cuda/step_plan.h"

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t jb_scan_chunk_len(int64_t T, int64_t lanes_per_row, int64_t target_lanes, int64_t max_slots,
                          int64_t min_len) {
    if (T < 1)
        return 1;
    int64_t chunks = lanes_per_row > 0 ? target_lanes / lanes_per_row : 1;
    if (chunks <= 1 || max_slots < 1)
        return T;
    int64_t len = ceil_div(T, chunks);
    if (len < min_len)
        len = min_len;
    int64_t floor_for_slots = ceil_div(T, max_slots);
    if (len < floor_for_slots)
        len = floor_for_slots;
    return len > T ? T : len;
}

int64_t jb_scan_chunk_rows(int64_t T, int64_t d_inner, int64_t sms, int64_t max_slots) {
    return jb_scan_chunk_len(T, d_inner, (sms > 0 ? sms : 1) * JB_SCAN_THREADS_PER_SM, max_slots,
                             JB_SCAN_MIN_CHUNK_ROWS);
}

int64_t jb_step_plan_max_chunks(int64_t T, int64_t n_segs, int64_t chunk_len) {
    return n_segs + (chunk_len > 0 ? T / chunk_len : T);
}

void jb_step_plan_build(jb_step_plan *p, const jb_segment *segs, int64_t n_segs, int64_t chunk_len) {
    if (chunk_len < 1)
        chunk_len = 1;
    p->n_segs = n_segs;
    p->n_chunks = 0;
    p->n_slots = 0;
    p->max_seg_rows = 0;
    p->T = 0;
    for (int64_t s = 0; s < n_segs; s++) {
        const jb_segment *g = &segs[s];
        int64_t k = ceil_div(g->n, chunk_len);
        p->segs[s] = (jb_cuda_seg){.pos = g->pos, .n = g->n, .row = g->row, .seq = g->seq,
                                  .slot0 = k > 1 ? p->n_slots : -1, .n_slots = (int32_t)(k - 1)};
        for (int64_t r = 0; r < g->n; r++)
            p->row_seg[g->row + r] = (int32_t)s;
        for (int64_t j = 0; j < k; j++) {
            int64_t r0 = g->row + j * chunk_len, r1 = r0 + chunk_len < g->row + g->n ? r0 + chunk_len : g->row + g->n;
            p->chunks[p->n_chunks++] = (jb_cuda_chunk){.r0 = r0, .r1 = r1, .seg = (int32_t)s,
                                                      .slot_in = j > 0 ? p->n_slots + (int32_t)j - 1 : -1,
                                                      .slot_out = j < k - 1 ? p->n_slots + (int32_t)j : -1};
        }
        p->n_slots += (int32_t)(k - 1);
        if (g->n > p->max_seg_rows)
            p->max_seg_rows = g->n;
        p->T += g->n;
    }
}

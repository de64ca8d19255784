/*
 * gpu_ops_util.c — the op tests' shared pieces (gpu_ops.h).
 */
#include "tests/gpu/gpu_ops.h"

#include <stdlib.h>

const jamba_dtype gt_dts[2] = {JAMBA_DTYPE_F32, JAMBA_DTYPE_BF16};

double gt_tol(jamba_dtype dt) { return dt == JAMBA_DTYPE_BF16 ? GT_TOL_BF16 : GT_TOL_F32; }
const char *gt_dname(jamba_dtype dt) { return dt == JAMBA_DTYPE_BF16 ? "bf16" : "f32"; }
size_t gt_esize(jamba_dtype dt) { return dt == JAMBA_DTYPE_BF16 ? 2 : 4; }

jb_pool *gt_cpu_pool(void) {
    static jb_pool *pool;
    if (pool == NULL)
        jb_pool_create(4, &pool, NULL);
    return pool;
}

gt_dev_step gt_make_step(const jb_segment *segs, int64_t n_segs, int64_t chunk_len, const int32_t *tokens) {
    gt_dev_step d = {0};
    int64_t T = 0;
    for (int64_t s = 0; s < n_segs; s++)
        T += segs[s].n;
    d.plan.row_seg = malloc((size_t)T * 4);
    d.plan.segs = malloc((size_t)n_segs * sizeof(jb_cuda_seg));
    d.plan.chunks = malloc((size_t)jb_step_plan_max_chunks(T, n_segs, chunk_len) * sizeof(jb_cuda_chunk));
    jb_step_plan_build(&d.plan, segs, n_segs, chunk_len);
    d.d_row_seg = gt_dev_bytes(d.plan.row_seg, (size_t)T * 4);
    d.d_segs = gt_dev_bytes(d.plan.segs, (size_t)n_segs * sizeof(jb_cuda_seg));
    d.d_chunks = gt_dev_bytes(d.plan.chunks, (size_t)d.plan.n_chunks * sizeof(jb_cuda_chunk));
    d.d_tokens = tokens ? gt_dev_bytes(tokens, (size_t)T * 4) : NULL;
    d.step = (jb_cuda_step_desc){.tokens = d.d_tokens, .row_seg = d.d_row_seg, .segs = d.d_segs, .chunks = d.d_chunks,
                           .T = T, .n_segs = n_segs, .n_chunks = d.plan.n_chunks, .n_slots = d.plan.n_slots,
                           .max_seg_rows = d.plan.max_seg_rows};
    return d;
}

void gt_free_step(gt_dev_step *d) {
    gt_dev_free(d->d_row_seg);
    gt_dev_free(d->d_segs);
    gt_dev_free(d->d_chunks);
    gt_dev_free(d->d_tokens);
    free(d->plan.row_seg);
    free(d->plan.segs);
    free(d->plan.chunks);
}

int64_t gt_mamba_segments(jb_segment *segs, int64_t long_n) {
    segs[0] = (jb_segment){.seq = 2, .pos = 11, .n = 5, .row = 0};
    segs[1] = (jb_segment){.seq = 0, .pos = 40, .n = 1, .row = 5};
    segs[2] = (jb_segment){.seq = 3, .pos = 0, .n = long_n, .row = 6};
    return 3;
}

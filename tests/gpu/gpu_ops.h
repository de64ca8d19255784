/*
 * gpu_ops.h — what the op-level GPU tests share (test_gpu_ops.c, test_gpu_attention.c, test_gpu_scan.c,
 * test_gpu_moe.c): the two activation types, their tolerances, a CPU thread pool for the CPU twins and a
 * step laid out on the device from host segments.
 */
#ifndef JB_GPU_OPS_H
#define JB_GPU_OPS_H

#include "tests/gpu/gpu_test.h"

#include "base/threadpool.h"
#include "cuda/ops.h"
#include "cuda/step_plan.h"

/* The activation types every op runs in: F32 and BF16. */
extern const jamba_dtype gt_dts[2];

/* The op tolerance of dt (normalised MSE), its name and its element size. */
double gt_tol(jamba_dtype dt);
const char *gt_dname(jamba_dtype dt);
size_t gt_esize(jamba_dtype dt);

/* One CPU pool of 4 threads for the CPU twins (created on first use, kept for the program). */
jb_pool *gt_cpu_pool(void);

/* A step on the device from host segments (rows contiguous from 0), chunked at chunk_len. */
typedef struct gt_dev_step {
    jb_cuda_step_desc step;
    jb_step_plan plan;
    void *d_row_seg, *d_segs, *d_chunks, *d_tokens;
} gt_dev_step;

gt_dev_step gt_make_step(const jb_segment *segs, int64_t n_segs, int64_t chunk_len, const int32_t *tokens);
void gt_free_step(gt_dev_step *d);

/* Three sequences of a four-sequence cache: a continuing prefill, a decode token, a longer prefill of
 * long_n rows. Returns the segment count (3). */
int64_t gt_mamba_segments(jb_segment *segs, int64_t long_n);

#endif /* JB_GPU_OPS_H */

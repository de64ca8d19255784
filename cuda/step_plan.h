/*
 * step_plan.h — the host side of a step's layout for the CUDA kernels (gpu_types.h): which segment
 * each row belongs to, and how long segments split into time chunks for the parallel selective scan.
 * Plain C with no CUDA dependency, so it is built and tested in every configuration.
 */
#ifndef JB_CUDA_STEP_PLAN_H
#define JB_CUDA_STEP_PLAN_H

#include <stdint.h>

#include "backend/step.h"
#include "cuda/gpu_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Host arrays of one step's layout; the caller provides them with the capacities documented. */
typedef struct jb_step_plan {
    int32_t *row_seg;      /* [T] */
    jb_cuda_seg *segs;      /* [n_segs] */
    jb_cuda_chunk *chunks;  /* [jb_step_plan_max_chunks(...)] */
    int64_t T, n_segs, n_chunks, max_seg_rows;
    int32_t n_slots;
} jb_step_plan;

/* Scan chunk length for a step of T rows: long enough that at most max_slots summary slots are needed,
 * short enough that chunks × lanes_per_row reaches target_lanes when the rows allow it (at least
 * min_len rows per chunk). Returns T (no chunking) when lanes_per_row alone reaches the target. */
int64_t jb_scan_chunk_len(int64_t T, int64_t lanes_per_row, int64_t target_lanes, int64_t max_slots,
                          int64_t min_len);

/* Chunks a step of T rows in n_segs segments can have with chunks of chunk_len rows. */
int64_t jb_step_plan_max_chunks(int64_t T, int64_t n_segs, int64_t chunk_len);

/* Fill the plan for segments that cover rows 0 .. T-1 in order (T = the sum of their lengths). Every
 * segment is cut into ceil(n / chunk_len) chunks; a segment of k chunks takes k-1 consecutive summary
 * slots. */
void jb_step_plan_build(jb_step_plan *p, const jb_segment *segs, int64_t n_segs, int64_t chunk_len);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_STEP_PLAN_H */

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

/* The rule the CUDA scan (cuda/scan.cu) is chunked by. Its kernel runs one thread per (channel, chunk),
 * holding the channel's states in registers, so a step offers d_inner threads per chunk; it is chunked
 * until the chunks give every SM JB_SCAN_THREADS_PER_SM threads (4 warps per SM sub-partition, enough
 * to keep the exp units busy: more would only add work, as a chunked segment costs about two passes),
 * never below JB_SCAN_MIN_CHUNK_ROWS rows (a chunk's summary traffic, about 4 x d_state floats per
 * channel, is then at most two thirds of its rows' own in bf16; only short steps get chunks that short),
 * and never needing more than max_slots summary slots. */
#define JB_SCAN_THREADS_PER_SM 512
#define JB_SCAN_MIN_CHUNK_ROWS 32

/* Chunk length for a step of T rows and d_inner channels on a device of `sms` SMs (the count queried
 * once when the context is created); T when no chunking is needed. At Jamba-Mini width (8,192 channels)
 * one SM never chunks, and one sequence of more than 32 rows runs as up to 8 chunks on an H100 (132 SMs)
 * and up to 4 on a 78-SM card. */
int64_t jb_scan_chunk_rows(int64_t T, int64_t d_inner, int64_t sms, int64_t max_slots);

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

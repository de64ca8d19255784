/*
 * gpu_types.h — plain C structs the host fills and the CUDA kernels read: how the rows of a step map to
 * sequences, and the sampling parameters of a row. No CUDA types, so host code (step_plan.c, the sampler)
 * builds and is tested in every configuration.
 */
#ifndef JB_CUDA_GPU_TYPES_H
#define JB_CUDA_GPU_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One sequence's run of rows inside a step (the device copy of runtime's jb_segment). */
typedef struct jb_cuda_seg {
    int64_t pos;     /* position of the first row in its sequence */
    int64_t n;       /* rows */
    int64_t row;     /* first row of the step */
    int32_t seq;     /* the sequence, i.e. its state slot */
    int32_t slot0;   /* selective scan: first summary slot of this segment's chunks (n_slots of them) */
    int32_t n_slots; /* selective scan: chunks - 1 (0 when the segment is one chunk) */
    int32_t pad;
} jb_cuda_seg;

/* A time chunk of a segment for the selective scan. A segment of k chunks uses k-1 summary slots:
 * chunk j (j < k-1) writes its summary to slot slot0 + j, and chunk j (j > 0) starts from the state the
 * carry pass left in slot slot0 + j - 1. */
typedef struct jb_cuda_chunk {
    int64_t r0, r1;   /* rows [r0, r1) of the step */
    int32_t seg;      /* its segment */
    int32_t slot_in;  /* summary slot holding the entering state, or -1: the sequence's own state */
    int32_t slot_out; /* summary slot for this chunk's summary, or -1: the last chunk, which stores the state */
    int32_t pad;
} jb_cuda_chunk;

/* Device-side description of a step (all pointers device memory). */
typedef struct jb_cuda_step_desc {
    const int32_t *tokens;       /* [T] */
    const int32_t *row_seg;      /* [T] segment of each row */
    const jb_cuda_seg *segs;      /* [n_segs] */
    const jb_cuda_chunk *chunks;  /* [n_chunks] */
    int64_t T, n_segs, n_chunks;
    int32_t n_slots;             /* summary slots in use (0: every segment is one chunk) */
    int64_t max_seg_rows;        /* the longest segment (host-known; picks attention kernels) */
} jb_cuda_step_desc;

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_GPU_TYPES_H */

/*
 * step.h — what one internal forward step is made of, shared by the CPU forward pass and the CUDA
 * backend: the segments (one sequence's run of tokens each) and the capture hook.
 */
#ifndef JB_STEP_H
#define JB_STEP_H

#include <stdint.h>

typedef struct jb_segment {
    int32_t seq;
    int64_t pos;          /* position of the first token in the sequence */
    int64_t n;            /* tokens */
    int64_t row;          /* first workspace row; a step's segments cover rows 0 .. T-1 in order */
    const int32_t *tokens;
} jb_segment;

/* Test and research hook: when set, every step copies the residual stream after each layer and the
 * final-normed rows into these buffers (rows beyond `rows` are dropped). */
typedef struct jb_capture {
    float *hidden;   /* [L, rows, H] */
    float *final;    /* [rows, H] */
    int64_t rows;
    int64_t next_row; /* where the next step's rows go */
} jb_capture;

#endif /* JB_STEP_H */

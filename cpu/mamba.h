/*
 * cpu_mamba.h — the Mamba mixer's sequence ops on the CPU (docs/jamba-architecture.md §3.6 steps 3 and 7-11):
 * the causal depthwise conv + SiLU continuing from a carried window, and the selective scan continuing
 * from a carried fp32 state. Each call takes the arguments of several sequences (one per sequence of a
 * step) and runs them as one parallel job over (sequence, block of channels), so a decode step of many
 * sequences keeps every thread busy; each channel's result is independent of how the work is split.
 */
#ifndef JB_CPU_MAMBA_H
#define JB_CPU_MAMBA_H

#include <stdint.h>

#include "base/threadpool.h"

typedef struct jb_conv_args {
    int64_t n;          /* tokens */
    int64_t d_inner;    /* D_i channels */
    int64_t d_conv;     /* K taps */
    const float *x;     /* [n, ldx]: pre-conv inputs u_raw in columns [0, D_i) */
    int64_t ldx;
    const float *w;     /* [D_i, K]: tap K-1 multiplies the current token */
    const float *b;     /* [D_i] or NULL */
    float *window;      /* [D_i, K-1]: the previous K-1 inputs, oldest first; updated */
    float *out;         /* [n, D_i]: SiLU(conv) */
} jb_conv_args;

/* The conv of each of a[0 .. n_args) (all with the same d_inner and d_conv). */
void jb_cpu_conv_silu(jb_pool *pool, const jb_conv_args *a, int64_t n_args);

typedef struct jb_scan_args {
    int64_t n;          /* tokens */
    int64_t d_inner;    /* D_i */
    int64_t d_state;    /* N */
    const float *u;     /* [n, D_i] post-conv input */
    const float *delta; /* [n, D_i] after softplus */
    const float *B;     /* [n, ldbc] columns [0, N) */
    const float *C;     /* [n, ldbc] columns [0, N) */
    int64_t ldbc;
    const float *A;     /* [D_i, N] = -exp(A_log) */
    const float *D;     /* [D_i] skip */
    const float *z;     /* [n, ldz] gate in columns [0, D_i) */
    int64_t ldz;
    float *state;       /* [D_i, N] fp32 SSM state; updated */
    float *y;           /* [n, D_i]: (h·C + D·u) ⊙ SiLU(z) */
} jb_scan_args;

/* The scan of each of a[0 .. n_args) (all with the same d_inner and d_state). */
void jb_cpu_selective_scan(jb_pool *pool, const jb_scan_args *a, int64_t n_args);

#endif /* JB_CPU_MAMBA_H */

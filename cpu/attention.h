/*
 * cpu_attention.h — causal GQA attention for the query rows of one or more sequences, each against its own KV
 * cache. No positional encoding; scores scaled by 1/sqrt(d_h); fp32 softmax. One parallel job over
 * (sequence, row, head) for all of them.
 */
#ifndef JB_CPU_ATTENTION_H
#define JB_CPU_ATTENTION_H

#include <stdint.h>

#include "base/threadpool.h"

typedef struct jb_attn_args {
    int64_t n;          /* query rows */
    int64_t pos;        /* absolute position of row 0; row i attends keys [0, pos + i] */
    int64_t n_heads, n_kv_heads, head_dim;
    const float *q;     /* [n, n_h * d_h] */
    const float *k;     /* [>= pos + n, n_kv * d_h] the sequence's key cache */
    const float *v;     /* [>= pos + n, n_kv * d_h] */
    float *out;         /* [n, n_h * d_h] */
    float *scratch;     /* [n_threads, scratch_stride]: each thread's score rows */
    int64_t scratch_stride; /* >= jb_cpu_attn_score_rows(n_h, n_kv) x (pos + n) */
} jb_attn_args;

/* Query heads of one KV head that attend together at most (sharing each key and value load). */
#define JB_CPU_ATTN_HEADS_MAX 4

/* Score rows of n_ctx floats each thread's scratch needs: min(n_h / n_kv, JB_CPU_ATTN_HEADS_MAX), at least 1
 * (a model without attention layers need not divide its head counts). */
static inline int64_t jb_cpu_attn_score_rows(int64_t n_heads, int64_t n_kv_heads) {
    const int64_t group = n_kv_heads > 0 ? n_heads / n_kv_heads : 1;
    return group < 1 ? 1 : group < JB_CPU_ATTN_HEADS_MAX ? group : JB_CPU_ATTN_HEADS_MAX;
}

/* The attention of each of a[0 .. n_args) (all with the same heads and scratch rows). */
void jb_cpu_attention(jb_pool *pool, const jb_attn_args *a, int64_t n_args);

#endif /* JB_CPU_ATTENTION_H */

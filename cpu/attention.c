/*
 * cpu_attention.c — one (query row, head) per work item on the selected kernel set (cpu/kernels.h): scores,
 * max-subtracted fp32 softmax, weighted sum. Items are ordered so that contiguous ranges carry equal work
 * under the causal mask (rows from both ends alternate); each item's result is independent of the order.
 */
#include "cpu/attention.h"

#include "cpu/kernels.h"
#include "cpu/ops.h"

typedef struct attn_job {
    const jb_cpu_kernel_table *kernels;
    const jb_attn_args *args;
} attn_job;

static void attend_items(void *arg, int64_t i0, int64_t i1, int thread) {
    const attn_job *j = arg;
    const jb_attn_args *a = j->args;
    float *score = a->scratch + (int64_t)thread * a->scratch_stride;
    for (int64_t item = i0; item < i1; item++) {
        const int64_t r = item / a->n_heads, head = item % a->n_heads;
        const int64_t row = r % 2 == 0 ? r / 2 : a->n - 1 - r / 2; /* 0, n-1, 1, n-2, ... */
        j->kernels->attend(a, row, head, score);
    }
}

void jb_cpu_attention(jb_pool *pool, const jb_attn_args *a) {
    attn_job job = {jb_cpu_kernels_active(), a};
    /* work per item: q·k and p·v over the keys, on average half the context past pos */
    const int64_t work = 2 * a->head_dim * (a->pos + (a->n + 1) / 2);
    jb_pool_run(pool, a->n * a->n_heads, jb_cpu_grain(pool, a->n * a->n_heads, work, 1), attend_items, &job);
}

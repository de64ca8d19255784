/*
 * cpu_attention.c — one (sequence, query row, head) per work item on the selected kernel set
 * (cpu/kernels.h): scores, max-subtracted fp32 softmax, weighted sum. Items are numbered sequence by
 * sequence; within one, rows from both ends alternate so that contiguous ranges carry equal work under the
 * causal mask. Each item's result is independent of the order and of the split.
 */
#include "cpu/attention.h"

#include "cpu/kernels.h"
#include "cpu/ops.h"

typedef struct attn_job {
    const jb_cpu_kernel_table *kernels;
    const jb_attn_args *args;
    int64_t n_args;
} attn_job;

static void attend_items(void *arg, int64_t i0, int64_t i1, int thread) {
    const attn_job *j = arg;
    int64_t s = 0, first = 0; /* sequence s holds items [first, first + n·n_h) */
    for (int64_t item = i0; item < i1; item++) {
        while (item >= first + j->args[s].n * j->args[s].n_heads)
            first += j->args[s].n * j->args[s].n_heads, s++;
        const jb_attn_args *a = &j->args[s];
        const int64_t r = (item - first) / a->n_heads, head = (item - first) % a->n_heads;
        const int64_t row = r % 2 == 0 ? r / 2 : a->n - 1 - r / 2; /* 0, n-1, 1, n-2, ... */
        j->kernels->attend(a, row, head, a->scratch + (int64_t)thread * a->scratch_stride);
    }
}

void jb_cpu_attention(jb_pool *pool, const jb_attn_args *a, int64_t n_args) {
    attn_job job = {jb_cpu_kernels_active(), a, n_args};
    /* work per item: q·k and p·v over the keys, on average half the context past pos */
    int64_t items = 0, work = 0;
    for (int64_t s = 0; s < n_args; s++) {
        items += a[s].n * a[s].n_heads;
        work += a[s].n * a[s].n_heads * 2 * a[s].head_dim * (a[s].pos + (a[s].n + 1) / 2);
    }
    if (items > 0)
        jb_pool_run(pool, items, jb_cpu_grain(pool, items, work / items, 1), attend_items, &job);
}

/*
 * cpu_attention.c — one (sequence, query row, group of query heads of one KV head) per work item on the
 * selected kernel set (cpu/kernels.h): scores, max-subtracted fp32 softmax, weighted sum; the heads of a
 * group share each key and value load (up to the set's attend_heads). Items are numbered sequence by
 * sequence; within one, rows from both ends alternate so that contiguous ranges carry equal work under the
 * causal mask. Each head's result is independent of the grouping, the order and the split.
 */
#include "cpu/attention.h"

#include "cpu/kernels.h"
#include "cpu/ops.h"

typedef struct attn_job {
    const jb_cpu_kernel_table *kernels;
    const jb_attn_args *args;
    int64_t n_args;
    int64_t group, splits; /* query heads per KV head; groups of at most attend_heads they are split into */
} attn_job;

/* Work items of one row: its KV heads times the splits of each one's query heads. */
static int64_t row_items(const attn_job *j, const jb_attn_args *a) { return a->n_kv_heads * j->splits; }

static void attend_items(void *arg, int64_t i0, int64_t i1, int thread) {
    const attn_job *j = arg;
    int64_t s = 0, first = 0; /* sequence s holds items [first, first + n·row_items) */
    for (int64_t item = i0; item < i1; item++) {
        while (item >= first + j->args[s].n * row_items(j, &j->args[s]))
            first += j->args[s].n * row_items(j, &j->args[s]), s++;
        const jb_attn_args *a = &j->args[s];
        const int64_t per_row = row_items(j, a), r = (item - first) / per_row, rest = (item - first) % per_row;
        const int64_t row = r % 2 == 0 ? r / 2 : a->n - 1 - r / 2; /* 0, n-1, 1, n-2, ... */
        /* split `part` of KV head kvh: query heads [kvh·group + part·size, ...) */
        const int64_t kvh = rest / j->splits, part = rest % j->splits;
        const int64_t size = (j->group + j->splits - 1) / j->splits, head0 = kvh * j->group + part * size;
        const int64_t nh = j->group - part * size < size ? j->group - part * size : size;
        j->kernels->attend(a, row, head0, (int)nh, a->scratch + (int64_t)thread * a->scratch_stride);
    }
}

void jb_cpu_attention(jb_pool *pool, const jb_attn_args *a, int64_t n_args) {
    if (n_args < 1)
        return;
    attn_job job = {jb_cpu_kernels_active(), a, n_args, a[0].n_heads / a[0].n_kv_heads, 1};
    job.splits = (job.group + job.kernels->attend_heads - 1) / job.kernels->attend_heads;
    /* work per item: q·k and p·v over the keys (on average half the context past pos) for its heads */
    int64_t items = 0, work = 0;
    for (int64_t s = 0; s < n_args; s++) {
        items += a[s].n * row_items(&job, &a[s]);
        work += a[s].n * a[s].n_heads * 2 * a[s].head_dim * (a[s].pos + (a[s].n + 1) / 2);
    }
    if (items > 0)
        jb_pool_run(pool, items, jb_cpu_grain(pool, items, work / items, 1), attend_items, &job);
}

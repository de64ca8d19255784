/*
 * cpu_mamba.c — causal conv and selective scan, channel-parallel, on the selected kernel set (cpu/kernels.h,
 * vectorised over channels). The arithmetic order follows the reference's slow path: Ā = exp(A·Δ),
 * B̄u = (Δ·B)·u, h = Ā·h + B̄u, y = Σ h·C + D·u, y·SiLU(z). Work per channel and token, in multiply-adds for
 * jb_cpu_grain: about 4 per conv tap plus 32 for its SiLU (an exp and a division), 8 per scan state (an exp
 * each).
 *
 * The work items of a call are blocks of CHANNEL_BLOCK channels of every argument, numbered argument by
 * argument: argument i's block b is item i·blocks + b.
 */
#include "cpu/mamba.h"

#include "cpu/kernels.h"
#include "cpu/ops.h"

#define CHANNEL_BLOCK 16

typedef struct channel_job {
    const void *args; /* jb_conv_args[n_args] or jb_scan_args[n_args] */
    int64_t n_args, d_inner, blocks;
    void (*run)(const void *args, int64_t i, int64_t c0, int64_t c1); /* argument i's channels [c0, c1) */
} channel_job;

static void channel_items(void *arg, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    const channel_job *j = arg;
    for (int64_t item = i0; item < i1;) {
        const int64_t i = item / j->blocks, b0 = item % j->blocks;
        const int64_t b1 = i1 - item < j->blocks - b0 ? b0 + (i1 - item) : j->blocks; /* within argument i */
        const int64_t c1 = b1 * CHANNEL_BLOCK < j->d_inner ? b1 * CHANNEL_BLOCK : j->d_inner;
        j->run(j->args, i, b0 * CHANNEL_BLOCK, c1);
        item += b1 - b0;
    }
}

/* Run job over every channel of its n_args arguments; rows: their tokens in all; work_per_token: multiply-adds
 * per channel and token. */
static void run_channels(jb_pool *pool, channel_job *job, int64_t rows, int64_t work_per_token) {
    if (job->n_args < 1)
        return;
    job->blocks = (job->d_inner + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
    const int64_t items = job->n_args * job->blocks;
    const int64_t work = CHANNEL_BLOCK * work_per_token * ((rows + job->n_args - 1) / job->n_args);
    jb_pool_run(pool, items, jb_cpu_grain(pool, items, work, 1), channel_items, job);
}

static void conv_run(const void *args, int64_t i, int64_t c0, int64_t c1) {
    jb_cpu_kernels_active()->conv((const jb_conv_args *)args + i, c0, c1);
}

void jb_cpu_conv_silu(jb_pool *pool, const jb_conv_args *a, int64_t n_args) {
    int64_t rows = 0;
    for (int64_t i = 0; i < n_args; i++)
        rows += a[i].n;
    channel_job job = {.args = a, .n_args = n_args, .d_inner = n_args > 0 ? a[0].d_inner : 0, .run = conv_run};
    run_channels(pool, &job, rows, n_args > 0 ? a[0].d_conv * 4 + 32 : 0);
}

static void scan_run(const void *args, int64_t i, int64_t c0, int64_t c1) {
    jb_cpu_kernels_active()->scan((const jb_scan_args *)args + i, c0, c1);
}

void jb_cpu_selective_scan(jb_pool *pool, const jb_scan_args *a, int64_t n_args) {
    int64_t rows = 0;
    for (int64_t i = 0; i < n_args; i++)
        rows += a[i].n;
    channel_job job = {.args = a, .n_args = n_args, .d_inner = n_args > 0 ? a[0].d_inner : 0, .run = scan_run};
    run_channels(pool, &job, rows, n_args > 0 ? a[0].d_state * 8 : 0);
}

/*
 * cpu_ops.c — weight widening, matmul (on the selected kernel set, cpu/kernels.h) and RMSNorm for the CPU
 * reference path.
 */
#include "cpu/ops.h"

#include "cpu/kernels.h"

#include <pthread.h>
#include <stdlib.h>

static int64_t weight_elements(const jb_weight *w) {
    int64_t n = 1;
    for (int d = 0; d < w->rank; d++)
        n *= w->shape[d];
    return n;
}

const float *jb_weight_f32(const jb_weight *w, float *scratch) {
    if (w->dtype == JAMBA_DTYPE_F32 && ((uintptr_t)w->data % _Alignof(float)) == 0)
        return w->data;
    jb_to_f32(scratch, w->data, w->dtype, weight_elements(w));
    return scratch;
}

typedef struct matmul_job {
    const jb_cpu_kernel_table *kernels;
    jb_gemm_args args;
} matmul_job;

static void matmul_rows(void *arg, int64_t n0, int64_t n1, int thread) {
    (void)thread;
    const matmul_job *j = arg;
    j->kernels->gemm(&j->args, n0, n1);
}

void jb_cpu_matmul(jb_pool *pool, float *Y, const float *X, int64_t T, const jb_weight *W, const float *bias) {
    matmul_job job = {jb_cpu_kernels_active(), {X, T, W->shape[1], W->shape[0], W->data, W->dtype, W->scale, bias, Y}};
    jb_pool_run(pool, job.args.N, jb_cpu_grain(pool, job.args.N, T * job.args.K, JB_MATMUL_ROWS), matmul_rows, &job);
}

static int64_t min_parallel_work = JB_CPU_MIN_PARALLEL_WORK;

static void read_min_parallel_work(void) {
    const char *env = getenv("JAMBA_CPU_MIN_PARALLEL_WORK");
    char *end;
    long long v = env ? strtoll(env, &end, 10) : -1;
    if (env && *env && *end == '\0' && v >= 0)
        min_parallel_work = v;
}

int64_t jb_cpu_grain(const jb_pool *pool, int64_t n, int64_t work, int64_t align) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_min_parallel_work);
    int64_t parts = (int64_t)jb_pool_threads(pool) * JB_POOL_RANGES_PER_THREAD;
    if (min_parallel_work > 0 && work > 0 && n * work / min_parallel_work < parts) /* each part enough work */
        parts = n * work / min_parallel_work;
    if (parts < 1)
        parts = 1;
    const int64_t grain = (n + parts - 1) / parts;
    return (grain + align - 1) / align * align;
}

void jb_cpu_rmsnorm(float *y, const float *x, int64_t T, int64_t n, int64_t ld, const float *w, double eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * ld;
        float *yr = y + t * ld;
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)n) + (float)eps);
        for (int64_t i = 0; i < n; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}

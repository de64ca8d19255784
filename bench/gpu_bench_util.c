/*
 * gpu_bench_util.c — shared pieces of the GPU benchmarks (gpu_bench_util.h).
 */
#include "gpu_bench_util.h"

#include <time.h>

FILE *bench_json;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Milliseconds of one call of fn(arg) on the device: median of `reps` after two warm-ups. */
double time_ms(void (*fn)(void *), void *arg, int reps) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 2; i++)
        fn(arg);
    double t[64];
    if (reps > 64)
        reps = 64;
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(a, 0));
        fn(arg);
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t[i] = ms;
    }
    CK(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return median(t, reps);
}

void report(const char *name, const char *metric, double value, const char *unit, double pct_of,
                   const char *ceiling) {
    if (pct_of > 0)
        printf("  %-34s %12.2f %-8s %5.1f%% of %s\n", name, value, unit, 100.0 * value / pct_of, ceiling);
    else
        printf("  %-34s %12.2f %s\n", name, value, unit);
    if (bench_json)
        fprintf(bench_json, "{\"bench\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"ceiling\":%.6g}\n", name,
                metric, value, unit, pct_of);
}

/* ---- ceilings ------------------------------------------------------------------------------------------- */

typedef struct copy_arg {
    void *src, *dst;
    size_t bytes;
} copy_arg;

static void run_copy(void *p) {
    copy_arg *a = p;
    CK(cudaMemcpyAsync(a->dst, a->src, a->bytes, cudaMemcpyDeviceToDevice, 0));
}

double bench_copy(void) {
    copy_arg a = {NULL, NULL, (size_t)2 << 30};
    CK(cudaMalloc(&a.src, a.bytes));
    CK(cudaMalloc(&a.dst, a.bytes));
    CK(cudaMemset(a.src, 1, a.bytes));
    double ms = time_ms(run_copy, &a, 10);
    cudaFree(a.src);
    cudaFree(a.dst);
    double gbs = 2.0 * (double)a.bytes / (ms * 1e-3) / 1e9;
    report("copy (read + write)", "bandwidth", gbs, "GB/s", 0, "");
    return gbs;
}


/*
 * gpu_bench_util.c — shared pieces of the GPU benchmarks (gpu_bench_util.h).
 */
#include "bench/gpu_bench_util.h"

#include "cuda/ops.h"

#include <cublas_v2.h>
#include <string.h>
#include <time.h>

FILE *bench_json;

/* Every line out as soon as it is printed: a benchmark killed at its time limit (tools/gpu-check.sh) keeps
 * everything it measured. report() also flushes the JSON records. */
__attribute__((constructor)) static void line_buffered_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

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
    fflush(stdout);
    if (bench_json)
        fflush(bench_json);
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


/* Device memory with random bf16-range values (a fixed LCG per element, filled on the host). */
void *dev_random(size_t elems, size_t esize, float scale, uint64_t seed) {
    void *host = malloc(elems * esize), *dev = NULL;
    uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < elems; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        float v = ((float)(x >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
        if (esize == 2) {
            uint32_t bits;
            memcpy(&bits, &v, 4);
            uint16_t h = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
            memcpy((char *)host + 2 * i, &h, 2);
        } else {
            memcpy((char *)host + 4 * i, &v, 4);
        }
    }
    CK(cudaMalloc(&dev, elems * esize));
    CK(cudaMemcpy(dev, host, elems * esize, cudaMemcpyHostToDevice));
    free(host);
    return dev;
}

typedef struct gemm_arg {
    cublasHandle_t h;
    void *A, *B, *C;
    int n;
} gemm_arg;

static void run_gemm(void *p) {
    gemm_arg *g = p;
    jb_cuda_gemm(g->h, JAMBA_DTYPE_BF16, JAMBA_DTYPE_BF16, g->C, g->n, g->A, g->n, g->B, g->n, g->n, g->n);
}

double bench_gemm(int n) {
    gemm_arg g = {NULL, NULL, NULL, NULL, n};
    cublasCreate(&g.h);
    size_t n2 = (size_t)g.n * (size_t)g.n;
    g.A = dev_random(n2, 2, 1, 1);
    g.B = dev_random(n2, 2, 1, 2);
    CK(cudaMalloc(&g.C, n2 * 2));
    double ms = time_ms(run_gemm, &g, 10);
    double tflops = 2.0 * (double)g.n * g.n * g.n / (ms * 1e-3) / 1e12;
    report("gemm bf16 (cuBLAS)", "rate", tflops, "TFLOP/s", 0, "");
    cudaFree(g.A), cudaFree(g.B), cudaFree(g.C);
    cublasDestroy(g.h);
    return tflops;
}

/*
 * gpu_bench_util.h — what the GPU benchmarks share: wall and device timing with medians, the result
 * line (text, and a JSON line per figure into bench_json), random device buffers, and the two ceilings:
 * copy bandwidth and the cuBLAS bf16 product rate.
 */
#ifndef JB_GPU_BENCH_UTIL_H
#define JB_GPU_BENCH_UTIL_H

#include "bench/bench_util.h"

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(call)                                                                              \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "bench: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
                    cudaGetErrorString(e_));                                                  \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Where report() also writes one JSON object per line (NULL: nowhere). */
extern FILE *bench_json;

/* Milliseconds of one call of fn(arg) on the device: median of `reps` after two warm-ups. */
double time_ms(void (*fn)(void *), void *arg, int reps);
/* One result line; pct_of > 0 adds "x% of <ceiling>". Flushed at once (stdout and bench_json; stdout is
 * line-buffered in every program that links this file), so a run killed later loses nothing measured. */
void report(const char *name, const char *metric, double value, const char *unit, double pct_of,
            const char *ceiling);
/* Device-to-device copy bandwidth in GB/s (bytes read + written), reported. */
double bench_copy(void);
/* cuBLAS bf16 n x n x n product rate in TFLOP/s, reported. */
double bench_gemm(int n);
/* Device memory of elems values of esize bytes (2: bf16, 4: fp32), uniform in [-scale, scale). */
void *dev_random(size_t elems, size_t esize, float scale, uint64_t seed);

#endif /* JB_GPU_BENCH_UTIL_H */

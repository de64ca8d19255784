/*
 * bench_util.c — host timing, medians and option parsing for the benchmarks (bench_util.h).
 */
#include "bench/bench_util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bool bench_positive(const char *s, long long max, long long *v) {
    char *end;
    const long long x = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || x < 1 || x > max)
        return false;
    *v = x;
    return true;
}

jamba_dtype bench_activations(const char *name) {
    return strcmp(name, "int8") == 0   ? JAMBA_DTYPE_I8
           : strcmp(name, "bf16") == 0 ? JAMBA_DTYPE_BF16
           : strcmp(name, "f32") == 0  ? JAMBA_DTYPE_F32
                                       : JAMBA_DTYPE_UNKNOWN;
}

const char *bench_activations_name(jamba_dtype activations) {
    return activations == JAMBA_DTYPE_I8 ? "int8" : activations == JAMBA_DTYPE_BF16 ? "bf16" : "f32";
}

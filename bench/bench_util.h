/*
 * bench_util.h — what every benchmark shares on the host: monotonic wall time, medians, positive integer
 * options, and the names of the CPU's activation types.
 */
#ifndef JB_BENCH_UTIL_H
#define JB_BENCH_UTIL_H

#include "jamba.h"

#include <stdbool.h>

/* Monotonic seconds. */
double now(void);
/* The median of v[0 .. n) (sorts v); n >= 1. */
double median(double *v, int n);
/* s as a whole decimal number in [1, max] into *v; false (and *v untouched) for anything else. */
bool bench_positive(const char *s, long long max, long long *v);

/* --activations NAME (f32, int8, bf16) as jamba_context_params.cpu_activations (F32, I8, BF16); UNKNOWN for
 * another name. */
jamba_dtype bench_activations(const char *name);
/* And back: "f32", "int8" or "bf16". */
const char *bench_activations_name(jamba_dtype activations);

#endif /* JB_BENCH_UTIL_H */

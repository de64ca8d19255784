/*
 * bench_util.h — what every benchmark shares on the host: monotonic wall time and medians.
 */
#ifndef JB_BENCH_UTIL_H
#define JB_BENCH_UTIL_H

/* Monotonic seconds. */
double now(void);
/* The median of v[0 .. n) (sorts v); n >= 1. */
double median(double *v, int n);

#endif /* JB_BENCH_UTIL_H */

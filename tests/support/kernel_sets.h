/*
 * kernel_sets.h — the CPU kernel sets this machine runs (cpu/kernels.h), for the suites that test each.
 */
#ifndef JB_TEST_KERNEL_SETS_H
#define JB_TEST_KERNEL_SETS_H

#include <criterion/criterion.h>

#include "cpu/kernels.h"

/* The sets this CPU runs into out, portable first; their count. */
static inline int ks_available_sets(const jb_cpu_kernel_table *out[JB_CPU_KERNELS_COUNT]) {
    int n = 0;
    for (int k = 0; k < JB_CPU_KERNELS_COUNT; k++)
        if (jb_cpu_kernel_set((jb_cpu_kernels)k))
            out[n++] = jb_cpu_kernel_set((jb_cpu_kernels)k);
    cr_assert_geq(n, 1);
    cr_assert_eq(out[0], &jb_cpu_kernels_portable);
    return n;
}

#endif /* JB_TEST_KERNEL_SETS_H */

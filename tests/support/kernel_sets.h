/*
 * kernel_sets.h — the CPU kernel sets this machine runs (cpu/kernels.h), for the suites that test each.
 */
#ifndef JB_TEST_KERNEL_SETS_H
#define JB_TEST_KERNEL_SETS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/cpu_features.h"
#include "cpu/kernels.h"

/* The sets this CPU runs into out, portable first; their count. */
static inline int ks_available_sets(const jb_cpu_kernel_table *out[JB_CPU_KERNELS_COUNT]) {
    int n = 0;
    for (int k = 0; k < JB_CPU_KERNELS_COUNT; k++)
        if (jb_cpu_kernel_set((jb_cpu_kernels)k))
            out[n++] = jb_cpu_kernel_set((jb_cpu_kernels)k);
    cr_assert_geq(n, 1);
    cr_assert_eq(out[0], &jb_cpu_kernels_portable);
    char names[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), " %s", jb_cpu_kernels_name(out[i]->set));
    cr_log_info("kernel sets this CPU runs (the others are not tested here):%s", names);
    return n;
}

#endif /* JB_TEST_KERNEL_SETS_H */

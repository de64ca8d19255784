/*
 * kernels.c — the kernel set in use: the selected set's table (base/cpu_features.h), and the E4M3 table
 * every set widens F8 weights with.
 */
#include "cpu/kernels.h"

#include "ckpt/dtype.h"

#include <pthread.h>

float jb_cpu_e4m3_table[256];

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const jb_cpu_kernel_table *active;

static void init_once(void) {
    for (int b = 0; b < 256; b++)
        jb_cpu_e4m3_table[b] = jb_e4m3_to_f32((uint8_t)b);
}

static void select_active(void) { active = jb_cpu_kernel_set(jb_cpu_kernels_selected()); }

const jb_cpu_kernel_table *jb_cpu_kernel_set(jb_cpu_kernels k) {
    static const jb_cpu_kernel_table *const sets[JB_CPU_KERNELS_COUNT] = {
        &jb_cpu_kernels_portable, &jb_cpu_kernels_avx2, &jb_cpu_kernels_avx512, &jb_cpu_kernels_avx512vnni,
        &jb_cpu_kernels_avx512bf16};
    pthread_once(&once, init_once);
    if ((unsigned)k >= JB_CPU_KERNELS_COUNT || sets[k]->gemm == NULL || !jb_cpu_kernels_supported(k))
        return NULL;
    return sets[k];
}

const jb_cpu_kernel_table *jb_cpu_kernels_active(void) {
    static pthread_once_t active_once = PTHREAD_ONCE_INIT;
    pthread_once(&active_once, select_active);
    return active;
}

/*
 * cpu_features.c — CPU feature detection (GCC/Clang builtins and CPUID on x86-64) and the one-time kernel
 * set selection.
 */
#include "base/cpu_features.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* F16C from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows its name. */
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static bool detect(jb_cpu_kernels k) {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    if (k == JB_CPU_KERNELS_AVX2)
        return avx2;
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
    if (k == JB_CPU_KERNELS_AVX512)
        return avx512;
    const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
    if (k == JB_CPU_KERNELS_AVX512_VNNI)
        return vnni;
    return vnni && __builtin_cpu_supports("avx512bf16");
}
#else
static bool detect(jb_cpu_kernels k) {
    (void)k;
    return false;
}
#endif

static const char *const NAMES[JB_CPU_KERNELS_COUNT] = {"portable", "avx2", "avx512", "avx512vnni", "avx512bf16"};

const char *jb_cpu_kernels_name(jb_cpu_kernels k) {
    return (unsigned)k < JB_CPU_KERNELS_COUNT ? NAMES[k] : "unknown";
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool supported[JB_CPU_KERNELS_COUNT];
static jb_cpu_kernels selected;
static char description[160];

/* Detect once; select: JAMBA_CPU_KERNELS if it names a supported set, else the best set. */
static void select_once(void) {
    jb_cpu_kernels best = JB_CPU_KERNELS_PORTABLE;
    supported[0] = true;
    for (int k = 1; k < JB_CPU_KERNELS_COUNT; k++)
        if ((supported[k] = detect((jb_cpu_kernels)k)))
            best = (jb_cpu_kernels)k;
    selected = best;
    const char *env = getenv("JAMBA_CPU_KERNELS");
    if (env == NULL || env[0] == '\0') {
        snprintf(description, sizeof description, "%s", NAMES[best]);
        return;
    }
    int want = -1;
    for (int k = 0; k < JB_CPU_KERNELS_COUNT; k++)
        if (strcmp(env, NAMES[k]) == 0)
            want = k;
    if (want >= 0 && want < (int)best)
        selected = (jb_cpu_kernels)want;
    snprintf(description, sizeof description, "%s (JAMBA_CPU_KERNELS=%.32s%s; this CPU supports %s)",
             NAMES[selected], env, want < 0 ? " is not a kernel set" : "", NAMES[best]);
}

bool jb_cpu_kernels_supported(jb_cpu_kernels k) {
    pthread_once(&once, select_once);
    return (unsigned)k < JB_CPU_KERNELS_COUNT && supported[k];
}

jb_cpu_kernels jb_cpu_kernels_selected(void) {
    pthread_once(&once, select_once);
    return selected;
}

const char *jb_cpu_kernels_describe(void) {
    pthread_once(&once, select_once);
    return description;
}

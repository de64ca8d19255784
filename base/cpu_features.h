/*
 * cpu_features.h — which set of CPU kernels this process runs: the best this CPU supports, chosen once at
 * run time (no build flag ties the binary to one CPU), or the one the JAMBA_CPU_KERNELS environment
 * variable names (portable | avx2 | avx512 | avx512vnni | avx512bf16; a set the CPU lacks falls back to the best it has).
 */
#ifndef JB_BASE_CPU_FEATURES_H
#define JB_BASE_CPU_FEATURES_H

#include <stdbool.h>

/* Kernel sets, each needing the one before it. */
typedef enum jb_cpu_kernels {
    JB_CPU_KERNELS_PORTABLE = 0, /* plain C, any CPU */
    JB_CPU_KERNELS_AVX2 = 1,     /* x86-64 AVX2 + FMA + F16C */
    JB_CPU_KERNELS_AVX512 = 2,   /* and AVX-512 F, BW, VL */
    JB_CPU_KERNELS_AVX512_VNNI = 3, /* and AVX-512 VNNI (int8 dot products) */
    JB_CPU_KERNELS_AVX512_BF16 = 4, /* and AVX-512 BF16 (bf16 dot products) */
} jb_cpu_kernels;

#define JB_CPU_KERNELS_COUNT 5

/* True when this CPU (and its OS) can run kernel set k. */
bool jb_cpu_kernels_supported(jb_cpu_kernels k);

/* The set in use, decided once per process (thread-safe): JAMBA_CPU_KERNELS when set, else the best. */
jb_cpu_kernels jb_cpu_kernels_selected(void);

/* "portable", "avx2", "avx512", "avx512vnni", "avx512bf16". */
const char *jb_cpu_kernels_name(jb_cpu_kernels k);

/* The selection in words for `jamba devices`, e.g. "avx512" or "portable (JAMBA_CPU_KERNELS=portable;
 * this CPU supports avx512)". */
const char *jb_cpu_kernels_describe(void);

#endif /* JB_BASE_CPU_FEATURES_H */

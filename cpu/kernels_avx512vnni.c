/*
 * kernels_avx512vnni.c — the AVX-512 kernel set with VNNI (cpu/kernels_avx512_set.h): the same float
 * kernels, int8 x int8 products by vpdpbusd.
 */
#define JB_TARGET_AVX512 "avx512f,avx512bw,avx512vl,avx2,fma,f16c,avx512vnni"
#define Q8_VNNI 1
#define KERNEL_SET JB_CPU_KERNELS_AVX512_VNNI
#define KERNEL_TABLE jb_cpu_kernels_avx512vnni
#include "cpu/kernels_avx512_set.h"

/*
 * kernels_avx512.c — the AVX-512 kernel set (cpu/kernels_avx512_set.h), int8 x int8 products by vpmaddwd.
 */
#define JB_TARGET_AVX512 "avx512f,avx512bw,avx512vl,avx2,fma,f16c"
#define KERNEL_SET JB_CPU_KERNELS_AVX512
#define KERNEL_TABLE jb_cpu_kernels_avx512
#include "cpu/kernels_avx512_set.h"

/*
 * kernels_avx512bf16.c — the AVX-512 kernel set with VNNI and BF16 (cpu/kernels_avx512_set.h): the same float
 * kernels, int8 x int8 products by vpdpbusd, bf16 x bf16 products by vdpbf16ps.
 */
#define JB_TARGET_AVX512 "avx512f,avx512bw,avx512vl,avx2,fma,f16c,avx512vnni,avx512bf16"
#define Q8_VNNI 1
#define B16_HW 1
#define KERNEL_SET JB_CPU_KERNELS_AVX512_BF16
#define KERNEL_TABLE jb_cpu_kernels_avx512bf16
#include "cpu/kernels_avx512_set.h"

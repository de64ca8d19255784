/*
 * bench_gemv.c — the CPU matrix-product kernel alone (cpu/kernels.h) on one thread, at decode shapes: how
 * fast it reads weights that stay in cache and weights that stream from memory.
 *
 *   bench_gemv [--T rows] [--K inputs] [--N outputs] [--dtype bf16|f32|i8|q8|b16] [--footprint-mb MB] [--reps R]
 *              [--kernels portable|avx2|avx512|avx512vnni|avx512bf16]
 *
 * Y[T, N] = X[T, K] · W[N, K]^T over M matrices W of N x K that together fill --footprint-mb (at least one):
 * a footprint well under the L2/L3 measures the kernel on cached weights, one several times the L3 measures
 * it on weights read from memory (the decode case of a model larger than the cache). Each repetition
 * multiplies every matrix once; the line reports the weight bytes read per second and the multiply-adds per
 * second of the best repetition and of the median one (the best is the more stable figure on a shared
 * machine: a repetition can only be slowed by a neighbour). One JSON line:
 *   {"kernels":..., "dtype":..., "T":..., "K":..., "N":..., "footprint_bytes":..., "matrices":M,
 *    "best_gb_s":..., "median_gb_s":..., "best_gflop_s":..., "median_gflop_s":..., "check":Y[0]}
 * ("check" prints a result so that no compiler can drop the products.) q8: int8 weights times int8 activations
 * (gemm_q8), each product quantizing its activation rows first (jb_cpu_quantize_rows), as the runtime does;
 * b16: bf16 weights times bf16 activations (gemm_b16), each product rounding its rows first.
 */
#include "bench/bench_util.h"
#include "ckpt/dtype.h"
#include "cpu/kernels.h"
#include "cpu/ops.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPS 101

static void usage(void) {
    fprintf(stderr, "usage: bench_gemv [--T rows] [--K inputs] [--N outputs] [--dtype bf16|f32|i8|q8|b16] "
                    "[--footprint-mb MB] [--reps R] [--kernels portable|avx2|avx512|avx512vnni|avx512bf16]\n");
    exit(2);
}

static long long positive(const char *s) {
    long long v;
    if (!bench_positive(s, LLONG_MAX, &v))
        usage();
    return v;
}

/* A deterministic value in [-1, 1). */
static float pseudo(uint64_t i) {
    i = (i + 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
    i ^= i >> 31;
    return (float)(i >> 40) / (float)(1ull << 23) - 1.0f;
}

int main(int argc, char **argv) {
    long long T = 1, K = 1024, N = 4096, footprint_mb = 512, reps = 11;
    jamba_dtype dtype = JAMBA_DTYPE_BF16;
    int q8 = 0, b16 = 0; /* int8 (bf16) weights times int8 (bf16) activations */
    jb_cpu_kernels set = jb_cpu_kernels_selected();
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (strcmp(argv[i], "--T") == 0 && more)
            T = positive(argv[++i]);
        else if (strcmp(argv[i], "--K") == 0 && more)
            K = positive(argv[++i]);
        else if (strcmp(argv[i], "--N") == 0 && more)
            N = positive(argv[++i]);
        else if (strcmp(argv[i], "--footprint-mb") == 0 && more)
            footprint_mb = positive(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && more)
            reps = positive(argv[++i]);
        else if (strcmp(argv[i], "--dtype") == 0 && more) {
            const char *d = argv[++i];
            dtype = strcmp(d, "bf16") == 0 || strcmp(d, "b16") == 0 ? JAMBA_DTYPE_BF16
                    : strcmp(d, "f32") == 0 ? JAMBA_DTYPE_F32
                    : strcmp(d, "i8") == 0 || strcmp(d, "q8") == 0 ? JAMBA_DTYPE_I8
                                                                   : (usage(), JAMBA_DTYPE_BF16);
            q8 = strcmp(d, "q8") == 0;
            b16 = strcmp(d, "b16") == 0;
        } else if (strcmp(argv[i], "--kernels") == 0 && more) {
            const char *k = argv[++i];
            set = strcmp(k, "portable") == 0 ? JB_CPU_KERNELS_PORTABLE
                  : strcmp(k, "avx2") == 0   ? JB_CPU_KERNELS_AVX2
                  : strcmp(k, "avx512") == 0 ? JB_CPU_KERNELS_AVX512
                  : strcmp(k, "avx512vnni") == 0 ? JB_CPU_KERNELS_AVX512_VNNI
                  : strcmp(k, "avx512bf16") == 0 ? JB_CPU_KERNELS_AVX512_BF16
                                             : (usage(), JB_CPU_KERNELS_PORTABLE);
        } else
            usage();
    }
    if (reps > MAX_REPS || T > 4096 || K > (1 << 20) || N > (1 << 24))
        usage();
    const jb_cpu_kernel_table *kt = jb_cpu_kernel_set(set);
    if (kt == NULL) {
        fprintf(stderr, "bench_gemv: this CPU cannot run the %s kernels\n", jb_cpu_kernels_name(set));
        return 1;
    }
    const size_t es = jamba_dtype_size(dtype), matrix_bytes = (size_t)N * (size_t)K * es;
    long long M = ((long long)footprint_mb << 20) / (long long)matrix_bytes;
    M = M < 1 ? 1 : M;
    uint8_t *W = malloc((size_t)M * matrix_bytes);
    float *X = malloc((size_t)(T * K) * sizeof(float)), *Y = malloc((size_t)(T * N) * sizeof(float));
    float *scale = malloc((size_t)N * sizeof(float)), *sx = malloc((size_t)T * sizeof(float));
    const int64_t ldq = jb_cpu_lowp_row_bytes(K, 2); /* bytes, enough for either */
    uint8_t *Xq = malloc((size_t)(T * ldq));
    if (W == NULL || X == NULL || Y == NULL || scale == NULL || sx == NULL || Xq == NULL || (q8 && K > JB_Q8_MAX_K)) {
        fprintf(stderr, "bench_gemv: out of memory\n");
        return 1;
    }
    const size_t elems = (size_t)M * (size_t)N * (size_t)K;
    for (size_t i = 0; i < elems; i++) { /* values in [-1, 1) in the stored dtype */
        const float v = pseudo(i);
        if (dtype == JAMBA_DTYPE_BF16) {
            const uint16_t h = jb_f32_to_bf16(v);
            memcpy(W + 2 * i, &h, 2);
        } else if (dtype == JAMBA_DTYPE_F32)
            memcpy(W + 4 * i, &v, 4);
        else
            W[i] = (uint8_t)(int8_t)(v * 127.0f);
    }
    for (long long i = 0; i < T * K; i++)
        X[i] = pseudo((uint64_t)i + elems);
    for (long long n = 0; n < N; n++)
        scale[n] = 1.0f / 127.0f;
    double secs[MAX_REPS];
    for (long long r = -1; r < reps; r++) { /* one warm-up */
        const double t0 = now();
        for (long long m = 0; m < M && q8; m++) {
            jb_cpu_quantize_rows(X, T, K, Xq, ldq, sx, kt->q8_offset);
            const jb_gemm_lowp_args a = {Xq, sx, T, K, ldq, N, (const int8_t *)(W + (size_t)m * matrix_bytes), scale,
                                       NULL, Y};
            kt->gemm_q8(&a, 0, N);
        }
        for (long long m = 0; m < M && b16; m++) {
            jb_cpu_round_rows_bf16(X, T, K, (uint16_t *)Xq, ldq / 2);
            const jb_gemm_lowp_args a = {Xq, NULL, T, K, ldq / 2, N, W + (size_t)m * matrix_bytes, NULL, NULL, Y};
            kt->gemm_b16(&a, 0, N);
        }
        for (long long m = 0; m < M && !q8 && !b16; m++) {
            const jb_gemm_args a = {X, T, K, N, W + (size_t)m * matrix_bytes, dtype,
                                    dtype == JAMBA_DTYPE_I8 ? scale : NULL, NULL, Y};
            kt->gemm(&a, 0, N);
        }
        if (r >= 0)
            secs[r] = now() - t0;
    }
    double best = secs[0];
    for (long long r = 1; r < reps; r++)
        best = secs[r] < best ? secs[r] : best;
    const double med = median(secs, (int)reps);
    const double bytes = (double)M * (double)matrix_bytes, flops = 2.0 * (double)M * (double)(T * K * N);
    printf("{\"kernels\":\"%s\",\"dtype\":\"%s\",\"T\":%lld,\"K\":%lld,\"N\":%lld,\"footprint_bytes\":%.0f,"
           "\"matrices\":%lld,\"best_gb_s\":%.2f,\"median_gb_s\":%.2f,\"best_gflop_s\":%.2f,"
           "\"median_gflop_s\":%.2f,\"check\":%.6g}\n",
           jb_cpu_kernels_name(set), q8 ? "Q8" : b16 ? "B16" : jamba_dtype_name(dtype), T, K, N, bytes, M, bytes / best / 1e9,
           bytes / med / 1e9, flops / best / 1e9, flops / med / 1e9, (double)Y[0]);
    free(W), free(X), free(Y), free(scale), free(sx), free(Xq);
    return 0;
}

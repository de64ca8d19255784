/*
 * bench_mamba.c — the CPU Mamba kernels alone (cpu/mamba.h: the causal conv with its SiLU, the selective
 * scan) on one thread, over the channels of one layer: the per-token work a batched step repeats for every
 * sequence, and a prefill for every token.
 *
 *   bench_mamba [--op conv|scan] [--tokens n] [--d-inner D] [--d-state N] [--d-conv K] [--reps R]
 *
 * One segment of n tokens over all D channels (default 2048, the synthetic model's D_i; Jamba-Mini's is 8192;
 * N 16, K 4), its inputs laid out as the CPU forward pass lays them out: the conv reads the in_proj output,
 * whose rows are 2·D wide (x, then the gate z the scan reads), the scan reads B and C from x_proj's rows of
 * dt_rank + 2·N (dt_rank D / 32 here). Each repetition runs the kernel 20 times; the line reports the best
 * repetition in ns per channel and token (conv) or per channel, token and state (scan), and the median one.
 * The state and window carry on from call to call (A < 0 keeps the state bounded). The kernel set is the one
 * the runtime selects (JAMBA_CPU_KERNELS picks another). One JSON line:
 *   {"kernels":..., "op":..., "tokens":n, "d_inner":D, "d_state":N, "d_conv":K, "best_ns":...,
 *    "median_ns":..., "check":...}
 */
#include "bench/bench_util.h"
#include "base/cpu_features.h"
#include "cpu/kernels.h"
#include "cpu/mamba.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPS 101
#define CALLS 20

static void usage(void) {
    fprintf(stderr, "usage: bench_mamba [--op conv|scan] [--tokens n] [--d-inner D] [--d-state N] [--d-conv K] "
                    "[--reps R]\n");
    exit(2);
}

static long long positive(const char *s, long long max) {
    long long v;
    if (!bench_positive(s, max, &v))
        usage();
    return v;
}

/* n floats in [lo, hi), deterministic. */
static float *values(long long n, float lo, float hi, unsigned seed) {
    float *v = malloc((size_t)n * sizeof *v);
    if (v == NULL) {
        fprintf(stderr, "bench_mamba: out of memory\n");
        exit(1);
    }
    for (long long i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = lo + (hi - lo) * (float)(seed >> 8) / (float)(1u << 24);
    }
    return v;
}

int main(int argc, char **argv) {
    long long n = 32, D = 2048, N = 16, K = 4, reps = 21;
    int scan = 0;
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (strcmp(argv[i], "--op") == 0 && more) {
            const char *op = argv[++i];
            scan = strcmp(op, "scan") == 0 ? 1 : strcmp(op, "conv") == 0 ? 0 : (usage(), 0);
        } else if (strcmp(argv[i], "--tokens") == 0 && more)
            n = positive(argv[++i], 1 << 16);
        else if (strcmp(argv[i], "--d-inner") == 0 && more)
            D = positive(argv[++i], 1 << 16);
        else if (strcmp(argv[i], "--d-state") == 0 && more)
            N = positive(argv[++i], 256);
        else if (strcmp(argv[i], "--d-conv") == 0 && more)
            K = positive(argv[++i], 64);
        else if (strcmp(argv[i], "--reps") == 0 && more)
            reps = positive(argv[++i], MAX_REPS);
        else
            usage();
    }
    const jb_cpu_kernel_table *kt = jb_cpu_kernels_active();
    /* conv: x [n, 2D] (the in_proj output: x, then z), taps [D, K], bias [D], window [D, K-1], out [n, D];
     * scan: u, delta, y [n, D], z in x's second half, [dt | B | C] [n, R + 2N], A and state [D, N], skip [D] */
    const long long R = D / 32 > 0 ? D / 32 : 1, ldbc = R + 2 * N;
    float *x = values(n * 2 * D, -2, 2, 1), *w = values(D * K, -0.5f, 0.5f, 2), *bias = values(D, -0.5f, 0.5f, 3);
    float *window = values(D * (K > 1 ? K - 1 : 1), -1, 1, 4), *u = values(n * D, -2, 2, 11);
    float *delta = values(n * D, 0.001f, 0.2f, 5), *bc = values(n * ldbc, -1, 1, 6), *A = values(D * N, -8, -0.5f, 7);
    float *skip = values(D, -1, 1, 8), *state = values(D * N, -1, 1, 9);
    float *out = values(n * D, 0, 1, 10);
    const jb_conv_args conv = {.n = n, .d_inner = D, .d_conv = K, .x = x, .ldx = 2 * D, .w = w, .b = bias,
                               .window = window, .out = out};
    const jb_scan_args sa = {.n = n, .d_inner = D, .d_state = N, .u = u, .delta = delta, .B = bc + R,
                             .C = bc + R + N, .ldbc = ldbc, .A = A, .D = skip, .z = x + D, .ldz = 2 * D,
                             .state = state, .y = out};
    double secs[MAX_REPS];
    for (long long r = -1; r < reps; r++) { /* one warm-up */
        const double t0 = now();
        for (int c = 0; c < CALLS; c++) {
            if (scan)
                kt->scan(&sa, 0, D);
            else
                kt->conv(&conv, 0, D);
        }
        if (r >= 0)
            secs[r] = (now() - t0) / CALLS;
    }
    double best = secs[0];
    for (long long r = 1; r < reps; r++)
        best = secs[r] < best ? secs[r] : best;
    const double units = (double)n * (double)D * (scan ? (double)N : 1.0);
    printf("{\"kernels\":\"%s\",\"op\":\"%s\",\"tokens\":%lld,\"d_inner\":%lld,\"d_state\":%lld,\"d_conv\":%lld,"
           "\"best_ns\":%.3f,\"median_ns\":%.3f,\"check\":%.6g}\n",
           jb_cpu_kernels_name(jb_cpu_kernels_selected()), scan ? "scan" : "conv", n, D, N, K, best * 1e9 / units,
           median(secs, (int)reps) * 1e9 / units, (double)out[0]);
    free(x), free(w), free(bias), free(window), free(u), free(delta), free(bc), free(A), free(skip), free(state);
    free(out);
    return 0;
}

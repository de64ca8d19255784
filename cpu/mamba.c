/*
 * cpu_mamba.c — causal conv and selective scan, channel-parallel, on the selected kernel set (cpu/kernels.h,
 * vectorised over channels). The arithmetic order follows the reference's slow path: Ā = exp(A·Δ),
 * B̄u = (Δ·B)·u, h = Ā·h + B̄u, y = Σ h·C + D·u, y·SiLU(z). Work per channel and token, in multiply-adds for
 * jb_cpu_grain: about 4 per conv tap (SiLU's exp amortised), 8 per scan state (an exp each).
 */
#include "cpu/mamba.h"

#include "cpu/kernels.h"
#include "cpu/ops.h"

static void conv_channels(void *arg, int64_t c0, int64_t c1, int thread) {
    (void)thread;
    jb_cpu_kernels_active()->conv(arg, c0, c1);
}

void jb_cpu_conv_silu(jb_pool *pool, const jb_conv_args *a) {
    jb_pool_run(pool, a->d_inner, jb_cpu_grain(pool, a->d_inner, a->n * a->d_conv * 4, 16), conv_channels, (void *)a);
}

static void scan_channels(void *arg, int64_t c0, int64_t c1, int thread) {
    (void)thread;
    jb_cpu_kernels_active()->scan(arg, c0, c1);
}

void jb_cpu_selective_scan(jb_pool *pool, const jb_scan_args *a) {
    jb_pool_run(pool, a->d_inner, jb_cpu_grain(pool, a->d_inner, a->n * a->d_state * 8, 16), scan_channels,
                (void *)a);
}

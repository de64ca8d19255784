/*
 * cpu_mamba.c — causal conv and selective scan, channel-parallel. The arithmetic order follows the
 * reference's slow path: Ā = exp(A·Δ), B̄u = (Δ·B)·u, h = Ā·h + B̄u, y = Σ h·C + D·u, y·SiLU(z).
 */
#include "cpu/mamba.h"

#include "cpu/ops.h"

#include <string.h>

static void conv_channels(void *arg, int64_t c0, int64_t c1, int thread) {
    (void)thread;
    const jb_conv_args *a = arg;
    const int64_t K = a->d_conv, Di = a->d_inner;
    for (int64_t c = c0; c < c1; c++) {
        const float *w = a->w + c * K;
        float *win = a->window + c * (K - 1);
        for (int64_t t = 0; t < a->n; t++) {
            float cur = a->x[t * a->ldx + c];
            float acc = 0.0f;
            for (int64_t j = 0; j < K - 1; j++)
                acc += w[j] * win[j];
            acc += w[K - 1] * cur;
            if (a->b)
                acc += a->b[c];
            a->out[t * Di + c] = jb_silu(acc);
            if (K > 1) { /* slide: drop the oldest input, append the current one */
                memmove(win, win + 1, (size_t)(K - 2) * sizeof *win);
                win[K - 2] = cur;
            }
        }
    }
}

void jb_cpu_conv_silu(jb_pool *pool, const jb_conv_args *a) {
    jb_pool_run(pool, a->d_inner, 16, conv_channels, (void *)a);
}

static void scan_channels(void *arg, int64_t c0, int64_t c1, int thread) {
    (void)thread;
    const jb_scan_args *a = arg;
    const int64_t N = a->d_state, Di = a->d_inner;
    for (int64_t c = c0; c < c1; c++) {
        float *h = a->state + c * N;
        const float *A = a->A + c * N;
        for (int64_t t = 0; t < a->n; t++) {
            const float dt = a->delta[t * Di + c], u = a->u[t * Di + c];
            const float *B = a->B + t * a->ldbc, *C = a->C + t * a->ldbc;
            float y = 0.0f;
            for (int64_t s = 0; s < N; s++) {
                h[s] = expf(A[s] * dt) * h[s] + (dt * B[s]) * u;
                y += h[s] * C[s];
            }
            y += u * a->D[c];
            a->y[t * Di + c] = y * jb_silu(a->z[t * a->ldz + c]);
        }
    }
}

void jb_cpu_selective_scan(jb_pool *pool, const jb_scan_args *a) {
    jb_pool_run(pool, a->d_inner, 16, scan_channels, (void *)a);
}

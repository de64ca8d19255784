/*
 * cpu_ops.h — the fp32 CPU reference ops every other backend is checked against.
 *
 * Activations are fp32 row-major. Weights are read in their stored dtype (F32, F16 or BF16) and widened
 * to fp32 as they are used, so a checkpoint is never copied whole. All accumulation is fp32 (norm
 * statistics in double). Dimension letters as in ckpt/weights.h; T = rows (tokens) of the call.
 */
#ifndef JB_CPU_OPS_H
#define JB_CPU_OPS_H

#include <math.h>
#include <stdint.h>

#include "ckpt/dtype.h"
#include "ckpt/weights.h"
#include "base/numeric.h"
#include "base/threadpool.h"


/* The weight as fp32: its own memory when it is aligned F32, else widened into `scratch` (n elements). */
const float *jb_weight_f32(const jb_weight *w, float *scratch);

/* Per-thread scratch the matmul needs: JB_MATMUL_ROWS rows of K floats per thread. */
#define JB_MATMUL_ROWS 4

/* Y[T, N] = X[T, K] · W[N, K]^T (+ bias[N]). Parallel over N. scratch: n_threads * JB_MATMUL_ROWS * K. */
void jb_cpu_matmul(jb_pool *pool, float *scratch, float *Y, const float *X, int64_t T, const jb_weight *W,
                   const float *bias);

/* y[T, n] = w ⊙ (x / sqrt(mean(x²) + eps)), row by row; x and y may alias. Rows have stride ld. */
void jb_cpu_rmsnorm(float *y, const float *x, int64_t T, int64_t n, int64_t ld, const float *w, double eps);

static inline float jb_silu(float x) { return x / (1.0f + expf(-x)); }

/* torch's softplus: x above 20 passes through, else log(1 + e^x). */
static inline float jb_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

#endif /* JB_CPU_OPS_H */

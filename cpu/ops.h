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

/* Output rows are split between threads in blocks of JB_MATMUL_ROWS. */
#define JB_MATMUL_ROWS 4

/* Y[T, N] = X[T, K] · W[N, K]^T (+ bias[N]) on the selected kernel set (cpu/kernels.h: weights widened in
 * registers, one summation order per output element). Parallel over N. */
void jb_cpu_matmul(jb_pool *pool, float *Y, const float *X, int64_t T, const jb_weight *W,
                   const float *bias);

/* How a context's products run: its pool and, when its int8 or bf16 weights meet int8 or bf16 activations
 * (jamba_context_params.cpu_activations = I8 or BF16), the buffer the converted activation rows go to. */
typedef struct jb_cpu_exec {
    jb_pool *pool;
    jamba_dtype activations; /* F32 (or UNKNOWN): all products take fp32 activations; I8: int8 weights take
                                int8 ones; BF16: bf16 weights take bf16 ones */
    void *act_rows;          /* [act_rows_max, act_row_bytes] or NULL: activations stay fp32 */
    float *act_scales;       /* [act_rows_max] the int8 rows' scales */
    int64_t act_rows_max, act_row_bytes;
} jb_cpu_exec;

/* Bytes of an activation row of K values as gemm_q8 (elem 1) or gemm_b16 (elem 2) read it (cpu/kernels.h):
 * K · elem rounded up to JB_LOWP_ROW_ALIGN. */
int64_t jb_cpu_lowp_row_bytes(int64_t K, int64_t elem);

/* jb_cpu_matmul on ex's pool; where ex says so, an I8 weight (K ≤ JB_Q8_MAX_K) whose rows fit ex's buffer
 * multiplies the activations quantized by jb_cpu_quantize_rows, in integers (kernels.h, gemm_q8), and a BF16
 * weight the activations rounded by jb_cpu_round_rows_bf16, in pairs (gemm_b16). */
void jb_cpu_matmul_ex(const jb_cpu_exec *ex, float *Y, const float *X, int64_t T, const jb_weight *W,
                      const float *bias);

/* G[T, I] = SiLU(X Wg^T) ⊙ (X Wu^T) and U[T, I] = X Wu^T (Wg, Wu [I, K]) in one parallel job: each range of
 * columns multiplied by both, then gated (the same bits as two jb_cpu_matmul_ex and the kernels' silu_mul);
 * int8 activations quantized once for both. */
void jb_cpu_matmul_swiglu(const jb_cpu_exec *ex, float *G, float *U, const float *X, int64_t T,
                          const jb_weight *Wg, const jb_weight *Wu);

/* Several products of the same output width over different rows (the experts of a MoE layer) as one
 * parallel job over their columns: Y = X W^T, or with W2 the SwiGLU above (Y = SiLU(X W^T) ⊙ (X W2^T),
 * Y2 = X W2^T). The converted activations of part i go to ex's buffer after those of parts 0 .. i-1 (parts
 * whose rows no longer fit there multiply fp32 activations); more than JB_CPU_MAX_PARTS parts run as several
 * jobs. Each output has the bits of its own product. */
#define JB_CPU_MAX_PARTS 32
typedef struct jb_cpu_part {
    const float *X;           /* [T, K] */
    int64_t T;
    const jb_weight *W, *W2;  /* [N, K]; W2 NULL: not gated */
    float *Y, *Y2;            /* [T, N] */
} jb_cpu_part;
void jb_cpu_matmul_parts(const jb_cpu_exec *ex, const jb_cpu_part *parts, int n);

/* Each row of X[T, K] as int8 with one scale (symmetric, per row, as dynamic per-token quantization):
 * sx[t] = max_k |x[t, k]| / 127, xq = round-half-even(x · (127 / max)) in [-127, 127], stored as xq + offset
 * in Xq[t, 0 .. K) and 0 + offset in [K, ldq). A row of zeros (or of values all below 127 / FLT_MAX, whose
 * 127 / max would overflow) gets scale 0 and zeros; a row holding NaN or ±Inf gets scale NaN (so its products
 * are NaN). */
void jb_cpu_quantize_rows(const float *X, int64_t T, int64_t K, uint8_t *Xq, int64_t ldq, float *sx, int offset);

/* Each row of X[T, K] rounded to bf16 (to nearest even, as jb_f32_to_bf16; NaN stays NaN) in Xb[t, 0 .. K),
 * zeros in [K, ldb). */
void jb_cpu_round_rows_bf16(const float *X, int64_t T, int64_t K, uint16_t *Xb, int64_t ldb);

/* Work worth handing to another thread: about this many multiply-adds (some microseconds). Smaller
 * operations run on the calling thread alone, so waking and joining workers never costs more than it saves
 * (the demo model's decode steps are all such operations). The environment variable
 * JAMBA_CPU_MIN_PARALLEL_WORK overrides it (read once; 0 splits every operation, as tests do). */
#define JB_CPU_MIN_PARALLEL_WORK 262144

/* The jb_pool_run grain for n items of `work` multiply-adds each: equal parts, each with at least the
 * minimum work above and a multiple of `align` items, JB_POOL_RANGES_PER_THREAD per thread at most.
 * Results never depend on it (cpu/kernels.h). */
int64_t jb_cpu_grain(const jb_pool *pool, int64_t n, int64_t work, int64_t align);

/* y[T, n] = w ⊙ (x / sqrt(mean(x²) + eps)), row by row; x and y may alias. Rows have stride ld. */
void jb_cpu_rmsnorm(float *y, const float *x, int64_t T, int64_t n, int64_t ld, const float *w, double eps);

static inline float jb_silu(float x) { return x / (1.0f + expf(-x)); }

/* torch's softplus: x above 20 passes through, else log(1 + e^x). */
static inline float jb_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

#endif /* JB_CPU_OPS_H */

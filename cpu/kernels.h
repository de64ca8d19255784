/*
 * kernels.h — the CPU backend's inner loops, one table per kernel set (base/cpu_features.h): portable C,
 * AVX2 + FMA + F16C, AVX-512, AVX-512 with VNNI, and with BF16 too. Each set is compiled with function-level target attributes, so one binary
 * runs anywhere and uses the best set the CPU has (or the one JAMBA_CPU_KERNELS names).
 *
 * Numerics, identical for every thread count and every way of splitting rows into steps:
 *   gemm  y[t, n] = Σ_k x[t, k] · w[n, k] (+ bias[n]). Weights are read in their stored dtype and widened in
 *         registers (I8 and F8_E4M3 as their values; the sum is then times the row's scale). Every output
 *         element has one summation order: VW lanes (the set's vector width), lane i summing k ≡ i (mod VW)
 *         in increasing k with zeros past K, then the lanes pairwise (i with i + VW/2, and so on down to one),
 *         whatever the tile shape that computed it. Portable: separate multiply and add (fused where the
 *         compiler's target has FMA); AVX2 / AVX-512: fused multiply-add.
 *   gemm_q8  int8 weights times int8-quantized activations (jamba_context_params.cpu_activations = I8):
 *         y[t, n] = ((float)(Σ_k xq[t, k] · w[n, k]) · sx[t]) · scale[n] (+ bias[n]), the sum exact in
 *         integers (so every set, tile shape and thread count gives the same bits), the activations
 *         quantized per row by jb_cpu_quantize_rows (cpu/ops.h).
 *   gemm_b16 bf16 weights times activations rounded to bf16 (cpu_activations = BF16): lane i of VW sums the
 *         pairs (2i, 2i+1) of every 2·VW values in increasing k, zeros past K, as vdpbf16ps does: acc + x·w of
 *         the odd one, then of the even one (products exact in fp32, each sum rounded to nearest even; the
 *         AVX-512 BF16 set is that instruction, whose denormal inputs and outputs are zeros), then the lanes
 *         pairwise as gemm. The same bits for every tile shape, thread count and step split within a set.
 *   conv, scan, SiLU and softplus: vectorised over channels (elements), so each follows the plain loop's
 *         order of operations (cpu/mamba.h, cpu/ops.h); portable calls libm's expf and log1pf, the SIMD sets
 *         vector versions within a few ulp of them (so their results can differ in the last bits).
 *   attend: scores q·k with the gemm's lane order, softmax in base/numeric.h's order with the set's exp,
 *         Σ p_j v_j per element in key order (fused in the SIMD sets); the query heads of one KV head that
 *         attend together share each key and value load, not their arithmetic.
 */
#ifndef JB_CPU_KERNELS_H
#define JB_CPU_KERNELS_H

#include <stdint.h>

#include "base/cpu_features.h"
#include "jamba.h"

/* The arguments of the Mamba ops (cpu/mamba.h) and of attention (cpu/attention.h), which call these. */
struct jb_conv_args;
struct jb_scan_args;
struct jb_attn_args;

/* One matrix product: Y[T, N] = X[T, K] · W[N, K]^T (+ bias). */
typedef struct jb_gemm_args {
    const float *X;     /* [T, K] */
    int64_t T, K, N;
    const void *W;      /* [N, K] in dtype, any alignment */
    jamba_dtype dtype;  /* F32, F16, BF16, I8 or F8_E4M3 */
    const float *scale; /* [N] row scales of I8 / F8_E4M3, else NULL */
    const float *bias;  /* [N] or NULL */
    float *Y;           /* [T, N] */
} jb_gemm_args;

/* The longest row gemm_q8 takes: its int32 sums cannot overflow (K · 255 · 127 < 2^31). */
#define JB_Q8_MAX_K 65536
/* Activation rows of gemm_q8 and gemm_b16 are stored padded to a multiple of this many bytes (the widest
 * set's step). */
#define JB_LOWP_ROW_ALIGN 64

/* One product of low-precision activations with weights of the same kind: int8 x int8 (gemm_q8) or
 * bf16 x bf16 (gemm_b16), Y[T, N] = X[T, K] · W[N, K]^T (+ bias) as above. */
typedef struct jb_gemm_lowp_args {
    const void *X;      /* [T, ldx]: int8 as xq + q8_offset (the table's) per byte, or bf16; ldx elements a
                           multiple of JB_LOWP_ROW_ALIGN bytes, the padding past K 0 (+ q8_offset) */
    const float *sx;    /* [T] the int8 rows' scales (NULL for bf16) */
    int64_t T, K, ldx, N; /* int8: K ≤ JB_Q8_MAX_K */
    const void *W;      /* [N, K] int8 or bf16 */
    const float *scale; /* [N] the int8 rows' scales (NULL for bf16) */
    const float *bias;  /* [N] or NULL */
    float *Y;           /* [T, N] */
} jb_gemm_lowp_args;

typedef struct jb_cpu_kernel_table {
    jb_cpu_kernels set;
    int vector_width; /* VW above */
    int attend_heads; /* query heads of one KV head one attend call may take, ≤ JB_CPU_ATTN_HEADS_MAX (cpu/attention.h) */
    /* Columns [n0, n1) of Y for every row. */
    void (*gemm)(const jb_gemm_args *a, int64_t n0, int64_t n1);
    /* Channels [c0, c1) of the causal conv + SiLU, and of the selective scan. */
    void (*conv)(const struct jb_conv_args *a, int64_t c0, int64_t c1);
    void (*scan)(const struct jb_scan_args *a, int64_t c0, int64_t c1);
    /* For i < n: g[i] = SiLU(g[i]) · u[i], x[i] = softplus(x[i]) (as jb_silu and jb_softplus), y[i] = -e^x[i]. */
    void (*silu_mul)(float *g, const float *u, int64_t n);
    void (*softplus)(float *x, int64_t n);
    void (*neg_exp)(float *y, const float *x, int64_t n);
    /* Attention of query `row` for heads [head0, head0 + nh) (cpu/attention.h), 1 ≤ nh ≤ attend_heads, all
     * reading one KV head; score: nh rows of pos + n floats of the thread's scratch. Each head's result is
     * the same whatever nh. */
    void (*attend)(const struct jb_attn_args *a, int64_t row, int64_t head0, int nh, float *score);
    /* Columns [n0, n1) of an int8 x int8 product for every row; q8_offset: what the set's activation bytes
     * add to xq (0: signed bytes; 128: unsigned, for VNNI's unsigned x signed products). */
    void (*gemm_q8)(const jb_gemm_lowp_args *a, int64_t n0, int64_t n1);
    int q8_offset;
    /* Columns [n0, n1) of a bf16 x bf16 product for every row. */
    void (*gemm_b16)(const jb_gemm_lowp_args *a, int64_t n0, int64_t n1);
} jb_cpu_kernel_table;

/* The table of kernel set k, or NULL when this CPU cannot run it (or this build has no such set). */
const jb_cpu_kernel_table *jb_cpu_kernel_set(jb_cpu_kernels k);

/* The table of the selected set (jb_cpu_kernels_selected). */
const jb_cpu_kernel_table *jb_cpu_kernels_active(void);

/* The sets' tables (kernels_*.c); the SIMD ones only where the compiler targets x86-64. */
extern const jb_cpu_kernel_table jb_cpu_kernels_portable;
extern const jb_cpu_kernel_table jb_cpu_kernels_avx2;
extern const jb_cpu_kernel_table jb_cpu_kernels_avx512;
extern const jb_cpu_kernel_table jb_cpu_kernels_avx512vnni;
extern const jb_cpu_kernel_table jb_cpu_kernels_avx512bf16;

/* E4M3 decoding table, 256 entries (filled on first use of jb_cpu_kernel_set). */
extern float jb_cpu_e4m3_table[256];

#endif /* JB_CPU_KERNELS_H */

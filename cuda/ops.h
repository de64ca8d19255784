/*
 * ops.h — the CUDA backend's ops, one C entry point each, so the forward pass (cuda/forward.cu) and the
 * op-level tests (tests/gpu) call the same code. Every op has a CPU twin in cpu/ or moe/ and is
 * checked against it (tests/gpu/test_gpu_ops.c).
 *
 * Conventions: pointers are device pointers; matrices are row-major with the leading dimension given
 * (elements); `dt` is the element type of activations and weights (JAMBA_DTYPE_F32 or JAMBA_DTYPE_BF16);
 * buffers documented as float are fp32 in both modes. Every op is asynchronous on `stream` and returns
 * the launch error (cudaSuccess when the kernels were queued). Dimension letters as in ckpt/weights.h;
 * T = rows of the step.
 */
#ifndef JB_CUDA_OPS_H
#define JB_CUDA_OPS_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"
#include "backend/backend.h"
#include "cuda/decode_plan.h"
#include "cuda/gpu_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- row-wise ops --------------------------------------------------------------------------------- */

/* x[T, H] (f32) = rows tokens[t] of table[V, H] (dt). */
cudaError_t jb_cuda_embed(jamba_dtype dt, float *x, const void *table, const int32_t *tokens, int64_t T, int64_t H,
                         cudaStream_t stream);

/* x[T, H] (f32) += add (f32, may be NULL); then, when out is not NULL, out[T, H] (dt) = w ⊙ x / rms(x).
 * The statistic is summed in double, as the CPU reference does. */
cudaError_t jb_cuda_add_rmsnorm(jamba_dtype dt, float *x, const float *add, const float *w, void *out, int64_t T,
                               int64_t H, float eps, cudaStream_t stream);

/* dst[i, :] = src[rows[i], :] for i < n (f32 rows of H). */
cudaError_t jb_cuda_gather_rows(float *dst, const float *src, const int64_t *rows, int64_t n, int64_t H,
                               cudaStream_t stream);

/* Y[T, N] += bias[N] (Y of type dt, leading dimension ldy). */
cudaError_t jb_cuda_add_bias(jamba_dtype dt, void *Y, int64_t ldy, const float *bias, int64_t T, int64_t N,
                            cudaStream_t stream);

/* out[T, I] (dt) = SiLU(gu[:, 0:I]) ⊙ gu[:, I:2I] (gu of type dt, leading dimension ld). */
cudaError_t jb_cuda_swiglu(jamba_dtype dt, const void *gu, int64_t ld, void *out, int64_t T, int64_t I,
                          cudaStream_t stream);

/* Y[T, N] = X[T, K] · W[N, K]^T through cuBLAS on the handle's stream, fp32 accumulation (the fp32
 * mode without TF32). X and W are of type in_dt, Y of out_dt (F32 or in_dt). Returns a cuBLAS status. */
cublasStatus_t jb_cuda_gemm(cublasHandle_t h, jamba_dtype in_dt, jamba_dtype out_dt, void *Y, int64_t ldy,
                           const void *X, int64_t ldx, const void *W, int64_t T, int64_t N, int64_t K);

/* x[T, H] (f32) = rows tokens[t] of table[V, H] (dt), then out[T, H] (dt) = w ⊙ x / rms(x): the embedding
 * and the first input norm in one launch. */
cudaError_t jb_cuda_embed_rmsnorm(jamba_dtype dt, float *x, const void *table, const int32_t *tokens, int64_t T,
                                 int64_t H, const float *w, void *out, float eps, cudaStream_t stream);

/* ---- Mamba ------------------------------------------------------------------------------------------ */

/* xdbl[T, R + 2N] (f32, the x_proj output): dt, B and C each RMS-normalised with their weights (when
 * dt_w is NULL there are no inner norms); the dt columns are written to dt_out[T, R] (dt). */
cudaError_t jb_cuda_ssm_params(jamba_dtype dt, float *xdbl, int64_t T, int64_t R, int64_t N, const float *dt_w,
                              const float *b_w, const float *c_w, float eps, void *dt_out, cudaStream_t stream);

typedef struct jb_cuda_conv_args {
    const void *x;        /* [T, ldx] (dt): the conv input, channels [0, D_i) */
    int64_t ldx;
    const float *w;       /* [D_i, K] */
    const float *b;       /* [D_i] or NULL */
    float *window;        /* sequence s's window [D_i, K-1] (oldest first) at window + s * window_stride */
    int64_t window_stride;
    void *out;            /* [T, D_i] (dt) = SiLU(conv) */
    int64_t d_inner, d_conv;
} jb_cuda_conv_args;

/* Causal depthwise conv + SiLU over every segment, continuing from each sequence's window; then the
 * windows move on to hold each segment's last K-1 inputs. */
cudaError_t jb_cuda_conv_silu(jamba_dtype dt, const jb_cuda_conv_args *a, const jb_cuda_step_desc *step,
                             cudaStream_t stream);

/* ---- decode-sized products with fused epilogues (fused.cu) ------------------------------------------- */

/* (JB_CUDA_FUSED_ROWS and the rule for which steps use them: cuda/decode_plan.h.)
 * A product of a few rows: output row t is W[N, K] · X[x_rows ? x_rows[t] : t, 0:K] (W and X of the
 * activation type dt, X with leading dimension ldx, x_rows a device array or NULL), 1 <= T <= FUSED_ROWS.
 * Each row's result is the same whatever T is and from run to run (a fixed summation order, no float
 * atomics). */
typedef struct jb_cuda_rows_product {
    const void *W;
    int64_t N, K;
    const void *X;
    int64_t ldx;
    const int64_t *x_rows;
    int64_t T;
} jb_cuda_rows_product;

/* Y[T, N] (out_dt: dt or F32, leading dimension ldy) = the product. */
cudaError_t jb_cuda_rows_gemv(jamba_dtype dt, const jb_cuda_rows_product *p, jamba_dtype out_dt, void *Y, int64_t ldy,
                             cudaStream_t stream);

/* Mamba's in_proj of a decode step (every segment one row): conv->x [T, conv->ldx] (dt) = the product
 * (+ bias [N] in dt, may be NULL); then columns [0, D_i) go through the causal conv1d + SiLU of their
 * sequence's window into conv->out and the windows move on, as jb_cuda_conv_silu does for one-row
 * segments. */
cudaError_t jb_cuda_rows_gemv_conv(jamba_dtype dt, const jb_cuda_rows_product *p, const float *bias,
                                  const jb_cuda_conv_args *conv, const jb_cuda_step_desc *step, cudaStream_t stream);

/* The dense gate|up product (N = 2I, gate rows first) with SwiGLU: act[T, ld_act] (dt) = SiLU(gate) ⊙ up,
 * both rounded to dt first as jb_cuda_swiglu reads them. */
cudaError_t jb_cuda_rows_gemv_swiglu(jamba_dtype dt, const jb_cuda_rows_product *p, void *act, int64_t ld_act,
                                    cudaStream_t stream);

/* An output product into the residual stream: x[T, N] (f32) += the product (+ bias [N], may be NULL); then,
 * when norm_w is not NULL, norm_out[T, N] (dt) = norm_w ⊙ x / rms(x) (jb_cuda_add_rmsnorm's numbers), done
 * by the grid's last block. counter: a device word that is zero, and is zero again when the kernel ends. */
cudaError_t jb_cuda_rows_gemv_residual(jamba_dtype dt, const jb_cuda_rows_product *p, const float *bias, float *x,
                                      const float *norm_w, void *norm_out, float eps, unsigned int *counter,
                                      cudaStream_t stream);

/* Mamba's x_proj (N = R + 2N_s) into xdbl[T, R + 2N_s] (f32), then jb_cuda_ssm_params on it by the grid's
 * last block (counter as above). */
cudaError_t jb_cuda_rows_gemv_ssm(jamba_dtype dt, const jb_cuda_rows_product *p, float *xdbl, int64_t R, int64_t N,
                                 const float *dt_w, const float *b_w, const float *c_w, float eps, void *dt_out,
                                 unsigned int *counter, cudaStream_t stream);

typedef struct jb_cuda_scan_args {
    const void *u;          /* [T, D_i] (dt) conv output */
    const void *delta_raw;  /* [T, D_i] (dt) dt_proj output before the bias and softplus */
    const float *dt_bias;   /* [D_i] */
    const float *A;         /* [D_i, N] = -exp(A_log) */
    const float *B, *C;     /* [T, ldbc] (f32) normalised B and C columns */
    int64_t ldbc;
    const float *D;         /* [D_i] */
    const void *z;          /* [T, ldz] (dt) the gate */
    int64_t ldz;
    float *state;           /* sequence s's SSM state [D_i, N] at state + s * state_stride */
    int64_t state_stride;
    void *y;                /* [T, D_i] (dt) = (Σ_n h·C + D·u) · SiLU(z) */
    float *summary;         /* [2, n_slots, D_i, N] scratch for multi-chunk segments (P: ΣΔ per channel
                             * and the final states in transit; S: chunk states) */
    int64_t d_inner, d_state;
} jb_cuda_scan_args;

/* Selective scan over every segment from each sequence's state, leaving the final state there; d_state
 * at most 256 (16 per thread in registers, one thread per channel when d_state <= 16). Long segments
 * run as time chunks in parallel: per-chunk summaries, a carry pass, then the chunks again from their
 * entering states (jb_cuda_chunk; the chunk length from jb_scan_chunk_rows in cuda/step_plan.h).
 * Rows move as 16-byte vectors when D_i, ldz and the pointers allow, else element by element. */
cudaError_t jb_cuda_selective_scan(jamba_dtype dt, const jb_cuda_scan_args *a, const jb_cuda_step_desc *step,
                                  cudaStream_t stream);

/* A decode step's dt_proj (W [D_i, R], X = the normalised dt rows) with the selective scan in its
 * epilogue: Δ_raw rounded to dt, then jb_cuda_selective_scan's step for each (channel, one-row segment);
 * scan->delta_raw and scan->summary are not used. */
cudaError_t jb_cuda_rows_gemv_scan(jamba_dtype dt, const jb_cuda_rows_product *p, const jb_cuda_scan_args *scan,
                                  const jb_cuda_step_desc *step, cudaStream_t stream);

/* ---- the Mamba mixer of a decode step (mamba_decode.cu) --------------------------------------------- */

typedef struct jb_cuda_mamba_mixer_args {
    jb_cuda_rows_product in;       /* in_proj: W [2 D_i, H], X = the normalised input rows */
    const float *in_bias;          /* [2 D_i] or NULL */
    jb_cuda_conv_args conv;        /* conv.x: in_proj's output [T, 2 D_i] (x | z); conv.out: u */
    jb_cuda_rows_product xp;       /* x_proj: W [R + 2N, D_i], X = u */
    float *xdbl;                   /* [T, R + 2N] */
    const float *dt_w, *b_w, *c_w; /* the dt/B/C norms (dt_w NULL: none) */
    void *dt_in;                   /* [T, R] (dt): the normalised dt rows (four-launch path) */
    jb_cuda_rows_product dp;       /* dt_proj: W [D_i, R], X = dt_in */
    jb_cuda_scan_args scan;        /* u, z, states, y; B and C: xdbl's columns */
    jb_cuda_rows_product op;       /* out_proj: W [H, D_i], X = scan.y */
    const float *out_bias;         /* [H] or NULL */
    float *x;                      /* [T, H] the residual stream, += the mixer's output */
    const float *norm_w;           /* then norm_out [T, H] (dt) = norm_w ⊙ x / rms(x); NULL: no norm */
    void *norm_out;
    float eps;
    unsigned int *counter;         /* zero before and after (four-launch path) */
} jb_cuda_mamba_mixer_args;

/* The whole Mamba mixer of a decode step (every segment one row, T <= FUSED_ROWS): in_proj + conv1d + SiLU,
 * x_proj, the dt/B/C norms, dt_proj + scan, out_proj added into x, the next norm. grid > 0: one cooperative
 * kernel of `grid` blocks (jb_cuda_mamba_mixer_grid) whose phases are separated by grid barriers; grid 0:
 * four launches of the fused products. Both compute the same numbers. */
cudaError_t jb_cuda_mamba_mixer_rows(jamba_dtype dt, const jb_cuda_mamba_mixer_args *a, const jb_cuda_step_desc *step,
                                    int grid, cudaStream_t stream);

/* The grid of the cooperative mixer kernel for steps of T rows on `device` (the blocks that fit on it at
 * once); *grid = 0 when the device cannot launch it cooperatively. */
cudaError_t jb_cuda_mamba_mixer_grid(jamba_dtype dt, int64_t T, int64_t R, int64_t N, int device, int *grid);

/* ---- attention ------------------------------------------------------------------------------------ */

typedef struct jb_cuda_attn_args {
    const void *qkv;        /* [T, ld_qkv] (dt): q (n_h*d_h) | k (n_kv*d_h) | v (n_kv*d_h) */
    int64_t ld_qkv;
    void *k_cache, *v_cache;/* sequence s's rows [n_ctx, n_kv*d_h] (kv_dt) at cache + s * seq_stride */
    int64_t seq_stride;
    jamba_dtype kv_dt;      /* the cache's type: dt, or F8_E4M3 with one scale per (token, KV head) */
    float *k_scale, *v_scale; /* F8_E4M3: sequence s's [n_ctx, n_kv] at scale + s * scale_seq_stride */
    int64_t scale_seq_stride;
    void *out;              /* [T, n_h*d_h] (dt) */
    int64_t n_heads, n_kv_heads, head_dim;
    float *partial;         /* split scratch: [T, n_h, n_splits, d_h + 2] floats (max, sum, weighted values) */
    int64_t partial_capacity; /* floats available in partial */
    unsigned int *split_count; /* [T, KV heads x head groups] finished split blocks per item, zero before and after
                                  every call (the last block resets its item); needed when n_splits > 1 */
    int64_t split_count_capacity; /* counters available in split_count */
    int32_t n_splits;       /* the most key splits a row may use on the split paths (the launch's depth) */
    int64_t split_len;      /* the fewest keys per split: a row of n keys uses min(n_splits, max(1, n / split_len))
                               splits of whole 64-key tiles (cuda/attn_layout.h, jb_attn_split_len) */
} jb_cuda_attn_args;

/* Append each row's k and v to its sequence's cache at its position (F8_E4M3 caches: each head's d_h
 * values scaled by amax / 448, the largest finite e4m3, rounded to nearest even). */
cudaError_t jb_cuda_kv_append(jamba_dtype dt, const jb_cuda_attn_args *a, const jb_cuda_step_desc *step,
                             cudaStream_t stream);

/* Causal attention of every row over its sequence's cache (the row's own key included), GQA, fp32 softmax.
 * Paths: flash (tensor-core prefill tiles), split (tensor-core flash-decoding), generic split (any head_dim
 * up to 256, fp32 or bf16). The tensor-core paths need bf16, d_h 64 or 128 and 16-byte aligned rows.
 * force_path: 0 picks (flash for segments of 16 rows or more, else split, each when it fits, else generic),
 * 1 forces a split path (tensor-core when it fits), 2 forces flash (an invalid-value error when it does
 * not fit), 3 forces the generic split path. The split count of each row is read from device memory (its
 * position), so the call is valid inside a CUDA graph replayed at other positions. The split paths are one
 * launch: the last split block of each (row, head group) merges the splits in split order. */
cudaError_t jb_cuda_attention(jamba_dtype dt, const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int force_path,
                             cudaStream_t stream);

/* ---- synthetic weights ---------------------------------------------------------------------------- */

typedef enum jb_cuda_fill_kind {
    JB_FILL_UNIFORM = 0,    /* uniform in [-a, a) */
    JB_FILL_CONST = 1,      /* a */
    JB_FILL_NEG_ARANGE = 2, /* -(i % period + 1): A = -exp(A_log) of the reference init */
    JB_FILL_DT_BIAS = 3,    /* softplus^-1 of dt log-uniform in [0.001, 0.1] */
    JB_FILL_INT8 = 4,       /* integers uniform in [-127, 127] */
} jb_cuda_fill_kind;

/* n elements of dt (F32, BF16, or I8 with JB_FILL_INT8) at dst from (seed, index) hashes. */
cudaError_t jb_cuda_fill(void *dst, jamba_dtype dt, int64_t n, jb_cuda_fill_kind kind, float a, int64_t period,
                        uint64_t seed, cudaStream_t stream);

/* ---- sampling ------------------------------------------------------------------------------------- */

/* Pick one token from each of n rows of logits [n, V] (f32, left unchanged), exactly as
 * jamba_sampler_sample does with the same draw. params and penalized ([n, max_penalized] ids) are device
 * arrays; work holds n * V floats. out[i] = the token, or -1 (every logit NaN or -inf);
 * used_draw[i] = 1 when the draw was consumed. */
cudaError_t jb_cuda_sample_rows(const float *logits, int64_t n, int64_t V, const jb_sample_params *params,
                          const int32_t *penalized, int64_t max_penalized, float *work, int32_t *out,
                          int32_t *used_draw, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_OPS_H */

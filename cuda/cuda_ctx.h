/*
 * cuda_ctx.h — the C ABI of the CUDA backend's device side (the .cu files): a model's weights on a
 * device, and a context's device state with the forward step, sampling and sequence-state access.
 * Compiled in only with JAMBA_CUDA; cuda/backend.c wraps it into the backend table.
 *
 * Errors: every CUDA and cuBLAS result is checked. A failure inside a step or a state operation marks
 * the context dead (the device may hold half-written state); every later call on it returns
 * JAMBA_ERR_DEVICE naming the first fault. A dead context can only be freed.
 */
#ifndef JB_CUDA_CUDA_CTX_H
#define JB_CUDA_CUDA_CTX_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "cuda/gpu_types.h"
#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- weights ------------------------------------------------------------------------------------------ */

typedef struct jb_cuda_weights jb_cuda_weights;

/* Check the device (present, this build's kernels run on it), plan one allocation for every weight of
 * the model converted to `dtype` (F32 or BF16; small vectors stay F32), and upload them. Fused layouts:
 * attention q|k|v as one matrix, gate|up as one, each MoE layer's experts contiguous. */
jamba_status jb_cuda_weights_create(const struct jamba_model *m, int device, jamba_dtype dtype,
                                    jb_cuda_weights **out, jamba_error *err);
void jb_cuda_weights_free(jb_cuda_weights *w);
int jb_cuda_weights_device(const jb_cuda_weights *w);
jamba_dtype jb_cuda_weights_dtype(const jb_cuda_weights *w);
uint64_t jb_cuda_weights_bytes(const jb_cuda_weights *w);

/* ---- contexts ----------------------------------------------------------------------------------------- */

typedef struct jb_backend_ctx jb_cuda_ctx; /* defined in context_dev.h */

typedef struct jb_cuda_ctx_params {
    int32_t n_seq_max;
    int64_t n_ctx, n_batch, n_logits_max;
    bool graphs;       /* capture decode steps (every segment one token) as CUDA graphs */
    jamba_dtype kv_dtype; /* the KV cache: F8_E4M3 (with per-token, per-head scales), else the weights' dtype */
} jb_cuda_ctx_params;

/* Allocate the KV cache, Mamba state, workspaces and step buffers from one computed plan (a clear
 * JAMBA_ERR_OUT_OF_MEMORY naming the need and the free memory when it does not fit). */
jamba_status jb_cuda_ctx_create(const struct jamba_model *m, const jb_cuda_weights *w, const jb_cuda_ctx_params *p,
                                jb_cuda_ctx **out, jamba_error *err);
void jb_cuda_ctx_free(jb_cuda_ctx *c);
/* Device bytes the context holds (state + workspaces), for reports. */
uint64_t jb_cuda_ctx_bytes(const jb_cuda_ctx *c);

/* One forward step (backend `step`): logits of io->logit_src go to device logit rows [logit_dst, +n_logits)
 * and, when io->host_logits is not NULL, to the host too; io->capture (may be NULL) receives hidden
 * states. Without host logits or capture the step is left running (the next call waits for it). */
jamba_status jb_cuda_step(jb_cuda_ctx *c, const jb_step_io *io, jamba_error *err);

/* Sample device logit rows [0, n) with per-row params (host array; penalized ids [n, max_penalized],
 * host). tokens[i] = the token or -1 (nothing drawable); used_draw[i] tells whether the draw was used. */
jamba_status jb_cuda_sample(jb_cuda_ctx *c, int64_t n, const jb_sample_params *params, const int32_t *penalized,
                            int64_t max_penalized, int32_t *tokens, int32_t *used_draw, jamba_error *err);

/* Copy device logit row `row` to host (vocab floats). */
jamba_status jb_cuda_logits_row(jb_cuda_ctx *c, int64_t row, float *dst, jamba_error *err);

/* ---- sequence state ------------------------------------------------------------------------------------- */

/* Zero the Mamba state of `seq` (its KV rows are dead once its length is 0). */
jamba_status jb_cuda_seq_reset(jb_cuda_ctx *c, int32_t seq, jamba_error *err);
/* Copy all state of src to dst, KV rows [0, n_tokens). */
jamba_status jb_cuda_seq_copy(jb_cuda_ctx *c, int32_t src, int32_t dst, int64_t n_tokens, jamba_error *err);
/* Read or write n floats of one piece starting at float `offset` (KV pieces convert from/to the cache
 * dtype; fp8 pieces are written in whole heads, each with a fresh scale). */
jamba_status jb_cuda_state_read(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                int64_t n, float *dst, jamba_error *err);
jamba_status jb_cuda_state_write(jb_cuda_ctx *c, int32_t seq, jb_state_kind kind, int64_t layer, int64_t offset,
                                 int64_t n, const float *src, jamba_error *err);

#ifdef __cplusplus
}
#endif

#endif /* JB_CUDA_CUDA_CTX_H */

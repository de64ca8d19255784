/*
 * attn_kernels.h — the tensor-core attention kernels (cuda/attn_flash.cu) as seen by the attention entry
 * point (cuda/attention.cu, jb_cuda_attention), which checks the arguments and picks the path. Both need
 * bf16 activations, d_h 64 or 128, and 16-byte aligned rows (jb_attn_mma_fits).
 */
#ifndef JB_CUDA_ATTN_KERNELS_H
#define JB_CUDA_ATTN_KERNELS_H

#include "cuda/ops.h"

/* Whether the tensor-core kernels take these arguments (dt BF16, d_h 64 or 128, aligned q/k/v rows). */
bool jb_attn_mma_fits(jamba_dtype dt, const jb_cuda_attn_args *a);

/* Flash prefill: every segment's rows in tiles of (query, head) pairs against their caches. */
cudaError_t jb_attn_flash(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, cudaStream_t stream);

/* Whether a split launch of T rows, at most n_splits splits and heads_per_block query heads per block has
 * its scratch: the partials (T x n_heads x n_splits x (d_h + 2) floats) and one arrival counter per (row,
 * KV head, head group) item; neither is needed with one split. Defined in cuda/attention.cu. */
bool jb_attn_split_scratch_fits(const jb_cuda_attn_args *a, int64_t T, int32_t n_splits, int heads_per_block);

/* Decode (split-K): one block per (row, KV head, head group, key split) for splits 0 .. n_splits-1, of
 * which each row uses jb_attn_splits_used (its length); a row of one split writes out, the others write
 * partials that the last of the row's blocks to finish merges (attn_combine.cuh). One launch. */
cudaError_t jb_attn_decode_mma(const jb_cuda_attn_args *a, const jb_cuda_step_desc *step, int32_t n_splits,
                               cudaStream_t stream);

#endif /* JB_CUDA_ATTN_KERNELS_H */

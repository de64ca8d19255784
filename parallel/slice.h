/*
 * slice.h — what one rank holds of each tensor (shard.h's plan), in the tensor's own memory: the strided
 * runs of bytes a loader copies for it (on the host, or one cudaMemcpy2D to a device, straight from the
 * mapped safetensors: no full copy per rank), and a rank's jb_weights whose views hold only its slices, so
 * any backend's kernels run on them with the rank's shapes (jb_shard_rank_config).
 *
 * A tensor's rank r slice (dim d, begin b, count c; the split dimension in `parts` equal parts of P indices
 * each) in a row-major tensor of element size s, with O = the product of the dimensions before d and
 * In = the product of those after it: O · parts runs of c · In · s bytes, the first at b · In · s, each
 * P · In · s bytes after the one before; runs that touch (the whole dimension) are one. A row split of one
 * part is one run (a view); a column split is one run per row; in_proj's x and z halves are two runs.
 */
#ifndef JB_PARALLEL_SLICE_H
#define JB_PARALLEL_SLICE_H

#include <stdbool.h>
#include <stdint.h>

#include "ckpt/weights.h"
#include "jamba.h"
#include "parallel/shard.h"

typedef struct jb_slice_runs {
    int64_t runs;       /* 0: the rank holds nothing of it */
    uint64_t offset;    /* bytes from the tensor's start to the first run */
    uint64_t pitch;     /* bytes from one run's start to the next one's */
    uint64_t run_bytes; /* bytes in each run */
} jb_slice_runs;

/* Rank r's slice of tensor t as runs of elements of elem_bytes bytes; false when a size overflows 64 bits. */
bool jb_slice_runs_of(const jb_shard_plan *p, int64_t t, int r, uint64_t elem_bytes, jb_slice_runs *out);

/* The runs of tensor t's fp32 row scales ([shape[0]], quantized matrices) rank r holds: the rows of a row
 * split, every row under a column split (a partial product still needs each output row's scale). */
bool jb_slice_scale_runs(const jb_shard_plan *p, int64_t t, int r, jb_slice_runs *out);

/* Bytes of the runs together (runs x run_bytes); false on overflow. */
bool jb_slice_runs_bytes(const jb_slice_runs *s, uint64_t *out);

/* Gather the runs of src into dst, back to back (dst holds jb_slice_runs_bytes bytes). */
void jb_slice_runs_copy(void *dst, const void *src, const jb_slice_runs *s);

/* Rank r's weights: out has the layout of `full` (bound for cfg, from which p was planned) with every view
 * holding only rank r's slice, shaped as the slice (the split dimension count x parts long; a tensor the rank
 * does not hold: data NULL, that dimension 0). A slice that is one run is a view into full's memory (the
 * mapped checkpoint), others are copied into memory out owns. Free with jb_weights_free; full must outlive
 * out. */
jamba_status jb_shard_bind_rank(const jb_shard_plan *p, const jamba_config *cfg, const jb_weights *full, int r,
                                jb_weights *out, jamba_error *err);

#endif /* JB_PARALLEL_SLICE_H */

/*
 * quantize.h — int8 weight-only quantization of linear layers (per output row, symmetric, fp32 scales):
 * the format the experts (and optionally the dense MLPs) are held in to fit Jamba-Mini on one 80 GB GPU.
 * s = max|row| / 127 and q = round-half-even(w / s) clamped to ±127, as vLLM's ExpertsInt8; a zero row
 * has scale 0. Float, F8_E4M3 and int8 sources are accepted (int8 ones are kept as they are).
 */
#ifndef JB_QUANTIZE_H
#define JB_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "ckpt/weights.h"
#include "jamba.h"

/* q [N, K] and scale [N] from the matrix w [N, K] (any stored dtype); JAMBA_ERR_NUMERIC naming `what` when
 * a row holds a NaN or Inf. */
jamba_status jb_quantize_int8(const jb_weight *w, int8_t *q, float *scale, const char *what, jamba_error *err);

/* Progress of long work, called on the calling thread between pieces: `done` of `total` units; returning
 * false stops the work (JAMBA_ERR_ABORTED). */
typedef struct jb_progress {
    bool (*fn)(void *data, int64_t done, int64_t total);
    void *data;
} jb_progress;

/* Requantize the model's expert matrices (experts) and dense MLP matrices (mlp) to int8 in place: the
 * views then point into memory owned by `w`. n_threads share the work, a few matrices per thread between
 * progress calls (progress may be NULL). *n_converted = the matrices that were not int8 already. */
jamba_status jb_weights_quantize(jb_weights *w, const jamba_config *cfg, bool experts, bool mlp, int n_threads,
                                 const jb_progress *progress, const char *label, int64_t *n_converted,
                                 jamba_error *err);

#endif /* JB_QUANTIZE_H */

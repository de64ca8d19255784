/*
 * quantize.h — int8 weight-only quantization of linear layers (per output row, symmetric, fp32 scales):
 * the format the experts (and optionally the dense MLPs) are held in to fit Jamba-Mini on one 80 GB GPU,
 * and, on the CPU, every projection matrix (mixers, LM head) to halve the bytes a decoded token reads.
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

/* The groups of linear layers to hold as int8 (jamba_model_params: experts, mlp, mixers, lm_head). */
typedef struct jb_quant_groups {
    bool experts; /* MoE expert matrices */
    bool mlp;     /* dense MLP matrices */
    bool mixers;  /* Mamba in_proj, x_proj, dt_proj, out_proj; attention q/k/v/o_proj */
    bool lm_head; /* the output projection; tied, the embedding matrix it shares */
} jb_quant_groups;

static inline bool jb_quant_any(const jb_quant_groups *g) { return g->experts || g->mlp || g->mixers || g->lm_head; }

/* Whether the linear-layer matrix with this canonical name (as jb_weights_visit gives it, linear = true)
 * is in a chosen group: for planning and shape-only models, which have names but no bound weights. */
bool jb_quant_groups_name(const jb_quant_groups *g, const char *name);

/* Requantize the matrices of the chosen groups to int8 in place (those already int8 are kept): the views
 * then point into memory owned by `w`; tied, lm_head is set to the quantized embedding again. n_threads
 * share the work, a few matrices per thread between progress calls (progress may be NULL). *n_converted =
 * the matrices that were not int8 already. */
jamba_status jb_weights_quantize(jb_weights *w, const jamba_config *cfg, const jb_quant_groups *groups,
                                 int n_threads, const jb_progress *progress, const char *label,
                                 int64_t *n_converted, jamba_error *err);

#endif /* JB_QUANTIZE_H */

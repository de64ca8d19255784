/*
 * model_bytes.h — the bytes a model's weights take as held in host memory, for memory plans and
 * estimates.
 */
#ifndef JB_BACKEND_MODEL_BYTES_H
#define JB_BACKEND_MODEL_BYTES_H

#include "backend/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loaded models: the bytes held (stored tensors, or the int8 matrices and scales of a requantized
 * model). Planning-only models: every tensor the config implies in `planning_dtype`, except the matrices of
 * the groups loaded as int8 (jamba_model_params), counted as int8 plus an fp32 scale per row. */
jamba_status jb_model_weight_bytes(const jamba_model *m, jamba_dtype planning_dtype, uint64_t *out, jamba_error *err);

#ifdef __cplusplus
}
#endif

#endif /* JB_BACKEND_MODEL_BYTES_H */

/*
 * model.h — the runtime's ways of making a jamba_model besides loading a folder (the struct itself is
 * backend/model.h, the layer every backend reads it from).
 */
#ifndef JB_MODEL_H
#define JB_MODEL_H

#include "backend/model.h"
#include "jamba.h"

/* A model whose weights are made on the CUDA device that runs it: random values of the reference ranges
 * from `seed`, in the formats given (int8 experts / dense MLPs), without a host copy. For benchmarks of
 * full-size configs. CUDA contexts only (a CPU context fails with JAMBA_ERR_NO_WEIGHTS). */
jamba_status jb_model_device_synthetic(const char *config_json, size_t config_len, const char *label, uint64_t seed,
                                       bool experts_int8, bool mlp_int8, jamba_model **out, jamba_error *err);

/* A model from config.json text and a safetensors image in memory (synthetic models for benchmarks and
 * tests). The model takes `image` (allocated with jb_malloc) and frees it, also on failure. */
jamba_status jb_model_from_image(const char *config_json, size_t config_len, uint8_t *image, uint64_t image_len,
                                 const char *label, jamba_model **out, jamba_error *err);

#endif /* JB_MODEL_H */

/*
 * synthetic.h — a random-weight model of any config, built in memory as a safetensors image and loaded
 * through the same validation and binding as a checkpoint folder. For benchmarks (a model of Jamba-Mini
 * width without downloading one) and tests; the weights follow the shapes and value ranges of the
 * reference initialisation (norms 1, A_log = log(1..N), dt bias for dt in [0.001, 0.1]).
 */
#ifndef JB_SYNTHETIC_H
#define JB_SYNTHETIC_H

#include <stdint.h>

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* config_json: config.json text. dtype: F32 or BF16 storage. n_threads fill the weights in parallel. */
jamba_status jb_synthetic_model(const char *config_json, uint64_t seed, jamba_dtype dtype, int n_threads,
                                jamba_model **out, jamba_error *err);

#ifdef __cplusplus
}
#endif

#endif /* JB_SYNTHETIC_H */

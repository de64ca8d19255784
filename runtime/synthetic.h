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

/* How the reference initialisation fills a tensor, told by its name (a checkpoint name or a device label
 * such as "mamba.A_log"): norms and D are ones, A_log is log(1 .. N) per channel, the dt bias is the
 * inverse softplus of dt log-uniform in [0.001, 0.1], and everything else uniform in ±*bound (the conv
 * 1/sqrt(d_conv), other biases 0.1, matrices 0.02·√3, i.e. std 0.02). */
typedef enum jb_init_kind { JB_INIT_UNIFORM, JB_INIT_ONES, JB_INIT_A_LOG, JB_INIT_DT_BIAS } jb_init_kind;
jb_init_kind jb_synthetic_init(const char *name, int64_t d_conv, double *bound);

#ifdef __cplusplus
}
#endif

#endif /* JB_SYNTHETIC_H */

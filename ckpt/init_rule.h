/*
 * init_rule.h — the reference initialisation of a Jamba checkpoint's tensors, for random-weight models
 * made on the host (runtime/synthetic.c) and on a CUDA device (cuda/synth.cu): one rule for both.
 */
#ifndef JB_CKPT_INIT_RULE_H
#define JB_CKPT_INIT_RULE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the reference initialisation fills a tensor, told by its name (a checkpoint name or a device label
 * such as "mamba.A_log"): norms and D are ones, A_log is log(1 .. N) per channel, the dt bias is the
 * inverse softplus of dt log-uniform in [0.001, 0.1], and everything else uniform in ±*bound (the conv
 * 1/sqrt(d_conv), other biases 0.1, matrices 0.02·√3, i.e. std 0.02). */
typedef enum jb_init_kind { JB_INIT_UNIFORM, JB_INIT_ONES, JB_INIT_A_LOG, JB_INIT_DT_BIAS } jb_init_kind;
jb_init_kind jb_synthetic_init(const char *name, int64_t d_conv, double *bound);

#ifdef __cplusplus
}
#endif

#endif /* JB_CKPT_INIT_RULE_H */

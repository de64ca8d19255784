/*
 * sizing.h — parameter counts and memory for a configuration, all in checked 64-bit arithmetic.
 */
#ifndef JB_SIZING_H
#define JB_SIZING_H

#include "jamba.h"

/* Parameter counts implied by the config (docs/jamba-architecture.md §9.2). */
jamba_status jb_param_counts(const jamba_config *c, jamba_param_counts *out, jamba_error *err);

/* KV bytes per token per sequence, and Mamba state bytes per sequence. */
jamba_status jb_state_sizes(const jamba_config *c, jamba_dtype kv_dtype, jamba_dtype conv_dtype,
                            uint64_t *kv_per_token, uint64_t *mamba_per_seq, jamba_error *err);

#endif /* JB_SIZING_H */

/*
 * config.h — config.json → a validated jamba_config with the reference (transformers JambaConfig)
 * defaults, "auto" dt_rank resolved, and the layer schedule derived from period/offset.
 */
#ifndef JB_CONFIG_H
#define JB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/strlist.h"
#include "jamba.h"

#define JB_CONFIG_MAX_BYTES (4ull << 20)

/* Parse and validate config.json text. Notes (unknown keys, ignored settings) are appended to `notes`
 * (may be NULL). `label` names the file in messages. */
jamba_status jb_config_parse(const char *json, size_t len, const char *label, jamba_config *out,
                             jb_strlist *notes, jamba_error *err);

/* Read and parse `dir`/config.json. */
jamba_status jb_config_load(const char *dir, jamba_config *out, jb_strlist *notes, jamba_error *err);

/* The schedule rule (docs/jamba-architecture.md §2). `layer` must be in [0, L). */
static inline bool jb_layer_is_attention(const jamba_config *c, int64_t layer) {
    return layer % c->attn_layer_period == c->attn_layer_offset;
}
static inline bool jb_layer_is_moe(const jamba_config *c, int64_t layer) {
    return c->num_experts > 1 && layer % c->expert_layer_period == c->expert_layer_offset;
}

/* Floats of one sequence's state pieces: a Mamba layer's conv window [D_i, K-1] and SSM state [D_i, N], an
 * attention layer's K or V row [n_kv * d_h]. */
static inline int64_t jb_conv_floats(const jamba_config *c) { return c->mamba_d_inner * (c->mamba_d_conv - 1); }
static inline int64_t jb_ssm_floats(const jamba_config *c) { return c->mamba_d_inner * c->mamba_d_state; }
static inline int64_t jb_kv_width(const jamba_config *c) { return c->num_key_value_heads * c->head_dim; }

#endif /* JB_CONFIG_H */

/*
 * fuzz_config.c — libFuzzer target: arbitrary bytes as config.json. Accepted configs must satisfy the
 * invariants the rest of the runtime relies on, and sizing them must not overflow silently.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "ckpt/config.h"
#include "ckpt/sizing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jamba_config c;
    jb_strlist notes = {0};
    if (jb_config_parse((const char *)data, size, "config.json", &c, &notes, NULL) == JAMBA_OK) {
        bool heads_ok = c.hidden_size % c.num_attention_heads == 0 && c.num_attention_heads % c.num_key_value_heads == 0 &&
                        c.head_dim * c.num_attention_heads == c.hidden_size;
        if (c.attn_layer_offset >= c.attn_layer_period || c.expert_layer_offset >= c.expert_layer_period ||
            (c.n_attention_layers > 0 && !heads_ok) || c.n_attention_layers + c.n_mamba_layers != c.num_hidden_layers)
            abort();
        jamba_param_counts p;
        uint64_t kv, state;
        if (jb_param_counts(&c, &p, NULL) == JAMBA_OK && p.active > p.total)
            abort();
        jb_state_sizes(&c, JAMBA_DTYPE_F32, JAMBA_DTYPE_F32, &kv, &state, NULL);
    }
    jb_strlist_free(&notes);
    return 0;
}

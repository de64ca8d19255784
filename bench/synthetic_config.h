/*
 * synthetic_config.h — the config.json of the benchmarks' synthetic model: 16 layers of hidden 1024 with
 * 16 experts top-2 on every other layer and attention every 8th (a Jamba-Mini block, narrower), built
 * with random bf16 weights by runtime/synthetic.h.
 */
#ifndef JB_BENCH_SYNTHETIC_CONFIG_H
#define JB_BENCH_SYNTHETIC_CONFIG_H

static const char *const JB_BENCH_SYNTHETIC =
    "{\"model_type\":\"jamba\",\"vocab_size\":8192,\"hidden_size\":1024,\"intermediate_size\":2048,"
    "\"num_hidden_layers\":16,\"num_attention_heads\":16,\"num_key_value_heads\":4,\"num_experts\":16,"
    "\"num_experts_per_tok\":2,\"expert_layer_period\":2,\"expert_layer_offset\":1,\"attn_layer_period\":8,"
    "\"attn_layer_offset\":4,\"mamba_d_state\":16,\"mamba_d_conv\":4,\"mamba_expand\":2,\"mamba_dt_rank\":\"auto\","
    "\"tie_word_embeddings\":false,\"rms_norm_eps\":1e-6,\"max_position_embeddings\":4096}";

#endif /* JB_BENCH_SYNTHETIC_CONFIG_H */

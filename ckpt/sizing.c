/*
 * sizing.c — parameter counts and per-sequence state sizes derived from a config.
 */
#include "ckpt/sizing.h"

#include "ckpt/config.h"
#include "base/checked.h"
#include "base/error.h"

#include <string.h>

/* Sum of products, stopping at the first overflow. */
typedef struct acc {
    uint64_t v;
    bool ok;
} acc;

static void add(acc *a, uint64_t x, uint64_t y) { a->ok = a->ok && jb_muladd_u64(&a->v, x, y); }

static uint64_t mamba_layer_params(const jamba_config *c, bool *ok) {
    uint64_t H = (uint64_t)c->hidden_size, Di = (uint64_t)c->mamba_d_inner, N = (uint64_t)c->mamba_d_state;
    uint64_t R = (uint64_t)c->mamba_dt_rank, K = (uint64_t)c->mamba_d_conv;
    acc a = {0, true};
    add(&a, 2 * Di, H);                    /* in_proj */
    add(&a, Di, K);                        /* conv1d */
    add(&a, R + 2 * N, Di);                /* x_proj */
    add(&a, Di, R);                        /* dt_proj */
    add(&a, Di, 1);                        /* dt_proj bias */
    add(&a, Di, N);                        /* A_log */
    add(&a, Di, 1);                        /* D */
    add(&a, H, Di);                        /* out_proj */
    if (c->mamba_conv_bias)
        add(&a, Di, 1);
    if (c->mamba_proj_bias)
        add(&a, 2 * Di + H, 1);
    if (c->mamba_inner_layernorms)
        add(&a, R + 2 * N, 1);
    *ok = *ok && a.ok;
    return a.v;
}

jamba_status jb_param_counts(const jamba_config *c, jamba_param_counts *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    uint64_t H = (uint64_t)c->hidden_size, I = (uint64_t)c->intermediate_size, V = (uint64_t)c->vocab_size;
    uint64_t E = (uint64_t)c->num_experts, q = (uint64_t)(c->num_attention_heads * c->head_dim);
    uint64_t kv = (uint64_t)(c->num_key_value_heads * c->head_dim);
    bool ok = true;
    uint64_t mamba = mamba_layer_params(c, &ok);
    acc attn = {0, true}, dense = {0, true}, experts = {0, true}, routers = {0, true}, norms = {0, true};
    acc inactive = {0, true}, m = {0, true};
    for (int64_t i = 0; i < c->num_hidden_layers; i++) {
        add(&norms, 2, H);
        if (jb_layer_is_attention(c, i)) {
            add(&attn, 2 * q, H); /* q_proj, o_proj */
            add(&attn, 2 * kv, H); /* k_proj, v_proj */
        } else {
            add(&m, mamba, 1);
        }
        if (jb_layer_is_moe(c, i)) {
            add(&routers, E, H);
            add(&experts, E * 3 * I, H);
            add(&inactive, (E - (uint64_t)c->num_experts_per_tok) * 3 * I, H);
        } else {
            add(&dense, 3 * I, H);
        }
    }
    add(&norms, H, 1); /* final_layernorm */
    out->embedding = V * H;
    out->lm_head = c->tie_word_embeddings ? 0 : V * H;
    out->attention = attn.v;
    out->mamba = m.v;
    out->dense_mlp = dense.v;
    out->experts = experts.v;
    out->routers = routers.v;
    out->norms = norms.v;
    ok = ok && attn.ok && dense.ok && experts.ok && routers.ok && norms.ok && inactive.ok && m.ok;
    acc total = {0, true};
    const uint64_t parts[] = {out->embedding, out->lm_head, out->attention, out->mamba,
                              out->dense_mlp, out->experts, out->routers, out->norms};
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++)
        add(&total, parts[p], 1);
    if (!ok || !total.ok)
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "parameter count overflows 64 bits");
    out->total = total.v;
    out->active = total.v - inactive.v;
    return JAMBA_OK;
}

jamba_status jb_state_sizes(const jamba_config *c, jamba_dtype kv_dtype, jamba_dtype conv_dtype,
                            uint64_t *kv_per_token, uint64_t *mamba_per_seq, jamba_error *err) {
    /* KV: every attention layer stores K and V for n_kv heads of d_h values. */
    acc kv = {0, true};
    add(&kv, (uint64_t)c->n_attention_layers * 2, (uint64_t)(c->num_key_value_heads * c->head_dim));
    acc kvb = {0, true};
    add(&kvb, kv.v, jamba_dtype_size(kv_dtype));
    if (kv_dtype == JAMBA_DTYPE_F8_E4M3) /* one fp32 scale per token, KV head, K or V, layer */
        add(&kvb, (uint64_t)c->n_attention_layers * 2 * (uint64_t)c->num_key_value_heads, 4);
    /* Mamba: a conv window of K-1 past inputs and an F32 SSM state of N values per inner channel. */
    uint64_t per_channel = (uint64_t)(c->mamba_d_conv - 1) * jamba_dtype_size(conv_dtype) +
                           (uint64_t)c->mamba_d_state * 4;
    acc ms = {0, true};
    add(&ms, (uint64_t)c->n_mamba_layers * (uint64_t)c->mamba_d_inner, per_channel);
    if (!kv.ok || !kvb.ok || !ms.ok)
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "state size overflows 64 bits");
    *kv_per_token = kvb.v;
    *mamba_per_seq = ms.v;
    return JAMBA_OK;
}

/*
 * sizing.c — parameter counts and per-sequence state sizes derived from a config.
 */
#include "ckpt/sizing.h"

#include "ckpt/config.h"
#include "ckpt/weights.h"
#include "base/checked.h"
#include "base/error.h"

#include <string.h>

/* Sum of products, stopping at the first overflow. */
typedef struct acc {
    uint64_t v;
    bool ok;
} acc;

static void add(acc *a, uint64_t x, uint64_t y) { a->ok = a->ok && jb_muladd_u64(&a->v, x, y); }

/* Parameters by part, summed over the tensors jb_weights_visit enumerates (the one list of them). */
typedef struct part_sums {
    acc embedding, lm_head, attention, mamba, dense_mlp, experts, routers, norms;
} part_sums;

/* The part a tensor belongs to, by its canonical name. */
static acc *part_of(part_sums *s, const char *name) {
    if (strcmp(name, "model.embed_tokens.weight") == 0)
        return &s->embedding;
    if (strcmp(name, "lm_head.weight") == 0)
        return &s->lm_head;
    if (strstr(name, ".experts."))
        return &s->experts;
    if (strstr(name, ".router."))
        return &s->routers;
    if (strstr(name, ".self_attn."))
        return &s->attention;
    if (strstr(name, ".mamba."))
        return &s->mamba;
    if (strstr(name, ".feed_forward."))
        return &s->dense_mlp;
    return &s->norms; /* input, pre-FFN and final layernorms */
}

static bool count_tensor(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)w, (void)linear;
    acc n = {1, true};
    for (int d = 0; d < rank; d++)
        n.ok = n.ok && jb_mul_u64(n.v, (uint64_t)shape[d], &n.v);
    acc *part = part_of(arg, name);
    part->ok = part->ok && n.ok;
    add(part, n.v, 1);
    return true;
}

jamba_status jb_param_counts(const jamba_config *c, jamba_param_counts *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    part_sums s;
    acc *parts[] = {&s.embedding, &s.lm_head, &s.attention, &s.mamba, &s.dense_mlp, &s.experts, &s.routers, &s.norms};
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++)
        *parts[p] = (acc){0, true};
    jb_weights w = {0};
    jamba_status st = jb_weights_visit(c, &w, count_tensor, &s, err);
    jb_weights_free(&w);
    JB_TRY(st);
    acc total = {0, true};
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        total.ok = total.ok && parts[p]->ok;
        add(&total, parts[p]->v, 1);
    }
    if (!total.ok)
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "parameter count overflows 64 bits");
    out->embedding = s.embedding.v;
    out->lm_head = s.lm_head.v;
    out->attention = s.attention.v;
    out->mamba = s.mamba.v;
    out->dense_mlp = s.dense_mlp.v;
    out->experts = s.experts.v;
    out->routers = s.routers.v;
    out->norms = s.norms.v;
    out->total = total.v;
    /* every MoE layer holds E experts of one size, and a token runs k of them */
    const uint64_t E = (uint64_t)c->num_experts, k = (uint64_t)c->num_experts_per_tok;
    const uint64_t inactive = E > 0 && k < E ? s.experts.v / E * (E - k) : 0;
    out->active = total.v - inactive;
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

/*
 * shard.c — the sharding plan (shard.h): each tensor jb_weights_visit enumerates is matched, by the view
 * it binds to, against the rules below, and its slice per rank follows from the rule. A tensor no rule
 * names fails the plan, so a tensor added to the binder cannot be left out of it silently.
 */
#include "parallel/shard.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "ckpt/config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- what N must divide ------------------------------------------------------------------------- */

/* Whether n ranks can split this model evenly; when not, the first reason as a phrase into why[cap]. */
static bool can_split(const jamba_config *c, int n, char *why, size_t cap) {
    const char *what = NULL;
    int64_t must = 0;
    if (c->n_attention_layers > 0 && c->num_attention_heads % n != 0) {
        what = "attention is split by query heads, and num_attention_heads";
        must = c->num_attention_heads;
    } else if (c->n_attention_layers > 0 && c->num_key_value_heads % n != 0 && n % c->num_key_value_heads != 0) {
        snprintf(why, cap, "attention is split by KV-head groups, and num_key_value_heads %lld is not divisible by "
                 "%d, nor a divisor of it (then each KV head would be held by %d / %lld GPUs)",
                 (long long)c->num_key_value_heads, n, n, (long long)c->num_key_value_heads);
        return false;
    } else if (c->n_mamba_layers > 0 && c->mamba_d_inner % n != 0) {
        what = "Mamba is split by inner channels, and mamba_d_inner";
        must = c->mamba_d_inner;
    } else if (c->n_dense_layers > 0 && c->intermediate_size % n != 0) {
        what = "dense MLPs are split over their intermediate width, and intermediate_size";
        must = c->intermediate_size;
    } else if (c->n_moe_layers > 0 && c->num_experts % n != 0 && c->intermediate_size % n != 0) {
        snprintf(why, cap, "experts are split whole (or else over their intermediate width), and neither "
                 "num_experts %lld nor intermediate_size %lld is divisible by %d", (long long)c->num_experts,
                 (long long)c->intermediate_size, n);
        return false;
    }
    if (what != NULL)
        snprintf(why, cap, "%s %lld is not divisible by %d", what, (long long)must, n);
    return what == NULL;
}

/* The rank counts up to the maximum that split this model, as "1, 2, 4, 8". */
static void valid_counts(const jamba_config *c, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    for (int n = 1; n <= JB_SHARD_MAX_RANKS && used < cap; n++) {
        char why[256];
        if (can_split(c, n, why, sizeof why))
            used += (size_t)snprintf(out + used, cap - used, "%s%d", used ? ", " : "", n);
    }
}

static jamba_status check_ranks(const jamba_config *c, int n, jamba_error *err) {
    if (n < 1 || n > JB_SHARD_MAX_RANKS)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "split over %d GPUs: the GPU count must be in [1, %d]", n,
                       JB_SHARD_MAX_RANKS);
    char why[256];
    if (can_split(c, n, why, sizeof why))
        return JAMBA_OK;
    char counts[256];
    valid_counts(c, counts, sizeof counts);
    return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "split over %d GPUs: %s; GPU counts that split this model: %s",
                   n, why, counts);
}

/* ---- the rules ------------------------------------------------------------------------------------ */

typedef struct rule {
    size_t offset; /* of the jb_weight in the struct the rule table is for */
    jb_split split;
    jb_shard_axis axis;
    int dim, parts;
} rule;

#define REPL(type, field) {offsetof(type, field), JB_SPLIT_REPLICATED, JB_AXIS_NONE, 0, 1}
#define CUT(type, field, axis, dim, parts) {offsetof(type, field), JB_SPLIT_SHARDED, axis, dim, parts}

static const rule MODEL_RULES[] = {
    CUT(jb_weights, embed, JB_AXIS_VOCAB, 0, 1),   /* [V, H]: vocab rows */
    REPL(jb_weights, final_norm),
    CUT(jb_weights, lm_head, JB_AXIS_VOCAB, 0, 1), /* [V, H]: vocab rows (logits all-gathered) */
};

#define L jb_layer_weights
static const rule LAYER_RULES[] = {
    REPL(L, input_norm),
    REPL(L, pre_ff_norm),
    CUT(L, attn.q_proj, JB_AXIS_HEADS, 0, 1),      /* [n_h d_h, H]: the group's query heads */
    CUT(L, attn.k_proj, JB_AXIS_KV, 0, 1),         /* [n_kv d_h, H] */
    CUT(L, attn.v_proj, JB_AXIS_KV, 0, 1),
    CUT(L, attn.o_proj, JB_AXIS_HEADS, 1, 1),      /* [H, n_h d_h]: columns, then all-reduce */
    CUT(L, mamba.in_proj, JB_AXIS_INNER, 0, 2),    /* [2 D_i, H]: the same channels of x and of z */
    CUT(L, mamba.in_proj_bias, JB_AXIS_INNER, 0, 2),
    CUT(L, mamba.conv1d, JB_AXIS_INNER, 0, 1),     /* [D_i, 1, K] */
    CUT(L, mamba.conv1d_bias, JB_AXIS_INNER, 0, 1),
    CUT(L, mamba.x_proj, JB_AXIS_INNER, 1, 1),     /* [R + 2N, D_i]: columns, then all-reduce of dt|B|C */
    CUT(L, mamba.dt_proj, JB_AXIS_INNER, 0, 1),    /* [D_i, R] */
    CUT(L, mamba.dt_proj_bias, JB_AXIS_INNER, 0, 1),
    CUT(L, mamba.A_log, JB_AXIS_INNER, 0, 1),      /* [D_i, N] */
    CUT(L, mamba.D, JB_AXIS_INNER, 0, 1),
    CUT(L, mamba.out_proj, JB_AXIS_INNER, 1, 1),   /* [H, D_i]: columns, then all-reduce */
    REPL(L, mamba.out_proj_bias),                  /* added once, after the all-reduce */
    REPL(L, mamba.dt_norm),                        /* applied to the all-reduced dt, B, C */
    REPL(L, mamba.b_norm),
    REPL(L, mamba.c_norm),
    CUT(L, mlp.gate_proj, JB_AXIS_FFN, 0, 1),      /* [I, H] */
    CUT(L, mlp.up_proj, JB_AXIS_FFN, 0, 1),
    CUT(L, mlp.down_proj, JB_AXIS_FFN, 1, 1),      /* [H, I]: columns, then all-reduce */
    REPL(L, router),                               /* [E, H]: every rank routes every token */
};
#undef L

/* An expert: whole on its owner under expert parallelism (split becomes OWNED), else cut like an MLP. */
static const rule EXPERT_RULES[] = {
    CUT(jb_mlp_weights, gate_proj, JB_AXIS_FFN, 0, 1),
    CUT(jb_mlp_weights, up_proj, JB_AXIS_FFN, 0, 1),
    CUT(jb_mlp_weights, down_proj, JB_AXIS_FFN, 1, 1),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The rule among n whose field of `base` is w, or NULL. */
static const rule *match(const rule *rules, size_t n, const void *base, const jb_weight *w) {
    for (size_t i = 0; i < n; i++)
        if ((const jb_weight *)((const char *)base + rules[i].offset) == w)
            return &rules[i];
    return NULL;
}

/* ---- building ------------------------------------------------------------------------------------- */

typedef struct builder {
    const jamba_config *cfg;
    const jb_weights *views; /* what jb_weights_visit binds into: the views identify the tensors */
    jb_shard_plan *plan;
    int64_t cap_tensors, cap_slices;
    int64_t layer;           /* the layer of the last tensor matched (the visit goes layer by layer) */
    jamba_status status;     /* a tensor without a rule, with its message (the visit then reports running */
    jamba_error why;         /* out of memory over err) */
} builder;

/* The rule for view w, the layer it belongs to (-1: model-level) and, for an expert, its index. */
static const rule *find_rule(builder *b, const jb_weight *w, int64_t *layer, int64_t *expert) {
    *layer = -1;
    *expert = -1;
    const rule *r = match(MODEL_RULES, COUNT(MODEL_RULES), b->views, w);
    for (int64_t l = b->layer; r == NULL && l < b->views->n_layers; l++) {
        const jb_layer_weights *lw = &b->views->layers[l];
        r = match(LAYER_RULES, COUNT(LAYER_RULES), lw, w);
        for (int64_t e = 0; r == NULL && lw->experts && e < b->cfg->num_experts; e++)
            if ((r = match(EXPERT_RULES, COUNT(EXPERT_RULES), &lw->experts[e], w)) != NULL)
                *expert = e;
        if (r != NULL)
            *layer = b->layer = l;
    }
    return r;
}

/* The balanced block r of len indices cut n ways: the first len % n blocks one longer. */
static jb_slice block(int dim, int64_t len, int r, int n) {
    const int64_t base = len / n, extra = len % n;
    return (jb_slice){dim, r * base + (r < extra ? r : extra), base + (r < extra ? 1 : 0)};
}

/* Each rank's slice of t under its split (dim: the rule's; owner: the rank holding an OWNED tensor). A
 * sharded dimension is cut in n / copies blocks, block r / copies on rank r. */
static void fill_slices(const jb_shard_tensor *t, int dim, int64_t owner, jb_slice *s, int n) {
    for (int r = 0; r < n; r++) {
        if (t->split == JB_SPLIT_SHARDED)
            s[r] = block(dim, t->shape[dim] / t->parts, r / t->copies, n / t->copies);
        else if (t->split == JB_SPLIT_OWNED)
            s[r] = (jb_slice){0, 0, r == owner ? t->shape[0] : 0};
        else
            s[r] = (jb_slice){0, 0, t->shape[0]};
    }
}

static bool add_tensor(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    builder *b = arg;
    jb_shard_plan *p = b->plan;
    int64_t layer, expert;
    const rule *r = find_rule(b, w, &layer, &expert);
    if (r == NULL) {
        b->status = jb_fail(&b->why, JAMBA_ERR_UNSUPPORTED, "sharding plan: no rule for tensor \"%s\" "
                            "(parallel/shard.c)", name);
        return false;
    }
    if (!jb_grow((void **)&p->tensors, &b->cap_tensors, p->n_tensors + 1, sizeof *p->tensors) ||
        !jb_grow((void **)&p->slices, &b->cap_slices, (p->n_tensors + 1) * p->n_ranks, sizeof *p->slices))
        return false;
    jb_shard_tensor *t = &p->tensors[p->n_tensors];
    *t = (jb_shard_tensor){.rank = rank, .linear = linear, .layer = layer, .split = r->split, .axis = r->axis,
                           .parts = r->parts, .copies = r->split == JB_SPLIT_REPLICATED ? p->n_ranks : 1};
    if (r->axis == JB_AXIS_KV && p->n_ranks > b->cfg->num_key_value_heads) /* each KV head on N/n_kv ranks */
        t->copies = p->n_ranks / (int)b->cfg->num_key_value_heads;
    snprintf(t->name, sizeof t->name, "%s", name);
    memcpy(t->shape, shape, sizeof t->shape);
    int64_t owner = -1;
    if (expert >= 0 && p->moe == JB_MOE_EXPERTS) {
        t->split = JB_SPLIT_OWNED;
        t->axis = JB_AXIS_NONE;
        owner = expert / (b->cfg->num_experts / p->n_ranks);
        t->copies = 1;
    }
    fill_slices(t, r->dim, owner, &p->slices[p->n_tensors * p->n_ranks], p->n_ranks);
    p->n_tensors++;
    return true;
}

jamba_status jb_shard_plan_make(const jamba_config *cfg, int n_ranks, jb_shard_plan *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    JB_TRY(check_ranks(cfg, n_ranks, err));
    out->n_ranks = n_ranks;
    out->moe = cfg->n_moe_layers == 0              ? JB_MOE_NONE
               : cfg->num_experts % n_ranks == 0 ? JB_MOE_EXPERTS
                                                 : JB_MOE_INTERMEDIATE;
    jb_weights views = {0};
    builder b = {.cfg = cfg, .views = &views, .plan = out};
    jamba_status st = jb_weights_visit(cfg, &views, add_tensor, &b, NULL);
    jb_weights_free(&views);
    if (st != JAMBA_OK) {
        jb_shard_plan_free(out);
        if (b.status == JAMBA_OK)
            return jb_fail(err, st, "sharding plan: out of memory");
        if (err)
            *err = b.why;
        return b.status;
    }
    return JAMBA_OK;
}

void jb_shard_plan_free(jb_shard_plan *p) {
    jb_free(p->tensors);
    jb_free(p->slices);
    memset(p, 0, sizeof *p);
}

/* ---- what a rank holds ---------------------------------------------------------------------------- */

bool jb_shard_held_elems(const jb_shard_plan *p, int64_t t, int r, uint64_t *out) {
    const jb_shard_tensor *x = &p->tensors[t];
    const jb_slice *s = jb_shard_slice(p, t, r);
    uint64_t n = (uint64_t)s->count * (uint64_t)x->parts; /* at most shape[dim] */
    for (int d = 0; d < x->rank; d++)
        if (d != s->dim && !jb_mul_u64(n, (uint64_t)x->shape[d], &n))
            return false;
    *out = n;
    return true;
}

int64_t jb_shard_held_rows(const jb_shard_plan *p, int64_t t, int r) {
    const jb_slice *s = jb_shard_slice(p, t, r);
    if (s->count == 0)
        return 0;
    return s->dim == 0 ? s->count * p->tensors[t].parts : p->tensors[t].shape[0];
}

void jb_shard_rank_config(const jb_shard_plan *p, const jamba_config *cfg, jamba_config *out) {
    *out = *cfg;
    const int n = p->n_ranks;
    if (cfg->n_attention_layers > 0) {
        out->num_attention_heads = cfg->num_attention_heads / n;
        out->num_key_value_heads = cfg->num_key_value_heads >= n ? cfg->num_key_value_heads / n : 1;
    }
    if (cfg->n_mamba_layers > 0)
        out->mamba_d_inner = cfg->mamba_d_inner / n;
    if (p->moe != JB_MOE_EXPERTS)
        out->intermediate_size = cfg->intermediate_size / n;
}

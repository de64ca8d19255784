/*
 * bind.c — match the tensors a config implies against a checkpoint, by name, shape and dtype.
 *
 * Accepted naming schemes (docs/jamba-architecture.md §6), per tensor, one scheme at a time:
 *   Hugging Face        feed_forward.*, pre_ff_layernorm, mamba.b_layernorm / c_layernorm
 *   AI21 March 2024     moe.router, moe.experts.{e}.*, the dense FFN as moe.experts.0.*,
 *                       pre_moe_layernorm, mamba.B_layernorm / C_layernorm
 *   stacked experts     feed_forward.experts.gate_up_proj [E, 2I, H] (gate rows first) and
 *                       feed_forward.experts.down_proj [E, H, I]
 */
#include "ckpt/weights.h"

#include "base/alloc.h"
#include "base/error.h"
#include "ckpt/config.h"
#include "ckpt/dtype.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MISMATCH JAMBA_ERR_WEIGHT_MISMATCH

typedef struct binder {
    const jamba_config *cfg;
    const jb_checkpoint *ckpt;
    const char *label;
    bool *used;            /* [n_entries] */
    jb_weights *w;
    jb_strlist missing;    /* canonical names of absent tensors */
    jamba_error *err;
    jamba_status status;   /* first hard error (wrong shape/dtype, conflicting names, OOM) */
    int64_t inner_norms_layer; /* first Mamba layer checked for optional dt/B/C norms, or -1 */
    bool linear;            /* the tensor being bound is a linear layer's matrix (may be quantized) */
    jb_visit_fn visit;      /* visit mode (jb_weights_visit): hand each tensor to visit instead of binding */
    void *visit_arg;
} binder;

typedef struct shape {
    int rank;
    int64_t d[3];
} shape;

#define SHAPE1(a) ((shape){1, {(a), 0, 0}})
#define SHAPE2(a, b) ((shape){2, {(a), (b), 0}})
#define SHAPE3(a, b, c) ((shape){3, {(a), (b), (c)}})

static void format_shape(char *buf, size_t size, int rank, const int64_t *d) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", d[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

static bool ok(const binder *b) { return b->status == JAMBA_OK; }

static void hard_fail_oom(binder *b) { b->status = jb_fail(b->err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", b->label); }

/* The entry stored under n0 or n1 (n1 may be NULL); both present is an error. */
static const jb_ckpt_entry *find_one(binder *b, const char *n0, const char *n1) {
    const jb_ckpt_entry *e0 = jb_checkpoint_find(b->ckpt, n0);
    const jb_ckpt_entry *e1 = n1 ? jb_checkpoint_find(b->ckpt, n1) : NULL;
    if (e0 && e1) {
        b->status = jb_fail(b->err, MISMATCH, "%s: both \"%s\" and \"%s\" are stored; a checkpoint must use one "
                            "naming scheme", b->label, n0, n1);
        return NULL;
    }
    return e0 ? e0 : e1;
}

static bool check_entry(binder *b, const jb_ckpt_entry *e, shape want) {
    const jb_st_tensor *t = e->tensor;
    const bool is_float = t->dtype == JAMBA_DTYPE_F32 || t->dtype == JAMBA_DTYPE_F16 || t->dtype == JAMBA_DTYPE_BF16;
    if (!is_float && !(b->linear && jb_dtype_quantized(t->dtype))) {
        bool quantized = jb_dtype_quantized(t->dtype) || t->dtype == JAMBA_DTYPE_U8 || t->dtype == JAMBA_DTYPE_F8_E5M2;
        b->status = jb_fail(b->err, quantized ? JAMBA_ERR_UNSUPPORTED : MISMATCH,
                            "%s: tensor \"%s\" in %s has dtype %s; %s", b->label, e->name,
                            b->ckpt->shards[e->shard].label, jamba_dtype_name(t->dtype),
                            !quantized ? "expected F32, F16 or BF16"
                            : b->linear ? "linear layers may be I8 or F8_E4M3 (weight-only, per-row scales)"
                                        : "only linear-layer matrices may be quantized");
        return false;
    }
    bool same = t->rank == want.rank;
    for (int i = 0; same && i < want.rank; i++)
        same = t->shape[i] == want.d[i];
    if (!same) {
        char got[128], exp[128];
        format_shape(got, sizeof got, t->rank, t->shape);
        format_shape(exp, sizeof exp, want.rank, want.d);
        b->status = jb_fail(b->err, MISMATCH, "%s: tensor \"%s\" has shape %s but config.json implies %s",
                            b->label, e->name, got, exp);
        return false;
    }
    return true;
}

static void mark_used(binder *b, const jb_ckpt_entry *e) {
    int64_t idx = e - b->ckpt->entries;
    if (!b->used[idx]) {
        b->used[idx] = true;
        b->w->order[b->w->n_order++] = idx;
    }
}

static void set_view(jb_weight *dst, const jb_ckpt_entry *e, const void *data, shape s) {
    dst->scale = NULL;
    dst->data = data;
    dst->dtype = e->tensor->dtype;
    dst->rank = s.rank;
    memcpy(dst->shape, s.d, sizeof dst->shape);
}

/* Row scales must be finite, non-negative and at most JB_MAX_WEIGHT_SCALE; a zero scale only on a row whose
 * stored values are all zero (as jb_quantize_int8 writes it), since elsewhere it would silently zero a row. */
#define JB_MAX_WEIGHT_SCALE 1e6f

static void check_scales(binder *b, const jb_ckpt_entry *e, const char *name, const float *scale, int64_t groups,
                         int64_t rows, int64_t cols) {
    const uint8_t *q = jb_st_tensor_data(&b->ckpt->shards[e->shard], e->tensor); /* I8 or F8: one byte each */
    const uint8_t magnitude = e->tensor->dtype == JAMBA_DTYPE_F8_E4M3 ? 0x7f : 0xff; /* F8 0x80 is -0 */
    for (int64_t r = 0; r < groups * rows && ok(b); r++) {
        const float s = scale[r];
        bool zero_row = true;
        for (int64_t j = 0; s == 0.0f && zero_row && j < cols; j++)
            zero_row = (q[r * cols + j] & magnitude) == 0;
        if (!isfinite(s) || s < 0.0f || s > JB_MAX_WEIGHT_SCALE || (s == 0.0f && !zero_row))
            b->status = jb_fail(b->err, MISMATCH, "%s: scales \"%s\": row %lld has scale %g; a row scale must be "
                                "finite, positive (zero only for a row of zeros) and at most %g", b->label, name,
                                (long long)r, (double)s, (double)JB_MAX_WEIGHT_SCALE);
    }
}

/* The scales of a quantized matrix e, stored as "<name>_scale": one, or one per output row ([rows],
 * [rows, 1]; with a leading expert dimension for stacked experts). Widened to an owned fp32 array of one
 * scale per row. */
static void bind_scale(binder *b, jb_weight *dst, const jb_ckpt_entry *e, shape want) {
    char name[NAME_BYTES + 8];
    snprintf(name, sizeof name, "%s_scale", e->name);
    const jb_ckpt_entry *s = jb_checkpoint_find(b->ckpt, name);
    if (s == NULL) {
        b->status = jb_fail(b->err, MISMATCH, "%s: tensor \"%s\" is %s but its scales \"%s\" are missing", b->label,
                            e->name, jamba_dtype_name(e->tensor->dtype), name);
        return;
    }
    const jb_st_tensor *t = s->tensor;
    const int64_t rows = want.d[want.rank - 2], groups = want.rank == 3 ? want.d[0] : 1, n = rows * groups;
    bool one = t->n_elements == 1, per_row = t->n_elements == (uint64_t)n && t->rank >= 1 && t->shape[0] ==
                                                 (want.rank == 3 ? groups : rows);
    if ((!one && !per_row) || (t->dtype != JAMBA_DTYPE_F32 && t->dtype != JAMBA_DTYPE_F16 && t->dtype != JAMBA_DTYPE_BF16)) {
        char got[128];
        format_shape(got, sizeof got, t->rank, t->shape);
        b->status = jb_fail(b->err, MISMATCH, "%s: scales \"%s\" are %s %s; expected F32/F16/BF16 with one value or "
                            "one per row of \"%s\" (%lld)", b->label, name, jamba_dtype_name(t->dtype), got, e->name,
                            (long long)n);
        return;
    }
    float *scale = jb_malloc((size_t)n * sizeof *scale);
    if (scale == NULL || !jb_weights_own(b->w, scale)) {
        hard_fail_oom(b);
        return;
    }
    jb_to_f32(scale, jb_st_tensor_data(&b->ckpt->shards[s->shard], t), t->dtype, (int64_t)t->n_elements);
    for (int64_t i = 1; one && i < n; i++)
        scale[i] = scale[0];
    mark_used(b, s);
    dst->scale = scale;
    check_scales(b, e, name, scale, groups, rows, want.d[want.rank - 1]);
}

/* Bind one tensor stored under n0 (canonical) or n1 (alternative; may be NULL). */
static void bind(binder *b, jb_weight *dst, shape want, const char *n0, const char *n1) {
    if (!ok(b))
        return;
    if (b->visit) {
        if (!b->visit(b->visit_arg, n0, dst, want.rank, want.d, b->linear))
            b->status = jb_fail(b->err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", b->label);
        return;
    }
    const jb_ckpt_entry *e = find_one(b, n0, n1);
    if (!ok(b))
        return;
    if (e == NULL) {
        if (!jb_strlist_addf(&b->missing, "%s", n0))
            hard_fail_oom(b);
        return;
    }
    if (!check_entry(b, e, want))
        return;
    mark_used(b, e);
    set_view(dst, e, jb_st_tensor_data(&b->ckpt->shards[e->shard], e->tensor), want);
    if (jb_dtype_quantized(e->tensor->dtype))
        bind_scale(b, dst, e, want);
}

/* A linear layer's matrix: may also be stored quantized. */
static void bind_linear(binder *b, jb_weight *dst, shape want, const char *n0, const char *n1) {
    b->linear = true;
    bind(b, dst, want, n0, n1);
    b->linear = false;
}

/* "model.layers.{i}.{suffix}" with an optional expert index substituted for %lld in suffix. */
static const char *lname(char buf[NAME_BYTES], int64_t layer, const char *suffix) {
    int n = snprintf(buf, NAME_BYTES, "model.layers.%lld.", (long long)layer);
    snprintf(buf + n, (size_t)(NAME_BYTES - n), "%s", suffix);
    return buf;
}

static const char *ename(char buf[NAME_BYTES], int64_t layer, const char *scheme, int64_t expert,
                         const char *proj) {
    snprintf(buf, NAME_BYTES, "model.layers.%lld.%s.experts.%lld.%s.weight", (long long)layer, scheme,
             (long long)expert, proj);
    return buf;
}

static void bind_attention(binder *b, int64_t i, jb_attention_weights *a) {
    const jamba_config *c = b->cfg;
    int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    char n[NAME_BYTES];
    bind_linear(b, &a->q_proj, SHAPE2(q, c->hidden_size), lname(n, i, "self_attn.q_proj.weight"), NULL);
    bind_linear(b, &a->k_proj, SHAPE2(kv, c->hidden_size), lname(n, i, "self_attn.k_proj.weight"), NULL);
    bind_linear(b, &a->v_proj, SHAPE2(kv, c->hidden_size), lname(n, i, "self_attn.v_proj.weight"), NULL);
    bind_linear(b, &a->o_proj, SHAPE2(c->hidden_size, q), lname(n, i, "self_attn.o_proj.weight"), NULL);
}

/* With mamba_inner_layernorms = false (AI21's remote-code switch) the dt/B/C norms are optional: a
 * checkpoint that stores them gets them applied, as the transformers port always does. Every Mamba layer
 * must then agree, so the choice is the model's, not the layer's. */
static bool inner_norms_stored(binder *b, int64_t i) {
    if (b->visit) /* the weights are bound already: they tell */
        return b->w->layers[i].mamba.dt_norm.data != NULL;
    char n[NAME_BYTES];
    bool stored = jb_checkpoint_find(b->ckpt, lname(n, i, "mamba.dt_layernorm.weight")) != NULL;
    if (b->inner_norms_layer < 0) {
        b->inner_norms_layer = i;
        b->w->inner_norms_stored = stored;
    } else if (stored != b->w->inner_norms_stored) {
        b->status = jb_fail(b->err, MISMATCH, "%s: config.json sets mamba_inner_layernorms = false; Mamba layer "
                            "%lld %s the dt/B/C norms but layer %lld %s", b->label, (long long)i,
                            stored ? "stores" : "lacks", (long long)b->inner_norms_layer,
                            stored ? "does not" : "does");
        return false;
    }
    return stored;
}

static void bind_mamba(binder *b, int64_t i, jb_mamba_weights *m) {
    const jamba_config *c = b->cfg;
    int64_t H = c->hidden_size, Di = c->mamba_d_inner, N = c->mamba_d_state, R = c->mamba_dt_rank;
    char n[NAME_BYTES], alt[NAME_BYTES];
    bind_linear(b, &m->in_proj, SHAPE2(2 * Di, H), lname(n, i, "mamba.in_proj.weight"), NULL);
    if (c->mamba_proj_bias)
        bind(b, &m->in_proj_bias, SHAPE1(2 * Di), lname(n, i, "mamba.in_proj.bias"), NULL);
    bind(b, &m->conv1d, SHAPE3(Di, 1, c->mamba_d_conv), lname(n, i, "mamba.conv1d.weight"), NULL);
    if (c->mamba_conv_bias)
        bind(b, &m->conv1d_bias, SHAPE1(Di), lname(n, i, "mamba.conv1d.bias"), NULL);
    bind_linear(b, &m->x_proj, SHAPE2(R + 2 * N, Di), lname(n, i, "mamba.x_proj.weight"), NULL);
    bind_linear(b, &m->dt_proj, SHAPE2(Di, R), lname(n, i, "mamba.dt_proj.weight"), NULL);
    bind(b, &m->dt_proj_bias, SHAPE1(Di), lname(n, i, "mamba.dt_proj.bias"), NULL);
    bind(b, &m->A_log, SHAPE2(Di, N), lname(n, i, "mamba.A_log"), NULL);
    bind(b, &m->D, SHAPE1(Di), lname(n, i, "mamba.D"), NULL);
    bind_linear(b, &m->out_proj, SHAPE2(H, Di), lname(n, i, "mamba.out_proj.weight"), NULL);
    if (c->mamba_proj_bias)
        bind(b, &m->out_proj_bias, SHAPE1(H), lname(n, i, "mamba.out_proj.bias"), NULL);
    if (c->mamba_inner_layernorms || inner_norms_stored(b, i)) {
        bind(b, &m->dt_norm, SHAPE1(R), lname(n, i, "mamba.dt_layernorm.weight"), NULL);
        bind(b, &m->b_norm, SHAPE1(N), lname(n, i, "mamba.b_layernorm.weight"),
             lname(alt, i, "mamba.B_layernorm.weight"));
        bind(b, &m->c_norm, SHAPE1(N), lname(n, i, "mamba.c_layernorm.weight"),
             lname(alt, i, "mamba.C_layernorm.weight"));
    }
}

static void bind_dense(binder *b, int64_t i, jb_mlp_weights *mlp) {
    const jamba_config *c = b->cfg;
    int64_t H = c->hidden_size, I = c->intermediate_size;
    char n[NAME_BYTES], alt[NAME_BYTES];
    bind_linear(b, &mlp->gate_proj, SHAPE2(I, H), lname(n, i, "feed_forward.gate_proj.weight"),
         ename(alt, i, "moe", 0, "gate_proj"));
    bind_linear(b, &mlp->up_proj, SHAPE2(I, H), lname(n, i, "feed_forward.up_proj.weight"),
         ename(alt, i, "moe", 0, "up_proj"));
    bind_linear(b, &mlp->down_proj, SHAPE2(H, I), lname(n, i, "feed_forward.down_proj.weight"),
         ename(alt, i, "moe", 0, "down_proj"));
}

/* Stacked layout: expert e's gate is rows [0, I) of gate_up_proj[e], its up rows [I, 2I). */
static void bind_stacked_experts(binder *b, int64_t i, jb_layer_weights *lw) {
    const jamba_config *c = b->cfg;
    int64_t E = c->num_experts, H = c->hidden_size, I = c->intermediate_size;
    char n[NAME_BYTES];
    jb_weight gate_up = {0}, down = {0};
    bind_linear(b, &gate_up, SHAPE3(E, 2 * I, H), lname(n, i, "feed_forward.experts.gate_up_proj"), NULL);
    bind_linear(b, &down, SHAPE3(E, H, I), lname(n, i, "feed_forward.experts.down_proj"), NULL);
    if (!ok(b) || gate_up.data == NULL || down.data == NULL)
        return;
    size_t gsz = jamba_dtype_size(gate_up.dtype), dsz = jamba_dtype_size(down.dtype);
    for (int64_t e = 0; e < E; e++) {
        jb_mlp_weights *x = &lw->experts[e];
        const char *g = (const char *)gate_up.data + (size_t)(e * 2 * I * H) * gsz;
        const float *gs = gate_up.scale ? gate_up.scale + e * 2 * I : NULL;
        x->gate_proj = (jb_weight){g, gate_up.dtype, 2, {I, H, 0}, gs};
        x->up_proj = (jb_weight){g + (size_t)(I * H) * gsz, gate_up.dtype, 2, {I, H, 0}, gs ? gs + I : NULL};
        x->down_proj = (jb_weight){(const char *)down.data + (size_t)(e * H * I) * dsz, down.dtype, 2, {H, I, 0},
                                   down.scale ? down.scale + e * H : NULL};
    }
}

static void bind_moe(binder *b, int64_t i, jb_layer_weights *lw) {
    const jamba_config *c = b->cfg;
    int64_t E = c->num_experts, H = c->hidden_size, I = c->intermediate_size;
    char n[NAME_BYTES], alt[NAME_BYTES];
    bind(b, &lw->router, SHAPE2(E, H), lname(n, i, "feed_forward.router.weight"), lname(alt, i, "moe.router.weight"));
    if (lw->experts == NULL && (lw->experts = jb_calloc((size_t)E, sizeof *lw->experts)) == NULL) {
        hard_fail_oom(b);
        return;
    }
    if (!b->visit && (jb_checkpoint_find(b->ckpt, lname(n, i, "feed_forward.experts.gate_up_proj")) ||
                      jb_checkpoint_find(b->ckpt, lname(n, i, "feed_forward.experts.down_proj")))) {
        bind_stacked_experts(b, i, lw);
    } else {
        static const char *const projs[3] = {"gate_proj", "up_proj", "down_proj"};
        for (int64_t e = 0; e < E && ok(b); e++) {
            jb_weight *dst[3] = {&lw->experts[e].gate_proj, &lw->experts[e].up_proj, &lw->experts[e].down_proj};
            for (int p = 0; p < 3; p++)
                bind_linear(b, dst[p], p < 2 ? SHAPE2(I, H) : SHAPE2(H, I), ename(n, i, "feed_forward", e, projs[p]),
                     ename(alt, i, "moe", e, projs[p]));
        }
    }
    /* One grouped product per layer needs one dtype across its experts (checked once every projection is
     * bound: a missing or misnamed one is reported as such, with the other tensor mismatches). */
    static const char *const names[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int64_t e = 1; e < E && ok(b); e++) {
        const jb_weight *x[3] = {&lw->experts[e].gate_proj, &lw->experts[e].up_proj, &lw->experts[e].down_proj};
        const jb_weight *x0[3] = {&lw->experts[0].gate_proj, &lw->experts[0].up_proj, &lw->experts[0].down_proj};
        for (int p = 0; p < 3 && ok(b); p++)
            if (x[p]->data && x0[p]->data && x[p]->dtype != x0[p]->dtype)
                b->status = jb_fail(b->err, MISMATCH, "%s: layer %lld: expert %lld's %s is stored as %s but expert 0's "
                                    "as %s; experts of one layer must share a dtype", b->label, (long long)i,
                                    (long long)e, names[p], jamba_dtype_name(x[p]->dtype),
                                    jamba_dtype_name(x0[p]->dtype));
    }
}

static void bind_layer(binder *b, int64_t i, jb_layer_weights *lw) {
    const jamba_config *c = b->cfg;
    char n[NAME_BYTES], alt[NAME_BYTES];
    bind(b, &lw->input_norm, SHAPE1(c->hidden_size), lname(n, i, "input_layernorm.weight"), NULL);
    if (jb_layer_is_attention(c, i))
        bind_attention(b, i, &lw->attn);
    else
        bind_mamba(b, i, &lw->mamba);
    bind(b, &lw->pre_ff_norm, SHAPE1(c->hidden_size), lname(n, i, "pre_ff_layernorm.weight"),
         lname(alt, i, "pre_moe_layernorm.weight"));
    if (jb_layer_is_moe(c, i))
        bind_moe(b, i, lw);
    else
        bind_dense(b, i, &lw->mlp);
}

static void bind_all(binder *b) {
    const jamba_config *c = b->cfg;
    jb_weights *w = b->w;
    int64_t V = c->vocab_size, H = c->hidden_size;
    if (c->tie_word_embeddings) /* the LM head's matrix too: it may be stored quantized */
        bind_linear(b, &w->embed, SHAPE2(V, H), "model.embed_tokens.weight", NULL);
    else
        bind(b, &w->embed, SHAPE2(V, H), "model.embed_tokens.weight", NULL);
    for (int64_t i = 0; i < c->num_hidden_layers && ok(b); i++)
        bind_layer(b, i, &w->layers[i]);
    bind(b, &w->final_norm, SHAPE1(H), "model.final_layernorm.weight", NULL);
    if (!ok(b))
        return;
    if (!c->tie_word_embeddings) {
        bind_linear(b, &w->lm_head, SHAPE2(V, H), "lm_head.weight", NULL);
    } else if (b->visit) {
        return; /* tied: no tensor of its own */
    } else if (jb_checkpoint_find(b->ckpt, "lm_head.weight")) {
        b->status = jb_fail(b->err, MISMATCH, "%s: lm_head.weight is stored but config.json sets "
                            "tie_word_embeddings = true", b->label);
    } else {
        w->lm_head = w->embed;
    }
}

/* Static activation scales of FP8 checkpoints ("...input_scale"): activations stay in bf16/fp32 here, so
 * they are accepted, counted in a note, and not used. */
static void accept_input_scales(binder *b, jb_strlist *notes) {
    int64_t n = 0;
    for (int64_t i = 0; i < b->ckpt->n_entries; i++) {
        const char *name = b->ckpt->entries[i].name;
        size_t len = strlen(name);
        if (!b->used[i] && len > 11 && strcmp(name + len - 11, "input_scale") == 0) {
            mark_used(b, &b->ckpt->entries[i]);
            n++;
        }
    }
    if (n > 0 && notes && !jb_strlist_addf(notes, "%s: %lld activation scales (input_scale) ignored: activations "
                                           "are not quantized", b->label, (long long)n))
        hard_fail_oom(b);
}

/* The layers of kind `what` the checkpoint's tensor names show ("self_attn.", "mamba.", MoE routers), as a
 * short list "3, 11, 19 ..." into out; false when the names show no layer of that kind. */
static bool stored_layers(const jb_checkpoint *ckpt, int64_t n_layers, const char *const kinds[2], char *out,
                          size_t cap) {
    size_t n = 0;
    int shown = 0;
    out[0] = '\0';
    for (int64_t l = 0; l < n_layers; l++) {
        bool found = false;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "model.layers.%lld.", (long long)l);
        for (int64_t e = 0; e < ckpt->n_entries && !found; e++) {
            const char *name = ckpt->entries[e].name;
            if (strncmp(name, prefix, strlen(prefix)) != 0)
                continue;
            for (int k = 0; k < 2 && !found; k++)
                found = kinds[k] && strncmp(name + strlen(prefix), kinds[k], strlen(kinds[k])) == 0;
        }
        if (!found)
            continue;
        if (shown++ < 8 && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%lld", shown > 1 ? ", " : "", (long long)l);
        else if (shown == 9 && n < cap)
            n += (size_t)snprintf(out + n, cap - n, " ...");
    }
    return shown > 0;
}

/* The config's layers of a kind, as the same short list. */
static void config_layers(const jamba_config *c, bool (*is)(const jamba_config *, int64_t), char *out, size_t cap) {
    size_t n = 0;
    int shown = 0;
    out[0] = '\0';
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        if (!is(c, l))
            continue;
        if (shown++ < 8 && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%lld", shown > 1 ? ", " : "", (long long)l);
        else if (shown == 9 && n < cap)
            n += (size_t)snprintf(out + n, cap - n, " ...");
    }
}

static bool is_mamba_layer(const jamba_config *c, int64_t l) { return !jb_layer_is_attention(c, l); }

/* When the stored tensors follow another layer schedule than config.json, say so in terms of layers
 * ("attention expected at layers 4, 12; found at 3, 11") rather than only as tensor names. */
static void schedule_diff(const binder *b, char *out, size_t cap) {
    static const char *const attn[2] = {"self_attn.", NULL}, *const mamba[2] = {"mamba.", NULL};
    static const char *const moe[2] = {"feed_forward.router.", "moe.router."};
    struct {
        const char *what;
        const char *const *kinds;
        bool (*is)(const jamba_config *, int64_t);
    } kinds[] = {{"attention", attn, jb_layer_is_attention}, {"Mamba", mamba, is_mamba_layer},
                 {"MoE", moe, jb_layer_is_moe}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char want[160], have[160];
        config_layers(b->cfg, kinds[k].is, want, sizeof want);
        if (!stored_layers(b->ckpt, b->cfg->num_hidden_layers, kinds[k].kinds, have, sizeof have))
            snprintf(have, sizeof have, "no layer");
        if (strcmp(want, have) != 0 && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s expected at layers %s, found at %s",
                                  n ? "; " : "the tensors follow another layer schedule than config.json: ",
                                  kinds[k].what, want[0] ? want : "none", have);
    }
    if (n > 0 && n < cap)
        snprintf(out + n, cap - n, ". ");
}

/* Missing and unexpected tensors, by name, in one message. */
static jamba_status report(binder *b, bool allow_unexpected, jb_strlist *notes) {
    jb_strlist unexpected = {0};
    for (int64_t i = 0; i < b->ckpt->n_entries; i++) {
        if (b->used[i])
            continue;
        bool added = allow_unexpected && notes
                         ? jb_strlist_addf(notes, "%s: tensor \"%s\" is not used by this config; skipped", b->label,
                                           b->ckpt->entries[i].name)
                         : jb_strlist_addf(&unexpected, "%s", b->ckpt->entries[i].name);
        if (!added) {
            jb_strlist_free(&unexpected);
            return jb_fail(b->err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", b->label);
        }
    }
    if (allow_unexpected)
        jb_strlist_free(&unexpected);
    jamba_status st = JAMBA_OK;
    if (b->missing.n > 0 || unexpected.n > 0) {
        char miss[400], unexp[400];
        jb_strlist_join(&b->missing, 4, miss, sizeof miss);
        jb_strlist_join(&unexpected, 4, unexp, sizeof unexp);
        char schedule[600];
        schedule_diff(b, schedule, sizeof schedule);
        st = jb_fail(b->err, MISMATCH, "%s: %s%lld tensor%s missing%s%s%s; %lld unexpected%s%s%s", b->label,
                     schedule, (long long)b->missing.n, b->missing.n == 1 ? "" : "s", b->missing.n ? " (" : "", miss,
                     b->missing.n ? ")" : "", (long long)unexpected.n, unexpected.n ? " (" : "", unexp,
                     unexpected.n ? ")" : "");
    }
    jb_strlist_free(&unexpected);
    return st;
}

jamba_status jb_weights_visit(const jamba_config *cfg, jb_weights *w, jb_visit_fn fn, void *arg, jamba_error *err) {
    binder b = {.cfg = cfg, .label = "weights", .w = w, .err = err, .inner_norms_layer = -1, .visit = fn,
                .visit_arg = arg};
    if (w->layers == NULL) {
        w->layers = jb_calloc((size_t)cfg->num_hidden_layers, sizeof *w->layers);
        w->n_layers = cfg->num_hidden_layers;
        if (w->layers == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory");
    }
    bind_all(&b);
    return b.status;
}

typedef struct spec_list {
    jb_tensor_spec *v;
    int64_t n, cap;
} spec_list;

static bool add_spec(void *arg, const char *name, jb_weight *w, int rank, const int64_t *dims, bool linear) {
    (void)w, (void)linear;
    spec_list *l = arg;
    if (!jb_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
        return false;
    jb_tensor_spec *t = &l->v[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rank = rank;
    memcpy(t->shape, dims, sizeof t->shape);
    return true;
}

jamba_status jb_expected_tensors(const jamba_config *cfg, jb_tensor_spec **out, int64_t *n, jamba_error *err) {
    *out = NULL;
    *n = 0;
    jb_weights w = {0};
    spec_list l = {0};
    jamba_status st = jb_weights_visit(cfg, &w, add_spec, &l, err);
    jb_weights_free(&w);
    if (st != JAMBA_OK) {
        jb_free(l.v);
        return st;
    }
    *out = l.v;
    *n = l.n;
    return JAMBA_OK;
}

jamba_status jb_bind_weights(const jamba_config *cfg, const jb_checkpoint *ckpt, bool allow_unexpected,
                             const char *label, jb_weights *out, jb_strlist *notes, jamba_error *err) {
    memset(out, 0, sizeof *out);
    binder b = {.cfg = cfg, .ckpt = ckpt, .label = label, .w = out, .err = err, .inner_norms_layer = -1};
    b.used = jb_calloc((size_t)ckpt->n_entries, sizeof *b.used);
    out->order = jb_calloc((size_t)ckpt->n_entries, sizeof *out->order);
    out->layers = jb_calloc((size_t)cfg->num_hidden_layers, sizeof *out->layers);
    out->n_layers = cfg->num_hidden_layers;
    if (b.used == NULL || out->order == NULL || out->layers == NULL)
        hard_fail_oom(&b);
    else
        bind_all(&b);
    if (b.status == JAMBA_OK)
        accept_input_scales(&b, notes);
    jamba_status st = b.status;
    if (st == JAMBA_OK)
        st = report(&b, allow_unexpected, notes);
    jb_strlist_free(&b.missing);
    jb_free(b.used);
    if (st != JAMBA_OK)
        jb_weights_free(out);
    return st;
}

bool jb_weights_own(jb_weights *w, void *p) {
    if (!jb_grow((void **)&w->owned, &w->cap_owned, w->n_owned + 1, sizeof *w->owned)) {
        jb_free(p);
        return false;
    }
    w->owned[w->n_owned++] = p;
    return true;
}

void jb_weights_free(jb_weights *w) {
    for (int64_t i = 0; i < w->n_owned; i++)
        jb_free(w->owned[i]);
    jb_free(w->owned);
    if (w->layers)
        for (int64_t i = 0; i < w->n_layers; i++)
            jb_free(w->layers[i].experts);
    jb_free(w->layers);
    jb_free(w->order);
    memset(w, 0, sizeof *w);
}

/*
 * score_internals.c — the research captures of `jamba score` for one model: the buffers attached to its
 * context while it is scored (jamba_context_set_capture), the router statistics made of them
 * (jamba_compute_router_stats), and the safetensors dumps of router logits, hidden states and Mamba
 * states (jamba_seq_mamba_state). See score.h.
 */
#include "tools/jamba/score.h"

#include "base/error.h"
#include "ckpt/st_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool listed(const score_internals_opts *o, int64_t n) {
    if (o->layers == NULL)
        return true;
    for (int64_t i = 0; i < o->n_layers; i++)
        if (o->layers[i] == n)
            return true;
    return false;
}

static bool is_mamba(const jamba_model *m, int64_t layer) {
    jamba_layer_info info;
    return jamba_model_layer(m, layer, &info, NULL) == JAMBA_OK && info.mixer == JAMBA_MIXER_MAMBA;
}

/* --layers against this model: hidden numbers in [0, L], Mamba layers for the state dump. */
static jamba_status check_layers(const score_internals_opts *o, const jamba_model *m, jamba_error *err) {
    const int64_t L = jamba_model_config(m)->num_hidden_layers;
    for (int64_t i = 0; o->layers && i < o->n_layers; i++) {
        const int64_t n = o->layers[i];
        if (o->dump_hidden && n > L)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "--layers %lld: hidden states are numbered 0 .. %lld",
                           (long long)n, (long long)L);
        if (o->dump_mamba && !o->dump_hidden && (n >= L || !is_mamba(m, n)))
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "--layers %lld: not a Mamba layer of this model (of %lld "
                           "layers)", (long long)n, (long long)L);
    }
    return JAMBA_OK;
}

jamba_status score_capture_begin(score_capture *sc, const score_internals_opts *o, jamba_context *ctx,
                                 const jamba_model *m, int64_t T, jamba_error *err) {
    *sc = (score_capture){.rows = T};
    const jamba_config *c = jamba_model_config(m);
    const int64_t L = c->num_hidden_layers, H = c->hidden_size;
    JB_TRY(check_layers(o, m, err));
    if (o->dump_hidden) {
        sc->hidden_index = malloc((size_t)(L + 1) * sizeof *sc->hidden_index);
        for (int64_t i = 0; sc->hidden_index && i <= L; i++)
            if (listed(o, i))
                sc->hidden_index[sc->n_hidden++] = i;
        sc->hidden = sc->hidden_index ? calloc((size_t)(sc->n_hidden * T * H), sizeof *sc->hidden) : NULL;
        if (sc->hidden == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for %lld hidden states of %lld positions",
                           (long long)sc->n_hidden, (long long)T);
    }
    if ((o->dump_router || o->router_stats) && c->n_moe_layers > 0 &&
        (sc->router = calloc((size_t)(c->n_moe_layers * T * c->num_experts), sizeof *sc->router)) == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for the router logits of %lld layers x %lld "
                       "positions", (long long)c->n_moe_layers, (long long)T);
    const jamba_capture cap = {.rows = T, .hidden = sc->hidden, .hidden_index = sc->hidden_index,
                               .n_hidden = sc->n_hidden, .router_logits = sc->router};
    return jamba_context_set_capture(ctx, &cap, err);
}

void score_capture_free(score_capture *sc) {
    free(sc->hidden);
    free(sc->hidden_index);
    free(sc->router);
    *sc = (score_capture){0};
}

void score_router_free(score_router *r) {
    for (int64_t i = 0; i < r->n; i++)
        free(r->layers[i].load);
    free(r->layers);
    *r = (score_router){0};
}

/* Tensor names live in one block of fixed-size slots. */
#define NAME_SIZE 48

typedef struct dump {
    jb_st_out_tensor *t;
    char *names;
    int64_t n;
} dump;

static jamba_status dump_alloc(dump *d, int64_t n, jamba_error *err) {
    d->n = 0;
    d->t = calloc((size_t)(n > 0 ? n : 1), sizeof *d->t);
    d->names = calloc((size_t)(n > 0 ? n : 1), NAME_SIZE);
    if (d->t == NULL || d->names == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for a list of %lld tensors", (long long)n);
    return JAMBA_OK;
}

/* Add tensor "<prefix><index><suffix>" [rows, cols]. */
static void dump_add(dump *d, const char *prefix, int64_t index, const char *suffix, int64_t rows, int64_t cols,
                     const float *data) {
    char *name = d->names + d->n * NAME_SIZE;
    snprintf(name, NAME_SIZE, "%s%lld%s", prefix, (long long)index, suffix);
    d->t[d->n++] = (jb_st_out_tensor){name, JAMBA_DTYPE_F32, 2, {rows, cols}, data};
}

static jamba_status dump_write(dump *d, const char *path, jamba_error *err) {
    jamba_status st = jb_st_write(path, d->t, d->n, NULL, err);
    free(d->t);
    free(d->names);
    return st;
}

static jamba_status write_router(const score_capture *sc, const jamba_model *m, const char *path, jamba_error *err) {
    const jamba_config *c = jamba_model_config(m);
    const int64_t T = sc->rows, E = c->num_experts;
    dump d = {0};
    JB_TRY(dump_alloc(&d, c->n_moe_layers, err));
    for (int64_t l = 0, k = 0; l < c->num_hidden_layers; l++) {
        jamba_layer_info info;
        if (jamba_model_layer(m, l, &info, NULL) == JAMBA_OK && info.ffn == JAMBA_FFN_MOE)
            dump_add(&d, "router_logits.", l, "", T, E, sc->router + k++ * T * E);
    }
    return dump_write(&d, path, err);
}

static jamba_status write_hidden(const score_capture *sc, const jamba_model *m, const char *path, jamba_error *err) {
    const int64_t T = sc->rows, H = jamba_model_config(m)->hidden_size;
    dump d = {0};
    JB_TRY(dump_alloc(&d, sc->n_hidden, err));
    for (int64_t i = 0; i < sc->n_hidden; i++)
        dump_add(&d, "hidden.", sc->hidden_index[i], "", T, H, sc->hidden + i * T * H);
    return dump_write(&d, path, err);
}

/* The Mamba state of sequence 0, for each chosen Mamba layer. */
static jamba_status write_mamba(const score_internals_opts *o, jamba_context *ctx, const jamba_model *m,
                                const char *path, jamba_error *err) {
    const jamba_config *c = jamba_model_config(m);
    const int64_t Di = c->mamba_d_inner, K = c->mamba_d_conv, N = c->mamba_d_state, per = Di * (K - 1 + N);
    float *states = calloc((size_t)(c->n_mamba_layers > 0 ? c->n_mamba_layers * per : 1), sizeof *states);
    dump d = {0};
    jamba_status st = states ? dump_alloc(&d, 2 * c->n_mamba_layers, err)
                             : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for %lld Mamba states",
                                       (long long)c->n_mamba_layers);
    if (st != JAMBA_OK) {
        free(states);
        return st;
    }
    float *p = states;
    for (int64_t l = 0; st == JAMBA_OK && l < c->num_hidden_layers; l++) {
        if (!is_mamba(m, l) || !listed(o, l))
            continue;
        st = jamba_seq_mamba_state(ctx, 0, l, p, p + Di * (K - 1), err);
        dump_add(&d, "mamba.", l, ".conv", Di, K - 1, p);
        dump_add(&d, "mamba.", l, ".ssm", Di, N, p + Di * (K - 1));
        p += per;
    }
    if (st == JAMBA_OK)
        st = dump_write(&d, path, err);
    else
        free(d.t), free(d.names);
    free(states);
    return st;
}

static jamba_status router_stats(const score_capture *sc, const jamba_model *m, score_router *out,
                                 jamba_error *err) {
    const jamba_config *c = jamba_model_config(m);
    const int64_t T = sc->rows, E = c->num_experts;
    *out = (score_router){calloc((size_t)(c->n_moe_layers > 0 ? c->n_moe_layers : 1), sizeof *out->layers), 0};
    if (out->layers == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for %lld router statistics",
                       (long long)c->n_moe_layers);
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        jamba_layer_info info;
        if (jamba_model_layer(m, l, &info, NULL) != JAMBA_OK || info.ffn != JAMBA_FFN_MOE)
            continue;
        score_router_layer *r = &out->layers[out->n];
        r->layer = l;
        if ((r->load = calloc((size_t)E, sizeof *r->load)) == NULL)
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory for the loads of %lld experts", (long long)E);
        out->n++;
        JB_TRY(jamba_compute_router_stats(sc->router + (out->n - 1) * T * E, T, E, c->num_experts_per_tok, r->load,
                                              NULL, &r->stats, err));
    }
    return JAMBA_OK;
}

jamba_status score_capture_finish(score_capture *sc, const score_internals_opts *o, jamba_context *ctx,
                                  const jamba_model *m, score_router *router, jamba_error *err) {
    JB_TRY(jamba_context_set_capture(ctx, NULL, err));
    if (o->router_stats)
        JB_TRY(router_stats(sc, m, router, err));
    if (o->dump_router)
        JB_TRY(write_router(sc, m, o->dump_router, err));
    if (o->dump_hidden)
        JB_TRY(write_hidden(sc, m, o->dump_hidden, err));
    if (o->dump_mamba)
        JB_TRY(write_mamba(o, ctx, m, o->dump_mamba, err));
    return JAMBA_OK;
}

/* ---- reports ---------------------------------------------------------------------------------- */

void score_router_print(const char *model, const score_router *r) {
    printf("\nrouter statistics: %s\n", model);
    if (r->n == 0) {
        printf("  (no MoE layers)\n");
        return;
    }
    printf("%6s %8s %12s %12s %12s  %s\n", "layer", "tokens", "entropy", "top-k share", "balance", "expert load");
    for (int64_t i = 0; i < r->n; i++) {
        const score_router_layer *l = &r->layers[i];
        printf("%6lld %8lld %12.6f %12.6f %12.6f ", (long long)l->layer, (long long)l->stats.rows,
               l->stats.mean_entropy, l->stats.top_k_share, l->stats.balance_loss);
        for (int64_t e = 0; e < l->stats.n_experts; e++)
            printf(" %lld", (long long)l->load[e]);
        printf("\n");
    }
}

json_t *score_router_json(const score_router *r) {
    json_t *arr = json_array();
    for (int64_t i = 0; arr && i < r->n; i++) {
        const score_router_layer *l = &r->layers[i];
        json_t *load = json_array();
        for (int64_t e = 0; load && e < l->stats.n_experts; e++)
            json_array_append_new(load, json_integer(l->load[e]));
        json_array_append_new(arr, json_pack("{s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:o}", "layer", (json_int_t)l->layer,
                                             "tokens", (json_int_t)l->stats.rows, "experts",
                                             (json_int_t)l->stats.n_experts, "top_k", (json_int_t)l->stats.top_k,
                                             "mean_entropy", l->stats.mean_entropy, "top_k_share",
                                             l->stats.top_k_share, "balance_loss", l->stats.balance_loss, "load",
                                             load));
    }
    return arr;
}

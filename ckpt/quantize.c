/*
 * quantize.c — int8 weight-only quantization (quantize.h).
 */
#include "ckpt/quantize.h"

#include "ckpt/config.h"
#include "ckpt/dtype.h"
#include "base/alloc.h"
#include "base/error.h"
#include "base/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

jamba_status jb_quantize_int8(const jb_weight *w, int8_t *q, float *scale, const char *what, jamba_error *err) {
    const int64_t N = w->shape[0], K = w->shape[1];
    const size_t esize = jamba_dtype_size(w->dtype);
    float *row = jb_malloc((size_t)(K > 0 ? K : 1) * sizeof *row);
    if (row == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "quantizing %s: out of memory", what);
    jamba_status st = JAMBA_OK;
    for (int64_t n = 0; n < N && st == JAMBA_OK; n++) {
        jb_to_f32(row, (const uint8_t *)w->data + (size_t)(n * K) * esize, w->dtype, K);
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            const float v = w->scale ? row[k] * w->scale[n] : row[k];
            row[k] = v;
            if (!isfinite(v)) {
                st = jb_fail(err, JAMBA_ERR_NUMERIC, "quantizing %s: row %lld has a NaN or Inf", what, (long long)n);
                break;
            }
            amax = fmaxf(amax, fabsf(v));
        }
        const float s = amax / 127.0f;
        scale[n] = s;
        for (int64_t k = 0; k < K; k++) {
            const float v = s > 0 ? nearbyintf(row[k] / s) : 0.0f; /* the default rounding: half to even */
            q[n * K + k] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
        }
    }
    jb_free(row);
    return st;
}

bool jb_quant_groups_name(const jb_quant_groups *g, const char *name) {
    if (strstr(name, ".experts.") != NULL)
        return g->experts;
    if (strstr(name, ".feed_forward.") != NULL)
        return g->mlp; /* the router is no linear layer's matrix: never asked about */
    if (strstr(name, ".mamba.") != NULL || strstr(name, ".self_attn.") != NULL)
        return g->mixers;
    return (strcmp(name, "lm_head.weight") == 0 || strcmp(name, "model.embed_tokens.weight") == 0) && g->lm_head;
}

/* One matrix to requantize and where its int8 copy goes. */
typedef struct quant_item {
    jb_weight *w;
    int8_t *q;
    float *scale;
    char what[96];
} quant_item;

typedef struct quant_job {
    quant_item *items;
    jamba_status *status;   /* [n] per item */
    jamba_error *errors;    /* [n] */
} quant_job;

static void quantize_range(void *arg, int64_t i0, int64_t i1, int thread) {
    (void)thread;
    quant_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        quant_item *it = &j->items[i];
        j->status[i] = jb_quantize_int8(it->w, it->q, it->scale, it->what, &j->errors[i]);
    }
}

/* The matrices to requantize, gathered by one walk: counted when items is NULL, else filled in. */
typedef struct collector {
    quant_item *items;
    int64_t n;
    const char *label;
} collector;

/* Add `w` (unless absent or already int8), described as "<label> <what>". */
static void add(collector *c, jb_weight *w, const char *what) {
    if (w->data == NULL || w->dtype == JAMBA_DTYPE_I8)
        return;
    if (c->items != NULL) {
        quant_item *it = &c->items[c->n];
        it->w = w;
        snprintf(it->what, sizeof it->what, "%s %s", c->label, what);
    }
    c->n++;
}

/* The three matrices of an MLP: a dense one (expert < 0) or expert `expert`. */
static void add_mlp(collector *c, jb_mlp_weights *m, int64_t layer, int64_t expert) {
    jb_weight *mats[3] = {&m->gate_proj, &m->up_proj, &m->down_proj};
    static const char *const names[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int p = 0; p < 3; p++) {
        char what[64];
        if (expert >= 0)
            snprintf(what, sizeof what, "layer %lld expert %lld %s", (long long)layer, (long long)expert, names[p]);
        else
            snprintf(what, sizeof what, "layer %lld %s", (long long)layer, names[p]);
        add(c, mats[p], what);
    }
}

/* A layer's mixer projections: attention q/k/v/o or Mamba in/x/dt/out (the other kind's views are absent). */
static void add_mixer(collector *c, jb_layer_weights *lw, int64_t layer) {
    jb_weight *mats[8] = {&lw->attn.q_proj,    &lw->attn.k_proj,   &lw->attn.v_proj,    &lw->attn.o_proj,
                          &lw->mamba.in_proj, &lw->mamba.x_proj, &lw->mamba.dt_proj, &lw->mamba.out_proj};
    static const char *const names[8] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mamba.in_proj",    "mamba.x_proj",
                                         "mamba.dt_proj",    "mamba.out_proj"};
    for (int p = 0; p < 8; p++) {
        char what[64];
        snprintf(what, sizeof what, "layer %lld %s", (long long)layer, names[p]);
        add(c, mats[p], what);
    }
}

/* Every matrix of the chosen groups, in binding order of the layers, then the LM head. */
static void collect(collector *c, jb_weights *w, const jamba_config *cfg, const jb_quant_groups *g) {
    for (int64_t l = 0; l < w->n_layers; l++) {
        jb_layer_weights *lw = &w->layers[l];
        if (g->mixers)
            add_mixer(c, lw, l);
        if (jb_layer_is_moe(cfg, l) && g->experts)
            for (int64_t e = 0; e < cfg->num_experts; e++)
                add_mlp(c, &lw->experts[e], l, e);
        else if (!jb_layer_is_moe(cfg, l) && g->mlp)
            add_mlp(c, &lw->mlp, l, -1);
    }
    if (g->lm_head) /* tied: the embedding matrix is the LM head */
        add(c, cfg->tie_word_embeddings ? &w->embed : &w->lm_head,
            cfg->tie_word_embeddings ? "lm_head (tied: model.embed_tokens)" : "lm_head");
}

jamba_status jb_weights_quantize(jb_weights *w, const jamba_config *cfg, const jb_quant_groups *groups,
                                 int n_threads, const jb_progress *progress, const char *label,
                                 int64_t *n_converted, jamba_error *err) {
    *n_converted = 0;
    collector counter = {NULL, 0, label};
    collect(&counter, w, cfg, groups);
    const int64_t cap = counter.n;
    if (cap == 0)
        return JAMBA_OK;
    quant_item *items = jb_calloc((size_t)cap, sizeof *items);
    jamba_status *status = jb_calloc((size_t)cap, sizeof *status);
    jamba_error *errors = jb_calloc((size_t)cap, sizeof *errors);
    jamba_status st = items && status && errors ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    collector filler = {items, 0, label};
    if (st == JAMBA_OK)
        collect(&filler, w, cfg, groups);
    const int64_t n = filler.n;
    /* one allocation per matrix (int8 values, then scales), owned by the weights */
    for (int64_t i = 0; st == JAMBA_OK && i < n; i++) {
        const int64_t N = items[i].w->shape[0], K = items[i].w->shape[1];
        uint8_t *mem = jb_malloc((size_t)(N * K) + (size_t)N * sizeof(float) + 16);
        if (mem == NULL || !jb_weights_own(w, mem)) {
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for the int8 copy of %s", label,
                         items[i].what);
            break;
        }
        items[i].q = (int8_t *)mem;
        items[i].scale = (float *)(mem + ((size_t)(N * K) + 15) / 16 * 16);
    }
    jb_pool *pool = NULL;
    if (st == JAMBA_OK)
        st = jb_pool_create(n_threads > 0 ? n_threads : 1, &pool, err);
    if (st == JAMBA_OK) {
        quant_job job = {items, status, errors};
        const int64_t piece = 4 * (int64_t)(n_threads > 0 ? n_threads : 1); /* matrices between progress calls */
        for (int64_t first = 0; first < n && st == JAMBA_OK; first += piece) {
            const int64_t count = n - first < piece ? n - first : piece;
            quant_job part = {job.items + first, job.status + first, job.errors + first};
            jb_pool_run(pool, count, 1, quantize_range, &part);
            if (progress && progress->fn && !progress->fn(progress->data, first + count, n))
                st = jb_fail(err, JAMBA_ERR_ABORTED, "%s: loading cancelled by the progress callback", label);
        }
        for (int64_t i = 0; i < n && st == JAMBA_OK; i++)
            if (status[i] != JAMBA_OK) {
                st = status[i];
                if (err)
                    *err = errors[i];
            }
        if (st == JAMBA_OK)
            *n_converted = n;
        for (int64_t i = 0; i < n && st == JAMBA_OK; i++) { /* switch the views only when all succeeded */
            items[i].w->data = items[i].q;
            items[i].w->dtype = JAMBA_DTYPE_I8;
            items[i].w->scale = items[i].scale;
        }
        if (st == JAMBA_OK && cfg->tie_word_embeddings)
            w->lm_head = w->embed; /* the same (now int8) matrix */
    }
    jb_pool_free(pool);
    jb_free(items);
    jb_free(status);
    jb_free(errors);
    return st;
}

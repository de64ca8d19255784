/*
 * slice.c — a rank's slices of the tensors (slice.h): their byte runs, and a rank's weights as views into
 * the full weights (one run) or copies of the runs.
 */
#include "parallel/slice.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "ckpt/dtype.h"

#include <string.h>

/* ---- runs ----------------------------------------------------------------------------------------- */

/* The runs of slice s of a row-major tensor [shape[0..rank)] whose dimension s->dim is `parts` equal parts. */
static bool runs_of(const int64_t *shape, int rank, int parts, const jb_slice *s, uint64_t elem, jb_slice_runs *out) {
    *out = (jb_slice_runs){0};
    if (s->count == 0)
        return true;
    uint64_t outer = (uint64_t)parts, inner = elem;
    for (int d = 0; d < rank; d++)
        if (d != s->dim && !jb_mul_u64(d < s->dim ? outer : inner, (uint64_t)shape[d], d < s->dim ? &outer : &inner))
            return false;
    const uint64_t part_len = (uint64_t)(shape[s->dim] / parts);
    out->runs = (int64_t)outer;
    if (!jb_mul_u64((uint64_t)s->begin, inner, &out->offset) || !jb_mul_u64(part_len, inner, &out->pitch) ||
        !jb_mul_u64((uint64_t)s->count, inner, &out->run_bytes))
        return false;
    if (out->run_bytes != out->pitch)
        return true;
    /* the whole dimension: the runs touch, so they are one */
    out->runs = 1;
    if (!jb_mul_u64(outer, out->run_bytes, &out->run_bytes))
        return false;
    out->pitch = out->run_bytes;
    return true;
}

bool jb_slice_runs_of(const jb_shard_plan *p, int64_t t, int r, uint64_t elem_bytes, jb_slice_runs *out) {
    const jb_shard_tensor *x = &p->tensors[t];
    return runs_of(x->shape, x->rank, x->parts, jb_shard_slice(p, t, r), elem_bytes, out);
}

bool jb_slice_scale_runs(const jb_shard_plan *p, int64_t t, int r, jb_slice_runs *out) {
    const jb_shard_tensor *x = &p->tensors[t];
    const jb_slice *s = jb_shard_slice(p, t, r);
    const jb_slice rows = s->dim == 0 || s->count == 0 ? *s : (jb_slice){0, 0, x->shape[0]};
    return runs_of(x->shape, 1, s->dim == 0 ? x->parts : 1, &rows, sizeof(float), out);
}

bool jb_slice_runs_bytes(const jb_slice_runs *s, uint64_t *out) {
    return jb_mul_u64((uint64_t)s->runs, s->run_bytes, out);
}

void jb_slice_runs_copy(void *dst, const void *src, const jb_slice_runs *s) {
    uint8_t *d = dst;
    const uint8_t *from = (const uint8_t *)src + s->offset;
    for (int64_t i = 0; i < s->runs; i++, d += s->run_bytes, from += s->pitch)
        memcpy(d, from, (size_t)s->run_bytes);
}

/* ---- a rank's weights ----------------------------------------------------------------------------- */

typedef struct view_list {
    const jb_weight **v; /* [n] the full weights' views, in jb_weights_visit order */
    int64_t n, cap;
} view_list;

static bool collect(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)name, (void)rank, (void)shape, (void)linear;
    view_list *l = arg;
    if (!jb_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
        return false;
    l->v[l->n++] = w;
    return true;
}

typedef struct rank_binder {
    const jb_shard_plan *plan;
    int rank;
    const view_list *full;
    jb_weights *out;
    int64_t next;        /* the plan's tensor the visit is at */
    jamba_status status; /* anything but running out of memory, with its message (the visit then reports */
    jamba_error why;     /* running out of memory over err) */
} rank_binder;

/* src's runs s as memory: a view when they are one run, else a copy that b->out owns; NULL when out of memory. */
static const void *runs_memory(rank_binder *b, const void *src, const jb_slice_runs *s, bool *oom) {
    if (s->runs == 1)
        return (const uint8_t *)src + s->offset;
    uint64_t bytes;
    void *copy = jb_slice_runs_bytes(s, &bytes) && bytes <= SIZE_MAX ? jb_malloc((size_t)bytes) : NULL;
    if (copy == NULL || !jb_weights_own(b->out, copy)) {
        *oom = true;
        return NULL;
    }
    jb_slice_runs_copy(copy, src, s);
    return copy;
}

static bool bind_slice(void *arg, const char *name, jb_weight *dst, int rank, const int64_t *shape, bool linear) {
    (void)rank, (void)shape, (void)linear;
    rank_binder *b = arg;
    const int64_t t = b->next++;
    const jb_shard_tensor *x = t < b->plan->n_tensors ? &b->plan->tensors[t] : NULL;
    const jb_weight *src = t < b->full->n ? b->full->v[t] : NULL;
    if (x == NULL || src == NULL || strcmp(x->name, name) != 0) {
        b->status = jb_fail(&b->why, JAMBA_ERR_INVALID_ARGUMENT, "rank %d's weights: tensor \"%s\" is not the "
                            "sharding plan's tensor %lld: the plan was made for another config", b->rank, name,
                            (long long)t);
        return false;
    }
    *dst = *src;
    if (src->data == NULL) /* a tensor this checkpoint does not store (an optional norm) */
        return true;
    if (src->rank != x->rank || memcmp(src->shape, x->shape, sizeof src->shape) != 0) {
        b->status = jb_fail(&b->why, JAMBA_ERR_INVALID_ARGUMENT, "rank %d's weights: tensor \"%s\" is bound with "
                            "another shape than the sharding plan's", b->rank, name);
        return false;
    }
    const jb_slice *s = jb_shard_slice(b->plan, t, b->rank);
    dst->shape[s->dim] = s->count * x->parts;
    jb_slice_runs data, scale;
    if (!jb_slice_runs_of(b->plan, t, b->rank, jamba_dtype_size(src->dtype), &data) ||
        !jb_slice_scale_runs(b->plan, t, b->rank, &scale)) {
        b->status = jb_fail(&b->why, JAMBA_ERR_INVALID_ARGUMENT, "rank %d's weights: tensor \"%s\": its slice "
                            "overflows 64 bits", b->rank, name);
        return false;
    }
    if (data.runs == 0) {
        dst->data = NULL;
        dst->scale = NULL;
        return true;
    }
    bool oom = false;
    dst->data = runs_memory(b, src->data, &data, &oom);
    if (src->scale)
        dst->scale = runs_memory(b, src->scale, &scale, &oom);
    return !oom;
}

jamba_status jb_shard_bind_rank(const jb_shard_plan *p, const jamba_config *cfg, const jb_weights *full, int r,
                                jb_weights *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    if (r < 0 || r >= p->n_ranks)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "rank %d's weights: the plan has ranks [0, %d)", r,
                       p->n_ranks);
    view_list views = {0};
    jb_weights walk = *full; /* the visit reads the views; it allocates nothing when the layers exist */
    jamba_status st = jb_weights_visit(cfg, &walk, collect, &views, err);
    rank_binder b = {.plan = p, .rank = r, .full = &views, .out = out};
    if (st == JAMBA_OK)
        st = jb_weights_visit(cfg, out, bind_slice, &b, err);
    if (st != JAMBA_OK && b.status != JAMBA_OK) {
        st = b.status;
        if (err)
            *err = b.why;
    }
    else if (st == JAMBA_OK && (b.next != p->n_tensors || views.n != p->n_tensors))
        st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "rank %d's weights: %lld tensors bound, the sharding plan has "
                     "%lld: it was made for another config", r, (long long)b.next, (long long)p->n_tensors);
    jb_free(views.v);
    if (st != JAMBA_OK) {
        jb_weights_free(out);
        return st;
    }
    if (cfg->tie_word_embeddings)
        out->lm_head = out->embed; /* the same vocabulary rows */
    out->inner_norms_stored = full->inner_norms_stored;
    return JAMBA_OK;
}

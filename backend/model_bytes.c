/*
 * model_bytes.c — see model_bytes.h.
 */
#include "backend/model_bytes.h"

#include "base/checked.h"
#include "base/error.h"
#include "ckpt/quantize.h"

/* Bytes of a view as held: its elements, and its row scales when quantized. */
static bool add_held_bytes(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)name, (void)linear;
    if (w->data == NULL)
        return true;
    uint64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= (uint64_t)shape[d]; /* bounded: the view was bound from a checked file or quantized from one */
    *(uint64_t *)arg += n * jamba_dtype_size(w->dtype) + (w->scale ? (uint64_t)shape[0] * 4 : 0);
    return true;
}

/* A planning-only model's tensors: each in the planning dtype, or int8 plus one fp32 scale per row when it
 * is a linear layer's matrix in a group asked as int8. */
typedef struct planned_bytes {
    jb_quant_groups int8;
    uint64_t element_size;
    uint64_t total;
    bool overflow;
} planned_bytes;

static bool add_planned_bytes(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)w;
    planned_bytes *p = arg;
    const bool q8 = linear && jb_quant_groups_name(&p->int8, name);
    uint64_t n = 1;
    for (int d = 0; d < rank; d++)
        p->overflow = p->overflow || !jb_mul_u64(n, (uint64_t)shape[d], &n);
    p->overflow = p->overflow || !jb_muladd_u64(&p->total, n, q8 ? 1 : p->element_size) ||
                  (q8 && !jb_muladd_u64(&p->total, (uint64_t)shape[0], sizeof(float)));
    return true;
}

jamba_status jb_model_weight_bytes(const jamba_model *m, jamba_dtype planning_dtype, uint64_t *out, jamba_error *err) {
    *out = 0;
    if (!m->has_weights) {
        planned_bytes p = {.int8 = {.experts = m->plan_experts_int8, .mlp = m->plan_mlp_int8,
                                    .mixers = m->plan_mixers_int8, .lm_head = m->plan_lm_head_int8},
                           .element_size = jamba_dtype_size(planning_dtype)};
        jb_weights shapes = {0};
        jamba_status st = jb_weights_visit(&m->config, &shapes, add_planned_bytes, &p, err);
        jb_weights_free(&shapes);
        JB_TRY(st);
        if (p.overflow)
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "weight bytes overflow 64 bits");
        *out = p.total;
        return JAMBA_OK;
    }
    if (m->requantized) {
        jb_weights_visit(&m->config, (jb_weights *)&m->weights, add_held_bytes, out, NULL);
        return JAMBA_OK;
    }
    for (int64_t i = 0; i < m->weights.n_order; i++)
        *out += m->ckpt.entries[m->weights.order[i]].tensor->n_bytes; /* bounded by the checked file total */
    return JAMBA_OK;
}

/*
 * model_bytes.c — see model_bytes.h.
 */
#include "backend/model_bytes.h"

#include "base/checked.h"
#include "base/error.h"
#include "ckpt/sizing.h"

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

jamba_status jb_model_weight_bytes(const jamba_model *m, jamba_dtype planning_dtype, uint64_t *out, jamba_error *err) {
    *out = 0;
    if (!m->has_weights) {
        jamba_param_counts pc;
        JB_TRY(jb_param_counts(&m->config, &pc, err));
        if (!jb_mul_u64(pc.total, jamba_dtype_size(planning_dtype), out))
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "weight bytes overflow 64 bits");
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

/*
 * model_resource.c — the per-model resource cache of backend/model.h.
 */
#include "backend/model.h"

#include "base/error.h"

/* The slot of (owner, device, dtype), or NULL; the caller holds resource_lock. */
static jb_model_resource *find(const jamba_model *m, const void *owner, int device, jamba_dtype dtype) {
    for (int i = 0; i < m->n_resources; i++) {
        const jb_model_resource *r = &m->resources[i];
        if (r->owner == owner && r->device == device && r->dtype == dtype)
            return (jb_model_resource *)r;
    }
    return NULL;
}

jamba_status jb_model_resource_get(const jamba_model *cm, const void *owner, int device, jamba_dtype dtype,
                                   jb_resource_create_fn create, void (*free_fn)(void *), void **out,
                                   jamba_error *err) {
    *out = NULL;
    jamba_model *m = (jamba_model *)cm;
    pthread_mutex_lock(&m->resource_lock);
    jamba_status st = JAMBA_OK;
    jb_model_resource *r = find(m, owner, device, dtype);
    if (r != NULL) {
        *out = r->data;
    } else if (m->n_resources == JB_MODEL_MAX_RESOURCES) {
        st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: more than %d device copies of the weights", m->path,
                     JB_MODEL_MAX_RESOURCES);
    } else {
        void *data = NULL;
        st = create(m, device, dtype, &data, err);
        if (st == JAMBA_OK) {
            m->resources[m->n_resources++] =
                (jb_model_resource){.owner = owner, .device = device, .dtype = dtype, .data = data, .free_fn = free_fn};
            *out = data;
        }
    }
    pthread_mutex_unlock(&m->resource_lock);
    return st;
}

bool jb_model_resource_present(const jamba_model *cm, const void *owner, int device, jamba_dtype dtype) {
    jamba_model *m = (jamba_model *)cm;
    pthread_mutex_lock(&m->resource_lock);
    bool present = find(m, owner, device, dtype) != NULL;
    pthread_mutex_unlock(&m->resource_lock);
    return present;
}

void jb_model_resources_free(jamba_model *m) {
    for (int i = 0; i < m->n_resources; i++)
        m->resources[i].free_fn(m->resources[i].data);
    m->n_resources = 0;
}

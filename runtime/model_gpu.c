/*
 * model_gpu.c — a model's weights on CUDA devices: uploaded by the first context that needs them for a
 * (device, dtype), shared by every later context, freed with the model. The model is otherwise
 * immutable, so this cache is the one place that changes behind a const jamba_model, under gpu_lock.
 */
#include "model.h"

#include "error.h"

#ifdef JAMBA_WITH_CUDA
#include "../cuda/backend.h"
#include "../cuda/device.h"
#endif

#include <string.h>

#ifdef JAMBA_WITH_CUDA
/* The copy on (device, dtype), or NULL; the caller holds gpu_lock. */
static struct jb_cuda_weights *find_copy(const jamba_model *m, int device, jamba_dtype dtype) {
    for (int i = 0; i < m->n_gpu; i++)
        if (jb_cuda_weights_device(m->gpu[i]) == device && jb_cuda_weights_dtype(m->gpu[i]) == dtype)
            return m->gpu[i];
    return NULL;
}
#else
static jamba_status no_cuda(jamba_error *err) {
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "this build has no CUDA backend (configure with -DJAMBA_CUDA=ON)");
}
#endif

jamba_status jb_model_gpu_weights(const jamba_model *cm, int device, jamba_dtype dtype,
                                  const struct jb_cuda_weights **out, jamba_error *err) {
    *out = NULL;
#ifdef JAMBA_WITH_CUDA
    jamba_model *m = (jamba_model *)cm;
    pthread_mutex_lock(&m->gpu_lock);
    jamba_status st = JAMBA_OK;
    *out = find_copy(m, device, dtype);
    if (*out == NULL) {
        jb_cuda_weights *w = NULL;
        if (m->n_gpu == JB_MODEL_MAX_GPU_COPIES)
            st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: more than %d device copies of the weights", m->path,
                         JB_MODEL_MAX_GPU_COPIES);
        else if ((st = jb_cuda_weights_create(m, device, dtype, &w, err)) == JAMBA_OK)
            *out = m->gpu[m->n_gpu++] = w;
    }
    pthread_mutex_unlock(&m->gpu_lock);
    return st;
#else
    (void)cm, (void)device, (void)dtype;
    return no_cuda(err);
#endif
}

void jb_model_gpu_free(jamba_model *m) {
#ifdef JAMBA_WITH_CUDA
    for (int i = 0; i < m->n_gpu; i++)
        jb_cuda_weights_free(m->gpu[i]);
#endif
    m->n_gpu = 0;
}

jamba_status jb_model_gpu_probe(const jamba_model *cm, int device, jamba_dtype dtype, uint64_t *free_bytes,
                                bool *resident, jamba_error *err) {
    *free_bytes = 0;
    *resident = false;
#ifdef JAMBA_WITH_CUDA
    jamba_device_info info;
    memset(&info, 0, sizeof info);
    JB_TRY(jb_cuda_device_query(device, &info, err));
    *free_bytes = info.free_memory;
    jamba_model *m = (jamba_model *)cm;
    pthread_mutex_lock(&m->gpu_lock);
    *resident = find_copy(m, device, dtype) != NULL;
    pthread_mutex_unlock(&m->gpu_lock);
    return JAMBA_OK;
#else
    (void)cm, (void)device, (void)dtype;
    return no_cuda(err);
#endif
}

/*
 * model.h — the jamba_model object as every layer above ckpt sees it: the config, the mapped checkpoint,
 * the bound weights, and the per-model resources backends make on first use (a device copy of the
 * weights). runtime/model.c loads it; backends read it and never change it, except through the
 * resource cache and the cached state fingerprint, the only places that change behind a const jamba_model
 * (both under resource_lock).
 */
#ifndef JB_BACKEND_MODEL_H
#define JB_BACKEND_MODEL_H

#include <pthread.h>
#include <stdbool.h>

#include "base/strlist.h"
#include "ckpt/checkpoint.h"
#include "ckpt/weights.h"
#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JB_MODEL_MAX_RESOURCES 16

/* A backend-owned, per-model resource, keyed by (owner, device, dtype). */
typedef struct jb_model_resource {
    const void *owner;           /* the backend's tag (its operations table) */
    int device;
    jamba_dtype dtype;
    void *data;
    void (*free_fn)(void *data);
} jb_model_resource;

struct jamba_model {
    char *path;             /* the folder as given */
    jamba_config config;
    bool has_weights;
    jb_checkpoint ckpt;     /* mapped shards; empty for a planning-only model */
    jb_weights weights;     /* views into ckpt */
    jb_strlist notes;       /* warnings gathered while loading */
    pthread_mutex_t resource_lock;
    bool resource_lock_ready;
    jb_model_resource resources[JB_MODEL_MAX_RESOURCES];
    int n_resources;
    uint64_t state_fingerprint; /* identity of the model in sequence state files: a hash of the config and of
                                   every weight byte, made on the first save or restore (runtime/seq_state.c,
                                   under resource_lock) and kept; 0 until then */
    uint8_t *owned_image;   /* jb_model_from_image: the safetensors image the weights point into */
    bool requantized;       /* some matrices were quantized to int8 while loading */
    bool plan_experts_int8, plan_mlp_int8; /* the formats asked for (what a planning-only model plans with) */
    bool plan_mixers_int8, plan_lm_head_int8; /* asked for too; CUDA contexts refuse them (cuda/backend.c) */
    bool device_synthetic;  /* weights exist only as shapes; a CUDA device fills them (synthetic_seed) */
    uint64_t synthetic_seed;
    jamba_log_fn log;       /* jamba_model_params.log: the model's and its contexts' messages; NULL = none */
    void *log_data;
};

/* Makes a resource: *out on success. */
typedef jamba_status (*jb_resource_create_fn)(const jamba_model *m, int device, jamba_dtype dtype, void **out,
                                              jamba_error *err);

/* The resource (owner, device, dtype), made by `create` on first use and freed by `free_fn` with the
 * model. Thread-safe; concurrent first uses make it once. */
jamba_status jb_model_resource_get(const jamba_model *m, const void *owner, int device, jamba_dtype dtype,
                                   jb_resource_create_fn create, void (*free_fn)(void *), void **out,
                                   jamba_error *err);
/* Whether the resource exists already (for planning: resident weights do not count again). */
bool jb_model_resource_present(const jamba_model *m, const void *owner, int device, jamba_dtype dtype);
/* Free every resource (jamba_model_free). */
void jb_model_resources_free(jamba_model *m);

#ifdef __cplusplus
}
#endif

#endif /* JB_BACKEND_MODEL_H */

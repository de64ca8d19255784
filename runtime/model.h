/*
 * model.h — the jamba_model object (internal layout shared by the runtime's files).
 */
#ifndef JB_MODEL_H
#define JB_MODEL_H

#include <pthread.h>

#include "../ckpt/checkpoint.h"
#include "../ckpt/weights.h"
#include "jamba.h"
#include "strlist.h"

#define JB_MODEL_MAX_GPU_COPIES 16

struct jb_cuda_weights;

struct jamba_model {
    char *path;             /* the folder as given */
    jamba_config config;
    bool has_weights;
    jb_checkpoint ckpt;     /* mapped shards; empty for a planning-only model */
    jb_weights weights;     /* views into ckpt */
    jb_strlist notes;       /* warnings gathered while loading */
    /* the weights on CUDA devices, one copy per (device, dtype), made by the first context that needs
     * it (model_gpu.c); gpu_lock guards the list */
    pthread_mutex_t gpu_lock;
    bool gpu_lock_ready;
    struct jb_cuda_weights *gpu[JB_MODEL_MAX_GPU_COPIES];
    int n_gpu;
    uint8_t *owned_image;   /* jb_model_from_image: the safetensors image the weights point into */
    bool requantized;       /* some matrices were quantized to int8 while loading */
    bool plan_experts_int8, plan_mlp_int8; /* planning-only models: the formats asked for */
    bool device_synthetic;  /* weights exist only as shapes; a CUDA device fills them (synthetic_seed) */
    uint64_t synthetic_seed;
};

/* A model whose weights are made on the CUDA device that runs it: random values of the reference ranges
 * from `seed`, in the formats given (int8 experts / dense MLPs), without a host copy. For benchmarks of
 * full-size configs. CUDA contexts only (a CPU context fails with JAMBA_ERR_NO_WEIGHTS). */
jamba_status jb_model_device_synthetic(const char *config_json, size_t config_len, const char *label, uint64_t seed,
                                       bool experts_int8, bool mlp_int8, jamba_model **out, jamba_error *err);

/* A model from config.json text and a safetensors image in memory (synthetic models for benchmarks and
 * tests). The model takes `image` (allocated with jb_malloc) and frees it, also on failure. */
jamba_status jb_model_from_image(const char *config_json, size_t config_len, uint8_t *image, uint64_t image_len,
                                 const char *label, jamba_model **out, jamba_error *err);

/* The model's weights on CUDA device `device` as `dtype`, uploading them on first use. Thread-safe. */
jamba_status jb_model_gpu_weights(const jamba_model *m, int device, jamba_dtype dtype,
                                  const struct jb_cuda_weights **out, jamba_error *err);
/* Free every device copy (jamba_model_free). */
void jb_model_gpu_free(jamba_model *m);

/* For planning on CUDA device `device`: its free memory and whether the weights are already there as
 * `dtype`. JAMBA_ERR_NO_DEVICE (and 0, false) when there is no such device or no CUDA backend; with
 * err NULL the caller only wants the figures. */
jamba_status jb_model_gpu_probe(const jamba_model *m, int device, jamba_dtype dtype, uint64_t *free_bytes,
                                bool *resident, jamba_error *err);

#endif /* JB_MODEL_H */

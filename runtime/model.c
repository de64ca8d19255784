/*
 * model.c — jamba_model: load a Hugging Face folder (config, weights, binding), free it, and answer
 * queries about configuration, schedule, tensors, parameters and memory.
 */
#include "runtime/model.h"

#include "ckpt/config.h"
#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "ckpt/quantize.h"
#include "ckpt/sizing.h"
#include "backend/model_bytes.h"
#include "base/abi.h"
#include "runtime/log.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const jamba_model_params MODEL_DEFAULTS = {
    .weights = JAMBA_WEIGHTS_REQUIRED,
    .allow_unexpected_tensors = false,
    .check_finite = false,
    .experts = JAMBA_FORMAT_STORED,
    .mlp = JAMBA_FORMAT_STORED,
    .n_threads = 0,
    .mixers = JAMBA_FORMAT_STORED,
    .lm_head = JAMBA_FORMAT_STORED,
};

void jamba_model_params_init_sized(jamba_model_params *p, size_t size) {
    if (p != NULL)
        JB_INIT_SIZED(p, size, MODEL_DEFAULTS);
}

/* Tensors scanned for NaN/Inf at every load: small, and decisive (one NaN in a norm, bias, router or the
 * Mamba A_log/conv spreads to every output); the big matrices are scanned with check_finite. */
static bool checked_by_default(const jb_ckpt_entry *e) {
    const size_t n = strlen(e->name);
    return e->tensor->rank <= 1 || strstr(e->name, ".router.") || strstr(e->name, ".conv1d.") ||
           (n >= 5 && strcmp(e->name + n - 5, "A_log") == 0);
}

/* mamba_inner_layernorms = false comes from AI21's remote code, which then skipped the dt/B/C norms. The
 * transformers port always applies them, so a checkpoint that stores them gets them (the effective config
 * says true from here on, which keeps the parameter count exact); one that does not runs without them. */
static jamba_status settle_inner_norms(jamba_model *m, jamba_error *err) {
    jamba_config *c = &m->config;
    if (c->mamba_inner_layernorms || c->n_mamba_layers == 0)
        return JAMBA_OK;
    c->mamba_inner_layernorms = m->weights.inner_norms_stored;
    bool ok = jb_strlist_addf(&m->notes, m->weights.inner_norms_stored
                  ? "%s: config.json sets mamba_inner_layernorms = false but the checkpoint stores the dt/B/C "
                    "norms; they are applied, as transformers does"
                  : "%s: mamba_inner_layernorms = false: the dt/B/C norms are skipped, as in AI21's original "
                    "code (transformers' JambaForCausalLM would apply them with unit weights)", m->path);
    return ok ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", m->path);
}

/* The load-progress callback at `fraction`; JAMBA_ERR_ABORTED when it asks to stop. */
static jamba_status progress_at(const jamba_model_params *p, const char *path, double fraction, jamba_error *err) {
    if (p->progress != NULL && !p->progress((float)fraction, p->progress_data))
        return jb_fail(err, JAMBA_ERR_ABORTED, "%s: loading cancelled by the progress callback", path);
    return JAMBA_OK;
}

/* The int8 conversion's progress, mapped onto [from, from + span) of the load. */
typedef struct quantize_progress {
    const jamba_model_params *p;
    double from, span;
} quantize_progress;

static bool quantize_tick(void *data, int64_t done, int64_t total) {
    const quantize_progress *q = data;
    return q->p->progress((float)(q->from + q->span * (double)done / (double)total), q->p->progress_data);
}

static jamba_status load_weights(jamba_model *m, const jamba_model_params *p, jamba_error *err) {
    const jb_quant_groups int8 = {.experts = p->experts == JAMBA_FORMAT_INT8, .mlp = p->mlp == JAMBA_FORMAT_INT8,
                                  .mixers = p->mixers == JAMBA_FORMAT_INT8, .lm_head = p->lm_head == JAMBA_FORMAT_INT8};
    m->plan_experts_int8 = int8.experts;
    m->plan_mlp_int8 = int8.mlp;
    m->plan_mixers_int8 = int8.mixers;
    m->plan_lm_head_int8 = int8.lm_head;
    if (p->weights == JAMBA_WEIGHTS_NONE)
        return JAMBA_OK;
    bool found;
    JB_TRY(jb_checkpoint_open(m->path, &found, &m->ckpt, err));
    if (!found) {
        if (p->weights == JAMBA_WEIGHTS_REQUIRED)
            return jb_fail(err, JAMBA_ERR_NO_WEIGHTS, "%s: no %s or %s (only safetensors checkpoints are supported)",
                           m->path, JB_SINGLE_FILE, JB_INDEX_FILE);
        return JAMBA_OK;
    }
    JB_TRY(jb_bind_weights(&m->config, &m->ckpt, p->allow_unexpected_tensors, m->path, &m->weights, &m->notes,
                           err));
    m->has_weights = true;
    JB_TRY(settle_inner_norms(m, err));
    /* progress: the checks take [0, 0.5) when a conversion follows (it takes [0.5, 0.99)), else [0, 0.99) */
    const bool convert = jb_quant_any(&int8);
    const double checks_span = convert ? 0.5 : 0.99;
    for (int64_t i = 0; i < m->weights.n_order; i++) {
        if (p->check_finite || checked_by_default(&m->ckpt.entries[m->weights.order[i]]))
            JB_TRY(jb_check_finite(&m->ckpt, m->weights.order[i], err));
        JB_TRY(progress_at(p, m->path, checks_span * (double)(i + 1) / (double)m->weights.n_order, err));
    }
    if (convert) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        int threads = p->n_threads > 0 ? p->n_threads : online < 1 ? 1 : online > 64 ? 64 : (int)online;
        int64_t converted = 0;
        quantize_progress qp = {p, 0.5, 0.49};
        const jb_progress progress = {p->progress ? quantize_tick : NULL, &qp};
        JB_TRY(jb_weights_quantize(&m->weights, &m->config, &int8, threads, &progress, m->path, &converted, err));
        m->requantized = converted > 0; /* an int8 checkpoint loaded as int8 is the same model as stored */
    }
    return JAMBA_OK;
}

/* An empty model named `path`; freed with jamba_model_free. */
static jamba_status model_new(const char *path, jamba_model **out, jamba_error *err) {
    jamba_model *m = *out = jb_calloc(1, sizeof *m);
    if (m == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    m->resource_lock_ready = pthread_mutex_init(&m->resource_lock, NULL) == 0;
    if (!m->resource_lock_ready)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: cannot create a mutex", path);
    if ((m->path = jb_strdup(path)) == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    return JAMBA_OK;
}

jamba_status jb_model_from_image(const char *config_json, size_t config_len, uint8_t *image, uint64_t image_len,
                                 const char *label, jamba_model **out, jamba_error *err) {
    *out = NULL;
    jamba_model *m = NULL;
    jamba_status st = model_new(label, &m, err);
    if (st == JAMBA_OK) {
        m->owned_image = image;
        st = jb_config_parse(config_json, config_len, label, &m->config, &m->notes, err);
    } else {
        jb_free(image);
    }
    if (st == JAMBA_OK)
        st = jb_checkpoint_from_image(image, image_len, label, &m->ckpt, err);
    if (st == JAMBA_OK)
        st = jb_bind_weights(&m->config, &m->ckpt, false, label, &m->weights, &m->notes, err);
    if (st == JAMBA_OK) {
        m->has_weights = true;
        st = settle_inner_norms(m, err);
    }
    if (st != JAMBA_OK) {
        jamba_model_free(m);
        return st;
    }
    *out = m;
    return JAMBA_OK;
}

/* Shape-only views for a device-synthetic model: a non-NULL sentinel (never read) marks each tensor; arg is
 * the jb_quant_groups held as int8. */
static const float SHAPE_ONLY_SENTINEL = 0.0f;

static bool set_shape(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    const bool q8 = linear && jb_quant_groups_name(arg, name);
    w->data = &SHAPE_ONLY_SENTINEL;
    w->dtype = q8 ? JAMBA_DTYPE_I8 : JAMBA_DTYPE_BF16;
    w->scale = q8 ? &SHAPE_ONLY_SENTINEL : NULL;
    w->rank = rank;
    memcpy(w->shape, shape, sizeof w->shape);
    return true;
}

jamba_status jb_model_device_synthetic(const char *config_json, size_t config_len, const char *label, uint64_t seed,
                                       bool experts_int8, bool mlp_int8, jamba_model **out, jamba_error *err) {
    *out = NULL;
    jamba_model *m = NULL;
    jamba_status st = model_new(label, &m, err);
    if (st == JAMBA_OK)
        st = jb_config_parse(config_json, config_len, label, &m->config, &m->notes, err);
    jb_quant_groups int8 = {.experts = experts_int8, .mlp = mlp_int8};
    if (st == JAMBA_OK)
        st = jb_weights_visit(&m->config, &m->weights, set_shape, &int8, err);
    if (st != JAMBA_OK) {
        jamba_model_free(m);
        return st;
    }
    m->weights.inner_norms_stored = false;
    m->device_synthetic = true;
    m->synthetic_seed = seed;
    m->plan_experts_int8 = experts_int8;
    m->plan_mlp_int8 = mlp_int8;
    *out = m;
    return JAMBA_OK;
}

jamba_status jamba_model_load_sized(const char *dir, const jamba_model_params *params, size_t params_size,
                                    jamba_model **out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: out is NULL");
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: no model folder given");
    jamba_model_params p = MODEL_DEFAULTS;
    if (params != NULL)
        JB_TRY(jb_struct_in(&p, sizeof p, params, params_size, JB_MIN_MODEL_PARAMS, "jamba_model_load: params", err));
    if ((int)p.weights < JAMBA_WEIGHTS_REQUIRED || p.weights > JAMBA_WEIGHTS_NONE)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: invalid weights mode %d", (int)p.weights);
    const struct {
        const char *name;
        jamba_weight_format f;
    } formats[] = {{"experts", p.experts}, {"mlp", p.mlp}, {"mixers", p.mixers}, {"lm_head", p.lm_head}};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if ((int)formats[i].f < JAMBA_FORMAT_STORED || formats[i].f > JAMBA_FORMAT_INT8)
            return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: invalid weight format %d for %s "
                           "(JAMBA_FORMAT_STORED or JAMBA_FORMAT_INT8)", (int)formats[i].f, formats[i].name);
    if (p.n_threads < 0 || p.n_threads > 1024)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: n_threads %d outside [0, 1024]",
                       (int)p.n_threads);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return jb_fail(err, JAMBA_ERR_IO, "%s: not a folder (expected a Hugging Face model folder)", dir);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    jamba_model *m = NULL;
    jamba_status st = progress_at(&p, dir, 0.0, err);
    if (st == JAMBA_OK)
        st = model_new(dir, &m, err);
    if (st == JAMBA_OK) {
        m->log = p.log;
        m->log_data = p.log_data;
        st = jb_config_load(dir, &m->config, &m->notes, err);
    }
    if (st == JAMBA_OK)
        st = load_weights(m, &p, err);
    if (st == JAMBA_OK)
        st = progress_at(&p, dir, 1.0, err);
    if (st != JAMBA_OK) {
        if (err != NULL && p.log != NULL)
            p.log(JAMBA_LOG_ERROR, err->message, p.log_data);
        jamba_model_free(m);
        return st;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int64_t i = 0; i < m->notes.n; i++)
        jb_log(m, JAMBA_LOG_WARN, "%s", m->notes.items[i]);
    jb_log(m, JAMBA_LOG_INFO, "%s: loaded %lld tensors in %.2f s%s", dir, (long long)m->weights.n_order,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           m->has_weights ? "" : " (configuration only: planning)");
    *out = m;
    return JAMBA_OK;
}

void jamba_model_free(jamba_model *m) {
    if (m == NULL)
        return;
    jb_model_resources_free(m);
    if (m->resource_lock_ready)
        pthread_mutex_destroy(&m->resource_lock);
    jb_weights_free(&m->weights);
    jb_checkpoint_close(&m->ckpt);
    jb_free(m->owned_image);
    jb_strlist_free(&m->notes);
    jb_free(m->path);
    jb_free(m);
}

const jamba_config *jamba_model_config(const jamba_model *m) { return m ? &m->config : NULL; }
bool jamba_model_has_weights(const jamba_model *m) { return m && m->has_weights; }
const char *jamba_model_path(const jamba_model *m) { return m ? m->path : NULL; }

jamba_status jamba_model_layer_sized(const jamba_model *m, int64_t layer, jamba_layer_info *out, size_t out_size,
                                     jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_layer: NULL argument");
    if (layer < 0 || layer >= m->config.num_hidden_layers)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_layer: layer %lld outside [0, %lld)",
                       (long long)layer, (long long)m->config.num_hidden_layers);
    const bool moe = jb_layer_is_moe(&m->config, layer);
    const jamba_layer_info info = {
        .mixer = jb_layer_is_attention(&m->config, layer) ? JAMBA_MIXER_ATTENTION : JAMBA_MIXER_MAMBA,
        .ffn = moe ? JAMBA_FFN_MOE : JAMBA_FFN_DENSE,
        .n_experts = moe ? m->config.num_experts : 1,
    };
    return jb_struct_out(out, out_size, &info, sizeof info, JB_MIN_LAYER_INFO, "jamba_model_layer: out", err);
}

jamba_status jamba_model_param_counts_sized(const jamba_model *m, jamba_param_counts *out, size_t out_size,
                                           jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_param_counts: NULL argument");
    jamba_param_counts counts;
    JB_TRY(jb_param_counts(&m->config, &counts, err));
    return jb_struct_out(out, out_size, &counts, sizeof counts, JB_MIN_PARAM_COUNTS, "jamba_model_param_counts: out",
                         err);
}

int64_t jamba_model_n_tensors(const jamba_model *m) { return m ? m->weights.n_order : 0; }

jamba_status jamba_model_tensor_sized(const jamba_model *m, int64_t index, jamba_tensor_info *out, size_t out_size,
                                      jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_tensor: NULL argument");
    if (index < 0 || index >= m->weights.n_order)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_tensor: index %lld outside [0, %lld)",
                       (long long)index, (long long)m->weights.n_order);
    const jb_ckpt_entry *e = &m->ckpt.entries[m->weights.order[index]];
    const jb_st_file *f = &m->ckpt.shards[e->shard];
    const jb_st_tensor *t = e->tensor;
    jamba_tensor_info info = {0};
    info.name = t->name;
    const char *slash = strrchr(f->label, '/');
    info.file = slash ? slash + 1 : f->label;
    info.dtype = t->dtype;
    info.rank = t->rank;
    memcpy(info.shape, t->shape, sizeof info.shape);
    info.n_elements = t->n_elements;
    info.n_bytes = t->n_bytes;
    info.file_offset = f->data_start + t->begin;
    info.aligned = info.file_offset % jamba_dtype_size(t->dtype) == 0;
    return jb_struct_out(out, out_size, &info, sizeof info, JB_MIN_TENSOR_INFO, "jamba_model_tensor: out", err);
}

int64_t jamba_model_n_warnings(const jamba_model *m) { return m ? m->notes.n : 0; }

const char *jamba_model_warning(const jamba_model *m, int64_t index) {
    if (m == NULL || index < 0 || index >= m->notes.n)
        return NULL;
    return m->notes.items[index];
}

static jamba_memory_params memory_defaults(const jamba_model *m) {
    jamba_memory_params p = {
        .n_ctx = m ? m->config.max_position_embeddings : 4096,
        .n_seq = 1,
        .kv_dtype = JAMBA_DTYPE_BF16,
        .conv_dtype = JAMBA_DTYPE_BF16,
        .weight_dtype = m && m->config.torch_dtype != JAMBA_DTYPE_UNKNOWN ? m->config.torch_dtype : JAMBA_DTYPE_BF16,
    };
    return p;
}

void jamba_memory_params_init_sized(const jamba_model *m, jamba_memory_params *p, size_t size) {
    const jamba_memory_params d = memory_defaults(m);
    if (p != NULL)
        JB_INIT_SIZED(p, size, d);
}

static bool is_float_dtype(jamba_dtype d) {
    return d == JAMBA_DTYPE_F32 || d == JAMBA_DTYPE_F16 || d == JAMBA_DTYPE_BF16;
}

static jamba_status memory_estimate(const jamba_model *m, const jamba_memory_params *pp, jamba_memory_estimate *out,
                                    jamba_error *err) {
    const jamba_memory_params p = *pp;
    if (p.n_ctx < 1 || p.n_seq < 1)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_memory: n_ctx %lld and n_seq %lld must be >= 1",
                       (long long)p.n_ctx, (long long)p.n_seq);
    if ((!is_float_dtype(p.kv_dtype) && p.kv_dtype != JAMBA_DTYPE_F8_E4M3) || !is_float_dtype(p.conv_dtype) ||
        !is_float_dtype(p.weight_dtype))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_memory: dtypes must be F32, F16 or BF16 (the KV "
                       "cache also F8_E4M3)");
    JB_TRY(jb_model_weight_bytes(m, p.weight_dtype, &out->weight_bytes, err));
    JB_TRY(jb_state_sizes(&m->config, p.kv_dtype, p.conv_dtype, &out->kv_bytes_per_token,
                          &out->mamba_state_bytes_per_seq, err));
    uint64_t kv_seq;
    if (!jb_mul_u64(out->kv_bytes_per_token, (uint64_t)p.n_ctx, &kv_seq) ||
        !jb_mul_u64(kv_seq, (uint64_t)p.n_seq, &out->kv_bytes) ||
        !jb_mul_u64(out->mamba_state_bytes_per_seq, (uint64_t)p.n_seq, &out->mamba_state_bytes) ||
        !jb_add_u64(out->weight_bytes, out->kv_bytes, &out->total_bytes) ||
        !jb_add_u64(out->total_bytes, out->mamba_state_bytes, &out->total_bytes))
        return jb_fail(err, JAMBA_ERR_OVERFLOW, "jamba_model_memory: %lld tokens x %lld sequences overflows 64 bits",
                       (long long)p.n_ctx, (long long)p.n_seq);
    return JAMBA_OK;
}

jamba_status jamba_model_memory_sized(const jamba_model *m, const jamba_memory_params *params, size_t params_size,
                                      jamba_memory_estimate *out, size_t out_size, jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_memory: NULL argument");
    jamba_memory_params p = memory_defaults(m);
    if (params != NULL)
        JB_TRY(jb_struct_in(&p, sizeof p, params, params_size, JB_MIN_MEMORY_PARAMS, "jamba_model_memory: params",
                            err));
    jamba_memory_estimate est = {0};
    JB_TRY(memory_estimate(m, &p, &est, err));
    return jb_struct_out(out, out_size, &est, sizeof est, JB_MIN_MEMORY_ESTIMATE, "jamba_model_memory: out", err);
}

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

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

jamba_model_params jamba_model_default_params(void) {
    return (jamba_model_params){
        .weights = JAMBA_WEIGHTS_REQUIRED,
        .allow_unexpected_tensors = false,
        .check_finite = false,
        .experts = JAMBA_FORMAT_STORED,
        .mlp = JAMBA_FORMAT_STORED,
        .n_threads = 0,
    };
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

static jamba_status load_weights(jamba_model *m, const jamba_model_params *p, jamba_error *err) {
    m->plan_experts_int8 = p->experts == JAMBA_FORMAT_INT8;
    m->plan_mlp_int8 = p->mlp == JAMBA_FORMAT_INT8;
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
    for (int64_t i = 0; i < m->weights.n_order; i++)
        if (p->check_finite || checked_by_default(&m->ckpt.entries[m->weights.order[i]]))
            JB_TRY(jb_check_finite(&m->ckpt, m->weights.order[i], err));
    if (p->experts == JAMBA_FORMAT_INT8 || p->mlp == JAMBA_FORMAT_INT8) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        int threads = p->n_threads > 0 ? p->n_threads : online < 1 ? 1 : online > 64 ? 64 : (int)online;
        int64_t converted = 0;
        JB_TRY(jb_weights_quantize(&m->weights, &m->config, p->experts == JAMBA_FORMAT_INT8,
                                   p->mlp == JAMBA_FORMAT_INT8, threads, m->path, &converted, err));
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

/* Shape-only views for a device-synthetic model: a non-NULL sentinel (never read) marks each tensor. */
typedef struct shape_only {
    bool experts_int8, mlp_int8;
} shape_only;

static const float SHAPE_ONLY_SENTINEL = 0.0f;

static bool set_shape(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    const shape_only *so = arg;
    const bool expert = strstr(name, ".experts.") != NULL;
    const bool mlp = !expert && strstr(name, "feed_forward.") != NULL && strstr(name, "router") == NULL;
    const bool q8 = linear && ((expert && so->experts_int8) || (mlp && so->mlp_int8));
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
    shape_only so = {experts_int8, mlp_int8};
    if (st == JAMBA_OK)
        st = jb_weights_visit(&m->config, &m->weights, set_shape, &so, err);
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

jamba_status jamba_model_load(const char *dir, const jamba_model_params *params, jamba_model **out,
                              jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: out is NULL");
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: no model folder given");
    jamba_model_params p = params ? *params : jamba_model_default_params();
    if ((int)p.weights < JAMBA_WEIGHTS_REQUIRED || p.weights > JAMBA_WEIGHTS_NONE)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: invalid weights mode %d", (int)p.weights);
    if ((int)p.experts < JAMBA_FORMAT_STORED || p.experts > JAMBA_FORMAT_INT8 || (int)p.mlp < JAMBA_FORMAT_STORED ||
        p.mlp > JAMBA_FORMAT_INT8 || p.n_threads < 0 || p.n_threads > 1024)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_load: invalid weight format or thread count");
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return jb_fail(err, JAMBA_ERR_IO, "%s: not a folder (expected a Hugging Face model folder)", dir);

    jamba_model *m = NULL;
    jamba_status st = model_new(dir, &m, err);
    if (st == JAMBA_OK)
        st = jb_config_load(dir, &m->config, &m->notes, err);
    if (st == JAMBA_OK)
        st = load_weights(m, &p, err);
    if (st != JAMBA_OK) {
        jamba_model_free(m);
        return st;
    }
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

jamba_status jamba_model_layer(const jamba_model *m, int64_t layer, jamba_layer_info *out, jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_layer: NULL argument");
    if (layer < 0 || layer >= m->config.num_hidden_layers)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_layer: layer %lld outside [0, %lld)",
                       (long long)layer, (long long)m->config.num_hidden_layers);
    bool moe = jb_layer_is_moe(&m->config, layer);
    out->mixer = jb_layer_is_attention(&m->config, layer) ? JAMBA_MIXER_ATTENTION : JAMBA_MIXER_MAMBA;
    out->ffn = moe ? JAMBA_FFN_MOE : JAMBA_FFN_DENSE;
    out->n_experts = moe ? m->config.num_experts : 1;
    return JAMBA_OK;
}

jamba_status jamba_model_param_counts(const jamba_model *m, jamba_param_counts *out, jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_param_counts: NULL argument");
    return jb_param_counts(&m->config, out, err);
}

int64_t jamba_model_n_tensors(const jamba_model *m) { return m ? m->weights.n_order : 0; }

jamba_status jamba_model_tensor(const jamba_model *m, int64_t index, jamba_tensor_info *out, jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_tensor: NULL argument");
    if (index < 0 || index >= m->weights.n_order)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_tensor: index %lld outside [0, %lld)",
                       (long long)index, (long long)m->weights.n_order);
    const jb_ckpt_entry *e = &m->ckpt.entries[m->weights.order[index]];
    const jb_st_file *f = &m->ckpt.shards[e->shard];
    const jb_st_tensor *t = e->tensor;
    memset(out, 0, sizeof *out);
    out->name = t->name;
    const char *slash = strrchr(f->label, '/');
    out->file = slash ? slash + 1 : f->label;
    out->dtype = t->dtype;
    out->rank = t->rank;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->n_elements = t->n_elements;
    out->n_bytes = t->n_bytes;
    out->file_offset = f->data_start + t->begin;
    out->aligned = out->file_offset % jamba_dtype_size(t->dtype) == 0;
    return JAMBA_OK;
}

int64_t jamba_model_n_warnings(const jamba_model *m) { return m ? m->notes.n : 0; }

const char *jamba_model_warning(const jamba_model *m, int64_t index) {
    if (m == NULL || index < 0 || index >= m->notes.n)
        return NULL;
    return m->notes.items[index];
}

jamba_memory_params jamba_memory_default_params(const jamba_model *m) {
    jamba_memory_params p = {
        .n_ctx = m ? m->config.max_position_embeddings : 4096,
        .n_seq = 1,
        .kv_dtype = JAMBA_DTYPE_BF16,
        .conv_dtype = JAMBA_DTYPE_BF16,
        .weight_dtype = m && m->config.torch_dtype != JAMBA_DTYPE_UNKNOWN ? m->config.torch_dtype : JAMBA_DTYPE_BF16,
    };
    return p;
}

static bool is_float_dtype(jamba_dtype d) {
    return d == JAMBA_DTYPE_F32 || d == JAMBA_DTYPE_F16 || d == JAMBA_DTYPE_BF16;
}

jamba_status jamba_model_memory(const jamba_model *m, const jamba_memory_params *params,
                                jamba_memory_estimate *out, jamba_error *err) {
    if (m == NULL || out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_memory: NULL argument");
    jamba_memory_params p = params ? *params : jamba_memory_default_params(m);
    if (p.n_ctx < 1 || p.n_seq < 1)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_memory: n_ctx %lld and n_seq %lld must be >= 1",
                       (long long)p.n_ctx, (long long)p.n_seq);
    if ((!is_float_dtype(p.kv_dtype) && p.kv_dtype != JAMBA_DTYPE_F8_E4M3) || !is_float_dtype(p.conv_dtype) ||
        !is_float_dtype(p.weight_dtype))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_memory: dtypes must be F32, F16 or BF16 (the KV "
                       "cache also F8_E4M3)");
    memset(out, 0, sizeof *out);
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

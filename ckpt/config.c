/*
 * config.c — config.json parsing and validation.
 *
 * Every JambaConfig field is read with its reference default; integer fields must be JSON integers (or
 * reals with no fraction), within sane caps; cross-field rules (offsets below periods, heads dividing the
 * hidden size, KV heads dividing heads, top-k within the expert count, token ids within the vocabulary)
 * are checked. Keys this runtime does not use are accepted; unknown ones become notes, never silent
 * behaviour changes.
 */
#include "ckpt/config.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/file.h"
#include "ckpt/json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define BAD JAMBA_ERR_BAD_CONFIG

typedef struct int_field {
    const char *key;
    size_t offset;   /* into jamba_config */
    int64_t def;
    int64_t min, max;
} int_field;

#define F(name, def, lo, hi) {#name, offsetof(jamba_config, name), def, lo, hi}
static const int_field int_fields[] = {
    F(vocab_size, 65536, 1, 1 << 24),
    F(hidden_size, 4096, 1, 1 << 16),
    F(intermediate_size, 14336, 1, 1 << 20),
    F(num_hidden_layers, 32, 1, 1024),
    F(num_attention_heads, 32, 1, 4096),
    F(num_experts, 16, 1, 1024),
    F(num_experts_per_tok, 2, 1, 1024),
    F(expert_layer_period, 2, 1, 1024),
    F(expert_layer_offset, 1, 0, 1023),
    F(attn_layer_period, 8, 1, 1024),
    F(attn_layer_offset, 4, 0, 1023),
    F(mamba_d_state, 16, 1, 256),
    F(mamba_d_conv, 4, 1, 64),
    F(mamba_expand, 2, 1, 64),
    F(max_position_embeddings, 262144, 1, 1ll << 40),
};
#undef F

#define MAX_D_INNER (1 << 20)
#define MAX_DT_RANK (1 << 16)

/* Keys read below, or accepted and deliberately ignored (training-only or generation-UI settings). */
static const char *const known_keys[] = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "num_experts", "num_experts_per_tok", "expert_layer_period", "expert_layer_offset",
    "attn_layer_period", "attn_layer_offset", "mamba_d_state", "mamba_d_conv", "mamba_expand", "mamba_dt_rank",
    "mamba_conv_bias", "mamba_proj_bias", "mamba_inner_layernorms", "tie_word_embeddings", "rms_norm_eps",
    "max_position_embeddings", "n_ctx", "sliding_window", "pad_token_id", "bos_token_id", "eos_token_id",
    "model_type", "hidden_act", "torch_dtype", "dtype",
    /* accepted, no effect on inference */
    "architectures", "auto_map", "transformers_version", "_name_or_path", "initializer_range", "use_cache",
    "output_router_logits", "router_aux_loss_coef", "attention_dropout", "num_logits_to_keep",
    "calc_logits_for_entire_prompt", "use_mamba_kernels", "return_dict", "output_hidden_states",
    "output_attentions", "torchscript", "is_encoder_decoder", "layer_types", "quantization_config",
};

static jamba_status get_int(const json_t *root, const char *key, const char *label, bool *present,
                            int64_t *out, jamba_error *err) {
    const json_t *v = json_object_get(root, key);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return JAMBA_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return JAMBA_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9007199254740992.0) { /* an integral real such as 4096.0 */
            *out = (int64_t)d;
            return JAMBA_OK;
        }
        return jb_fail(err, BAD, "%s: \"%s\" is %g, expected an integer", label, key, d);
    }
    return jb_fail(err, BAD, "%s: \"%s\" is %s, expected an integer", label, key, jb_json_type_name(v));
}

static jamba_status get_bool(const json_t *root, const char *key, const char *label, bool def, bool *out,
                             jamba_error *err) {
    const json_t *v = json_object_get(root, key);
    *out = def;
    if (v == NULL || json_is_null(v))
        return JAMBA_OK;
    if (!json_is_boolean(v))
        return jb_fail(err, BAD, "%s: \"%s\" is %s, expected true or false", label, key, jb_json_type_name(v));
    *out = json_is_true(v);
    return JAMBA_OK;
}

static jamba_status check_range(const char *label, const char *key, int64_t v, int64_t lo, int64_t hi,
                                jamba_error *err) {
    if (v < lo || v > hi)
        return jb_fail(err, BAD, "%s: \"%s\" is %lld, expected a value in [%lld, %lld]", label, key,
                       (long long)v, (long long)lo, (long long)hi);
    return JAMBA_OK;
}

static jamba_status read_int_fields(const json_t *root, const char *label, jamba_config *c, jamba_error *err) {
    for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
        const int_field *f = &int_fields[i];
        int64_t *dst = (int64_t *)((char *)c + f->offset);
        bool present;
        *dst = f->def;
        JB_TRY(get_int(root, f->key, label, &present, dst, err));
        if (!present && strcmp(f->key, "max_position_embeddings") == 0) /* AI21 remote code: n_ctx */
            JB_TRY(get_int(root, "n_ctx", label, &present, dst, err));
        JB_TRY(check_range(label, f->key, *dst, f->min, f->max, err));
    }
    bool present;
    /* absent: the reference default 8; null: equal to the query heads */
    c->num_key_value_heads = json_object_get(root, "num_key_value_heads") ? c->num_attention_heads : 8;
    JB_TRY(get_int(root, "num_key_value_heads", label, &present, &c->num_key_value_heads, err));
    JB_TRY(check_range(label, "num_key_value_heads", c->num_key_value_heads, 1, 4096, err));
    c->sliding_window = 0;
    JB_TRY(get_int(root, "sliding_window", label, &present, &c->sliding_window, err));
    JB_TRY(check_range(label, "sliding_window", c->sliding_window, 0, 1ll << 40, err));
    return JAMBA_OK;
}

static jamba_status read_dt_rank(const json_t *root, const char *label, jamba_config *c, jamba_error *err) {
    const json_t *v = json_object_get(root, "mamba_dt_rank");
    if (v == NULL || json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) {
        c->mamba_dt_rank = (c->hidden_size + 15) / 16; /* ceil(H / 16) */
        return JAMBA_OK;
    }
    if (json_is_string(v))
        return jb_fail(err, BAD, "%s: \"mamba_dt_rank\" is \"%.40s\", expected \"auto\" or a positive integer",
                       label, json_string_value(v));
    bool present;
    JB_TRY(get_int(root, "mamba_dt_rank", label, &present, &c->mamba_dt_rank, err));
    return check_range(label, "mamba_dt_rank", c->mamba_dt_rank, 1, MAX_DT_RANK, err);
}

/* A token id field: absent → `def` (when inside the vocabulary, else -1); null → -1; else an integer in
 * [0, vocab). */
static jamba_status read_token_id(const json_t *root, const char *key, const char *label, int64_t def,
                                  int64_t vocab, int64_t *out, jamba_error *err) {
    const json_t *v = json_object_get(root, key);
    *out = v == NULL && def < vocab ? def : -1;
    if (v == NULL || json_is_null(v))
        return JAMBA_OK;
    bool present;
    JB_TRY(get_int(root, key, label, &present, out, err));
    if (*out < 0 || *out >= vocab)
        return jb_fail(err, BAD, "%s: \"%s\" is %lld, outside the vocabulary [0, %lld)", label, key,
                       (long long)*out, (long long)vocab);
    return JAMBA_OK;
}

static jamba_status read_eos(const json_t *root, const char *label, jamba_config *c, jamba_error *err) {
    const json_t *v = json_object_get(root, "eos_token_id");
    c->n_eos_token_ids = 0;
    if (v == NULL) {
        if (c->vocab_size > 2)
            c->eos_token_ids[c->n_eos_token_ids++] = 2;
        return JAMBA_OK;
    }
    if (json_is_null(v))
        return JAMBA_OK;
    if (!json_is_array(v)) {
        int64_t id;
        JB_TRY(read_token_id(root, "eos_token_id", label, 2, c->vocab_size, &id, err));
        c->eos_token_ids[c->n_eos_token_ids++] = id;
        return JAMBA_OK;
    }
    if (json_array_size(v) > JAMBA_MAX_EOS_IDS)
        return jb_fail(err, BAD, "%s: \"eos_token_id\" lists %zu ids, more than %d", label, json_array_size(v),
                       JAMBA_MAX_EOS_IDS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= c->vocab_size)
            return jb_fail(err, BAD, "%s: \"eos_token_id\"[%zu] is not a token id in [0, %lld)", label, i,
                           (long long)c->vocab_size);
        c->eos_token_ids[c->n_eos_token_ids++] = (int64_t)json_integer_value(e);
    }
    return JAMBA_OK;
}

static jamba_status read_strings(const json_t *root, const char *label, jamba_config *c, jb_strlist *notes,
                                 jamba_error *err) {
    const json_t *mt = json_object_get(root, "model_type");
    if (mt == NULL)
        return jb_fail(err, BAD, "%s: \"model_type\" is missing (expected \"jamba\")", label);
    if (!json_is_string(mt))
        return jb_fail(err, BAD, "%s: \"model_type\" is %s, expected \"jamba\"", label, jb_json_type_name(mt));
    if (strcmp(json_string_value(mt), "jamba") != 0)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: model_type \"%.60s\" is not supported (expected \"jamba\")",
                       label, json_string_value(mt));
    const json_t *act = json_object_get(root, "hidden_act");
    if (act != NULL && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: hidden_act %.60s is not supported (Jamba uses \"silu\")",
                       label, json_is_string(act) ? json_string_value(act) : "(not a string)");
    c->torch_dtype = JAMBA_DTYPE_UNKNOWN;
    const json_t *dt = json_object_get(root, "torch_dtype");
    if (dt == NULL || json_is_null(dt))
        dt = json_object_get(root, "dtype");
    if (dt != NULL && json_is_string(dt)) {
        const char *s = json_string_value(dt);
        c->torch_dtype = strcmp(s, "bfloat16") == 0  ? JAMBA_DTYPE_BF16
                         : strcmp(s, "float16") == 0 ? JAMBA_DTYPE_F16
                         : strcmp(s, "float32") == 0 ? JAMBA_DTYPE_F32
                                                     : JAMBA_DTYPE_UNKNOWN;
        if (c->torch_dtype == JAMBA_DTYPE_UNKNOWN && notes &&
            !jb_strlist_addf(notes, "%s: torch_dtype \"%.40s\" not recognised; ignored", label, s))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    return JAMBA_OK;
}

static jamba_status read_floats_and_bools(const json_t *root, const char *label, jamba_config *c,
                                          jamba_error *err) {
    const json_t *eps = json_object_get(root, "rms_norm_eps");
    c->rms_norm_eps = 1e-6;
    if (eps != NULL && !json_is_null(eps)) {
        if (!json_is_number(eps))
            return jb_fail(err, BAD, "%s: \"rms_norm_eps\" is %s, expected a number", label, jb_json_type_name(eps));
        c->rms_norm_eps = json_number_value(eps);
        if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps) || c->rms_norm_eps >= 1)
            return jb_fail(err, BAD, "%s: \"rms_norm_eps\" is %g, expected a value in (0, 1)", label,
                           c->rms_norm_eps);
    }
    JB_TRY(get_bool(root, "mamba_conv_bias", label, true, &c->mamba_conv_bias, err));
    JB_TRY(get_bool(root, "mamba_proj_bias", label, false, &c->mamba_proj_bias, err));
    JB_TRY(get_bool(root, "mamba_inner_layernorms", label, true, &c->mamba_inner_layernorms, err));
    JB_TRY(get_bool(root, "tie_word_embeddings", label, false, &c->tie_word_embeddings, err));
    bool ignored;
    static const char *const ignored_bools[] = {"use_cache", "output_router_logits", "use_mamba_kernels"};
    for (size_t i = 0; i < sizeof ignored_bools / sizeof ignored_bools[0]; i++)
        JB_TRY(get_bool(root, ignored_bools[i], label, false, &ignored, err));
    return JAMBA_OK;
}

static void derive_schedule(jamba_config *c) {
    c->n_attention_layers = c->n_mamba_layers = c->n_moe_layers = c->n_dense_layers = 0;
    for (int64_t i = 0; i < c->num_hidden_layers; i++) {
        if (jb_layer_is_attention(c, i))
            c->n_attention_layers++;
        else
            c->n_mamba_layers++;
        if (jb_layer_is_moe(c, i))
            c->n_moe_layers++;
        else
            c->n_dense_layers++;
    }
}

static jamba_status check_cross_fields(const char *label, jamba_config *c, jamba_error *err) {
    if (c->attn_layer_offset >= c->attn_layer_period)
        return jb_fail(err, BAD, "%s: attn_layer_offset %lld must be smaller than attn_layer_period %lld", label,
                       (long long)c->attn_layer_offset, (long long)c->attn_layer_period);
    if (c->expert_layer_offset >= c->expert_layer_period)
        return jb_fail(err, BAD, "%s: expert_layer_offset %lld must be smaller than expert_layer_period %lld",
                       label, (long long)c->expert_layer_offset, (long long)c->expert_layer_period);
    /* Head shapes matter only where attention layers exist (transformers checks them when it builds one),
     * so a pure-Mamba ablation config with indivisible head counts still loads. */
    derive_schedule(c);
    bool heads_fit = c->hidden_size % c->num_attention_heads == 0;
    if (c->n_attention_layers > 0 && !heads_fit)
        return jb_fail(err, BAD, "%s: hidden_size %lld is not divisible by num_attention_heads %lld", label,
                       (long long)c->hidden_size, (long long)c->num_attention_heads);
    if (c->n_attention_layers > 0 && c->num_attention_heads % c->num_key_value_heads != 0)
        return jb_fail(err, BAD, "%s: num_attention_heads %lld is not divisible by num_key_value_heads %lld",
                       label, (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    /* top-k only matters when MoE layers exist: HF's dense configs keep the default 2 with 1 expert. */
    if (c->num_experts > 1 && c->num_experts_per_tok > c->num_experts)
        return jb_fail(err, BAD, "%s: num_experts_per_tok %lld exceeds num_experts %lld", label,
                       (long long)c->num_experts_per_tok, (long long)c->num_experts);
    c->head_dim = heads_fit ? c->hidden_size / c->num_attention_heads : 0;
    c->mamba_d_inner = c->mamba_expand * c->hidden_size;
    if (c->mamba_d_inner > MAX_D_INNER)
        return jb_fail(err, BAD, "%s: mamba_expand %lld x hidden_size %lld = %lld exceeds the limit of %d", label,
                       (long long)c->mamba_expand, (long long)c->hidden_size, (long long)c->mamba_d_inner,
                       MAX_D_INNER);
    return JAMBA_OK;
}

static jamba_status note_unknown_keys(const json_t *root, const char *label, const jamba_config *c,
                                      jb_strlist *notes, jamba_error *err) {
    if (notes == NULL)
        return JAMBA_OK;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        bool known = false;
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0] && !known; i++)
            known = strcmp(key, known_keys[i]) == 0;
        if (!known && !jb_strlist_addf(notes, "%s: unknown key \"%.80s\" ignored", label, key))
            return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    if (c->sliding_window > 0 &&
        !jb_strlist_addf(notes, "%s: sliding_window %lld ignored (the reference's eager and SDPA attention "
                         "attend to the whole context)", label, (long long)c->sliding_window))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    return JAMBA_OK;
}

jamba_status jb_config_parse(const char *json, size_t len, const char *label, jamba_config *out,
                             jb_strlist *notes, jamba_error *err) {
    memset(out, 0, sizeof *out);
    json_t *root;
    JB_TRY(jb_json_parse_object(json, len, label, BAD, &root, err));
    jamba_status st = read_strings(root, label, out, notes, err);
    if (st == JAMBA_OK)
        st = read_int_fields(root, label, out, err);
    if (st == JAMBA_OK)
        st = read_dt_rank(root, label, out, err);
    if (st == JAMBA_OK)
        st = read_floats_and_bools(root, label, out, err);
    if (st == JAMBA_OK)
        st = check_cross_fields(label, out, err);
    if (st == JAMBA_OK)
        st = read_token_id(root, "pad_token_id", label, 0, out->vocab_size, &out->pad_token_id, err);
    if (st == JAMBA_OK)
        st = read_token_id(root, "bos_token_id", label, 1, out->vocab_size, &out->bos_token_id, err);
    if (st == JAMBA_OK)
        st = read_eos(root, label, out, err);
    if (st == JAMBA_OK)
        st = note_unknown_keys(root, label, out, notes, err);
    json_decref(root);
    return st;
}

jamba_status jb_config_load(const char *dir, jamba_config *out, jb_strlist *notes, jamba_error *err) {
    char *path = jb_asprintf("%s/config.json", dir);
    if (path == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    char *json;
    size_t len;
    jamba_status st = jb_read_regular_file(path, path, JB_CONFIG_MAX_BYTES, BAD, &json, &len, err);
    if (st == JAMBA_OK) {
        st = jb_config_parse(json, len, path, out, notes, err);
        jb_free(json);
    }
    jb_free(path);
    return st;
}

/*
 * model_save.c — jamba_model_save: a model's weights as they are held (after any load-time int8
 * quantization) written as a Hugging Face folder that loads again without requantizing.
 */
#include "runtime/model.h"

#include "ckpt/json.h"
#include "ckpt/st_write.h"
#include "base/abi.h"
#include "base/alloc.h"
#include "base/atomic_file.h"
#include "base/atomic_folder.h"
#include "base/error.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#define COPY_MAX_BYTES ((uint64_t)64 << 20)

typedef struct out_list {
    jb_st_out_tensor *v;
    int64_t n, cap;
    char **names;        /* owned names of the scale tensors */
    int64_t n_names, cap_names;
} out_list;

static bool push(out_list *l, jb_st_out_tensor t) {
    if (!jb_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
        return false;
    l->v[l->n++] = t;
    return true;
}

/* Each tensor as held; a quantized matrix also gives "<name>_scale" (F32, one per row). */
static bool add_tensor(void *arg, const char *name, jb_weight *w, int rank, const int64_t *shape, bool linear) {
    (void)linear;
    out_list *l = arg;
    if (w->data == NULL)
        return true;
    jb_st_out_tensor t = {.name = NULL, .dtype = w->dtype, .rank = rank, .data = w->data};
    memcpy(t.shape, shape, (size_t)rank * sizeof *shape);
    char *own = jb_strdup(name);
    if (own == NULL || !jb_grow((void **)&l->names, &l->cap_names, l->n_names + 2, sizeof *l->names)) {
        jb_free(own);
        return false;
    }
    l->names[l->n_names++] = own;
    t.name = own;
    if (!push(l, t))
        return false;
    if (w->scale == NULL)
        return true;
    char *sname = jb_asprintf("%s_scale", name);
    if (sname == NULL)
        return false;
    l->names[l->n_names++] = sname;
    return push(l, (jb_st_out_tensor){.name = sname, .dtype = JAMBA_DTYPE_F32, .rank = 1, .shape = {shape[0]},
                                      .data = w->scale});
}

typedef struct bytes_out {
    const char *p;
    size_t n;
} bytes_out;

static bool write_bytes(FILE *f, void *arg) {
    const bytes_out *b = arg;
    return b->n == 0 || fwrite(b->p, 1, b->n, f) == b->n;
}

/* The note on matrices quantized while loading: the scheme, and the groups the load held as int8 (by the
 * names of jamba_model_params' fields; a group the checkpoint already stored as int8 is listed too). */
static json_t *quantization_note(const jamba_model *m) {
    const struct {
        const char *name;
        bool int8;
    } groups[] = {{"experts", m->plan_experts_int8}, {"mlp", m->plan_mlp_int8}, {"mixers", m->plan_mixers_int8},
                  {"lm_head", m->plan_lm_head_int8}};
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i].int8 && json_array_append_new(list, json_string(groups[i].name)) != 0) {
            json_decref(list);
            list = NULL;
        }
    if (list == NULL)
        return NULL;
    return json_pack("{s:s,s:s,s:o}", "quant_method", "jamba_int8", "format",
                     "int8 weight-only, per output row, symmetric, F32 <name>_scale", "int8_groups", list);
}

/* config.json, with a quantization note when matrices were quantized while loading. */
static jamba_status save_config(const jamba_model *m, const char *dir, jamba_error *err) {
    char *src = jb_asprintf("%s/config.json", m->path), *dst = jb_asprintf("%s/config.json", dir);
    char *text = NULL, *out = NULL;
    size_t len = 0;
    json_t *root = NULL;
    jamba_status st = src && dst ? JAMBA_OK : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    if (st == JAMBA_OK)
        st = jb_read_small_file(src, src, COPY_MAX_BYTES, JAMBA_ERR_BAD_CONFIG, &text, &len, err);
    if (st == JAMBA_OK)
        st = jb_json_parse_object(text, len, src, JAMBA_ERR_BAD_CONFIG, &root, err);
    if (st == JAMBA_OK && m->requantized) {
        json_t *q = quantization_note(m);
        if (q == NULL || json_object_set_new(root, "quantization_config", q) != 0)
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    }
    if (st == JAMBA_OK && (out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    if (st == JAMBA_OK) {
        bytes_out b = {out, strlen(out)};
        st = jb_write_file_atomic(dst, write_bytes, &b, err);
    }
    free(out);
    json_decref(root);
    jb_free(text);
    jb_free(src);
    jb_free(dst);
    return st;
}

/* The tokenizer and generation files beside the weights, copied when present. */
static jamba_status copy_side_files(const jamba_model *m, const char *dir, jamba_error *err) {
    static const char *const files[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"};
    jamba_status st = JAMBA_OK;
    for (size_t i = 0; st == JAMBA_OK && i < sizeof files / sizeof files[0]; i++) {
        char *src = jb_asprintf("%s/%s", m->path, files[i]), *dst = jb_asprintf("%s/%s", dir, files[i]);
        struct stat sb;
        char *text = NULL;
        size_t len = 0;
        if (src == NULL || dst == NULL)
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        else if (stat(src, &sb) == 0 && S_ISREG(sb.st_mode) &&
                 (st = jb_read_small_file(src, src, COPY_MAX_BYTES, JAMBA_ERR_IO, &text, &len, err)) == JAMBA_OK) {
            bytes_out b = {text, len};
            st = jb_write_file_atomic(dst, write_bytes, &b, err);
        }
        jb_free(text);
        jb_free(src);
        jb_free(dst);
    }
    return st;
}

/* The files of the folder: the weights as held, config.json, the tokenizer and generation files. */
static jamba_status write_contents(const jamba_model *m, const char *dir, const jb_stop *stop, jamba_error *err) {
    out_list l = {0};
    jb_weights w = m->weights; /* the visitor hands out views; nothing is changed */
    jamba_status st = jb_weights_visit(&m->config, &w, add_tensor, &l, err);
    char *path = st == JAMBA_OK ? jb_asprintf("%s/model.safetensors", dir) : NULL;
    if (st == JAMBA_OK && path == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    if (st == JAMBA_OK)
        st = jb_st_write(path, l.v, l.n, stop, err);
    if (st == JAMBA_OK)
        st = save_config(m, dir, err);
    if (st == JAMBA_OK)
        st = copy_side_files(m, dir, err);
    for (int64_t i = 0; i < l.n_names; i++)
        jb_free(l.names[i]);
    jb_free(l.names);
    jb_free(l.v);
    jb_free(path);
    return st;
}

/* The folder is built as a temporary sibling and renamed into place (base/atomic_folder.h): a failure at
 * any point (a full disk, no inodes, an interrupted write) leaves the destination as it was. */
static jamba_status save_folder(const jamba_model *m, const char *dir, const jamba_save_params *p, jamba_error *err) {
    if (m == NULL || dir == NULL || dir[0] == '\0')
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_model_save: NULL argument");
    if (!m->has_weights)
        return jb_fail(err, JAMBA_ERR_NO_WEIGHTS, "%s: loaded without weights; nothing to save", m->path);
    /* the same folder however it is spelled ("dir/", "dir/.", a symlink) */
    struct stat sb, own;
    if (strcmp(dir, m->path) == 0 || (stat(dir, &sb) == 0 && stat(m->path, &own) == 0 && own.st_dev == sb.st_dev &&
                                      own.st_ino == sb.st_ino))
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: saving over the model's own folder is not allowed "
                       "(its weights are mapped from there)", dir);
    const jb_stop stop = {p->abort_fn, p->abort_data};
    char *tmp = NULL;
    JB_TRY(jb_folder_begin(dir, p->replace, &stop, &tmp, err));
    jamba_status st = write_contents(m, tmp, &stop, err);
    if (st == JAMBA_OK)
        st = jb_folder_commit(tmp, dir, &stop, err);
    if (st != JAMBA_OK)
        jb_folder_abort(tmp);
    jb_free(tmp);
    return st;
}

static const jamba_save_params SAVE_DEFAULTS = {.replace = false, .abort_fn = NULL, .abort_data = NULL};

void jamba_save_params_init_sized(jamba_save_params *p, size_t size) {
    if (p != NULL)
        JB_INIT_SIZED(p, size, SAVE_DEFAULTS);
}

jamba_status jamba_model_save_with_sized(const jamba_model *m, const char *dir, const jamba_save_params *params,
                                         size_t params_size, jamba_error *err) {
    jamba_save_params p = SAVE_DEFAULTS;
    if (params != NULL)
        JB_TRY(jb_struct_in(&p, sizeof p, params, params_size, JB_MIN_SAVE_PARAMS, "jamba_model_save: params", err));
    return save_folder(m, dir, &p, err);
}

jamba_status jamba_model_save(const jamba_model *m, const char *dir, jamba_error *err) {
    return save_folder(m, dir, &SAVE_DEFAULTS, err);
}

jamba_status jamba_model_save_replacing(const jamba_model *m, const char *dir, jamba_error *err) {
    const jamba_save_params p = {.replace = true};
    return save_folder(m, dir, &p, err);
}

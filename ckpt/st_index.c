/*
 * st_index.c — model.safetensors.index.json: {"metadata": {"total_size": N, ...}, "weight_map": {tensor:
 * shard file}}. Validated on its own here; checkpoint.c cross-checks it against the shards.
 */
#include "ckpt/checkpoint.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/strmap.h"
#include "ckpt/json.h"

#include <stdlib.h>
#include <string.h>

#define BAD JAMBA_ERR_BAD_CHECKPOINT

bool jb_is_plain_file_name(const char *name) {
    size_t len = strlen(name);
    return len > 0 && len <= JB_SHARD_NAME_MAX_BYTES && strchr(name, '/') == NULL && strchr(name, '\\') == NULL &&
           strstr(name, "..") == NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static jamba_status parse_total_size(const json_t *root, const char *label, jb_st_index *out,
                                     jamba_error *err) {
    const json_t *meta = json_object_get(root, "metadata");
    if (meta == NULL || json_is_null(meta))
        return JAMBA_OK;
    if (!json_is_object(meta))
        return jb_fail(err, BAD, "%s: \"metadata\" is %s, expected an object", label, jb_json_type_name(meta));
    const json_t *total = json_object_get(meta, "total_size");
    if (total == NULL)
        return JAMBA_OK;
    if (!jb_json_as_u64(total, &out->total_size))
        return jb_fail(err, BAD, "%s: metadata.total_size is not a non-negative integer", label);
    out->has_total_size = true;
    return JAMBA_OK;
}

/* Collect the distinct shard names, sorted. A hash set of the names seen makes this one lookup per entry, so
 * an index naming as many shards as tensors costs O(n log n) (the sort), not O(n^2). */
static jamba_status collect_shards(const json_t *map, const char *label, jb_st_index *out, jamba_error *err) {
    size_t n = json_object_size(map);
    jb_strmap seen; /* keys point into the JSON tree, which outlives the map; sized for n, so puts never fail */
    out->shards = jb_calloc(n, sizeof *out->shards);
    if (out->shards == NULL || !jb_strmap_init(&seen, (int64_t)n))
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    jamba_status st = JAMBA_OK;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)map, key, val) {
        if (!json_is_string(val)) {
            st = jb_fail(err, BAD, "%s: weight_map[\"%s\"] is %s, expected a file name", label, key,
                         jb_json_type_name(val));
            break;
        }
        const char *file = json_string_value(val);
        if (!jb_is_plain_file_name(file)) {
            st = jb_fail(err, BAD, "%s: weight_map[\"%s\"] = \"%.300s\" is not a plain file name in the "
                         "model folder", label, key, file);
            break;
        }
        if (!jb_strmap_put(&seen, file, strlen(file), 0))
            continue; /* a shard named before */
        if ((out->shards[out->n_shards] = jb_strdup(file)) == NULL) {
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
            break;
        }
        out->n_shards++;
    }
    jb_strmap_free(&seen);
    if (st == JAMBA_OK)
        qsort(out->shards, (size_t)out->n_shards, sizeof *out->shards, cmp_str);
    return st;
}

static int64_t shard_id(const jb_st_index *index, const char *file) {
    char *const *hit = bsearch(&file, index->shards, (size_t)index->n_shards, sizeof *index->shards, cmp_str);
    return hit ? hit - index->shards : -1;
}

typedef struct name_shard {
    char *name;
    int64_t shard;
} name_shard;

static int cmp_name_shard(const void *a, const void *b) {
    return strcmp(((const name_shard *)a)->name, ((const name_shard *)b)->name);
}

static jamba_status collect_names(const json_t *map, const char *label, jb_st_index *out, jamba_error *err) {
    size_t n = json_object_size(map);
    name_shard *pairs = jb_calloc(n, sizeof *pairs);
    out->names = jb_calloc(n, sizeof *out->names);
    out->shard_of = jb_calloc(n, sizeof *out->shard_of);
    if (pairs == NULL || out->names == NULL || out->shard_of == NULL) {
        jb_free(pairs);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach((json_t *)map, key, val) {
        pairs[i].name = (char *)key;
        pairs[i].shard = shard_id(out, json_string_value(val));
        i++;
    }
    qsort(pairs, n, sizeof *pairs, cmp_name_shard);
    jamba_status st = JAMBA_OK;
    for (i = 0; i < n; i++) {
        if (pairs[i].name[0] == '\0') {
            st = jb_fail(err, BAD, "%s: weight_map has an empty tensor name", label);
            break;
        }
        if ((out->names[i] = jb_strdup(pairs[i].name)) == NULL) {
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
            break;
        }
        out->shard_of[i] = pairs[i].shard;
        out->n++;
    }
    jb_free(pairs);
    return st;
}

jamba_status jb_st_index_parse(const char *json, size_t len, const char *label, jb_st_index *out,
                               jamba_error *err) {
    memset(out, 0, sizeof *out);
    json_t *root;
    JB_TRY(jb_json_parse_object(json, len, label, BAD, &root, err));
    jamba_status st = parse_total_size(root, label, out, err);
    const json_t *map = json_object_get(root, "weight_map");
    if (st == JAMBA_OK && (map == NULL || !json_is_object(map)))
        st = jb_fail(err, BAD, "%s: \"weight_map\" is %s, expected an object of tensor name -> shard file",
                     label, map ? jb_json_type_name(map) : "missing");
    if (st == JAMBA_OK)
        st = collect_shards(map, label, out, err);
    if (st == JAMBA_OK)
        st = collect_names(map, label, out, err);
    json_decref(root);
    if (st != JAMBA_OK)
        jb_st_index_free(out);
    return st;
}

void jb_st_index_free(jb_st_index *index) {
    if (index->names)
        for (int64_t i = 0; i < index->n; i++)
            jb_free(index->names[i]);
    if (index->shards)
        for (int64_t s = 0; s < index->n_shards; s++)
            jb_free(index->shards[s]);
    jb_free(index->names);
    jb_free(index->shard_of);
    jb_free(index->shards);
    memset(index, 0, sizeof *index);
}

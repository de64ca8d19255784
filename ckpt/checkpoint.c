/*
 * checkpoint.c — open the weight files of a model folder and build one name-sorted tensor table.
 */
#include "ckpt/checkpoint.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/file.h"
#include "ckpt/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BAD JAMBA_ERR_BAD_CHECKPOINT

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const jb_ckpt_entry *)a)->name, ((const jb_ckpt_entry *)b)->name);
}

const jb_ckpt_entry *jb_checkpoint_find(const jb_checkpoint *ckpt, const char *name) {
    jb_ckpt_entry key = {.name = name};
    if (ckpt->n_entries == 0)
        return NULL;
    return bsearch(&key, ckpt->entries, (size_t)ckpt->n_entries, sizeof key, cmp_entry);
}

static jamba_status open_shard(const char *dir, const char *file, jb_st_file *out, jamba_error *err) {
    char *path = jb_asprintf("%s/%s", dir, file);
    if (path == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s/%s: out of memory", dir, file);
    jamba_status st = jb_st_open(path, path, out, err);
    jb_free(path);
    return st;
}

/* One sorted table over all shards; a name found in two shards is an error. */
static jamba_status build_table(jb_checkpoint *c, const char *dir, jamba_error *err) {
    int64_t n = 0;
    for (int64_t s = 0; s < c->n_shards; s++)
        n += c->shards[s].n_tensors;
    c->entries = jb_calloc((size_t)n, sizeof *c->entries);
    if (c->entries == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for %lld tensor entries", dir,
                       (long long)n);
    for (int64_t s = 0; s < c->n_shards; s++) {
        for (int64_t i = 0; i < c->shards[s].n_tensors; i++) {
            const jb_st_tensor *t = &c->shards[s].tensors[i];
            c->entries[c->n_entries++] = (jb_ckpt_entry){.name = t->name, .shard = s, .tensor = t};
            if (!jb_add_u64(c->total_bytes, t->n_bytes, &c->total_bytes))
                return jb_fail(err, BAD, "%s: total tensor bytes overflow 64 bits", dir);
        }
    }
    qsort(c->entries, (size_t)c->n_entries, sizeof *c->entries, cmp_entry);
    for (int64_t i = 1; i < c->n_entries; i++)
        if (strcmp(c->entries[i - 1].name, c->entries[i].name) == 0)
            return jb_fail(err, BAD, "%s: tensor \"%s\" is stored in both %s and %s", dir, c->entries[i].name,
                           c->shards[c->entries[i - 1].shard].label, c->shards[c->entries[i].shard].label);
    return JAMBA_OK;
}

/* Every tensor where the index says, nothing unlisted, total_size consistent. */
static jamba_status cross_check_index(const jb_checkpoint *c, const jb_st_index *index, const char *label,
                                      jamba_error *err) {
    /* Entries and index names are both sorted by name: walk them together. */
    int64_t a = 0, b = 0;
    while (a < c->n_entries || b < index->n) {
        int cmp = a == c->n_entries ? 1 : b == index->n ? -1 : strcmp(c->entries[a].name, index->names[b]);
        if (cmp < 0)
            return jb_fail(err, BAD, "%s: tensor \"%s\" is stored in %s but not listed in the index", label,
                           c->entries[a].name, c->shards[c->entries[a].shard].label);
        if (cmp > 0)
            return jb_fail(err, BAD, "%s: tensor \"%s\" is listed for %s but that file does not hold it", label,
                           index->names[b], index->shards[index->shard_of[b]]);
        if (c->entries[a].shard != index->shard_of[b])
            return jb_fail(err, BAD, "%s: tensor \"%s\" is listed for %s but stored in %s", label,
                           index->names[b], index->shards[index->shard_of[b]],
                           c->shards[c->entries[a].shard].label);
        a++;
        b++;
    }
    if (index->has_total_size && index->total_size != c->total_bytes)
        return jb_fail(err, BAD, "%s: metadata.total_size is %llu but the shards hold %llu tensor bytes", label,
                       (unsigned long long)index->total_size, (unsigned long long)c->total_bytes);
    return JAMBA_OK;
}

static jamba_status open_sharded(const char *dir, const char *index_path, jb_checkpoint *c, jamba_error *err) {
    char *json;
    size_t len;
    JB_TRY(jb_read_regular_file(index_path, index_path, JB_INDEX_MAX_BYTES, BAD, &json, &len, err));
    jb_st_index index;
    jamba_status st = jb_st_index_parse(json, len, index_path, &index, err);
    jb_free(json);
    if (st != JAMBA_OK)
        return st;
    c->shards = jb_calloc((size_t)index.n_shards, sizeof *c->shards);
    if (c->shards == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", index_path);
    for (int64_t s = 0; st == JAMBA_OK && s < index.n_shards; s++) {
        st = open_shard(dir, index.shards[s], &c->shards[s], err);
        if (st == JAMBA_OK)
            c->n_shards++;
    }
    if (st == JAMBA_OK)
        st = build_table(c, dir, err);
    if (st == JAMBA_OK)
        st = cross_check_index(c, &index, index_path, err);
    jb_st_index_free(&index);
    return st;
}

static jamba_status open_single(const char *dir, jb_checkpoint *c, jamba_error *err) {
    c->shards = jb_calloc(1, sizeof *c->shards);
    if (c->shards == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    JB_TRY(open_shard(dir, JB_SINGLE_FILE, &c->shards[0], err));
    c->n_shards = 1;
    return build_table(c, dir, err);
}

jamba_status jb_checkpoint_open(const char *dir, bool *found, jb_checkpoint *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    *found = false;
    char *single = jb_asprintf("%s/%s", dir, JB_SINGLE_FILE);
    char *index = jb_asprintf("%s/%s", dir, JB_INDEX_FILE);
    jamba_status st = JAMBA_OK;
    if (single == NULL || index == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    else if (file_exists(single)) {
        *found = true;
        st = open_single(dir, out, err);
    } else if (file_exists(index)) {
        *found = true;
        st = open_sharded(dir, index, out, err);
    }
    jb_free(single);
    jb_free(index);
    if (st != JAMBA_OK)
        jb_checkpoint_close(out);
    return st;
}

jamba_status jb_checkpoint_from_image(const uint8_t *image, uint64_t len, const char *label, jb_checkpoint *out,
                                      jamba_error *err) {
    memset(out, 0, sizeof *out);
    out->shards = jb_calloc(1, sizeof *out->shards);
    if (out->shards == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    jamba_status st = jb_st_parse_memory(image, len, label, &out->shards[0], err);
    if (st == JAMBA_OK) {
        out->n_shards = 1;
        st = build_table(out, label, err);
    }
    if (st != JAMBA_OK)
        jb_checkpoint_close(out);
    return st;
}

void jb_checkpoint_close(jb_checkpoint *ckpt) {
    for (int64_t s = 0; s < ckpt->n_shards; s++)
        jb_st_close(&ckpt->shards[s]);
    jb_free(ckpt->shards);
    jb_free(ckpt->entries);
    memset(ckpt, 0, sizeof *ckpt);
}

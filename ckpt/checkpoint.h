/*
 * checkpoint.h — the safetensors weights of a Hugging Face folder: model.safetensors, or
 * model.safetensors.index.json and its shards. Every shard is validated (safetensors.h) and the index is
 * cross-checked against the shards: plain shard file names only, every tensor in exactly the shard the
 * index names, no tensor the index does not list, and total_size (when present) equal to the sum of
 * tensor bytes. The result is one name-sorted table of every tensor.
 */
#ifndef JB_CHECKPOINT_H
#define JB_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "jamba.h"
#include "ckpt/safetensors.h"

#define JB_INDEX_FILE "model.safetensors.index.json"
#define JB_SINGLE_FILE "model.safetensors"
#define JB_INDEX_MAX_BYTES (64ull << 20)
#define JB_SHARD_NAME_MAX_BYTES 255

/* model.safetensors.index.json, parsed and checked on its own. */
typedef struct jb_st_index {
    char **names;          /* [n] owned tensor names, sorted */
    int64_t *shard_of;     /* [n] index into shards */
    int64_t n;
    char **shards;         /* [n_shards] owned, distinct plain file names, sorted */
    int64_t n_shards;
    bool has_total_size;
    uint64_t total_size;
} jb_st_index;

jamba_status jb_st_index_parse(const char *json, size_t len, const char *label, jb_st_index *out,
                               jamba_error *err);
void jb_st_index_free(jb_st_index *index);

/* True when `name` is a plain file name: non-empty, at most JB_SHARD_NAME_MAX_BYTES, no '/', '\\' or "..". */
bool jb_is_plain_file_name(const char *name);

typedef struct jb_ckpt_entry {
    const char *name;            /* points into the shard's tensor */
    int64_t shard;               /* index into shards */
    const jb_st_tensor *tensor;
} jb_ckpt_entry;

typedef struct jb_checkpoint {
    jb_st_file *shards;          /* [n_shards] mapped files */
    int64_t n_shards;
    jb_ckpt_entry *entries;      /* [n_entries] every tensor of every shard, sorted by name */
    int64_t n_entries;
    uint64_t total_bytes;        /* sum of tensor bytes */
} jb_checkpoint;

/* Open the weights in `dir`. When the folder holds neither weight file, *found is false and the result
 * is JAMBA_OK with an empty checkpoint. */
jamba_status jb_checkpoint_open(const char *dir, bool *found, jb_checkpoint *out, jamba_error *err);
void jb_checkpoint_close(jb_checkpoint *ckpt);

/* A checkpoint over one safetensors image in memory (validated like a file); the caller keeps `image`
 * alive until jb_checkpoint_close. */
jamba_status jb_checkpoint_from_image(const uint8_t *image, uint64_t len, const char *label, jb_checkpoint *out,
                                      jamba_error *err);

/* The entry named `name`, or NULL. */
const jb_ckpt_entry *jb_checkpoint_find(const jb_checkpoint *ckpt, const char *name);

#endif /* JB_CHECKPOINT_H */

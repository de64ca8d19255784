/*
 * safetensors.h — one safetensors file, validated before anything is mapped.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, then the data buffer. Validation order
 * (reliability.md §1.4): header length and cap, JSON object with no duplicate keys, per tensor a known
 * dtype, a shape of non-negative integers with overflow-checked element and byte counts, data_offsets
 * matching the byte count; then offsets contiguous from 0 with no hole or overlap and the last END equal
 * to the data buffer's length (so truncated and padded files are both rejected).
 *
 * Not handled here: which tensors a model needs (bind.c) and sharding (checkpoint.c).
 */
#ifndef JB_SAFETENSORS_H
#define JB_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jamba.h"

#define JB_ST_MAX_HEADER_BYTES 100000000ull /* same cap as the reference loader */
#define JB_ST_MAX_NAME_BYTES 1024
#define JB_MAX_RANK 8

typedef struct jb_st_tensor {
    char *name;                  /* owned, NUL-terminated, non-empty */
    jamba_dtype dtype;
    int rank;                    /* 0 .. JB_MAX_RANK (0 = scalar) */
    int64_t shape[JB_MAX_RANK];
    uint64_t n_elements;
    uint64_t n_bytes;
    uint64_t begin, end;         /* byte range inside the data buffer, end exclusive */
} jb_st_tensor;

typedef struct jb_st_file {
    char *label;                 /* owned: name used in messages (the file name) */
    uint64_t file_size;
    uint64_t header_len;         /* N */
    uint64_t data_start;         /* 8 + N: file offset of the data buffer */
    jb_st_tensor *tensors;       /* [n_tensors], owned, sorted by begin */
    int64_t n_tensors;
    const uint8_t *base;         /* the whole file (mapped or the caller's buffer) */
    size_t map_len;              /* bytes mapped; 0 when base is the caller's buffer */
} jb_st_file;

/* Validate a complete file image held in memory (the caller keeps `buf` alive while `out` is used). */
jamba_status jb_st_parse_memory(const uint8_t *buf, uint64_t len, const char *label, jb_st_file *out,
                                jamba_error *err);

/* Validate the file at `path`, then map it read-only. `label` names it in messages. */
jamba_status jb_st_open(const char *path, const char *label, jb_st_file *out, jamba_error *err);

/* Unmap and free; safe on a zeroed or failed jb_st_file. */
void jb_st_close(jb_st_file *f);

/* Pointer to a tensor's bytes. */
static inline const void *jb_st_tensor_data(const jb_st_file *f, const jb_st_tensor *t) {
    return f->base + f->data_start + t->begin;
}

#endif /* JB_SAFETENSORS_H */

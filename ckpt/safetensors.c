/*
 * safetensors.c — safetensors parsing and validation (see safetensors.h for the rules).
 */
#include "ckpt/safetensors.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/file.h"
#include "ckpt/dtype.h"
#include "ckpt/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BAD JAMBA_ERR_BAD_CHECKPOINT

static uint64_t read_le64(const uint8_t b[8]) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* Step 1-2: the header length against the cap and the file size. */
static jamba_status check_header_len(uint64_t file_size, uint64_t n, const char *label, jamba_error *err) {
    if (n < 2)
        return jb_fail(err, BAD, "%s: header length %llu is too small for a JSON object", label,
                       (unsigned long long)n);
    if (n > JB_ST_MAX_HEADER_BYTES)
        return jb_fail(err, BAD, "%s: header length %llu exceeds the %llu-byte limit", label,
                       (unsigned long long)n, JB_ST_MAX_HEADER_BYTES);
    if (n > file_size - 8)
        return jb_fail(err, BAD, "%s: header length %llu runs past the end of the %llu-byte file (truncated?)",
                       label, (unsigned long long)n, (unsigned long long)file_size);
    return JAMBA_OK;
}

/* The header may be padded with spaces after the closing brace; anything else there is rejected. */
static jamba_status check_header_framing(const char *hdr, uint64_t n, const char *label, jamba_error *err) {
    uint64_t end = n;
    while (end > 0 && hdr[end - 1] == ' ')
        end--;
    if (end == 0 || hdr[end - 1] != '}')
        return jb_fail(err, BAD, "%s: header does not end with '}' (only spaces may follow it)", label);
    return JAMBA_OK;
}

static jamba_status parse_shape(const char *label, const char *name, const json_t *shape, jb_st_tensor *t,
                                jamba_error *err) {
    if (!json_is_array(shape))
        return jb_fail(err, BAD, "%s: tensor \"%s\": shape is %s, expected an array", label, name,
                       jb_json_type_name(shape));
    size_t rank = json_array_size(shape);
    if (rank > JB_MAX_RANK)
        return jb_fail(err, BAD, "%s: tensor \"%s\": rank %zu exceeds the maximum of %d", label, name, rank,
                       JB_MAX_RANK);
    t->rank = (int)rank;
    uint64_t elems = 1;
    for (size_t d = 0; d < rank; d++) {
        uint64_t dim;
        if (!jb_json_as_u64(json_array_get(shape, d), &dim) || dim > (uint64_t)INT64_MAX)
            return jb_fail(err, BAD, "%s: tensor \"%s\": shape[%zu] is not a non-negative integer", label,
                           name, d);
        t->shape[d] = (int64_t)dim;
        if (!jb_mul_u64(elems, dim, &elems))
            return jb_fail(err, BAD, "%s: tensor \"%s\": element count overflows 64 bits", label, name);
    }
    t->n_elements = elems;
    if (!jb_mul_u64(elems, jamba_dtype_size(t->dtype), &t->n_bytes))
        return jb_fail(err, BAD, "%s: tensor \"%s\": byte size overflows 64 bits", label, name);
    return JAMBA_OK;
}

static jamba_status parse_offsets(const char *label, const char *name, const json_t *offs, jb_st_tensor *t,
                                  jamba_error *err) {
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !jb_json_as_u64(json_array_get(offs, 0), &t->begin) || !jb_json_as_u64(json_array_get(offs, 1), &t->end))
        return jb_fail(err, BAD, "%s: tensor \"%s\": data_offsets must be two non-negative integers", label,
                       name);
    if (t->end < t->begin)
        return jb_fail(err, BAD, "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin", label,
                       name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != t->n_bytes)
        return jb_fail(err, BAD,
                       "%s: tensor \"%s\": data_offsets [%llu, %llu] span %llu bytes but %s with %llu elements "
                       "needs %llu",
                       label, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin), jamba_dtype_name(t->dtype),
                       (unsigned long long)t->n_elements, (unsigned long long)t->n_bytes);
    return JAMBA_OK;
}

static jamba_status parse_metadata(const char *label, const json_t *meta, jamba_error *err) {
    if (!json_is_object(meta))
        return jb_fail(err, BAD, "%s: __metadata__ is %s, expected an object of strings", label,
                       jb_json_type_name(meta));
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)meta, key, val) {
        if (!json_is_string(val))
            return jb_fail(err, BAD, "%s: __metadata__ \"%s\" is %s, expected a string", label, key,
                           jb_json_type_name(val));
    }
    return JAMBA_OK;
}

static jamba_status parse_entry(const char *label, const char *name, const json_t *entry, jb_st_tensor *t,
                                jamba_error *err) {
    size_t name_len = strlen(name);
    if (name_len == 0)
        return jb_fail(err, BAD, "%s: a tensor has an empty name", label);
    if (name_len > JB_ST_MAX_NAME_BYTES)
        return jb_fail(err, BAD, "%s: a tensor name is %zu bytes, more than the %d-byte limit", label,
                       name_len, JB_ST_MAX_NAME_BYTES);
    if (!json_is_object(entry))
        return jb_fail(err, BAD, "%s: tensor \"%s\" is %s, expected an object", label, name,
                       jb_json_type_name(entry));
    const char *field;
    json_t *val;
    json_object_foreach((json_t *)entry, field, val) {
        if (strcmp(field, "dtype") != 0 && strcmp(field, "shape") != 0 && strcmp(field, "data_offsets") != 0)
            return jb_fail(err, BAD, "%s: tensor \"%s\": unknown field \"%s\"", label, name, field);
    }
    const json_t *dtype = json_object_get(entry, "dtype");
    const json_t *shape = json_object_get(entry, "shape");
    const json_t *offs = json_object_get(entry, "data_offsets");
    if (dtype == NULL || shape == NULL || offs == NULL)
        return jb_fail(err, BAD, "%s: tensor \"%s\": missing field \"%s\"", label, name,
                       dtype == NULL ? "dtype" : shape == NULL ? "shape" : "data_offsets");
    if (!json_is_string(dtype))
        return jb_fail(err, BAD, "%s: tensor \"%s\": dtype is %s, expected a string", label, name,
                       jb_json_type_name(dtype));
    t->dtype = jb_dtype_from_name(json_string_value(dtype));
    if (t->dtype == JAMBA_DTYPE_UNKNOWN)
        return jb_fail(err, BAD, "%s: tensor \"%s\": unknown dtype \"%.32s\"", label, name,
                       json_string_value(dtype));
    JB_TRY(parse_shape(label, name, shape, t, err));
    JB_TRY(parse_offsets(label, name, offs, t, err));
    t->name = jb_strndup(name, name_len);
    if (t->name == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    return JAMBA_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const jb_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Offsets must tile [0, data_len) exactly: no hole, no overlap, nothing after the last tensor. */
static jamba_status check_contiguous(const jb_st_file *f, uint64_t data_len, jamba_error *err) {
    uint64_t pos = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const jb_st_tensor *t = &f->tensors[i];
        if (t->begin != pos)
            return jb_fail(err, BAD, "%s: tensor \"%s\" starts at byte %llu of the data but the previous "
                           "tensor ends at %llu (%s)", f->label, t->name, (unsigned long long)t->begin,
                           (unsigned long long)pos, t->begin > pos ? "hole" : "overlap");
        pos = t->end;
    }
    if (pos != data_len)
        return jb_fail(err, BAD, "%s: tensors cover %llu data bytes but the file holds %llu (%s)", f->label,
                       (unsigned long long)pos, (unsigned long long)data_len,
                       pos > data_len ? "truncated file" : "trailing bytes");
    return JAMBA_OK;
}

static jamba_status parse_header(const char *hdr, uint64_t n, uint64_t data_len, jb_st_file *f,
                                 jamba_error *err) {
    JB_TRY(check_header_framing(hdr, n, f->label, err));
    json_t *root;
    JB_TRY(jb_json_parse_object(hdr, (size_t)n, f->label, BAD, &root, err));
    jamba_status st = JAMBA_OK;
    size_t n_keys = json_object_size(root);
    f->tensors = jb_calloc(n_keys, sizeof *f->tensors);
    if (f->tensors == NULL) {
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensor entries", f->label, n_keys);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            st = parse_metadata(f->label, val, err);
        } else {
            st = parse_entry(f->label, key, val, &f->tensors[f->n_tensors], err);
            if (st == JAMBA_OK)
                f->n_tensors++;
        }
        if (st != JAMBA_OK)
            goto done;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_by_offset);
    st = check_contiguous(f, data_len, err);
done:
    json_decref(root);
    return st;
}

static jamba_status set_label(jb_st_file *f, const char *label, jamba_error *err) {
    f->label = jb_strdup(label);
    if (f->label == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    return JAMBA_OK;
}

jamba_status jb_st_parse_memory(const uint8_t *buf, uint64_t len, const char *label, jb_st_file *out,
                                jamba_error *err) {
    memset(out, 0, sizeof *out);
    jamba_status st = set_label(out, label, err);
    if (st == JAMBA_OK && len < 8)
        st = jb_fail(err, BAD, "%s: file is %llu bytes, shorter than the 8-byte header length", label,
                     (unsigned long long)len);
    if (st == JAMBA_OK) {
        out->file_size = len;
        out->header_len = read_le64(buf);
        st = check_header_len(len, out->header_len, label, err);
    }
    if (st == JAMBA_OK) {
        out->data_start = 8 + out->header_len;
        st = parse_header((const char *)buf + 8, out->header_len, len - out->data_start, out, err);
    }
    if (st != JAMBA_OK) {
        jb_st_close(out);
        return st;
    }
    out->base = buf;
    return JAMBA_OK;
}

static jamba_status read_exact(int fd, void *dst, size_t n, uint64_t offset, const char *label,
                               jamba_error *err) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)dst + got, n - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return jb_fail(err, JAMBA_ERR_IO, "%s: read failed: %s", label, strerror(errno));
        if (r == 0)
            return jb_fail(err, BAD, "%s: file ended while reading the header (truncated?)", label);
        got += (size_t)r;
    }
    return JAMBA_OK;
}

/* fd is a regular file (jb_open_regular) of sb->st_size bytes. */
static jamba_status open_validated(int fd, const struct stat *sb, const char *label, jb_st_file *f,
                                   jamba_error *err) {
    f->file_size = (uint64_t)sb->st_size;
    if (f->file_size < 8)
        return jb_fail(err, BAD, "%s: file is %llu bytes, shorter than the 8-byte header length", label,
                       (unsigned long long)f->file_size);
    if (f->file_size > SIZE_MAX)
        return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: file too large to map on this platform", label);
    uint8_t len_bytes[8];
    JB_TRY(read_exact(fd, len_bytes, 8, 0, label, err));
    f->header_len = read_le64(len_bytes);
    JB_TRY(check_header_len(f->file_size, f->header_len, label, err));
    f->data_start = 8 + f->header_len;
    char *hdr = jb_malloc((size_t)f->header_len);
    if (hdr == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory for a %llu-byte header", label,
                       (unsigned long long)f->header_len);
    jamba_status st = read_exact(fd, hdr, (size_t)f->header_len, 8, label, err);
    if (st == JAMBA_OK)
        st = parse_header(hdr, f->header_len, f->file_size - f->data_start, f, err);
    jb_free(hdr);
    if (st != JAMBA_OK)
        return st;
    void *map = mmap(NULL, (size_t)f->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot map %llu bytes: %s", label,
                       (unsigned long long)f->file_size, strerror(errno));
    f->base = map;
    f->map_len = (size_t)f->file_size;
    return JAMBA_OK;
}

jamba_status jb_st_open(const char *path, const char *label, jb_st_file *out, jamba_error *err) {
    memset(out, 0, sizeof *out);
    JB_TRY(set_label(out, label, err));
    int fd;
    struct stat sb;
    jamba_status st = jb_open_regular(path, label, 0, &fd, &sb, err);
    if (st != JAMBA_OK) {
        jb_st_close(out);
        return st;
    }
    st = open_validated(fd, &sb, label, out, err);
    close(fd); /* the mapping stays valid after close */
    if (st != JAMBA_OK)
        jb_st_close(out);
    return st;
}

void jb_st_close(jb_st_file *f) {
    if (f->map_len)
        munmap((void *)f->base, f->map_len);
    for (int64_t i = 0; i < f->n_tensors; i++)
        jb_free(f->tensors[i].name);
    jb_free(f->tensors);
    jb_free(f->label);
    memset(f, 0, sizeof *f);
}

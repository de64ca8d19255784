/*
 * st_write.c — safetensors writer (see st_write.h).
 */
#include "ckpt/st_write.h"

#include "base/alloc.h"
#include "base/atomic_file.h"
#include "base/checked.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jamba_status tensor_bytes(const jb_st_out_tensor *t, uint64_t *out, jamba_error *err) {
    *out = 0;
    uint64_t n = jamba_dtype_size(t->dtype);
    if (n == 0 || t->rank < 0 || t->rank > 8)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "tensor \"%s\": bad dtype or rank", t->name);
    for (int d = 0; d < t->rank; d++)
        if (t->shape[d] < 0 || !jb_mul_u64(n, (uint64_t)t->shape[d], &n))
            return jb_fail(err, JAMBA_ERR_OVERFLOW, "tensor \"%s\": bad shape", t->name);
    *out = n;
    return JAMBA_OK;
}

jamba_status jb_st_header(const jb_st_out_tensor *tensors, int64_t n, char **out, size_t *out_len,
                                 jamba_error *err) {
    json_t *root = json_object();
    json_t *meta = json_pack("{s:s}", "format", "pt");
    jamba_status st = root && meta && json_object_set_new(root, "__metadata__", meta) == 0
                          ? JAMBA_OK
                          : jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory building a header");
    uint64_t offset = 0;
    for (int64_t i = 0; st == JAMBA_OK && i < n; i++) {
        uint64_t bytes = 0;
        if ((st = tensor_bytes(&tensors[i], &bytes, err)) != JAMBA_OK)
            break;
        if (json_object_get(root, tensors[i].name) != NULL) {
            st = jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "tensor name \"%s\" used twice or reserved", tensors[i].name);
            break;
        }
        json_t *shape = json_array();
        for (int d = 0; shape && d < tensors[i].rank; d++)
            json_array_append_new(shape, json_integer(tensors[i].shape[d]));
        json_t *entry = json_pack("{s:s,s:o,s:[I,I]}", "dtype", jamba_dtype_name(tensors[i].dtype), "shape", shape,
                                  "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
        if (entry == NULL || json_object_set_new(root, tensors[i].name, entry) != 0)
            st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory building a header");
        offset += bytes;
    }
    char *text = st == JAMBA_OK ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (st != JAMBA_OK)
        return st;
    if (text == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory building a header");
    size_t len = strlen(text), padded = (len + 8 + 7) / 8 * 8 - 8;
    *out = jb_malloc(padded);
    if (*out == NULL) {
        free(text);
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "out of memory building a header");
    }
    memcpy(*out, text, len);
    memset(*out + len, ' ', padded - len);
    *out_len = padded;
    free(text);
    return JAMBA_OK;
}

static bool write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

typedef struct st_content {
    const char *header;
    size_t header_len;
    const jb_st_out_tensor *tensors;
    int64_t n;
    const jb_stop *stop; /* polled between tensors */
    bool stopped;
} st_content;

static bool write_content(FILE *f, void *arg) {
    st_content *c = arg;
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)((uint64_t)c->header_len >> (8 * i));
    bool ok = write_all(f, len_le, 8) && write_all(f, c->header, c->header_len);
    for (int64_t i = 0; ok && i < c->n; i++) {
        if (jb_stop_requested(c->stop)) {
            c->stopped = true;
            return false;
        }
        uint64_t bytes = 0;
        tensor_bytes(&c->tensors[i], &bytes, NULL); /* validated while building the header */
        ok = write_all(f, c->tensors[i].data, (size_t)bytes);
    }
    return ok;
}

jamba_status jb_st_write(const char *path, const jb_st_out_tensor *tensors, int64_t n, const jb_stop *stop,
                         jamba_error *err) {
    char *header = NULL;
    size_t header_len = 0;
    JB_TRY(jb_st_header(tensors, n, &header, &header_len, err));
    st_content content = {header, header_len, tensors, n, stop, false};
    jamba_status st = jb_write_file_atomic(path, write_content, &content, err);
    if (content.stopped)
        st = jb_fail(err, JAMBA_ERR_ABORTED, "%s: the write was stopped; the file was not written", path);
    jb_free(header);
    return st;
}

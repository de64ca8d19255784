/*
 * st_write.h — write a safetensors file: header padded with spaces to a multiple of 8, tensors in the
 * given order, contiguous. Written to a temporary file in the same folder and renamed into place, so a
 * failure never leaves a partial file under the final name.
 */
#ifndef JB_ST_WRITE_H
#define JB_ST_WRITE_H

#include <stdint.h>

#include "base/stop.h"
#include "jamba.h"

typedef struct jb_st_out_tensor {
    const char *name;
    jamba_dtype dtype;
    int rank;
    int64_t shape[8];
    const void *data; /* n_elements * dtype size bytes */
} jb_st_out_tensor;

/* Write a safetensors file atomically (a temporary name, synced, renamed). `stop` (may be NULL) is polled
 * between tensors: JAMBA_ERR_ABORTED, nothing left behind. */
jamba_status jb_st_write(const char *path, const jb_st_out_tensor *tensors, int64_t n, const jb_stop *stop,
                         jamba_error *err);

/* The header JSON of such a file (data offsets in list order), padded with spaces so that 8 + its length
 * is a multiple of 8; the caller frees *out with jb_free. */
jamba_status jb_st_header(const jb_st_out_tensor *tensors, int64_t n, char **out, size_t *out_len, jamba_error *err);

#endif /* JB_ST_WRITE_H */

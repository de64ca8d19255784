/*
 * device.c — jamba_backend_query / jamba_device_query: forwards to the CUDA backend when it is built,
 * otherwise reports that this build has none.
 */
#include "../cuda/device.h"
#include "error.h"

#include <stdio.h>
#include <string.h>

jamba_status jamba_backend_query(jamba_backend_info *out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_backend_query: out is NULL");
    memset(out, 0, sizeof *out);
#ifdef JAMBA_WITH_CUDA
    return jb_cuda_backend_query(out, err);
#else
    snprintf(out->note, sizeof out->note, "this build has no CUDA backend (configure with -DJAMBA_CUDA=ON)");
    return JAMBA_OK;
#endif
}

jamba_status jamba_device_query(int index, jamba_device_info *out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_device_query: out is NULL");
    memset(out, 0, sizeof *out);
#ifdef JAMBA_WITH_CUDA
    return jb_cuda_device_query(index, out, err);
#else
    return jb_fail(err, JAMBA_ERR_NO_DEVICE, "device %d: this build has no CUDA backend", index);
#endif
}

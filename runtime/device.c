/*
 * device.c — jamba_backend_query / jamba_device_query: what the CUDA backend of this build reports.
 */
#include "runtime/context.h"

#include "base/error.h"

#include <string.h>

jamba_status jamba_backend_query(jamba_backend_info *out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_backend_query: out is NULL");
    memset(out, 0, sizeof *out);
    return jb_backend_for(JAMBA_DEVICE_CUDA)->query(out, err);
}

jamba_status jamba_device_query(int index, jamba_device_info *out, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_device_query: out is NULL");
    memset(out, 0, sizeof *out);
    return jb_backend_for(JAMBA_DEVICE_CUDA)->device_query(index, out, err);
}

/*
 * device.c — jamba_backend_query / jamba_device_query: what the CUDA backend of this build reports.
 */
#include "runtime/context.h"

#include "base/abi.h"
#include "base/error.h"

#include <string.h>

jamba_status jamba_backend_query_sized(jamba_backend_info *out, size_t out_size, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_backend_query: out is NULL");
    jamba_backend_info info;
    memset(&info, 0, sizeof info);
    JB_TRY(jb_backend_for(JAMBA_DEVICE_CUDA)->query(&info, err));
    return jb_struct_out(out, out_size, &info, sizeof info, JB_MIN_BACKEND_INFO, "jamba_backend_query: out", err);
}

jamba_status jamba_device_query_sized(int index, jamba_device_info *out, size_t out_size, jamba_error *err) {
    if (out == NULL)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "jamba_device_query: out is NULL");
    jamba_device_info info;
    memset(&info, 0, sizeof info);
    JB_TRY(jb_backend_for(JAMBA_DEVICE_CUDA)->device_query(index, &info, err));
    return jb_struct_out(out, out_size, &info, sizeof info, JB_MIN_DEVICE_INFO, "jamba_device_query: out", err);
}

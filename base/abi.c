/*
 * abi.c — copying size-carrying API structs between the caller's layout and the library's.
 */
#include "base/abi.h"

#include "base/error.h"

#include <stdint.h>
#include <string.h>

jamba_status jb_struct_in(void *dst, size_t dst_size, const void *src, size_t caller_size, size_t min_size,
                          const char *what, jamba_error *err) {
    if (caller_size < min_size)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: %zu bytes given, at least %zu expected (a header "
                       "older than this library's ABI, or a wrong size)", what, caller_size, min_size);
    const uint8_t *bytes = src;
    for (size_t i = dst_size; i < caller_size; i++)
        if (bytes[i] != 0)
            return jb_fail(err, JAMBA_ERR_UNSUPPORTED, "%s: byte %zu is set, but this library (%s) knows only the "
                           "first %zu bytes: a field from a newer header", what, i, JAMBA_VERSION_STRING, dst_size);
    memcpy(dst, src, caller_size < dst_size ? caller_size : dst_size);
    return JAMBA_OK;
}

jamba_status jb_struct_out(void *dst, size_t caller_size, const void *src, size_t src_size, size_t min_size,
                           const char *what, jamba_error *err) {
    if (caller_size < min_size)
        return jb_fail(err, JAMBA_ERR_INVALID_ARGUMENT, "%s: %zu bytes given, at least %zu expected (a header "
                       "older than this library's ABI, or a wrong size)", what, caller_size, min_size);
    const size_t n = caller_size < src_size ? caller_size : src_size;
    memcpy(dst, src, n);
    memset((uint8_t *)dst + n, 0, caller_size - n);
    return JAMBA_OK;
}

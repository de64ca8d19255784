/*
 * dtype.c — the safetensors dtype table.
 */
#include "dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[JAMBA_DTYPE_COUNT_] = {
    [JAMBA_DTYPE_UNKNOWN] = {"UNKNOWN", 0},  [JAMBA_DTYPE_F32] = {"F32", 4},
    [JAMBA_DTYPE_F16] = {"F16", 2},          [JAMBA_DTYPE_BF16] = {"BF16", 2},
    [JAMBA_DTYPE_F64] = {"F64", 8},          [JAMBA_DTYPE_I64] = {"I64", 8},
    [JAMBA_DTYPE_I32] = {"I32", 4},          [JAMBA_DTYPE_I16] = {"I16", 2},
    [JAMBA_DTYPE_I8] = {"I8", 1},            [JAMBA_DTYPE_U64] = {"U64", 8},
    [JAMBA_DTYPE_U32] = {"U32", 4},          [JAMBA_DTYPE_U16] = {"U16", 2},
    [JAMBA_DTYPE_U8] = {"U8", 1},            [JAMBA_DTYPE_BOOL] = {"BOOL", 1},
    [JAMBA_DTYPE_F8_E4M3] = {"F8_E4M3", 1},  [JAMBA_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *jamba_dtype_name(jamba_dtype dtype) {
    if ((int)dtype < 0 || dtype >= JAMBA_DTYPE_COUNT_)
        return "UNKNOWN";
    return dtype_table[dtype].name;
}

size_t jamba_dtype_size(jamba_dtype dtype) {
    if ((int)dtype < 0 || dtype >= JAMBA_DTYPE_COUNT_)
        return 0;
    return dtype_table[dtype].size;
}

jamba_dtype jb_dtype_from_name(const char *name) {
    for (int d = 1; d < JAMBA_DTYPE_COUNT_; d++)
        if (strcmp(dtype_table[d].name, name) == 0)
            return (jamba_dtype)d;
    return JAMBA_DTYPE_UNKNOWN;
}

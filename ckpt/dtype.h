/*
 * dtype.h — safetensors dtype names, and element conversions to and from fp32.
 */
#ifndef JB_DTYPE_H
#define JB_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "jamba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The dtype whose safetensors name is exactly `name`, or JAMBA_DTYPE_UNKNOWN. */
jamba_dtype jb_dtype_from_name(const char *name);

/* Widen n stored elements (any alignment) to fp32: F32, F16, BF16, I8 (the integer value) or F8_E4M3. */
void jb_to_f32(float *dst, const void *src, jamba_dtype dtype, int64_t n);

/* One OCP FP8 E4M3FN value (no infinities; S.1111.111 is NaN). */
float jb_e4m3_to_f32(uint8_t b);

/* fp32 to bf16, rounding to nearest even; NaN stays NaN. Inline, so that loops over it vectorise. */
static inline uint16_t jb_f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) /* NaN stays a quiet NaN */
        return (uint16_t)((b >> 16) | 0x40);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

#ifdef __cplusplus
}
#endif

#endif /* JB_DTYPE_H */
